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

from . import servers
from .instrument import Generator, Load, Outcome
from .servers import Server, ServerKind
from .summary import Target

BODY = 100
FILL_CONNS, FILL_DEPTH = 4, 64


class BenchError(RuntimeError):
    """A run that could not produce a trustworthy number; reported in its row."""


@attrs.frozen
class Settings:
    generator: Generator  # the instrument: C, or the Python fallback
    limit_s: float = 60.0  # wall-time bound of one measured run
    tmp: str | None = None  # where binlog directories go (None: the system's temp dir)
    soak_s: float = 600.0  # how long the soak workload runs


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
class Column:
    """One side of a row: a server of the command line (`tubeserver` or `beanstalkd`)
    started with `flags` before the workload's own, under `name` in the table, the chart and
    the JSON. A row's ratio is its first column over its second."""

    name: str
    server: str
    flags: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """What the column runs, for the legend: `tubeserver --result-ttl 0`."""
        return " ".join((self.server, *self.flags))


TUBESERVER = Column("tubeserver", "tubeserver")
BEANSTALKD = Column("beanstalkd", "beanstalkd")


@attrs.frozen
class Variant:
    name: str  # unique: "put c10 d16"
    workload: str  # the --only name: "put"
    params: Mapping[str, object]
    metrics: tuple[Metric, ...]
    run: RunFn | None  # None: a row derived from other variants' samples (best_of)
    # The same shape against the null responder: the generator's own ceiling (rates) or
    # floor (latencies), for the metrics its sample has.
    ceiling: CeilingFn | None = None
    # What the row compares, first over second; one column: nothing to compare with.
    columns: tuple[Column, ...] = (TUBESERVER, BEANSTALKD)
    # The columns this variant runs itself (by name; default: all of them).
    kinds: tuple[str, ...] = attrs.field()
    # The second column comes from the best median of that column among this workload's
    # variants instead (reserve-batch against beanstalkd's best reserve+delete).
    reference: str | None = None
    # The first column is the best median among these variants (run nothing itself).
    best_of: tuple[str, ...] = ()
    max_rounds: int | None = None

    @kinds.default
    def _all_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.columns) <= 2:
            raise ValueError(f"{self.name}: one or two columns, not {len(self.columns)}")
        names = {c.name for c in self.columns}
        if len(names) != len(self.columns) or not set(self.kinds) <= names:
            raise ValueError(f"{self.name}: columns {sorted(names)}, runs {self.kinds}")

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


RATE = Metric("rate", "jobs/s", True)
P50 = Metric("p50", "p50 ms", False)
P99 = Metric("p99", "p99 ms", False)
P999 = Metric("p999", "p99.9 ms", False)


# ---------------------------------------------------------------- shared steps

def _check(server: Server, **want: int) -> dict[str, str]:
    """The server's own counters (`stats`; each run has a fresh server) against ours; the
    `stats` read."""
    got = server.stats()
    for key, value in want.items():
        name = key.replace("_", "-")
        if int(got.get(name, "-1")) != value:
            raise BenchError(f"{server.kind.name}: {name} is {got.get(name)}, expected {value}")
    return got


def _measure(settings: Settings, load: Load) -> Outcome:
    """Run `load`; an error reply or a run with nothing done is no number."""
    out = settings.generator.run(load)
    if out.errors:
        raise BenchError(f"{out.errors} error replies, first: {out.first_error!r}")
    if not out.done:
        raise BenchError("no job completed" + (" before the deadline" if out.timed_out else ""))
    return out


def _info(out: Outcome) -> dict[str, object]:
    return {"jobs": out.done, "time_bounded": out.timed_out,
            "generator_cpu_cores": round(out.gen_cores, 3)}


def _fill(port: int, n: int, settings: Settings) -> None:
    """Put `n` ready jobs, pipelined (not measured)."""
    if n <= 0:
        return
    out = settings.generator.run(Load("put", port, n, FILL_CONNS, FILL_DEPTH, body=BODY,
                                      limit_s=60 + n / 2000))
    if out.errors or out.timed_out or out.done != n:
        raise BenchError(f"filling stopped at {out.done} of {n} jobs"
                         + (f" ({out.first_error})" if out.errors else ""))


