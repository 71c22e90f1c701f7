"""The workloads: what each one runs against a fresh server, what it measures, and its target.

A `Variant` is one parameter set of a workload (`put c10 d16`); running it against a server
kind gives one `Sample` per round. Each run starts its own server, checks the server's own
counters against the generator's afterwards, and stops the server, so rounds are independent.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from . import loadgen, servers
from .loadgen import ConnPlan, WorkerResult
from .servers import Server, ServerKind
from .summary import Target, percentile, shares

BODY = 100
FILL_CONNS, FILL_DEPTH = 4, 64


class BenchError(RuntimeError):
    """A run that could not produce a trustworthy number; reported in its row."""


@attrs.frozen
class Settings:
    workers: int = 2  # generator processes per group
    limit_s: float = 60.0  # wall-time bound of one measured run
    tmp: str | None = None  # where binlog directories go (None: the system's temp dir)


@attrs.frozen
class Sample:
    values: Mapping[str, float]  # metric key -> value
    info: Mapping[str, object] = attrs.field(factory=dict)  # context kept in the JSON


@attrs.frozen
class Metric:
    key: str  # in Sample.values and the JSON
    label: str  # in the table
    higher_is_better: bool
    target: Target | None = None


RunFn = Callable[[ServerKind, Settings], Sample]
CeilingFn = Callable[[int, Settings], Sample]


@attrs.frozen
class Variant:
    name: str  # unique: "put c10 d16"
    workload: str  # the --only name: "put"
    params: Mapping[str, object]
    metrics: tuple[Metric, ...]
    run: RunFn
    ceiling: CeilingFn | None = None  # the same load against the null responder
    kinds: tuple[str, ...] = ("tubeserver", "beanstalkd")
    # The beanstalkd column comes from the best beanstalkd rate among this workload's
    # variants instead (reserve-batch against beanstalkd's best reserve+delete).
    reference: str | None = None
    max_rounds: int | None = None


RATE = Metric("rate", "jobs/s", True)


# ---------------------------------------------------------------- shared steps

def _check(server: Server, **want: int) -> None:
    """The server's own counters (`stats`; each run has a fresh server) against ours."""
    got = server.stats()
    for key, value in want.items():
        name = key.replace("_", "-")
        if int(got.get(name, "-1")) != value:
            raise BenchError(f"{server.kind.name}: {name} is {got.get(name)}, expected {value}")


def _fill(port: int, n: int, settings: Settings) -> None:
    """Put `n` ready jobs, pipelined (not measured)."""
    if n <= 0:
        return
    conns = [ConnPlan("put", k, FILL_DEPTH, BODY) for k in shares(n, FILL_CONNS) if k]
    lead, _ = loadgen.run(loadgen.split(conns, settings.workers, port, 60 + n / 2000))
    done = sum(r.done for r in lead)
    if any(r.timed_out for r in lead) or done != n:
        raise BenchError(f"filling stopped at {done} of {n} jobs")


@attrs.frozen
class Rate:
    rate: float
    done: int
    timed_out: bool
    gen_cpu: float  # the generator's CPU use in cores

    def info(self) -> dict[str, object]:
        return {"jobs": self.done, "time_bounded": self.timed_out,
                "generator_cpu_cores": round(self.gen_cpu, 3)}


def _rate(lead: Sequence[WorkerResult], measured: Sequence[WorkerResult] | None = None,
          follow: Sequence[WorkerResult] = ()) -> Rate:
    measured = lead if measured is None else measured
    done = sum(r.done for r in measured)
    if not done:
        raise BenchError("no job completed")
    errors = [r for r in (*lead, *follow) if r.errors]
    if errors:
        raise BenchError(f"{sum(r.errors for r in errors)} error replies, first: "
                         f"{errors[0].first_error!r}")
    timed_out = any(r.timed_out for r in (*lead, *follow))
    elapsed = loadgen.elapsed_s([lead, follow], measured)
    return Rate(done / elapsed, done, timed_out, loadgen.cpu_cores([lead, follow], elapsed))


def _latency(follow: Sequence[WorkerResult]) -> dict[str, float]:
    lat = [x for r in follow for x in r.latencies_ns]
    if not lat:
        raise BenchError("no latency samples")
    return {"p50": percentile(lat, 50) / 1e6, "p99": percentile(lat, 99) / 1e6}


@contextlib.contextmanager
def _binlog(settings: Settings) -> Iterator[str]:
    """A binlog directory for one run, removed afterwards."""
    path = tempfile.mkdtemp(prefix="tubebench-wal-", dir=settings.tmp)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- put-only

