"""The instrument: one measured load against one port, and the null responder it is held to.

Workloads describe a `Load`; a `Generator` runs it and returns an `Outcome`, whether the C
generator (gen.c, built on first use) drives it or, only where no C compiler exists, the old
Python one (loadgen.py), which cannot saturate beanstalkd and is therefore announced loudly.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import attrs

from . import loadgen, native, null
from .loadgen import ConnPlan, LoadError, WorkerPlan, WorkerResult
from .summary import percentile, shares

MODES = ("put", "drain", "batch", "cycle", "paced")
FALLBACK = "generator: python (fallback, no C compiler) — ratios are not trustworthy"
FORCED = "generator: python (chosen with --generator python) — ratios are not trustworthy"


@attrs.frozen
class Load:
    """One measured run's shape. `conns` are the producers in `cycle`; `paced` has one
    producer at `rate` jobs/s, and with no consumers times put -> INSERTED instead. `unique`
    (put only): put-unique with keys k0..k<unique-1> in turn instead of put (C only)."""

    mode: str
    port: int
    jobs: int
    conns: int = 1
    depth: int = 1
    consumers: int = 0
    batch: int = 100
    rate: float = 0.0
    body: int = 100
    stamped: bool = False
    limit_s: float = 60.0
    unique: int = 0
    tls: bool = False  # speak TLS (Python generator only: gen.c has no TLS)

    def __attrs_post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown load mode {self.mode!r}")
        if self.unique and self.mode != "put":
            raise ValueError("put-unique keys are for the put mode")


@attrs.frozen
class Latency:
    n: int
    p50_ns: float
    p99_ns: float
    p999_ns: float
    max_ns: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency | None:
        if not values:
            return None
        return cls(len(values), percentile(values, 50), percentile(values, 99),
                   percentile(values, 99.9), float(max(values)))

    def ms(self) -> dict[str, float]:
        """p50, p99 and p999 in milliseconds: the latency metrics' values."""
        return {"p50": self.p50_ns / 1e6, "p99": self.p99_ns / 1e6, "p999": self.p999_ns / 1e6}


@attrs.frozen
class Outcome:
    done: int  # puts acknowledged (put, paced without consumers) or jobs deleted
    elapsed_s: float  # from the start to the last completion counted in `done`
    timed_out: bool  # stopped by the deadline, not by its count
    errors: int
    first_error: str
    cpu_s: float  # the generator's own CPU time over the run
    latency: Latency | None = None  # put-to-reserve (cycle, paced)
    ack_latency: Latency | None = None  # put-to-INSERTED (paced)
    sent_rate: float | None = None  # paced: the rate the producer kept
    duplicates: int = 0  # put-unique answered DUPLICATE (counted in `done` too)

    @property
    def rate(self) -> float:
        return self.done / max(self.elapsed_s, 1e-9)

    @property
    def gen_cores(self) -> float:
        return self.cpu_s / max(self.elapsed_s, 1e-9)


class Generator(Protocol):
    name: str  # "c" or "python": goes into the report

    def run(self, load: Load) -> Outcome: ...


# ---------------------------------------------------------------- the C generator

