"""The Python load generator, kept only as the fallback where no C compiler exists (gen.c is
the instrument: this one cannot saturate beanstalkd, so its ratios are not trustworthy).

Worker processes each drive a share of the connections.

Each worker owns blocking sockets watched by one epoll; per readable socket it does one recv,
counts or scans the replies (wire.py) and answers with one send, keeping `depth` commands in
flight. Workers meet at a barrier after connecting; a run's time is from the first worker
leaving the barrier to the last completion. Every loop stops at its count or its deadline.
"""

from __future__ import annotations

import multiprocessing
import select
import signal
import socket
import ssl
import time
from array import array
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier, Event

import attrs

from .wire import (
    TUBE,
    LineCounter,
    ReplyScanner,
    StampedPut,
    delete_commands,
    plain_body,
    put_command,
)

HOST = "127.0.0.1"
# One receive buffer per process, filled with recv_into: `sock.recv(256 KiB)` would allocate
# (and, past malloc's mmap threshold, map and unmap) 256 KiB per call, 5x the cost of the call.
RECV = 1 << 18
_BUF = bytearray(RECV)
_VIEW = memoryview(_BUF)


def _recv(sock: socket.socket) -> bytes:
    n = sock.recv_into(_BUF)
    if n and isinstance(sock, ssl.SSLSocket):
        # One TLS record (16 KiB at most) per call; what is left is decrypted and waiting in
        # the SSL object, where epoll cannot see it.
        out = bytes(_VIEW[:n])
        while sock.pending():
            n = sock.recv_into(_BUF)
            out += _VIEW[:n]
        return out
    return bytes(_VIEW[:n])
SETUP_TIMEOUT = 30.0
_POLL = b"reserve-with-timeout 0\r\n"
_WAIT = b"reserve-with-timeout 1\r\n"


class LoadError(RuntimeError):
    """A worker could not connect, a server closed a connection, or a worker never reported."""


@attrs.frozen
class ConnPlan:
    """One connection's job. kind: `put` (send `count` puts, `depth` in flight), `drain`
    (reserve-with-timeout 0 + delete until TIMED_OUT, at most `count` reserves), `batch`
    (reserve-batch `batch` 0 + pipelined deletes), `consume` (reserve-with-timeout 1 + delete
    until the producers are done and the tube is empty), `paced` (`count` puts at `rate`/s,
    open loop)."""

    kind: str
    count: int
    depth: int = 1
    body_size: int = 100
    stamped: bool = False
    batch: int = 100
    rate: float = 0.0


@attrs.frozen
class WorkerPlan:
    port: int
    conns: tuple[ConnPlan, ...]
    limit_s: float
    tls: bool = False  # speak TLS (the server's certificate is not checked: a benchmark)


@attrs.frozen
class WorkerResult:
    done: int  # completions: puts acknowledged, or jobs deleted
    start_ns: int  # when this worker left the barrier
    last_ns: int  # the last completion (0: none)
    timed_out: bool  # stopped by the deadline, not by its count
    cpu_s: float = 0.0  # this worker's own CPU time (user + system) while running
    errors: int = 0
    first_error: str = ""
    latencies_ns: array[int] = attrs.field(factory=lambda: array("q"))


