"""The blocking client: greenstalk's API over the shared codec, with timeouts and pipelining.

Theory of operation. Each method builds a command (`ClientCore`), writes its bytes with one
`sendall` and reads until the codec has the reply, under a lock so that one command is in
flight at a time even when threads share the client. Every socket call has a deadline: the
connect timeout for connecting, and for a command the I/O timeout plus the time the server
was asked to wait (reserve's timeout). A plain `reserve()` without timeout is the one call
that may block forever, as the protocol intends.

If anything goes wrong mid-command (timeout, socket error, EOF, a protocol violation, an
exception such as KeyboardInterrupt), the connection is closed at once: its reply may still
be on the way, so it could never be trusted again. Later calls raise ConnectionClosed; the
server puts jobs reserved on that connection back to ready. Server error lines (NOT_FOUND,
TIMED_OUT, ...) leave the connection in sync and are raised as their exception classes.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Literal, TypedDict, TypeVar, Unpack, overload

from . import commands as c
from .admin import JobSummary, TubeInfo
from .bodies import Serializer, resolve
from .codec import NEED_DATA, Reply
from .core import ClientCore, check_timeout, io_budget, watch_setup, windows
from .errors import ConnectFailed, ConnectionClosed, IOTimeout, TubeError
from .flow import Schedule, TubeLimits, Unique
from .job import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DELAY,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    Address,
    Job,
    PutOptions,
    job_id,
)
from .stats import Stats, StatsJob, StatsTube
from .status import JobStatus

T = TypeVar("T")
R = TypeVar("R")
RECV_SIZE = 65536


class ClientOptions(TypedDict, total=False):
    """Keyword options shared by every client and pool constructor (see `Client`)."""

    use: str
    watch: str | Iterable[str]
    connect_timeout: float | None
    io_timeout: float | None
    ssl: _ssl.SSLContext | bool | None
    server_hostname: str | None
    token: str | None


def _connect(address: Address, timeout: float | None,
             tls: _ssl.SSLContext | None = None, server_hostname: str = "") -> socket.socket:
    """A connected socket (TLS handshake done, within the same `timeout`); ConnectFailed."""
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(address, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_hostname=server_hostname)
                except BaseException:
                    sock.close()
                    raise
    except OSError as e:
        raise ConnectFailed(f"cannot connect to {address!r}: {e}") from e
    return sock


class Client(Generic[T]):
    """A blocking connection to one tubeserver or beanstalkd.

    ``Client(("127.0.0.1", 11300))`` or ``Client("/run/tubeserver.sock")`` connects at once.
    Use it as a context manager or call `close()`.

    Bodies are bytes by default; ``encoding="utf-8"`` makes them str, ``serializer="msgpack"``
    (or any `Serializer`) makes them Python values. ``use=`` is the tube `put` stores into;
    ``watch=`` the tube or tubes `reserve` takes from (``default`` is ignored unless listed).
    ``connect_timeout`` bounds connecting; ``io_timeout`` bounds every command (plus the wait
    a reserve asked for); None means no limit. After an I/O timeout or any failure
    mid-command the connection is closed and further calls raise `ConnectionClosed`.

    ``ssl=`` speaks TLS (tubeserver --tls-cert, or a TLS proxy): an `ssl.SSLContext`, or True
    for `ssl.create_default_context()`; the certificate must name the host given, or
    ``server_hostname=``. ``token=`` authenticates (tubeserver --auth-file): `auth` is sent
    right after connecting; a refused token raises `Unauthorized`, a server without
    authentication `AuthNotEnabled`. The token is never logged or shown in a repr.

    A client may be shared by threads; commands then run one at a time.
    """

    @overload
    def __init__(
        self: Client[bytes], address: Address, *, encoding: None = None,
        serializer: None = None, **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: Client[str], address: Address, *, encoding: str, serializer: None = None,
        **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: Client[T], address: Address, *, encoding: None = None,
        serializer: Serializer[T], **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: Client[Any], address: Address, *, encoding: None = None,
        serializer: Literal["msgpack"], **options: Unpack[ClientOptions],
    ) -> None: ...
    def __init__(
        self,
        address: Address,
        *,
        encoding: str | None = None,
        serializer: Serializer[Any] | str | None = None,
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = DEFAULT_IO_TIMEOUT,
        ssl: _ssl.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        token: str | None = None,
    ) -> None:
        self._core: ClientCore[T] = ClientCore(
            address, resolve(encoding, serializer), tls=ssl, server_hostname=server_hostname,
            token=token,
        )
        self.connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        self.io_timeout = check_timeout(io_timeout, "io_timeout")
        setup = watch_setup(use, watch)
        self._lock = threading.Lock()
        core = self._core
        self._sock: socket.socket | None = _connect(
            core.address, self.connect_timeout, core.tls, core.server_hostname)
        try:
            auth = core.auth()
            if auth is not None:
                # Alone, not pipelined with use/watch: a refused token gets the connection
                # closed, and the commands behind it would read as a broken connection.
                (reply,) = self._exchange([auth])
                core.authenticated(auth, reply)
            for cmd, reply in zip(setup, self._exchange(setup), strict=True):
                cmd.unwrap(reply)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- connection

    @property
    def server(self) -> str:
        """The server's name as jobs carry it: "host:port" or the UNIX socket path."""
        return self._core.server

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by `close()` or after a failure)."""
        return self._sock is None

    def close(self) -> None:
        """Close the connection (idempotent). Jobs it had reserved go back to ready."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Client[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<tubeclient.Client {self.server} {state}>"

    def _exchange(
        self, commands: Sequence[c.Command[object]], wait: int | None = None,
        waits_forever: bool = False,
    ) -> list[Reply]:
        """Send `commands` in one write and read their replies, in order."""
        with self._lock:
            sock = self._sock
            if sock is None:
                raise ConnectionClosed(f"connection to {self.server} is closed")
            codec = self._core.codec
            budget = io_budget(self.io_timeout, wait, waits_forever)
            deadline = None if budget is None else time.monotonic() + budget
            try:
                data = codec.send(*commands)
                self._settimeout(sock, deadline)
                sock.sendall(data)
                replies: list[Reply] = []
                while len(replies) < len(commands):
                    reply = codec.next_reply()
                    if reply is NEED_DATA:
                        self._settimeout(sock, deadline)
                        chunk = sock.recv(RECV_SIZE)
                        if not chunk:
                            raise ConnectionClosed(f"{self.server} closed the connection")
                        codec.receive_data(chunk)
                    else:
                        replies.append(reply)
                return replies
            except TubeError:
                self.close()
                raise
            except TimeoutError as e:
                self.close()
                raise IOTimeout(f"no reply from {self.server} in time; connection closed") from e
            except OSError as e:
                self.close()
                raise ConnectionClosed(f"connection to {self.server} failed: {e}") from e
            except BaseException:
                self.close()
                raise

    @staticmethod
    def _settimeout(sock: socket.socket, deadline: float | None) -> None:
        if deadline is None:
            sock.settimeout(None)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("I/O deadline passed")
        sock.settimeout(left)

    def _call(self, cmd: c.Command[R], wait: int | None = None,
              waits_forever: bool = False) -> R:
        (reply,) = self._exchange([cmd], wait, waits_forever)
        return cmd.unwrap(reply)

    def _pipeline(self, cmds: Sequence[c.Command[object]]) -> list[Reply]:
        replies: list[Reply] = []
        for window in windows(cmds):
            replies += self._exchange(window)
        return replies

    def pipeline(self, commands: Sequence[c.Command[object]]) -> list[Reply]:
        """Send `commands` (values of `tubeclient.commands`) together and read every reply,
        in order: one round trip instead of one each. Turn each reply into its value (or
        its error raised) with ``command.unwrap(reply)``."""
        return self._pipeline(commands)

    def _extension(self, cmd: c.Command[object], wait: int | None = None) -> Reply:
        """The reply to an extension command (job tracking, flow control), probing first if
        it carries data and the server has not yet shown that it knows the extension (see
        core.Extension)."""
        core = self._core
        probe = core.probe(cmd)
        if probe is not None:
            (answer,) = self._exchange([probe])
            core.learn(cmd, answer)
        (reply,) = self._exchange([cmd], wait)
        core.learn(cmd, reply)
        return reply

    # ----------------------------------------------------------------- producing

    def put(
        self, body: T, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> int:
        """Store a job in the used tube and return its id.

        `priority` 0 is the most urgent (below 1024 counts as urgent); `delay` seconds before
        it becomes ready; `ttr` seconds a worker may hold it. Raises JobTooBig, Draining, ...
        """
        return self._call(self._core.put(body, priority, delay, ttr))

    def put_many(
        self, items: Iterable[T | tuple[T, PutOptions]], priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> list[int]:
        """Store many jobs with pipelined puts and return their ids, in order.

        An item is a body (stored with the `priority`, `delay`, `ttr` given here) or a
        ``(body, PutOptions(...))`` pair. Commands go out in windows of up to 1000 per write.
        Every reply is read before anything is raised, so the connection stays in sync: if
        any item failed, BatchError is raised and its `results` holds, per item, the id or
        the ServerError (the other jobs *were* stored). All bodies are encoded before the
        first byte is sent, so a body the serializer rejects stores nothing.
        """
        cmds = self._core.put_many(items, priority, delay, ttr)
        replies = self._pipeline(cmds)
        return [r for r in self._core.batch_results(replies) if isinstance(r, int)]

    def use(self, tube: str) -> str:
        """Make `tube` the used tube (for put, peek_ready/_delayed/_buried, kick)."""
        return self._call(c.Use(tube))

    # ----------------------------------------------------------------- consuming

    def reserve(self, timeout: int | None = None) -> Job[T]:
        """Reserve a job from the watched tubes and return it.

        Waits at most `timeout` whole seconds (0: don't wait) and raises TimedOut when no job
        came; with None waits as long as it takes. Raises DeadlineSoon when a job this
        connection holds is within a second of its TTR deadline.
        """
        cmd = c.Reserve(timeout)
        return self._core.job(self._call(cmd, timeout, waits_forever=timeout is None))

    def reserve_job(self, id: Job[Any] | int) -> Job[T]:
        """Reserve the job with this id (ready, delayed or buried, any tube); NotFound if it
        does not exist or is reserved. Needs beanstalkd 1.12 or later."""
        return self._core.job(self._call(c.ReserveJob(job_id(id))))

    def reserve_batch(self, count: int, timeout: int) -> list[Job[T]]:
        """Extension (tubeserver): reserve up to `count` jobs (1-1000) with one command.

        tubeserver answers as soon as `count` jobs are ready; otherwise it waits up to
        `timeout` whole seconds for the batch to fill and then returns what is ready (at
        least one job). With timeout 0 it returns what is ready now. When no job came at all
        the result is an empty list (unlike `reserve`, which raises TimedOut: an empty batch
        is the natural "nothing yet" in a loop). Raises DeadlineSoon like reserve, and
        ExtensionNotSupported (the connection stays usable) when the server does not
        implement reserve-batch, e.g. beanstalkd; that answer is remembered per connection.
        """
        self._core.reserve_batch_check()
        cmd = c.ReserveBatch(count, timeout)
        (reply,) = self._exchange([cmd], timeout)
        return self._core.reserve_batch_result(cmd, reply)

    def delete(self, job: Job[Any] | int) -> None:
        """Delete a job (or job id): one reserved by this connection, or any ready, delayed
        or buried one. NotFound otherwise."""
        self._call(c.Delete(job_id(job)))

    def delete_many(self, jobs: Iterable[Job[Any] | int]) -> None:
        """Delete many jobs with pipelined deletes.

        Every reply is read first, so the connection stays in sync; then, if any delete
        failed, BatchError is raised: its `results` holds None for each job deleted and the
        ServerError (usually NotFound) for each that was not.
        """
        self._core.batch_results(self._pipeline(self._core.delete_many(jobs)))

    def release(
        self, job: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY
    ) -> None:
        """Give back a job this connection reserved, with a new priority, ready again after
        `delay` seconds. NotFound if this connection does not hold it."""
        self._call(c.Release(job_id(job), priority, delay))

    def bury(self, job: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set aside a job this connection reserved until it is kicked."""
        self._call(c.Bury(job_id(job), priority))

    def touch(self, job: Job[Any] | int) -> None:
        """Ask for more time on a reserved job: its TTR starts again."""
        self._call(c.Touch(job_id(job)))

    def watch(self, tube: str) -> int:
        """Add `tube` to the watch list; returns how many tubes are watched."""
        return self._call(c.Watch(tube))

    def ignore(self, tube: str) -> int:
        """Remove `tube` from the watch list; returns how many tubes are still watched.
        NotIgnored if it is the last one."""
        return self._call(c.Ignore(tube))

    # ----------------------------------------------------------------- inspecting

    def peek(self, id: Job[Any] | int) -> Job[T]:
        """The job with this id, in any state and tube, without reserving it."""
        return self._core.job(self._call(c.Peek(job_id(id))))

    def peek_ready(self) -> Job[T]:
        """The next ready job of the used tube (NotFound if none)."""
        return self._core.job(self._call(c.PeekReady()))

    def peek_delayed(self) -> Job[T]:
        """The delayed job of the used tube that becomes ready first (NotFound if none)."""
        return self._core.job(self._call(c.PeekDelayed()))

    def peek_buried(self) -> Job[T]:
        """The job of the used tube buried longest ago (NotFound if none)."""
        return self._core.job(self._call(c.PeekBuried()))

    def kick(self, bound: int) -> int:
        """Move up to `bound` buried jobs (or, if none are buried, delayed jobs) of the used
        tube to ready; returns how many moved."""
        return self._call(c.Kick(bound))

    def kick_job(self, job: Job[Any] | int) -> None:
        """Move one buried or delayed job to ready (NotFound if it is neither)."""
        self._call(c.KickJob(job_id(job)))

    def stats(self) -> Stats:
        """Server statistics, typed: ints, floats (rusage), a bool (draining), strs."""
        return self._call(c.Stats())

    def stats_tube(self, tube: str) -> StatsTube:
        """Statistics of one tube (NotFound if it does not exist)."""
        return self._call(c.StatsTube(tube))

    def stats_job(self, job: Job[Any] | int) -> StatsJob:
        """Statistics of one job (NotFound if it does not exist)."""
        return self._call(c.StatsJob(job_id(job)))

    def list_tubes(self) -> list[str]:
        """Every tube that exists on the server."""
        return self._call(c.ListTubes())

    tubes = list_tubes

    def using(self) -> str:
        """The used tube."""
        return self._call(c.ListTubeUsed())

    def watching(self) -> list[str]:
        """The watch list."""
        return self._call(c.ListTubesWatched())

    def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from `tube` for `delay` seconds (0 ends a pause)."""
        self._call(c.PauseTube(tube, delay))

    # ----------------------------------------------------------------- job tracking
    # Extension (tubeserver). Results, reasons and checkpoints are encoded and decoded like
    # bodies; None stands for empty data. On a server without the extension (beanstalkd),
    # each method raises ExtensionNotSupported and the connection stays usable.

    def finish(self, job: Job[Any] | int, result: T | None = None) -> None:
        """Delete a job as `delete` does and keep `result` for `wait_result` and `status`
        (None: an empty result, as a plain delete leaves). NotFound as for delete."""
        cmd = c.Finish(job_id(job), self._core.encode_data(result))
        cmd.unwrap(self._extension(cmd))

    def fail(
        self, job: Job[Any] | int, reason: T | None, priority: int = DEFAULT_PRIORITY
    ) -> None:
        """Bury a job this connection reserved, as `bury` does, keeping `reason` (replacing
        any earlier one); `wait_result` then raises JobFailed with it."""
        cmd = c.Fail(job_id(job), priority, self._core.encode_data(reason))
        cmd.unwrap(self._extension(cmd))

    def wait_result(self, id: Job[Any] | int, timeout: int) -> T | None:
        """Wait up to `timeout` whole seconds (0: don't wait) for a job to be finished and
        return its result (None if empty). Raises JobFailed (with the reason) if the job is
        buried, TimedOut if it is still live after `timeout`, NotFound if the server never
        had it or no longer keeps its record. The I/O timeout is counted on top of
        `timeout`, as for reserve; the connection is busy until the answer comes."""
        cmd = c.Result(job_id(id), timeout)
        return self._core.result(cmd, self._extension(cmd, timeout))

    def status(self, id: Job[Any] | int) -> JobStatus:
        """The state, counters and times of a live job or of a finished one whose record is
        kept (NotFound otherwise)."""
        cmd = c.JobStatus(job_id(id))
        return cmd.unwrap(self._extension(cmd))

    def checkpoint(self, job: Job[Any] | int, data: T | None) -> None:
        """Store `data` with a job this connection reserved (replacing the previous
        checkpoint) and restart its TTR, as touch does. It stays with the job through
        release, TTR expiry, bury and kick, so the next worker can resume from it."""
        cmd = c.Checkpoint(job_id(job), self._core.encode_data(data))
        cmd.unwrap(self._extension(cmd))

    def peek_checkpoint(self, id: Job[Any] | int) -> T | None:
        """A job's checkpoint (None if it is empty), from any connection. Like the other
        peeks, raises NotFound when there is nothing to show: no live job with that id, or
        a job without a checkpoint."""
        cmd = c.PeekCheckpoint(job_id(id))
        return self._core.checkpoint(cmd.unwrap(self._extension(cmd)))

    # ----------------------------------------------------------------- flow control
    # Extension (tubeserver): unique jobs, dependencies, tube limits and schedules; the rules
    # are in protocol.md, "Flow control". Arguments tubeserver would refuse as BAD_FORMAT
    # raise ValueError here. On a server without the extension (beanstalkd), each method
    # raises ExtensionNotSupported and the connection stays usable; the data of put_unique,
    # put_after and schedule never reaches such a server (the client asks first with
    # list-tube-limits, which carries none).

    def put_unique(
        self, body: T, key: str, window: int = 0, *, priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> Unique:
        """Store a job in the used tube unless the tube has a job holding `key` (a name by
        the tube-name rules). Returns ``Unique(id, new)``: the new job (new=True), or the
        job that holds the key (new=False; nothing was stored). A key is held while its job
        is live, and for `window` seconds after the put that took it, whichever is longer.
        Raises TubeFull when the tube is at its max-jobs."""
        cmd = self._core.put_unique(body, key, window, priority, delay, ttr)
        return cmd.unwrap(self._extension(cmd))

    def put_after(
        self, body: T, parents: Iterable[Job[Any] | int], *, priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> int:
        """Store a job in the used tube that waits (state "waiting") until every job in
        `parents` (1 to 100 jobs or ids) has finished, then its own `delay` starts; returns
        its id. NotFound (nothing stored) when a parent is neither live nor a kept record;
        TubeFull when the tube is at its max-jobs."""
        cmd = self._core.put_after(body, parents, priority, delay, ttr)
        return cmd.unwrap(self._extension(cmd))

    def schedule(
        self, name: str, tube: str, body: T, spec: str, *, priority: int = DEFAULT_PRIORITY,
        ttr: int = DEFAULT_TTR,
    ) -> None:
        """Create or replace the schedule `name`: at each firing the server puts `body`
        into `tube`. `spec` is a 5-field cron expression (UTC unless the server runs with
        --timezone) or ``"every <seconds>"``, either optionally after ``"single"`` (skip a
        firing while the previous one's job is live). BadFormat for a spec the server
        cannot read or that never fires. Declaring the same schedule again changes
        nothing, so an application may declare its schedules at every start."""
        cmd = self._core.schedule(name, tube, body, spec, priority, ttr)
        cmd.unwrap(self._extension(cmd))

    def unschedule(self, name: str) -> None:
        """Remove the schedule `name` (NotFound if there is none); jobs it made stay."""
        cmd = c.Unschedule(name)
        cmd.unwrap(self._extension(cmd))

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next and last firing and its counts."""
        cmd = c.ListSchedules()
        return cmd.unwrap(self._extension(cmd))

    def tube_limits(
        self, tube: str, max_reserved: int = 0, max_jobs: int = 0, rate: float = 0
    ) -> None:
        """Set `tube`'s limits (0: none; all three 0 removes them): at most `max_reserved`
        of its jobs reserved at once, at most `max_jobs` jobs in it (a put beyond raises
        TubeFull), handed out at most `rate` jobs per second (0 to 1,000,000, fractions
        allowed). A tube need not exist; its limits outlive it."""
        cmd = c.TubeLimits(tube, max_reserved, max_jobs, rate)
        cmd.unwrap(self._extension(cmd))

    def list_tube_limits(self) -> list[TubeLimits]:
        """The limits of every tube that has some, by tube, with its jobs now."""
        cmd = c.ListTubeLimits()
        return cmd.unwrap(self._extension(cmd))

    # ----------------------------------------------------------------- admin
    # Extension (tubeserver): operators' commands (protocol.md, "Admin commands"); tubectl
    # and the dashboard use them. Arguments tubeserver would refuse as BAD_FORMAT raise
    # ValueError here. On a server without them (beanstalkd), each method raises
    # ExtensionNotSupported and the connection stays usable.

    def list_jobs(
        self, tube: str, state: str = "ready", offset: int = 0, limit: int = 100
    ) -> list[JobSummary]:
        """Up to `limit` (1-1000) jobs of `tube` in `state` ("ready", "reserved",
        "delayed", "buried" or "waiting"), from the `offset`-th (0-10000) on, in the order
        the server acts on them: ready by priority then id, delayed by when they become
        ready, buried in kick order, reserved by TTR end, waiting by id. NotFound if the
        tube does not exist."""
        cmd = c.ListJobs(tube, state, offset, limit)
        return cmd.unwrap(self._extension(cmd))

    def clear_tube(self, tube: str, state: str) -> int:
        """Delete every job of `tube` in `state` ("ready", "delayed", "buried" or "waiting";
        reserved jobs are their workers') and return how many; each is deleted as by
        `delete`. The server deletes them in slices and answers once all are gone: this
        call waits up to the I/O timeout for it. NotFound if the tube does not exist."""
        cmd = c.ClearTube(tube, state)
        return cmd.unwrap(self._extension(cmd))

    def kick_tube(self, tube: str, bound: int) -> int:
        """`kick` in `tube` without `use`: up to `bound` buried jobs, or if none is buried,
        delayed ones, moved to ready; returns how many. NotFound if the tube does not
        exist."""
        cmd = c.KickTube(tube, bound)
        return cmd.unwrap(self._extension(cmd))

    def tube_info(self, tube: str) -> TubeInfo:
        """What `stats_tube` cannot show: waiting jobs apart, the oldest ready job's age,
        counters since the tube was made, its pause and limits. NotFound if the tube does
        not exist."""
        cmd = c.TubeInfo(tube)
        return cmd.unwrap(self._extension(cmd))