class CGenerator:
    name = "c"

    def __init__(self, path: Path) -> None:
        self.path = path

    def argv(self, load: Load) -> list[str]:
        argv = [str(self.path), "--port", str(load.port), "--mode", load.mode,
                "--jobs", str(load.jobs), "--conns", str(load.conns), "--depth", str(load.depth),
                "--consumers", str(load.consumers), "--batch", str(load.batch),
                "--body", str(load.body), "--limit", f"{load.limit_s:g}"]
        if load.rate:
            argv += ["--rate", f"{load.rate:g}"]
        if load.unique:
            argv += ["--unique", str(load.unique)]
        return argv + (["--stamped"] if load.stamped else [])

    def run(self, load: Load) -> Outcome:
        if load.tls:
            raise LoadError("the C generator does not speak TLS: use the Python one")
        try:
            done = subprocess.run(self.argv(load), capture_output=True, text=True,
                                  timeout=load.limit_s + 60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LoadError("the C generator overran its own deadline") from None
        if done.returncode != 0:
            raise LoadError(done.stderr.strip() or f"tubegen exited with {done.returncode}")
        return parse(done.stdout)


def _latency(got: object) -> Latency | None:
    if not isinstance(got, Mapping):
        return None
    return Latency(int(got["n"]), float(got["p50"]), float(got["p99"]), float(got["p999"]),
                   float(got["max"]))


def parse(stdout: str) -> Outcome:
    """The C generator's one JSON line as an Outcome."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise LoadError("the C generator printed nothing")
    try:
        d: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise LoadError(f"the C generator printed {lines[-1][:200]!r}") from None
    rate = d.get("sent_rate")
    return Outcome(
        done=int(d["done"]), elapsed_s=float(d["elapsed_s"]), timed_out=bool(d["timed_out"]),
        errors=int(d["errors"]), first_error=str(d["first_error"]), cpu_s=float(d["cpu_s"]),
        latency=_latency(d.get("latency_ns")), ack_latency=_latency(d.get("ack_latency_ns")),
        sent_rate=None if rate is None else float(rate), duplicates=int(d.get("duplicates", 0)))


# ---------------------------------------------------------------- the Python fallback

class PyGenerator:
    """loadgen.py's worker processes behind the same interface (no put -> INSERTED timing)."""

    name = "python"

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    def run(self, load: Load) -> Outcome:
        w, port, limit, n = self.workers, load.port, load.limit_s, load.jobs
        if load.unique:
            raise LoadError("the python generator has no put-unique: build the C one")
        if load.mode in ("put", "drain", "batch"):
            plans = [ConnPlan(load.mode, k, load.depth, load.body, stamped=load.stamped,
                              batch=load.batch) for k in shares(n, load.conns)]
            lead, _ = loadgen.run(loadgen.split(plans, w, port, limit, load.tls))
            return _outcome(lead, lead, ())
        if load.tls:
            raise LoadError("TLS runs are put, drain or batch loads")
        consume = [ConnPlan("consume", 2 * n + 1000, load.depth, load.body, stamped=True)
                   for _ in range(load.consumers)]
        lead_plans: list[WorkerPlan]
        if load.mode == "cycle":
            half = max(1, w // 2)
            lead_plans = loadgen.split([ConnPlan("put", k, load.depth, load.body, stamped=True)
                                        for k in shares(n, load.conns)], half, port, limit)
            follow_plans = loadgen.split(consume, half, port, limit)
        else:
            lead_plans = [WorkerPlan(port, (ConnPlan("paced", n, body_size=load.body,
                                                     rate=load.rate),), limit)]
            follow_plans = loadgen.split(consume, 1, port, limit) if consume else []
        lead, follow = loadgen.run(lead_plans, follow_plans)
        return _outcome(lead, follow if follow else lead, follow)


def _outcome(lead: Sequence[WorkerResult], measured: Sequence[WorkerResult],
             follow: Sequence[WorkerResult]) -> Outcome:
    groups = [lead, follow]
    elapsed = loadgen.elapsed_s(groups, measured) if any(groups) else 1e-9
    bad = [r for g in groups for r in g if r.errors]
    lat = [float(x) for r in follow for x in r.latencies_ns]
    return Outcome(
        done=sum(r.done for r in measured), elapsed_s=elapsed,
        timed_out=any(r.timed_out for g in groups for r in g),
        errors=sum(r.errors for r in bad), first_error=bad[0].first_error if bad else "",
        cpu_s=sum(r.cpu_s for g in groups for r in g), latency=Latency.of(lat))


# ---------------------------------------------------------------- choosing, and the null responder

@attrs.frozen
class Choice:
    generator: Generator
    warning: str | None  # the banner when the numbers come from the Python generator
    info: Mapping[str, object]  # for the report's JSON


def choose(kind: str = "auto", workers: int = 2) -> Choice:
    """`auto`: the C generator if a compiler exists, else the Python one with a warning.
    `c` insists on C; `python` picks the fallback on purpose. A compiler that fails to build
    the source raises native.BuildError: a broken build never falls back silently."""
    if kind not in ("auto", "c", "python"):
        raise ValueError(f"unknown generator {kind!r}")
    if kind != "python":
        try:
            path = native.binary("tubegen")
            native.binary("tubenull")
        except native.NoCompiler as e:
            if kind == "c":
                raise
            return Choice(PyGenerator(workers), FALLBACK,
                          {"kind": "python", "why": str(e), "warning": FALLBACK})
        cc = native.compiler() or []
        return Choice(CGenerator(path), None,
                      {"kind": "c", "binary": str(path), "cc": " ".join(cc),
                       "flags": " ".join(native.FLAGS)})
    return Choice(PyGenerator(workers), FORCED, {"kind": "python", "warning": FORCED})


def banner(warning: str, out: IO[str] | None = None) -> None:
    """The fallback warning, impossible to miss on stderr."""
    stream = sys.stderr if out is None else out
    rule = "!" * min(len(warning) + 8, 100)
    print(f"{rule}\n!!! {warning}\n{rule}", file=stream)


class NullServer:
    """The null responder in its own process: C beside the C generator, else null.py."""

    def __init__(self, generator: Generator, body: int = 100) -> None:
        self._c: subprocess.Popen[str] | None = None
        self._py: Any = None
        if isinstance(generator, CGenerator):
            argv = [str(native.binary("tubenull")), "--port", "0", "--body", str(body)]
            # Its stdin is our pipe: when this process dies, it sees EOF and exits.
            self._c = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            assert self._c.stdout is not None
            line = self._c.stdout.readline()
            try:
                self.port = int(json.loads(line)["port"])
            except (ValueError, KeyError):
                self.stop()
                raise LoadError(f"the null responder did not start: {line!r}") from None
        else:
            self._py, self.port = null.start()

    def stop(self) -> None:
        if self._c is not None:
            if self._c.poll() is None:
                self._c.terminate()
            try:
                self._c.wait(5)
            except subprocess.TimeoutExpired:
                self._c.kill()
                self._c.wait()
            for f in (self._c.stdin, self._c.stdout, self._c.stderr):
                if f is not None:
                    f.close()
            self._c = None
        if self._py is not None:
            null.stop(self._py)
            self._py = None


@contextlib.contextmanager
def null_server(generator: Generator, body: int = 100) -> Iterator[NullServer]:
    server = NullServer(generator, body)
    try:
        yield server
    finally:
        server.stop()