class _Driver:
    """One connection's state machine: `start()` and `feed(chunk)` return the bytes to send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.done = 0
        self.last_ns = 0
        self.finished = False
        self.errors = 0
        self.first_error = b""
        self.latencies = array("q")

    def start(self) -> bytes:
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError


class PutDriver(_Driver):
    """`count` puts, `depth` in flight: each reply frees a slot that the same send refills."""

    def __init__(self, sock: socket.socket, plan: ConnPlan) -> None:
        super().__init__(sock)
        self.remaining = plan.count
        self.inflight = 0
        self.depth = plan.depth
        self._lines = LineCounter()
        self._stamped = StampedPut(plan.body_size) if plan.stamped else None
        one = put_command(plain_body(plan.body_size))
        self._batches = [] if plan.stamped else [one * k for k in range(plan.depth + 1)]

    def _send(self, k: int) -> bytes:
        self.remaining -= k
        self.inflight += k
        if self._stamped is not None:
            return self._stamped.commands(k, time.monotonic_ns())
        return self._batches[k]

    def start(self) -> bytes:
        k = min(self.depth, self.remaining)
        self.finished = k == 0
        return self._send(k)

    def feed(self, data: bytes) -> bytes:
        n = self._lines.feed(data)
        if not n:
            return b""
        self.done += n
        self.inflight -= n
        self.last_ns = time.monotonic_ns()
        k = min(n, self.remaining)
        if k:
            return self._send(k)
        self.finished = self.inflight <= 0
        return b""


class DrainDriver(_Driver):
    """reserve + delete with `depth` commands in flight, deletes first. Stops asking on
    TIMED_OUT (for a consumer: only once `keep_going()` is false) or after `count` reserves.

    A consumer never pipelines a blocking reserve: a server answers a connection's commands
    in order, so deletes queued behind a reserve that waits on an empty tube would wait with
    it. It polls (`reserve-with-timeout 0`) `depth` deep while jobs come, and when the tube
    runs dry it sends one `reserve-with-timeout 1` alone; at depth 1 it always does that, as a
    plain worker would."""

    def __init__(self, sock: socket.socket, plan: ConnPlan,
                 keep_going: Callable[[], bool] | None = None) -> None:
        super().__init__(sock)
        self.depth = plan.depth
        self.cap = plan.count
        self.issued = 0
        self.inflight = 0
        self.drained = False
        self.pending: list[bytes] = []
        self._keep_going = keep_going
        self.waiting = keep_going is not None  # next reserve: one blocking, alone
        self._stamps = plan.stamped
        self._scanner = ReplyScanner(stamps=plan.stamped)

    def _fill(self) -> bytes:
        free = self.depth - self.inflight
        out = b""
        if self.pending and free > 0:
            take = self.pending[:free]
            del self.pending[:free]
            out = delete_commands(take)
            self.inflight += len(take)
            free -= len(take)
        if not self.drained and self.issued < self.cap:
            if not self.waiting:
                r = min(free, self.cap - self.issued)
                if r > 0:
                    out += _POLL * r
                    self.issued += r
                    self.inflight += r
            elif self.inflight == 0:
                out += _WAIT
                self.issued += 1
                self.inflight += 1
        self.finished = self.inflight == 0 and not self.pending
        return out

    def start(self) -> bytes:
        return self._fill()

    def feed(self, data: bytes) -> bytes:
        rep = self._scanner.feed(data)
        n = rep.lines
        if not n:
            return b""
        self.inflight -= n
        now = time.monotonic_ns()
        if rep.ids:
            self.pending.extend(rep.ids)
            if self._stamps:
                self.latencies.extend([now - s for s in rep.stamps])
            if self.depth > 1:
                self.waiting = False
        if rep.deleted:
            self.done += rep.deleted
            self.last_ns = now
        if rep.timed_out:
            if self._keep_going is None or not self._keep_going():
                self.drained = True
            else:
                self.waiting = True
        if rep.other:
            self._error(rep.other, rep.other_first)
        return self._fill()

    def _error(self, n: int, first: bytes) -> None:
        if not self.errors:
            self.first_error = first
        self.errors += n
        self.drained = True


class BatchDriver(DrainDriver):
    """One `reserve-batch <batch> 0` in flight; the deletes for each frame go out as the frames
    arrive, and the next reserve-batch follows the last delete of a batch in the same send."""

    def __init__(self, sock: socket.socket, plan: ConnPlan) -> None:
        super().__init__(sock, plan)
        self._cmd = b"reserve-batch %d 0\r\n" % plan.batch
        self.taken = 0
        self.batch_open = False  # a reserve-batch is in flight
        self.frames_left = -1  # of the open batch; -1 until its header arrives
        self.deletes_inflight = 0

    def _next(self) -> bytes:
        if self.drained or self.taken >= self.cap:
            self.finished = self.deletes_inflight == 0
            return b""
        self.batch_open = True
        self.frames_left = -1
        return self._cmd

    def start(self) -> bytes:
        return self._next()

    def feed(self, data: bytes) -> bytes:
        rep = self._scanner.feed(data)
        out = b""
        if rep.batch_headers:
            self.frames_left = rep.batch_jobs
        if rep.ids:
            self.frames_left -= len(rep.ids)
            self.taken += len(rep.ids)
            self.deletes_inflight += len(rep.ids)
            out = delete_commands(rep.ids)
        if rep.deleted:
            self.deletes_inflight -= rep.deleted
            self.done += rep.deleted
            self.last_ns = time.monotonic_ns()
        if rep.timed_out:
            self.drained = True
            self.batch_open = False
        if rep.other:
            self._error(rep.other, rep.other_first)
            self.batch_open = False
        if self.batch_open and self.frames_left == 0:
            self.batch_open = False
        if not self.batch_open:
            return out + self._next()
        return out


class PacedDriver(_Driver):
    """Open loop: job i is due at start + i/rate whatever the replies; `done` counts the
    replies. Jobs that fell due together go out together, stamped with the send time."""

    def __init__(self, sock: socket.socket, plan: ConnPlan) -> None:
        super().__init__(sock)
        self.total = plan.count
        self.sent = 0
        self.interval_ns = 1e9 / plan.rate
        self.t0 = 0
        self._put = StampedPut(plan.body_size)
        self._lines = LineCounter()

    def start(self) -> bytes:
        self.t0 = time.monotonic_ns()
        self.finished = self.total == 0
        return self.due(self.t0)

    def due(self, now: int) -> bytes:
        want = min(self.total, int((now - self.t0) / self.interval_ns) + 1)
        if want <= self.sent:
            return b""
        k, self.sent = want - self.sent, want
        return self._put.commands(k, now)

    def next_due_ns(self) -> float:
        return self.t0 + self.sent * self.interval_ns if self.sent < self.total else 1e30

    def feed(self, data: bytes) -> bytes:
        n = self._lines.feed(data)
        if n:
            self.done += n
            self.last_ns = time.monotonic_ns()
            self.finished = self.done >= self.total
        return b""


def bench_context() -> ssl.SSLContext:
    """A client context that trusts any certificate: the benchmarks measure TLS's cost, not
    who signed the server's certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect(port: int, tls: bool = False) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=SETUP_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if tls:
        return bench_context().wrap_socket(sock, server_hostname=HOST)
    return sock