def _empty(port: int, n: int, settings: Settings) -> None:
    """Reserve and delete `n` ready jobs, pipelined (not measured)."""
    out = settings.generator.run(Load("drain", port, n, FILL_CONNS, FILL_DEPTH, body=BODY,
                                      limit_s=60 + n / 2000))
    if out.errors or out.timed_out or out.done != n:
        raise BenchError(f"draining stopped at {out.done} of {n} jobs"
                         + (f" ({out.first_error})" if out.errors else ""))


@contextlib.contextmanager
def _binlog(settings: Settings) -> Iterator[str]:
    """A binlog directory for one run, removed afterwards."""
    path = tempfile.mkdtemp(prefix="tubebench-wal-", dir=settings.tmp)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _rate_sample(out: Outcome) -> Sample:
    return Sample({"rate": out.rate}, _info(out))


# ---------------------------------------------------------------- put-only

def put(conns: int, depth: int, n: int, extra: Sequence[str] = (),
        seconds: float | None = None) -> tuple[RunFn, CeilingFn]:
    def on(port: int, settings: Settings) -> Outcome:
        limit = settings.limit_s if seconds is None else seconds
        return _measure(settings, Load("put", port, n, conns, depth, body=BODY, limit_s=limit))

    def run(kind: ServerKind, settings: Settings) -> Sample:
        # "{wal}" in the flags stands for a fresh binlog directory (durable put).
        wal = _binlog(settings) if any("{wal}" in f for f in extra) else contextlib.nullcontext("")
        with wal as path:
            flags = [f.replace("{wal}", path) for f in extra]
            with servers.running(kind, flags) as server:
                out = on(server.port, settings)
                if not out.timed_out:
                    _check(server, total_jobs=out.done)
        return _rate_sample(out)

    def ceiling(port: int, settings: Settings) -> Sample:
        return _rate_sample(on(port, settings))

    return run, ceiling


# ---------------------------------------------------------------- drain: reserve + delete

def drain(conns: int, depth: int, n: int, batch: int = 0,
          kept: Mapping[str, int] | None = None) -> tuple[RunFn, CeilingFn]:
    """reserve-with-timeout 0 + delete (`depth` in flight), or with `batch`: reserve-batch
    `batch` 0 with a delete sent for each job as it arrives, until `n` jobs are deleted.
    `kept`: the `kept-records` each column (by name) must show afterwards, so a column said
    to track jobs, or not to, is seen to."""

    def load(port: int, settings: Settings) -> Load:
        return Load("batch" if batch else "drain", port, n, conns, depth, batch=batch or 100,
                    body=BODY, limit_s=settings.limit_s)

    def run(kind: ServerKind, settings: Settings) -> Sample:
        info: dict[str, object] = {}
        with servers.running(kind) as server:
            _fill(server.port, n, settings)
            _check(server, current_jobs_ready=n)
            out = _measure(settings, load(server.port, settings))
            if not out.timed_out:
                if out.done != n:
                    raise BenchError(f"deleted {out.done} of {n} jobs")
                want = {} if kept is None else {"kept_records": _kept(kept, kind)}
                stats = _check(server, current_jobs_ready=0, current_jobs_reserved=0, **want)
                if kept is not None:
                    info["kept_records"] = int(stats["kept-records"])
        return Sample({"rate": out.rate}, {**_info(out), **info})

    def ceiling(port: int, settings: Settings) -> Sample:
        return _rate_sample(_measure(settings, load(port, settings)))

    return run, ceiling


def _kept(kept: Mapping[str, int], kind: ServerKind) -> int:
    if kind.name not in kept:
        raise BenchError(f"no kept-records expected for {kind.name}")
    return kept[kind.name]


# ---------------------------------------------------------------- full cycle

