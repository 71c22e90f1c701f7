"""The soak workload (`--only soak`; run only when named, it takes ten minutes): tubeserver under
mixed traffic for `--soak-seconds`, with clients that hang up at awkward moments and a client
that reads slowly, reporting the server's resident memory over time and the longest stall a
well-behaved client saw.

Each part is a thread with connections of its own (tubeclient, or raw sockets where a client
must misbehave):
- the well-behaved client: put, reserve, delete on a tube nobody else uses, every
  STEADY_INTERVAL; a cycle's time is its latency, and the longest is the stall reported;
- MIXED workers: puts of assorted sizes, delays and TTRs; reserves answered with delete,
  release, bury, touch, finish, fail or checkpoint; reserve-batch, kick, peeks, stats,
  put-unique, job-status and result; paced, and holding the queues under JOB_CAP;
- the disconnecter: a new connection every DISCONNECT_PAUSE that hangs up mid-reserve, holding
  a reserved job, mid-body, mid-line, mid-batch, or with a reset (RST) while waiting;
- the slow reader: pipelines puts and peeks of a 16 KB job, then reads the replies at
  READ_RATE bytes a second, so the server always has a megabyte of replies it cannot send.
The load (mixed workers, disconnecter, slow reader) runs in a forked process of its own, so
that its threads never hold the well-behaved client's interpreter lock: a stall measured is
the server's or the machine's, not the load's Python. The main process runs that client and
reads the server's VmRSS (and a `stats`) every interval.

Every job the load deletes leaves a kept record (job tracking), which the server holds until
`--result-memory` is full: its memory grows by design until then. The soak's server gets a
bound of RECORD_MEMORY, reached within the first minute, so that growth after it is not
records; the table shows their memory (`kept-record-bytes`) beside RSS. Clients and server share the
machine's cores; the figures are what a client sees, load included.
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Event as Stop
from typing import Any

from tubeclient import Client
from tubeclient.errors import DeadlineSoon, JobFailed, NotFound, TimedOut, TubeFull

from . import servers
from .servers import HOST, ServerKind
from .summary import percentile
from .workloads import BenchError, Column, Metric, Sample, Settings, Variant

STEADY_TUBE = "soak-steady"
TUBES = ("soak-0", "soak-1")  # the mixed workers' tubes (two workers each)
IDLE_TUBE = "soak-idle"  # never holds a job: reserves there wait
SLOW_TUBE = "soak-slow"  # holds the slow reader's big job, never reserved
MIXED = 4
STEADY_INTERVAL = 0.005  # a well-behaved cycle every 5 ms, when the last one took no longer
MIXED_PAUSE = 0.002  # after each mixed command: at most ~500 commands a second a worker
JOB_CAP = 3000  # a mixed worker stops putting while its tube holds more jobs than this
DISCONNECT_PAUSE = 0.02  # ~50 misbehaving connections a second
BIG = 16 * 1024  # the slow reader's job
SLOW_PUTS, SLOW_PEEKS = 16, 64  # per pipelined batch: a megabyte of replies
READ_RATE = 256 * 1024  # bytes a second the slow reader takes
READ_CHUNK = 16 * 1024
IO_TIMEOUT = 60.0
RECORD_MEMORY = 8 * 1024 * 1024  # --result-memory: full within the first minute
SETTLE_S = 10.0  # after the clients stop, how long the server may take to close them all

SCENARIOS = ("mid-reserve", "holding a job", "mid-body", "mid-line", "mid-batch", "reset")
# A mixed command may be refused in these ways without anything being wrong.
EXPECTED = (NotFound, TimedOut, DeadlineSoon, JobFailed, TubeFull)


class Counts:
    """The load process's counts, in shared memory: the sampler reads them as they grow."""

    MIXED, SLOW_BYTES, SLOW_REPLIES = 0, 1, 2
    HANGUPS = 3  # then one per scenario, in SCENARIOS' order

    def __init__(self, ctx: BaseContext) -> None:
        self.values = ctx.Array("q", self.HANGUPS + len(SCENARIOS))

    def add(self, index: int, n: int = 1) -> None:
        with self.values.get_lock():
            self.values[index] += n

    def hangup(self, kind: str) -> None:
        self.add(self.HANGUPS + SCENARIOS.index(kind))

    def snapshot(self) -> list[int]:
        with self.values.get_lock():
            return [int(self.values[i]) for i in range(len(self.values))]

    def hangups(self) -> dict[str, int]:
        got = self.snapshot()
        return {k: got[self.HANGUPS + i] for i, k in enumerate(SCENARIOS)}