def put(conns: int, depth: int, n: int, extra: Sequence[str] = (),
        seconds: float | None = None) -> tuple[RunFn, CeilingFn]:
    def plans() -> list[ConnPlan]:
        return [ConnPlan("put", k, depth, BODY) for k in shares(n, conns)]

    def on(port: int, settings: Settings) -> Rate:
        limit = settings.limit_s if seconds is None else seconds
        lead, _ = loadgen.run(loadgen.split(plans(), settings.workers, port, limit))
        return _rate(lead)

    def run(kind: ServerKind, settings: Settings) -> Sample:
        # "{wal}" in the flags stands for a fresh binlog directory (durable put).
        wal = _binlog(settings) if any("{wal}" in f for f in extra) else contextlib.nullcontext("")
        with wal as path:
            flags = [f.replace("{wal}", path) for f in extra]
            with servers.running(kind, flags) as server:
                r = on(server.port, settings)
                if not r.timed_out:
                    _check(server, total_jobs=r.done)
        return Sample({"rate": r.rate}, r.info())

    def ceiling(port: int, settings: Settings) -> Sample:
        r = on(port, settings)
        return Sample({"rate": r.rate}, r.info())

    return run, ceiling


# ---------------------------------------------------------------- drain: reserve + delete

def drain(conns: int, depth: int, n: int, batch: int = 0) -> tuple[RunFn, CeilingFn]:
    """reserve-with-timeout 0 + delete (`depth` in flight), or with `batch`: reserve-batch
    `batch` 0 + pipelined deletes, until the pre-filled tube is empty."""
    kind_name = "batch" if batch else "drain"

    def plans(caps: Sequence[int]) -> list[ConnPlan]:
        return [ConnPlan(kind_name, cap, depth, BODY, batch=batch or 100) for cap in caps]

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            _fill(server.port, n, settings)
            _check(server, current_jobs_ready=n)
            lead, _ = loadgen.run(loadgen.split(plans([n] * conns), settings.workers,
                                                server.port, settings.limit_s))
            r = _rate(lead)
            if not r.timed_out:
                if r.done != n:
                    raise BenchError(f"deleted {r.done} of {n} jobs")
                _check(server, current_jobs_ready=0, current_jobs_reserved=0)
        return Sample({"rate": r.rate}, r.info())

    def ceiling(port: int, settings: Settings) -> Sample:
        lead, _ = loadgen.run(loadgen.split(plans(shares(n, conns)), settings.workers, port,
                                            settings.limit_s))
        r = _rate(lead)
        return Sample({"rate": r.rate}, r.info())

    return run, ceiling


# ---------------------------------------------------------------- full cycle

def cycle(producers: int, consumers: int, depth: int, n: int) -> RunFn:
    """Producers put timed jobs (closed loop, `depth` in flight) while consumers reserve and
    delete them (`depth` in flight); rate of deletes, put-to-reserve latency."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        half = max(1, settings.workers // 2)
        lead_plans = [ConnPlan("put", k, depth, BODY, stamped=True)
                      for k in shares(n, producers)]
        follow_plans = [ConnPlan("consume", 2 * n + 1000, depth, BODY, stamped=True)
                        for _ in range(consumers)]
        with servers.running(kind) as server:
            lead, follow = loadgen.run(
                loadgen.split(lead_plans, half, server.port, settings.limit_s),
                loadgen.split(follow_plans, half, server.port, settings.limit_s),
            )
            r = _rate(lead, follow, follow)
            if not r.timed_out and r.done != n:
                raise BenchError(f"consumed {r.done} of {n} jobs")
        return Sample({"rate": r.rate, **_latency(follow)}, r.info())

    return run


def paced(rate: float, n: int, consumers: int, depth: int = 1) -> RunFn:
    """One producer sends timed jobs at a steady `rate` (open loop); consumers reserve and
    delete. Put-to-reserve latency at a load both servers can carry."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        lead_plan = loadgen.WorkerPlan(0, (ConnPlan("paced", n, body_size=BODY, rate=rate),),
                                       n / rate + 30)
        follow_plans = [ConnPlan("consume", 2 * n + 1000, depth, BODY, stamped=True)
                        for _ in range(consumers)]
        with servers.running(kind) as server:
            lead, follow = loadgen.run(
                [attrs.evolve(lead_plan, port=server.port)],
                loadgen.split(follow_plans, 1, server.port, n / rate + 30),
            )
            r = _rate(lead, follow, follow)
            if r.timed_out or r.done != n:
                raise BenchError(f"consumed {r.done} of {n} jobs")
        return Sample(_latency(follow), {**r.info(), "achieved_rate": round(r.rate, 1)})

    return run


# ---------------------------------------------------------------- memory and restart

def memory(n: int) -> RunFn:
    """Resident memory per ready job: VmRSS after putting `n` jobs, less VmRSS before."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            time.sleep(0.2)
            before = server.rss_bytes()
            _fill(server.port, n, settings)
            _check(server, current_jobs_ready=n)
            after = server.rss_bytes()
        return Sample({"bytes_per_job": (after - before) / n},
                      {"rss_before": before, "rss_after": after, "jobs": n})

    return run


def restart(n: int, fill_flags: Sequence[str] = ("-F",)) -> RunFn:
    """Fill a server that logs to a binlog directory, stop it (SIGTERM), start it again on
    the same directory and time from the new process's start until `stats` reports all `n`
    jobs ready."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with _binlog(settings) as wal:
            flags = ["-b", wal, *fill_flags]
            with servers.running(kind, flags) as server:
                _fill(server.port, n, settings)
                _check(server, current_jobs_ready=n)
                server.stop(signal.SIGTERM, wait=120)
            second = servers.spawn(kind, flags)
            try:
                seconds = _wait_jobs(second, n, settings.limit_s + 60)
                log_bytes = sum(p.stat().st_size for p in Path(wal).rglob("*") if p.is_file())
            finally:
                second.stop()
        return Sample({"seconds": seconds}, {"jobs": n, "log_bytes": log_bytes})

    return run


