"""The flow-control workloads (`--only flow`): put-unique's cost, and a limited tube's limits.

put-unique is tubeserver's alone (beanstalkd has no such command), so its rows compare it
with tubeserver's own plain put, the same load in the same rounds: every key distinct (each
put inserts, and keeps a key), then a few keys over and over (nearly every put is answered
DUPLICATE and stores nothing). The C generator drives both (gen.c --unique).

The limited tube measures no speed: a tube with `tube-limits bench 4 0 200`, filled, and
workers that each reserve a job, hold it a moment (so that, unlimited, more than 4 would be
reserved at once and more than 200 a second delivered) and delete it, for a fixed time. It
reports the rate delivered against the limit set and the most jobs reserved at once, both as
the workers held them (exact from their side, so never more than the server had) and as
`list-tube-limits` showed them (sampled). Its generator is Python (tubeclient threads), not
gen.c: at 200 jobs a second that is no constraint, and the row says so.
"""

from __future__ import annotations

import threading
import time

from tubeclient import Client, TimedOut

from . import servers
from .instrument import Load
from .servers import ServerKind
from .workloads import (
    BODY,
    BenchError,
    CeilingFn,
    Column,
    Metric,
    RunFn,
    Sample,
    Settings,
    Variant,
    _check,
    _fill,
    _measure,
    _rate_sample,
    _scale,
)

PUT_UNIQUE = Column("put-unique", "tubeserver")
PLAIN_PUT = Column("plain put", "tubeserver")
NO_BEANSTALKD = ("beanstalkd has no put-unique: compared with tubeserver's own plain put, "
                 "same load, same rounds")
DUP_KEYS = 100  # the duplicate-heavy variant's keys: all but the first 100 puts DUPLICATE

TUBE = "bench"  # gen.c's tube
LIMITED = Column("tube-limits 4 0 200", "tubeserver")
MAX_RESERVED, RATE_LIMIT = 4, 200.0
WORKERS, HOLD_S = 8, 0.015  # unlimited: up to 8 reserved and ~500 jobs/s
SAMPLE_S = 0.005  # how often list-tube-limits is read during the run
PYTHON_GENERATOR = ("generator: python (8 tubeclient threads, not gen.c) for this row; it "
                    "measures limits, not speed. The rate's token bucket starts full (one "
                    "second's worth), so S seconds may deliver (S + 1) x the rate")


def unique_put(conns: int, depth: int, n: int, keys: int) -> tuple[RunFn, CeilingFn]:
    """`n` puts, `depth` in flight on each of `conns` connections: put-unique with `keys`
    keys in turn for the put-unique column, plain put for the other; each checked against
    the server's own counters (jobs stored, duplicates answered)."""

    def load(port: int, settings: Settings, unique: int) -> Load:
        return Load("put", port, n, conns, depth, body=BODY, limit_s=settings.limit_s,
                    unique=unique)

    def run(kind: ServerKind, settings: Settings) -> Sample:
        unique = keys if kind.name == PUT_UNIQUE.name else 0
        with servers.running(kind) as server:
            out = _measure(settings, load(server.port, settings, unique))
            if not out.timed_out:
                stored = min(n, keys) if unique else n
                want = {"unique_duplicates": n - stored} if unique else {}
                _check(server, total_jobs=stored, **want)
                if out.duplicates != n - stored:
                    raise BenchError(f"{out.duplicates} DUPLICATE replies, expected {n - stored}")
        sample = _rate_sample(out)
        note = {"warning": NO_BEANSTALKD} if unique else {}
        return Sample(sample.values, {**sample.info, "duplicates": out.duplicates, **note})

    def ceiling(port: int, settings: Settings) -> Sample:
        # The null answers INSERTED to put-unique as to put: the ceiling of both columns.
        return _rate_sample(_measure(settings, load(port, settings, keys)))

    return run, ceiling