class Record:
    """The well-behaved client's cycles, read by the sampler between its samples."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # seconds per cycle, in order
        self.interval_max = 0.0  # the slowest cycle since the last sample
        self.worst = (0.0, 0.0)  # (seconds, when: seconds since the start)
        self.started = time.monotonic()

    def cycle(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.interval_max = max(self.interval_max, seconds)
            if seconds > self.worst[0]:
                self.worst = (seconds, time.monotonic() - self.started)

    def take_interval(self) -> tuple[int, float]:
        """(cycles so far, the slowest cycle since the last call)."""
        with self.lock:
            worst, self.interval_max = self.interval_max, 0.0
            return len(self.latencies), worst


def _guard(where: str, errors: list[str], stop: Stop,
           body: Callable[[], None]) -> Callable[[], None]:
    """A thread's body that notes its failure and stops the whole run."""
    def run() -> None:
        try:
            body()
        except BaseException as e:
            if not stop.is_set():
                errors.append(f"{where}: {type(e).__name__}: {e}")
                stop.set()
    return run


# ---------------------------------------------------------------- the clients

def _steady(addr: tuple[str, int], stop: Stop, rec: Record) -> None:
    with Client(addr, use=STEADY_TUBE, watch=STEADY_TUBE, io_timeout=IO_TIMEOUT) as c:
        body = b"s" * 100
        while not stop.is_set():
            began = time.perf_counter()
            put = c.put(body, ttr=60)
            job = c.reserve(timeout=10)
            c.delete(job)
            rec.cycle(time.perf_counter() - began)
            if job.id != put:
                raise BenchError(f"put job {put} but reserved {job.id} from its own tube")
            stop.wait(STEADY_INTERVAL)


