"""The worker workload: `tubeworker --call` against RQ's fork-per-job `rq worker --burst`.

Each run puts `n` no-op jobs, then times one worker run (`-c N`; for RQ, N `rq worker
--burst` processes side by side) from its start until it exits having done them all, start-up
included on both sides. The RQ column starts Debian's redis-server on a free loopback port
and needs RQ (the `bench` extra); neither is needed by the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from . import servers
from .servers import ServerKind
from .summary import Target
from .workloads import RATE, BenchError, Column, RunFn, Sample, Settings, Variant

TUBE = "bench"
CALL = Column("tubeworker --call", "tubeserver")
RQ = Column("rq worker --burst", "tubeserver")  # starts its own redis-server
JOBS_MODULE = "def noop(body=None):\n    return None\n"


def _tubeworker(kind: ServerKind, concurrency: int, n: int, settings: Settings,
                work: Path) -> float:
    from tubeclient import Client

    with servers.running(kind) as server:
        with Client((servers.HOST, server.port), use=TUBE) as c:
            c.put_many([b"x"] * n)
        worker = Path(sys.executable).parent / "tubeworker"
        began = time.monotonic()
        done = subprocess.run(
            [str(worker), "-s", f"{servers.HOST}:{server.port}", "-t", TUBE, "--burst",
             "-c", str(concurrency), "--call", "benchjobs:noop"],
            cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=settings.limit_s)
        elapsed = time.monotonic() - began
        if done.returncode != 0:
            raise BenchError(f"tubeworker exited {done.returncode}: {done.stderr[-300:]!r}")
        stats = server.stats()
        # tubeworker finishes a job (keeping its result) where the server tracks jobs.
        answered = int(stats["cmd-delete"]) + int(stats.get("cmd-finish", 0))
        if answered != n or int(stats["current-jobs-ready"]) != 0:
            raise BenchError(f"tubeworker finished or deleted {answered} of {n} jobs")
    return elapsed


def _rq(concurrency: int, n: int, settings: Settings, work: Path) -> float:
    try:
        from redis import Redis
        from rq import Queue
        from rq.registry import FailedJobRegistry
    except ImportError as e:
        raise BenchError(f"RQ is not installed (pip install 'tubeserver[bench]'): {e}") from e
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise BenchError("redis-server not found (apt-get install redis-server)")
    port = servers.free_port()
    redis = subprocess.Popen([redis_server, "--port", str(port), "--bind", servers.HOST,
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = Redis(host=servers.HOST, port=port)
        deadline = time.monotonic() + 10
        while True:  # until redis answers, at most 10 s
            try:
                conn.ping()
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not start: {e}") from e
                time.sleep(0.05)
        sys.path.insert(0, str(work))
        try:
            import benchjobs
        finally:
            sys.path.remove(str(work))
        queue = Queue(TUBE, connection=conn)
        with conn.pipeline() as pipe:
            for _ in range(n):
                queue.enqueue(benchjobs.noop, b"x", pipeline=pipe)
            pipe.execute()
        rq = Path(sys.executable).parent / "rq"
        argv = [str(rq), "worker", "--burst", "-q", "-u",
                f"redis://{servers.HOST}:{port}", TUBE]
        began = time.monotonic()
        workers = [subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for _ in range(concurrency)]
        try:
            codes = [w.wait(timeout=settings.limit_s) for w in workers]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        elapsed = time.monotonic() - began
        if any(codes):
            raise BenchError(f"rq worker exited {codes}")
        failed = FailedJobRegistry(TUBE, connection=conn).count
        if len(queue) != 0 or failed:
            raise BenchError(f"rq left {len(queue)} queued and {failed} failed of {n} jobs")
    finally:
        redis.terminate()
        redis.wait(timeout=10)
    return elapsed


def run_worker(concurrency: int, n: int) -> RunFn:
    def run(kind: ServerKind, settings: Settings) -> Sample:
        # RQ's fork-per-job worker managed 12-90 jobs/s here: allow 5 jobs/s at the least.
        settings = attrs.evolve(settings, limit_s=max(settings.limit_s, n / 5))
        with tempfile.TemporaryDirectory(prefix="tubebench-worker-", dir=settings.tmp) as tmp:
            work = Path(tmp)
            (work / "benchjobs.py").write_text(JOBS_MODULE)
            if kind.name == RQ.name:
                elapsed = _rq(concurrency, n, settings, work)
            else:
                elapsed = _tubeworker(kind, concurrency, n, settings, work)
        return Sample({"rate": n / elapsed}, {"seconds": round(elapsed, 3), "jobs": n})
    return run


def variants(quick: bool, jobs: int | None = None) -> list[Variant]:
    """`--call` over RQ at -c 1 (the issue's target: at least 3x) and -c 2."""
    n = jobs if jobs is not None else (300 if quick else 1000)
    out = []
    for concurrency, goal in ((1, 3.0), (2, None)):
        rate = attrs.evolve(RATE, target=None if goal is None else Target(">=", goal))
        out.append(Variant(f"worker --call c{concurrency}", "worker",
                           {"jobs": n, "concurrency": concurrency, "function": "no-op",
                            "columns": f"{CALL.name} / {RQ.name}"},
                           (rate,), run_worker(concurrency, n), columns=(CALL, RQ),
                           max_rounds=1 if quick else 3))
    return out


__all__ = ["CALL", "RQ", "run_worker", "variants"]