def _ask(sock: socket.socket, command: bytes, expect: bytes) -> None:
    sock.sendall(command)
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise LoadError(f"server closed the connection after {command!r}")
        reply += chunk
    if not reply.startswith(expect):
        raise LoadError(f"{command.strip()!r} got {reply.strip()!r}")


def _driver(plan: ConnPlan, port: int, keep_going: Callable[[], bool], tls: bool = False
            ) -> _Driver:
    sock = _connect(port, tls)
    if plan.kind in ("put", "paced"):
        _ask(sock, b"use " + TUBE + b"\r\n", b"USING")
        return PutDriver(sock, plan) if plan.kind == "put" else PacedDriver(sock, plan)
    _ask(sock, b"watch " + TUBE + b"\r\n", b"WATCHING")
    _ask(sock, b"ignore default\r\n", b"WATCHING")
    if plan.kind == "drain":
        return DrainDriver(sock, plan)
    if plan.kind == "consume":
        return DrainDriver(sock, plan, keep_going)
    if plan.kind == "batch":
        return BatchDriver(sock, plan)
    raise ValueError(f"unknown connection kind {plan.kind!r}")


def _react(drivers: Sequence[_Driver], deadline_ns: int) -> bool:
    """Drive every connection until each is finished; True if the deadline stopped it."""
    ep = select.epoll()
    live: dict[int, _Driver] = {}
    try:
        for d in drivers:
            out = d.start()
            if out:
                d.sock.sendall(out)
            if not d.finished:
                ep.register(d.sock.fileno(), select.EPOLLIN)
                live[d.sock.fileno()] = d
        while live:
            left = deadline_ns - time.monotonic_ns()
            if left <= 0:
                return True
            for fd, _ in ep.poll(left / 1e9):
                d = live[fd]
                data = _recv(d.sock)
                if not data:
                    raise LoadError("the server closed a connection mid-run")
                out = d.feed(data)
                if out:
                    d.sock.sendall(out)
                if d.finished:
                    ep.unregister(fd)
                    del live[fd]
        return False
    finally:
        ep.close()


def _paced(driver: PacedDriver, deadline_ns: int) -> bool:
    """Send what is due, wait for replies until the next job is due; True on deadline."""
    ep = select.epoll()
    ep.register(driver.sock.fileno(), select.EPOLLIN)
    try:
        out = driver.start()
        while not driver.finished:
            if out:
                driver.sock.sendall(out)
            now = time.monotonic_ns()
            if now >= deadline_ns:
                return True
            wait = min(driver.next_due_ns(), deadline_ns) - now
            for _ in ep.poll(max(wait, 0) / 1e9):
                data = _recv(driver.sock)
                if not data:
                    raise LoadError("the server closed a connection mid-run")
                driver.feed(data)
            out = driver.due(time.monotonic_ns())
        return False
    finally:
        ep.close()