def cycle(producers: int, consumers: int, depth: int, n: int) -> tuple[RunFn, CeilingFn]:
    """Producers put timed jobs (closed loop, `depth` in flight) while consumers reserve and
    delete them (polling `depth` deep while jobs come); rate of deletes, put-to-reserve
    latency (queueing included: producers may outrun consumers)."""

    def load(port: int, settings: Settings) -> Load:
        return Load("cycle", port, n, producers, depth, consumers, body=BODY,
                    limit_s=settings.limit_s)

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            out = _measure(settings, load(server.port, settings))
            if not out.timed_out and out.done != n:
                raise BenchError(f"consumed {out.done} of {n} jobs")
        if out.latency is None:
            raise BenchError("no latency samples")
        return Sample({"rate": out.rate, **out.latency.ms()}, _info(out))

    def ceiling(port: int, settings: Settings) -> Sample:
        # The null hands out a job per reserve at once: only the rate is comparable.
        return _rate_sample(_measure(settings, load(port, settings)))

    return run, ceiling


KEEP_UP = 0.95  # a paced run consuming slower than this share of its rate fell behind


def paced(rate: float, n: int, consumers: int) -> tuple[RunFn, CeilingFn]:
    """One producer sends timed jobs at a steady `rate` (open loop); consumers wait in a
    blocking reserve and delete. Put-to-reserve latency at a load both servers can carry.
    Against the null the producer alone times put -> INSERTED: one loopback hop through the
    generator at the same rate, the floor under any put-to-reserve number."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            out = _measure(settings, Load("paced", server.port, n, consumers=consumers,
                                          rate=rate, body=BODY, limit_s=n / rate + 30))
            if out.timed_out or out.done != n:
                raise BenchError(f"consumed {out.done} of {n} jobs")
        if out.latency is None:
            raise BenchError("no latency samples")
        info: dict[str, object] = {**_info(out), "sent_rate": out.sent_rate,
                                   "achieved_rate": round(out.rate, 1)}
        if out.rate < KEEP_UP * rate:
            info["warning"] = ("consumed slower than the offered rate (achieved_rate in the "
                               "JSON): its latency is mostly queueing")
        return Sample(out.latency.ms(), info)

    def ceiling(port: int, settings: Settings) -> Sample:
        out = _measure(settings, Load("paced", port, n, rate=rate, body=BODY,
                                      limit_s=n / rate + 30))
        floor = out.ack_latency.ms() if out.ack_latency is not None else {}
        return Sample(floor, {**_info(out), "sent_rate": out.sent_rate,
                              "measures": "put -> INSERTED"})

    return run, ceiling


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


# protocol.md, Retention: a kept record counts its result and reason plus 300 bytes.
RECORD_COST = 300


def kept_memory(n: int) -> RunFn:
    """Resident memory per kept record: put `n` jobs, reserve+delete them all (each leaves a
    record with an empty result), then VmRSS after the drain less VmRSS before the fill, per
    job. Beside it, the server's own count of that memory (`kept-record-bytes`) per record,
    which is what `--result-memory` bounds. `n` must fit in the server's bound: an evicted
    record would make both numbers lie."""

    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            time.sleep(0.2)
            before = server.rss_bytes()
            _fill(server.port, n, settings)
            _check(server, current_jobs_ready=n)
            filled = server.rss_bytes()
            _empty(server.port, n, settings)
            after = server.rss_bytes()
            stats = _check(server, current_jobs_ready=0, current_jobs_reserved=0,
                           cmd_delete=n, kept_records=n, kept_records_evicted=0,
                           kept_record_bytes=n * RECORD_COST)
        accounted = int(stats["kept-record-bytes"])
        return Sample({"bytes_per_record": (after - before) / n,
                       "accounted_per_record": accounted / n},
                      {"rss_before": before, "rss_filled": filled, "rss_after": after,
                       "jobs": n, "kept_records": int(stats["kept-records"]),
                       "kept_record_bytes": accounted,
                       "kept_record_bytes_per_record": accounted / n})

    return run


SETTLE_S = 0.5  # after a restart, before reading RSS: let the process finish its start-up


def restart(n: int, fill_flags: Sequence[str] = ("-F",)) -> RunFn:
    """Fill a server that logs to a binlog directory, stop it (SIGTERM), start it again on
    the same directory and time from the new process's start until `stats` reports all `n`
    jobs ready; then the restarted server's RSS (the whole process, in MB)."""

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
                time.sleep(SETTLE_S)
                second.check_alive()
                rss = second.rss_bytes()
                log_bytes = sum(p.stat().st_size for p in Path(wal).rglob("*") if p.is_file())
            finally:
                second.stop()
        return Sample({"seconds": seconds, "rss_mb": rss / 1e6},
                      {"jobs": n, "log_bytes": log_bytes, "rss_bytes": rss,
                       "rss_bytes_per_job": round(rss / n, 1)})

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
        if not server.pid:
            server.pid = int(stats.get("pid", "0"))
        ready = int(stats.get("current-jobs-ready", "-1"))
        if ready == n:
            return (time.monotonic_ns() - server.started_ns) / 1e9
        if ready > n:
            break
        time.sleep(0.002)
    raise BenchError(f"{server.kind.name} came back with {ready} of {n} ready jobs")