class _Held:
    """Jobs the workers hold right now, the most they held at once, the jobs they deleted
    (all, and those before the end of the measured time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = self.deleted = self.in_time = 0

    def took(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def letting_go(self) -> None:
        with self.lock:
            self.now -= 1

    def deleted_one(self, in_time: bool) -> None:
        with self.lock:
            self.deleted += 1
            self.in_time += in_time


def limited(seconds: float) -> RunFn:
    """WORKERS threads reserve from a tube limited to MAX_RESERVED at once and RATE_LIMIT
    jobs a second, hold each job HOLD_S and delete it, for `seconds`."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        n = int(RATE_LIMIT * (seconds + 1)) + 500  # more than the limits let out
        with servers.running(kind) as server:
            addr = ("127.0.0.1", server.port)
            with Client(addr, io_timeout=10) as admin:
                admin.tube_limits(TUBE, MAX_RESERVED, 0, RATE_LIMIT)
                _fill(server.port, n, settings)
                _check(server, current_jobs_ready=n)
                held, sampled = _workers(addr, admin, seconds)
            _check(server, cmd_delete=held.deleted)
        rate = held.in_time / seconds
        return Sample(
            {"rate": rate, "of_limit": rate / RATE_LIMIT, "held": held.most,
             "sampled": max(sampled, default=0)},
            {"jobs": held.in_time, "seconds": seconds, "workers": WORKERS, "hold_s": HOLD_S,
             "samples": len(sampled), "limits": f"{MAX_RESERVED} 0 {RATE_LIMIT:g}",
             "warning": PYTHON_GENERATOR})

    return run


def _workers(addr: tuple[str, int], admin: Client[bytes], seconds: float
             ) -> tuple[_Held, list[int]]:
    """Run the workers for `seconds` (from when all are connected) while `admin` samples
    the tube's reserved jobs; their counts, and the samples."""
    held = _Held()
    clients = [Client(addr, watch=TUBE, io_timeout=10) for _ in range(WORKERS)]
    end = time.monotonic() + seconds
    errors: list[BaseException] = []

    def work(c: Client[bytes]) -> None:
        try:
            while time.monotonic() < end:
                try:
                    job = c.reserve(timeout=1)
                except TimedOut:
                    continue
                held.took()
                time.sleep(HOLD_S)  # the work
                held.letting_go()
                c.delete(job)
                held.deleted_one(time.monotonic() < end)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    sampled: list[int] = []
    try:
        for t in threads:
            t.start()
        while time.monotonic() < end:
            limits = [x for x in admin.list_tube_limits() if x.tube == TUBE]
            if not limits:
                raise BenchError(f"the limits of {TUBE!r} are gone")
            sampled.append(limits[0].current_jobs_reserved)
            time.sleep(SAMPLE_S)
        for t in threads:
            t.join(timeout=15)
    finally:
        for c in clients:
            c.close()
    if errors:
        raise BenchError(f"a worker failed: {errors[0]!r}")
    if any(t.is_alive() for t in threads):
        raise BenchError("a worker did not stop")
    return held, sampled


def flow(quick: bool, jobs: int | None = None) -> list[Variant]:
    """put-unique against tubeserver's plain put (distinct keys; few keys), and a limited
    tube (reported, not judged: no targets)."""
    out: list[Variant] = []
    n = _scale(30_000 if quick else 100_000, jobs)
    for name, keys in (("put-unique c10 d16", n), (f"put-unique dup{DUP_KEYS} c10 d16",
                                                    DUP_KEYS)):
        run, ceil = unique_put(10, 16, n, keys)
        out.append(Variant(
            name, "flow",
            {"connections": 10, "depth": 16, "body": BODY, "jobs": n, "keys": min(keys, n),
             "columns": f"{PUT_UNIQUE.name} / {PLAIN_PUT.name}, both tubeserver"},
            (Metric("rate", "jobs/s", True),), run, ceil if keys == n else None,
            columns=(PUT_UNIQUE, PLAIN_PUT), max_rounds=3))
    # Timed, not counted: `jobs` (what the rate limit lets out) sets the seconds.
    n = _scale(int(RATE_LIMIT) * (5 if quick else 10), jobs)
    seconds = max(1.0, n / RATE_LIMIT)
    out.append(Variant(
        "limited tube", "flow",
        {"limits": f"tube-limits {TUBE} {MAX_RESERVED} 0 {RATE_LIMIT:g}", "workers": WORKERS,
         "hold_ms": HOLD_S * 1000, "jobs": n, "seconds": seconds,
         "generator": "python (tubeclient)"},
        (Metric("rate", f"delivered jobs/s (limit {RATE_LIMIT:g})", True),
         Metric("of_limit", "delivered / rate limit", True),
         Metric("held", f"max held at once (limit {MAX_RESERVED})", False),
         Metric("sampled", "max current-jobs-reserved sampled", False)),
        limited(seconds), columns=(LIMITED,), max_rounds=1))
    return out