def _worker(plan: WorkerPlan, barrier: Barrier, producers_done: Event,
            conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us and the servers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    drivers: list[_Driver] = []
    try:
        try:
            for p in plan.conns:
                drivers.append(_driver(p, plan.port, lambda: not producers_done.is_set(),
                                       plan.tls))
            for d in drivers:
                d.sock.settimeout(None)
        except Exception:
            barrier.abort()
            raise
        barrier.wait(SETUP_TIMEOUT)
        cpu0 = time.process_time()
        start = time.monotonic_ns()
        deadline = start + int(plan.limit_s * 1e9)
        if len(drivers) == 1 and isinstance(drivers[0], PacedDriver):
            timed_out = _paced(drivers[0], deadline)
        else:
            timed_out = _react(drivers, deadline)
        lat = array("q")
        for d in drivers:
            lat.extend(d.latencies)
        first = next((d.first_error for d in drivers if d.errors), b"")
        conn.send(WorkerResult(
            done=sum(d.done for d in drivers), start_ns=start,
            last_ns=max(d.last_ns for d in drivers), timed_out=timed_out,
            cpu_s=time.process_time() - cpu0, errors=sum(d.errors for d in drivers),
            first_error=first.decode(errors="replace"),
            latencies_ns=lat,
        ))
    except BaseException as e:  # reported to the parent, which raises it as a LoadError
        conn.send(e if isinstance(e, LoadError) else LoadError(f"{type(e).__name__}: {e}"))
    finally:
        for d in drivers:
            d.sock.close()
        conn.close()


def split(conns: Sequence[ConnPlan], workers: int, port: int, limit_s: float,
          tls: bool = False) -> list[WorkerPlan]:
    """Deal the connections round-robin to at most `workers` processes."""
    n = max(1, min(workers, len(conns)))
    return [WorkerPlan(port, tuple(conns[i::n]), limit_s, tls) for i in range(n)]


def run(lead: Sequence[WorkerPlan], follow: Sequence[WorkerPlan] = ()
        ) -> tuple[list[WorkerResult], list[WorkerResult]]:
    """Run all workers at once. `follow` workers (consumers) are told the producers are done
    once every `lead` worker has reported."""
    ctx = multiprocessing.get_context("fork")
    plans = [*lead, *follow]
    barrier = ctx.Barrier(len(plans))
    done = ctx.Event()
    procs: list[BaseProcess] = []
    pipes: list[Connection] = []
    try:
        for plan in plans:
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(plan, barrier, done, child_end),
                               daemon=True)
            proc.start()
            child_end.close()
            procs.append(proc)
            pipes.append(parent_end)
        results: list[WorkerResult] = []
        broken: BaseException | None = None  # a worker let down by another one's failure
        for i, (plan, pipe) in enumerate(zip(plans, pipes, strict=True)):
            if i == len(lead):
                done.set()
            if not pipe.poll(plan.limit_s + SETUP_TIMEOUT + 10):
                raise LoadError("a load worker did not report in time")
            try:
                got = pipe.recv()
            except EOFError:
                raise LoadError("a load worker died without reporting") from None
            if isinstance(got, BaseException):
                if not str(got).startswith("BrokenBarrierError"):
                    raise got
                broken = got  # keep reading: the worker that broke the barrier says why
                continue
            results.append(got)
        if broken is not None:
            raise broken
        return results[: len(lead)], results[len(lead) :]
    finally:
        for child in procs:
            if child.is_alive():
                child.terminate()
        for child in procs:
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
        for pipe in pipes:
            pipe.close()


def cpu_cores(groups: Sequence[Sequence[WorkerResult]], elapsed: float) -> float:
    """The generator's CPU use over a run, in cores: near 1 per worker means it was busy all
    the time (on 2 cores the server competes for the same CPUs)."""
    return sum(r.cpu_s for g in groups for r in g) / elapsed


def elapsed_s(groups: Sequence[Sequence[WorkerResult]], measured: Sequence[WorkerResult]
              ) -> float:
    """From the first worker leaving the barrier (any group) to the last completion counted."""
    start = min(r.start_ns for g in groups for r in g)
    last = max(r.last_ns for r in measured)
    return max(last - start, 1) / 1e9