# ---------------------------------------------------------------- the catalogue

WORKLOADS = ("put", "drain", "batch", "cycle", "paced", "memory", "restart", "durable",
             "tracking", "flow", "worker", "ops", "soak", "tls")
# Run only when named in --only: the soak takes ten minutes; tls needs openssl and stunnel,
# and measures an option rather than the server as it comes.
NAMED_ONLY = ("soak", "tls")
# `--only batch` needs beanstalkd's reserve+delete rows for its reference column.
NEEDS = {"batch": ("drain",)}


def _scale(n: int, jobs: int | None) -> int:
    return n if jobs is None else jobs


def _rate(goal: float | None) -> Metric:
    return attrs.evolve(RATE, target=None if goal is None else Target(">=", goal))


def catalogue(quick: bool, jobs: int | None = None) -> list[Variant]:
    """Every variant, in running order, with issue 10's targets (ratios tubeserver /
    beanstalkd), then job tracking's (see `tracking`), then flow control's (flow.py), then
    tubeworker's against RQ (worker.py). `jobs` replaces every job count (for smoke runs)."""
    q = quick

    def J(full: int, fast: int) -> int:
        return _scale(fast if q else full, jobs)

    out: list[Variant] = []

    for depth, goal, n in ((1, 0.6, J(60_000, 15_000)), (16, 1.5, J(400_000, 100_000))):
        run, ceil = put(10, depth, n)
        out.append(Variant(f"put c10 d{depth}", "put",
                           {"connections": 10, "depth": depth, "body": BODY, "jobs": n},
                           (_rate(goal),), run, ceil))
    for depth, goal, n in ((1, 0.6, J(40_000, 10_000)), (16, 1.5, J(200_000, 60_000))):
        run, ceil = drain(10, depth, n)
        out.append(Variant(f"drain c10 d{depth}", "drain",
                           {"connections": 10, "depth": depth, "body": BODY, "jobs": n},
                           (_rate(goal),), run, ceil))
    names = []
    for conns in (1, 10):
        n = J(300_000, 80_000)
        run, ceil = drain(conns, 1, n, batch=100)
        names.append(f"batch100 c{conns}")
        out.append(Variant(names[-1], "batch",
                           {"connections": conns, "batch": 100, "body": BODY, "jobs": n},
                           (_rate(None),), run, ceil, kinds=("tubeserver",), reference="drain"))
    out.append(Variant("batch100 best", "batch", {"best of": " / ".join(names)},
                       (_rate(2.5),), None, kinds=(), reference="drain",
                       best_of=tuple(names)))
    n = J(150_000, 40_000)
    run, ceil = cycle(5, 5, 16, n)
    out.append(Variant("cycle p5 c5 d16", "cycle",
                       {"producers": 5, "consumers": 5, "depth": 16, "body": BODY, "jobs": n},
                       (RATE, P50, P99), run, ceil))
    pacing: list[tuple[int, int, float | None, int]] = [
        (2000, 2, 1.5, J(10_000, 4_000)), (20_000, 4, None, J(100_000, 40_000))]
    for rate, consumers, p99_goal, n in pacing:
        run, ceil = paced(rate, n, consumers)
        out.append(Variant(f"paced {rate}/s", "paced",
                           {"rate": rate, "producers": 1, "consumers": consumers,
                            "body": BODY, "jobs": n},
                           (P50, attrs.evolve(P99, target=None if p99_goal is None
                                              else Target("<=", p99_goal)), P999),
                           run, ceil))
    n = J(1_000_000, 100_000)
    out.append(Variant("memory", "memory", {"body": BODY, "jobs": n},
                       (Metric("bytes_per_job", "RSS bytes/ready job", False,
                               Target("<=", 1.3)),),
                       memory(n), max_rounds=1 if q else 3))
    n = J(1_000_000, 100_000)
    out.append(Variant("restart", "restart",
                       {"body": BODY, "jobs": n, "fill flags": "-b DIR -F", "stop": "SIGTERM"},
                       (Metric("seconds", "seconds to serve all", False, Target("<=", 1.0)),
                        Metric("rss_mb", "RSS MB after restart", False, Target("<=", 1.5))),
                       restart(n), max_rounds=1 if q else 3))
    secs = 2.0 if q else 3.0
    durable: list[tuple[int, float | None, int]] = [(1, None, J(3_000, 500)),
                                                    (10, 5.0, J(10_000, 2_000))]
    for conns, rate_goal, n in durable:
        run, ceil = put(conns, 1, n, ("-b", "{wal}", "-f", "0"), seconds=secs)
        out.append(Variant(f"durable c{conns}", "durable",
                           {"connections": conns, "depth": 1, "body": BODY, "jobs": n,
                            "max seconds": secs, "flags": "-b DIR -f 0"},
                           (_rate(rate_goal),), run, ceil))
    out.extend(tracking(q, jobs))
    from .flow import flow  # flow.py, worker.py, ops.py and soak.py build on this module
    from .ops import ops
    from .soak import variants as soak_variants
    from .tls import variants as tls_variants
    from .worker import variants as worker_variants

    out.extend(flow(q, jobs))
    out.extend(worker_variants(q, jobs))
    out.extend(ops(q, jobs))
    out.extend(soak_variants(q))
    out.extend(tls_variants(q, jobs))
    return out