def _mixed(addr: tuple[str, int], index: int, stop: Stop, counts: Counts) -> None:
    rng = random.Random(index)
    tube = TUBES[index % len(TUBES)]
    recent: list[int] = []
    full = False
    with Client(addr, use=tube, watch=tube, io_timeout=IO_TIMEOUT) as c:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 200 == 0:
                st = c.stats_tube(tube)
                queued = (st["current-jobs-ready"] + st["current-jobs-delayed"]
                          + st["current-jobs-buried"])
                full = queued > (JOB_CAP // 2 if full else JOB_CAP)
            try:
                _mixed_command(c, rng, recent, full)
            except EXPECTED:
                pass
            counts.add(Counts.MIXED)
            stop.wait(MIXED_PAUSE)


def _mixed_command(c: Client[bytes], rng: random.Random, recent: list[int], full: bool
                   ) -> None:
    roll = rng.random()
    if roll < 0.3 and not full:
        job = c.put(b"m" * rng.choice((10, 100, 1000, 10_000)), priority=rng.randrange(2048),
                    delay=rng.choice((0, 0, 0, 1)), ttr=rng.choice((2, 10, 60)))
        recent.append(job)
        del recent[:-50]
    elif roll < 0.6:
        got = c.reserve(timeout=0)
        r = rng.random()
        if r < 0.5:
            c.delete(got)
        elif r < 0.65:
            c.release(got, delay=rng.choice((0, 1)))
        elif r < 0.75:
            c.bury(got)
        elif r < 0.8:
            c.touch(got)
            c.delete(got)
        elif r < 0.9:
            c.finish(got, b"done")
        elif r < 0.95:
            c.fail(got, b"broken")
        else:
            c.checkpoint(got, b"half")
            c.delete(got)
    elif roll < 0.67:
        c.delete_many(c.reserve_batch(5, 0))
    elif roll < 0.72:
        c.kick(10)
    elif roll < 0.77:
        (c.peek_ready if rng.random() < 0.5 else c.peek_buried)()
    elif roll < 0.82:
        c.stats() if rng.random() < 0.2 else c.stats_tube(c.using())
    elif roll < 0.9 and not full:
        c.put_unique(b"u", f"key-{rng.randrange(50)}", rng.choice((0, 5)))
    elif recent:
        job_id = rng.choice(recent)
        if rng.random() < 0.5:
            c.status(job_id)
        else:
            c.wait_result(job_id, 0)


def _disconnects(port: int, stop: Stop, counts: Counts) -> None:
    rng = random.Random(99)
    while not stop.is_set():
        kind = rng.choice(SCENARIOS)
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as s:
            if kind == "mid-reserve":
                s.sendall(b"watch %s\r\nreserve-with-timeout 60\r\n" % IDLE_TUBE.encode())
            elif kind == "holding a job":
                s.sendall(b"watch %s\r\nreserve-with-timeout 0\r\n" % TUBES[0].encode())
                _read_lines(s, 2)  # WATCHING, then RESERVED (or TIMED_OUT): hang up holding it
            elif kind == "mid-body":
                s.sendall(b"use %s\r\nput 0 0 10 1000\r\n%b" % (TUBES[0].encode(), b"x" * 500))
            elif kind == "mid-line":
                s.sendall(b"stats-tu")
            elif kind == "mid-batch":
                s.sendall(b"watch %s\r\nreserve-batch 10 60\r\n" % IDLE_TUBE.encode())
            else:  # an abortive close: the server sees a reset, not an orderly end
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.sendall(b"watch %s\r\nreserve\r\n" % IDLE_TUBE.encode())
            stop.wait(rng.uniform(0, 0.02))  # let the server take it in before the hang-up
        counts.hangup(kind)
        stop.wait(DISCONNECT_PAUSE)


def _read_lines(s: socket.socket, lines: int) -> None:
    data = b""
    while data.count(b"\r\n") < lines:
        chunk = s.recv(65536)
        if not chunk:
            raise BenchError("the server closed a connection it should have kept")
        data += chunk


class Frames:
    """Counts complete replies in a stream split anywhere (FOUND/RESERVED/OK carry data),
    keeping the first one that is none of `expected`."""

    def __init__(self, expected: tuple[bytes, ...] = ()) -> None:
        self.buf = b""
        self.expected = expected
        self.odd: bytes | None = None

    def feed(self, data: bytes) -> int:
        buf = self.buf + data
        pos = count = 0
        while (eol := buf.find(b"\r\n", pos)) >= 0:
            head = buf[pos:eol]
            end = eol + 2
            if head.startswith((b"FOUND ", b"RESERVED ", b"OK ")):
                end += int(head.rsplit(b" ", 1)[1]) + 2
                if end > len(buf):
                    break
            if self.expected and self.odd is None and not head.startswith(self.expected):
                self.odd = head
            count += 1
            pos = end
        self.buf = buf[pos:]
        return count


def _slow_reader(addr: tuple[str, int], stop: Stop, counts: Counts) -> None:
    with Client(addr, use=SLOW_TUBE, io_timeout=IO_TIMEOUT) as c:
        big = c.put(b"b" * BIG)
    put = b"put 0 0 60 100\r\n" + b"p" * 100 + b"\r\n"
    batch = put * SLOW_PUTS + b"peek %d\r\n" % big * SLOW_PEEKS
    with socket.create_connection(addr, timeout=IO_TIMEOUT) as s:
        s.sendall(b"use %s\r\n" % TUBES[1].encode())
        frames = Frames((b"USING ", b"INSERTED ", b"FOUND "))
        owed = 1
        while not stop.is_set():
            if owed == 0:
                s.sendall(batch)
                owed = SLOW_PUTS + SLOW_PEEKS
            chunk = s.recv(READ_CHUNK)
            if not chunk:
                raise BenchError("the server closed the slow reader's connection")
            got = frames.feed(chunk)
            if frames.odd is not None:
                raise BenchError(f"the slow reader was answered {frames.odd[:80]!r}")
            owed -= got
            counts.add(Counts.SLOW_BYTES, len(chunk))
            counts.add(Counts.SLOW_REPLIES, got)
            stop.wait(len(chunk) / READ_RATE)


# ---------------------------------------------------------------- the run

def _interval(seconds: float) -> float:
    """How often RSS is read: every 5 s, or 20 times in a shorter run (at least every 0.5 s)."""
    return min(5.0, max(0.5, seconds / 20))


def _load(addr: tuple[str, int], stop: Stop, counts: Counts, report: Connection) -> None:
    """The load process: every misbehaving and mixed client, until `stop`; then it reports
    its failures (a list of lines) through `report`."""
    errors: list[str] = []
    parts: list[tuple[str, Callable[[], None]]] = [
        ("disconnecter", functools.partial(_disconnects, addr[1], stop, counts)),
        ("slow reader", functools.partial(_slow_reader, addr, stop, counts)),
    ]
    parts += [(f"mixed worker {i}", functools.partial(_mixed, addr, i, stop, counts))
              for i in range(MIXED)]
    threads = [threading.Thread(target=_guard(name, errors, stop, body), name=name,
                                daemon=True) for name, body in parts]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(IO_TIMEOUT + 5)
    errors += [f"{t.name}: did not stop" for t in threads if t.is_alive()]
    report.send(errors)
    report.close()


def run_soak(kind: ServerKind, settings: Settings) -> Sample:
    seconds = settings.soak_s
    every = _interval(seconds)
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    counts = Counts(ctx)
    rec = Record()
    errors: list[str] = []
    timeline: list[dict[str, Any]] = []
    with servers.running(kind) as server:
        addr = (HOST, server.port)
        results, child_end = ctx.Pipe(duplex=False)
        load = ctx.Process(target=_load, args=(addr, stop, counts, child_end), daemon=True)
        steady = threading.Thread(
            target=_guard("well-behaved client", errors, stop,
                          functools.partial(_steady, addr, stop, rec)), daemon=True)
        began = time.monotonic()
        rec.started = began
        try:
            load.start()
            child_end.close()
            steady.start()
            while True:
                timeline.append(_sample(server, rec, counts, time.monotonic() - began))
                left = began + seconds - time.monotonic()
                if left <= 0 or stop.is_set():
                    break
                stop.wait(min(every, left))
            stop.set()
            steady.join(IO_TIMEOUT + 5)
            if results.poll(IO_TIMEOUT + 15):
                errors += results.recv()
            else:
                errors.append("the load process did not report")
        finally:
            stop.set()
            load.join(IO_TIMEOUT + 20)
            if load.is_alive():
                load.kill()
                load.join()
            results.close()
        if errors:
            raise BenchError(f"{len(errors)} client failures, first: {errors[0]}")
        if steady.is_alive():
            raise BenchError("the well-behaved client did not stop")
        server.check_alive()
        after = _settle(server)
    return _result(rec, counts, timeline, seconds, every, after)


def _sample(server: servers.Server, rec: Record, counts: Counts, t: float) -> dict[str, Any]:
    server.check_alive()
    rss = server.rss_bytes()
    stats = server.stats()
    cycles, worst = rec.take_interval()
    got = counts.snapshot()
    mixed, slow = got[Counts.MIXED], got[Counts.SLOW_BYTES]
    hangups = sum(got[Counts.HANGUPS:])
    return {"t": round(t, 1), "rss_mb": round(rss / 1e6, 2),
            "jobs": int(stats.get("current-jobs-ready", 0)) + int(
                stats.get("current-jobs-delayed", 0)) + int(
                stats.get("current-jobs-buried", 0)) + int(
                stats.get("current-jobs-reserved", 0)),
            "records_mb": round(int(stats.get("kept-record-bytes", 0)) / 1e6, 2),
            "connections": int(stats.get("current-connections", 0)),
            "cycles": cycles, "max_cycle_ms": round(worst * 1000, 2), "mixed": mixed,
            "hangups": hangups, "slow_kb": slow // 1024}


def _settle(server: servers.Server) -> dict[str, int]:
    """Once every client has gone: only this `stats` connection left, nothing reserved."""
    end = time.monotonic() + SETTLE_S
    while True:
        stats = server.stats()
        conns = int(stats.get("current-connections", -1))
        reserved = int(stats.get("current-jobs-reserved", -1))
        if conns == 1 and reserved == 0:
            return {"connections": conns, "jobs_reserved": reserved,
                    "total_connections": int(stats.get("total-connections", 0))}
        if time.monotonic() > end:
            raise BenchError(f"{SETTLE_S:.0f} s after the clients left the server still has "
                             f"{conns} connections and {reserved} reserved jobs")
        time.sleep(0.1)


def _result(rec: Record, counts: Counts, timeline: Sequence[Mapping[str, Any]],
            seconds: float, every: float, after: Mapping[str, int]) -> Sample:
    lat = sorted(rec.latencies)
    if not lat:
        raise BenchError("the well-behaved client completed no cycle")
    rss = [float(row["rss_mb"]) for row in timeline]
    half = rss[len(rss) // 2]
    got = counts.snapshot()
    return Sample(
        {"max_stall_ms": lat[-1] * 1000, "p99_ms": percentile(lat, 99) * 1000,
         "rss_first_mb": rss[0], "rss_max_mb": max(rss), "rss_last_mb": rss[-1],
         "rss_growth_second_half_mb": rss[-1] - half},
        {"seconds": seconds, "interval_s": every, "cycles": len(lat),
         "p50_ms": round(percentile(lat, 50) * 1000, 3),
         "worst_at_s": round(rec.worst[1], 1), "mixed_commands": got[Counts.MIXED],
         "hangups": counts.hangups(), "slow_reader_bytes": got[Counts.SLOW_BYTES],
         "slow_reader_replies": got[Counts.SLOW_REPLIES], "after": dict(after),
         "timeline": [dict(row) for row in timeline]})


# ---------------------------------------------------------------- the catalogue and the report

SOAK = Column("tubeserver", "tubeserver", ("--result-memory", str(RECORD_MEMORY)))


def variants(quick: bool) -> list[Variant]:
    """One variant, tubeserver alone (beanstalkd lacks half of the commands it sends)."""
    return [Variant(
        "soak", "soak",
        {"mixed workers": MIXED, "tubes": len(TUBES),
         "well-behaved": f"put/reserve/delete every {STEADY_INTERVAL * 1000:g} ms",
         "hang-ups": f"~{1 / DISCONNECT_PAUSE:.0f}/s: {', '.join(SCENARIOS)}",
         "slow reader": f"{SLOW_PUTS} puts + {SLOW_PEEKS} peeks of {BIG // 1024} KB, read at "
                        f"{READ_RATE // 1024} KB/s", "duration": "--soak-seconds"},
        (Metric("max_stall_ms", "longest well-behaved cycle ms", False),
         Metric("p99_ms", "well-behaved cycle p99 ms", False),
         Metric("rss_first_mb", "RSS MB at the start", False),
         Metric("rss_max_mb", "RSS MB max", False),
         Metric("rss_last_mb", "RSS MB at the end", False),
         Metric("rss_growth_second_half_mb", "RSS MB growth, second half", False)),
        run_soak, columns=(SOAK,), max_rounds=1)]


HEADER = ("t s", "RSS MB", "records MB", "jobs", "conns", "cycles", "max cycle ms",
          "mixed cmds", "hang-ups", "slow KB read")
KEYS = ("t", "rss_mb", "records_mb", "jobs", "connections", "cycles", "max_cycle_ms", "mixed",
        "hangups", "slow_kb")


def timelines(samples: Mapping[tuple[str, str], Sequence[Sample]]) -> str:
    """The soak runs' samples over time, as a table per run ('' when there are none)."""
    out: list[str] = []
    for (name, kind), runs in sorted(samples.items()):
        for s in runs:
            rows = s.info.get("timeline")
            if not isinstance(rows, list) or not rows:
                continue
            table = [list(HEADER)] + [[str(row[k]) for k in KEYS] for row in rows]
            widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
            out.append(f"{name}, {kind}: every {s.info.get('interval_s')} s (counts since "
                       f"the start; max cycle: the slowest well-behaved cycle since the row "
                       f"before)")
            out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                    for r in table]
            out.append(f"hang-ups: {s.info.get('hangups')}; slowest cycle at "
                       f"{s.info.get('worst_at_s')} s")
    return "\n".join(out)