def _wait_jobs(server: Server, n: int, limit: float) -> float:
    """Seconds from the process's start until it answers `stats` with `n` ready jobs."""
    end = time.monotonic() + limit
    ready = -1
    while time.monotonic() < end:
        server.check_alive()
        try:
            stats = server.stats(timeout=max(end - time.monotonic(), 0.1))
        except OSError:
            time.sleep(0.002)
            continue
        ready = int(stats.get("current-jobs-ready", "-1"))
        if ready == n:
            return (time.monotonic_ns() - server.started_ns) / 1e9
        if ready > n:
            break
        time.sleep(0.002)
    raise BenchError(f"{server.kind.name} came back with {ready} of {n} ready jobs")


# ---------------------------------------------------------------- the catalogue

WORKLOADS = ("put", "drain", "batch", "cycle", "paced", "memory", "restart", "durable")
# `--only batch` needs beanstalkd's reserve+delete rows for its reference column.
NEEDS = {"batch": ("drain",)}


def _scale(n: int, jobs: int | None) -> int:
    return n if jobs is None else jobs


def catalogue(quick: bool, jobs: int | None = None) -> list[Variant]:
    """Every variant, in running order. `jobs` replaces every job count (for smoke runs)."""
    q = quick

    def J(full: int, fast: int) -> int:
        return _scale(fast if q else full, jobs)

    out: list[Variant] = []

    for depth, target, n in ((1, 0.5, J(40_000, 10_000)), (16, 1.0, J(150_000, 50_000))):
        run, ceil = put(10, depth, n)
        out.append(Variant(f"put c10 d{depth}", "put",
                           {"connections": 10, "depth": depth, "body": BODY, "jobs": n},
                           (attrs.evolve(RATE, target=Target(">=", target)),), run, ceil))
    for depth, target, n in ((1, 0.5, J(30_000, 6_000)), (16, 1.0, J(150_000, 40_000))):
        run, ceil = drain(10, depth, n)
        out.append(Variant(f"drain c10 d{depth}", "drain",
                           {"connections": 10, "depth": depth, "body": BODY, "jobs": n},
                           (attrs.evolve(RATE, target=Target(">=", target)),), run, ceil))
    n = J(150_000, 40_000)
    run, ceil = drain(10, 1, n, batch=100)
    out.append(Variant("batch100 c10", "batch",
                       {"connections": 10, "batch": 100, "body": BODY, "jobs": n},
                       (attrs.evolve(RATE, target=Target(">=", 2.0)),), run, ceil,
                       kinds=("tubeserver",), reference="drain"))
    n = J(60_000, 20_000)
    out.append(Variant("cycle p5 c5 d16", "cycle",
                       {"producers": 5, "consumers": 5, "depth": 16, "body": BODY, "jobs": n},
                       (RATE, Metric("p50", "p50 ms", False), Metric("p99", "p99 ms", False)),
                       cycle(5, 5, 16, n)))
    n = J(12_000, 3_000)
    out.append(Variant("paced 2000/s", "paced",
                       {"rate": 2000, "producers": 1, "consumers": 2, "depth": 1, "body": BODY,
                        "jobs": n},
                       (Metric("p50", "p50 ms", False),
                        Metric("p99", "p99 ms", False, Target("<=", 2.0))),
                       paced(2000, n, 2)))
    n = J(1_000_000, 100_000)
    out.append(Variant("memory", "memory", {"body": BODY, "jobs": n},
                       (Metric("bytes_per_job", "bytes/job", False, Target("<=", 2.0)),),
                       memory(n), max_rounds=1 if q else 3))
    n = J(1_000_000, 100_000)
    out.append(Variant("restart", "restart",
                       {"body": BODY, "jobs": n, "fill flags": "-b DIR -F", "stop": "SIGTERM"},
                       (Metric("seconds", "seconds", False, Target("<=", 2.0)),),
                       restart(n), max_rounds=1 if q else 3))
    secs = 2.0 if q else 3.0
    for conns, goal, n in ((1, None, J(3_000, 500)), (10, Target(">=", 5.0), J(10_000, 2_000))):
        run, _ = put(conns, 1, n, ("-b", "{wal}", "-f", "0"), seconds=secs)
        out.append(Variant(f"durable c{conns}", "durable",
                           {"connections": conns, "depth": 1, "body": BODY, "jobs": n,
                            "max seconds": secs, "flags": "-b DIR -f 0"},
                           (attrs.evolve(RATE, target=goal),), run))
    return out


def select(variants: Sequence[Variant], only: Sequence[str]) -> list[Variant]:
    """The variants of the named workloads (and of the workloads they need)."""
    if not only:
        return list(variants)
    wanted = set(only)
    for name in only:
        wanted.update(NEEDS.get(name, ()))
    return [v for v in variants if v.workload in wanted]