# Job tracking against itself: the server started as it comes (records kept for a day)
# beside the same server keeping none, as beanstalkd keeps none.
TRACKING_ON = Column("tracking on", "tubeserver")
TRACKING_OFF = Column("tracking off", "tubeserver", ("--result-ttl", "0"))


def tracking(quick: bool, jobs: int | None = None) -> list[Variant]:
    """What job tracking costs: reserve+delete throughput at the load of `drain c10 d16` with
    records on over off (the issue's bound: at most 15% slower), and the memory a kept
    record takes (tubeserver alone: beanstalkd keeps nothing to compare with)."""
    n = _scale(60_000 if quick else 200_000, jobs)
    run, ceil = drain(10, 16, n, kept={TRACKING_ON.name: n, TRACKING_OFF.name: 0})
    out = [Variant("tracking drain c10 d16", "tracking",
                   {"connections": 10, "depth": 16, "body": BODY, "jobs": n,
                    "columns": f"{TRACKING_ON.command} / {TRACKING_OFF.command}"},
                   (_rate(0.85),), run, ceil, columns=(TRACKING_ON, TRACKING_OFF))]
    # 200k records count 60 MB: inside the default --result-memory of 64 MiB, none evicted.
    n = _scale(50_000 if quick else 200_000, jobs)
    out.append(Variant("tracking memory", "tracking", {"body": BODY, "jobs": n},
                       (Metric("bytes_per_record", "RSS bytes/kept record", False),
                        Metric("accounted_per_record", "kept-record-bytes/record", False)),
                       kept_memory(n), columns=(TRACKING_ON,), max_rounds=1 if quick else 3))
    return out


def select(variants: Sequence[Variant], only: Sequence[str]) -> list[Variant]:
    """The variants of the named workloads (and of the workloads they need); with none named,
    all but the NAMED_ONLY ones."""
    if not only:
        return [v for v in variants if v.workload not in NAMED_ONLY]
    wanted = set(only)
    for name in only:
        wanted.update(NEEDS.get(name, ()))
    return [v for v in variants if v.workload in wanted]
