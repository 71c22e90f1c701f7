"""The trio client: the same methods as `Client`, awaited, over a trio stream.

Theory of operation. Each method builds its command with the shared `ClientCore`, and
`_exchange` sends it and reads the reply under a `trio.StrictFIFOLock`, so tasks sharing a
client take turns (a blocking `reserve` holds the connection until it is answered: give
workers their own client). Timeouts are `trio.fail_after`: the connect timeout for
connecting, the I/O timeout plus the requested reserve wait for a command.

Cancellation safety, the trio-specific trap: if a command is cancelled after its bytes were
sent (a `reserve` under `trio.move_on_after`, a nursery shutting down), its reply may still
arrive, and the connection's state is unknown. The client therefore closes the connection
whenever a command is interrupted (cancellation, I/O timeout, broken stream, protocol
violation) and raises ConnectionClosed on later calls; the server puts the jobs reserved on
it back to ready, so nothing is lost. Server error lines leave the connection usable.
"""

from __future__ import annotations

import math
import socket
import ssl as _ssl
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar, Unpack, overload

import trio

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
from .sync import ClientOptions

T = TypeVar("T")
R = TypeVar("R")
RECV_SIZE = 65536


def _limit(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


async def _discard(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


class TrioClient(Generic[T]):
    """An async connection to one tubeserver or beanstalkd, for trio.

    ``async with TrioClient(("127.0.0.1", 11300), watch="jobs") as c:`` connects on entry
    and closes on exit; ``c = await TrioClient.connect(address, ...)`` then
    ``await c.aclose()`` does the same explicitly. Arguments and methods are those of
    `tubeclient.Client`; every method is awaited. See the module docstring for what happens
    on cancellation (the connection is closed).
    """

    @overload
    def __init__(
        self: TrioClient[bytes], address: Address, *, encoding: None = None,
        serializer: None = None, **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioClient[str], address: Address, *, encoding: str, serializer: None = None,
        **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioClient[T], address: Address, *, encoding: None = None,
        serializer: Serializer[T], **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioClient[Any], address: Address, *, encoding: None = None,
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
        self._setup = watch_setup(use, watch)
        self._lock = trio.StrictFIFOLock()
        self._stream: trio.abc.Stream | None = None
        self._opened = False

    @overload
    @classmethod
    async def connect(
        cls, address: Address, *, encoding: None = None, serializer: None = None,
        **options: Unpack[ClientOptions],
    ) -> TrioClient[bytes]: ...
    @overload
    @classmethod
    async def connect(
        cls, address: Address, *, encoding: str, serializer: None = None,
        **options: Unpack[ClientOptions],
    ) -> TrioClient[str]: ...
    @overload
    @classmethod
    async def connect(
        cls, address: Address, *, encoding: None = None, serializer: Serializer[T],
        **options: Unpack[ClientOptions],
    ) -> TrioClient[T]: ...
    @overload
    @classmethod
    async def connect(
        cls, address: Address, *, encoding: None = None, serializer: Literal["msgpack"],
        **options: Unpack[ClientOptions],
    ) -> TrioClient[Any]: ...
    @classmethod
    async def connect(
        cls, address: Address, *, encoding: str | None = None,
        serializer: Serializer[Any] | str | None = None, **options: Unpack[ClientOptions],
    ) -> TrioClient[Any]:
        """Create a client and connect it (use/watch applied); close it with `aclose()`."""
        factory: Any = cls  # the overloads above give the precise type
        client: TrioClient[Any] = factory(
            address, encoding=encoding, serializer=serializer, **options
        )
        await client._open()
        return client

    async def _open(self) -> None:
        if self._opened:
            raise RuntimeError("a TrioClient connects only once; create a new one")
        self._opened = True
        core = self._core
        address = core.address
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(_limit(self.connect_timeout)):
                if isinstance(address, str):
                    stream = await trio.open_unix_socket(address)
                else:
                    tcp = await trio.open_tcp_stream(*address)
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    stream = tcp
                    if core.tls is not None:
                        # https_compatible: no close_notify is waited for on closing, and
                        # a server that closes without one has simply hung up.
                        stream = trio.SSLStream(tcp, core.tls, https_compatible=True,
                                                server_hostname=core.server_hostname)
                        await stream.do_handshake()
        except trio.TooSlowError as e:
            await _discard(stream)
            raise ConnectFailed(f"cannot connect to {address!r}: timed out") from e
        except trio.BrokenResourceError as e:  # the TLS handshake failed
            await _discard(stream)
            cause = e.__cause__ or e
            raise ConnectFailed(f"cannot connect to {address!r}: {cause}") from cause
        except OSError as e:
            await _discard(stream)
            raise ConnectFailed(f"cannot connect to {address!r}: {e}") from e
        self._stream = stream
        try:
            auth = core.auth()
            if auth is not None:
                # Alone, not pipelined with use/watch: a refused token gets the connection
                # closed, and the commands behind it would read as a broken connection.
                (reply,) = await self._exchange([auth])
                core.authenticated(auth, reply)
            for cmd, reply in zip(self._setup, await self._exchange(self._setup),
                                  strict=True):
                cmd.unwrap(reply)
        except BaseException:
            await self.aclose()
            raise

    # ----------------------------------------------------------------- connection

    @property
    def server(self) -> str:
        """The server's name as jobs carry it: "host:port" or the UNIX socket path."""
        return self._core.server

    @property
    def closed(self) -> bool:
        """True when not connected: before connecting, after `aclose()` or a failure."""
        return self._stream is None

    async def aclose(self) -> None:
        """Close the connection (idempotent). Jobs it had reserved go back to ready."""
        stream, self._stream = self._stream, None
        self._opened = True
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def __aenter__(self) -> TrioClient[T]:
        if not self._opened:
            await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<tubeclient.TrioClient {self.server} {state}>"

    async def _exchange(
        self, commands: Sequence[c.Command[object]], wait: int | None = None,
        waits_forever: bool = False,
    ) -> list[Reply]:
        """Send `commands` in one write and read their replies, in order."""
        async with self._lock:
            stream = self._stream
            if stream is None:
                raise ConnectionClosed(f"connection to {self.server} is closed")
            codec = self._core.codec
            try:
                with trio.fail_after(_limit(io_budget(self.io_timeout, wait, waits_forever))):
                    await stream.send_all(codec.send(*commands))
                    replies: list[Reply] = []
                    while len(replies) < len(commands):
                        reply = codec.next_reply()
                        if reply is NEED_DATA:
                            chunk = await stream.receive_some(RECV_SIZE)
                            if not chunk:
                                raise ConnectionClosed(f"{self.server} closed the connection")
                            codec.receive_data(chunk)
                        else:
                            replies.append(reply)
                    return replies
            except TubeError:
                await self.aclose()
                raise
            except trio.TooSlowError as e:
                await self.aclose()
                raise IOTimeout(f"no reply from {self.server} in time; connection closed") from e
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                await self.aclose()
                raise ConnectionClosed(f"connection to {self.server} failed: {e}") from e
            except BaseException:
                await self.aclose()
                raise

    async def _call(self, cmd: c.Command[R], wait: int | None = None,
                    waits_forever: bool = False) -> R:
        (reply,) = await self._exchange([cmd], wait, waits_forever)
        return cmd.unwrap(reply)

    async def _pipeline(self, cmds: Sequence[c.Command[object]]) -> list[Reply]:
        replies: list[Reply] = []
        for window in windows(cmds):
            replies += await self._exchange(window)
        return replies

    async def pipeline(self, commands: Sequence[c.Command[object]]) -> list[Reply]:
        """Send `commands` (values of `tubeclient.commands`) together and read every reply,
        in order: one round trip instead of one each. Turn each reply into its value (or
        its error raised) with ``command.unwrap(reply)``."""
        return await self._pipeline(commands)

    async def _extension(self, cmd: c.Command[object], wait: int | None = None) -> Reply:
        """The reply to an extension command (job tracking, flow control), probing first if
        it carries data and the server has not yet shown that it knows the extension (see
        core.Extension)."""
        core = self._core
        probe = core.probe(cmd)
        if probe is not None:
            (answer,) = await self._exchange([probe])
            core.learn(cmd, answer)
        (reply,) = await self._exchange([cmd], wait)
        core.learn(cmd, reply)
        return reply

    # ----------------------------------------------------------------- producing

    async def put(
        self, body: T, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> int:
        """Store a job in the used tube and return its id (see `Client.put`)."""
        return await self._call(self._core.put(body, priority, delay, ttr))

    async def put_many(
        self, items: Iterable[T | tuple[T, PutOptions]], priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> list[int]:
        """Store many jobs with pipelined puts; ids in order, or BatchError after every
        reply was read (see `Client.put_many`)."""
        cmds = self._core.put_many(items, priority, delay, ttr)
        replies = await self._pipeline(cmds)
        return [r for r in self._core.batch_results(replies) if isinstance(r, int)]

    async def use(self, tube: str) -> str:
        """Make `tube` the used tube (for put, peek_ready/_delayed/_buried, kick)."""
        return await self._call(c.Use(tube))

    # ----------------------------------------------------------------- consuming

    async def reserve(self, timeout: int | None = None) -> Job[T]:
        """Reserve a job from the watched tubes; TimedOut after `timeout` whole seconds
        (None: wait as long as it takes). See `Client.reserve`."""
        cmd = c.Reserve(timeout)
        return self._core.job(await self._call(cmd, timeout, waits_forever=timeout is None))

    async def reserve_job(self, id: Job[Any] | int) -> Job[T]:
        """Reserve the job with this id (NotFound if missing or reserved)."""
        return self._core.job(await self._call(c.ReserveJob(job_id(id))))

    async def reserve_batch(self, count: int, timeout: int) -> list[Job[T]]:
        """Extension: reserve up to `count` jobs (1-1000) at once, waiting up to `timeout`
        seconds for the batch to fill; [] when no job came; ExtensionNotSupported on servers
        without it (see `Client.reserve_batch`)."""
        self._core.reserve_batch_check()
        cmd = c.ReserveBatch(count, timeout)
        (reply,) = await self._exchange([cmd], timeout)
        return self._core.reserve_batch_result(cmd, reply)

    async def delete(self, job: Job[Any] | int) -> None:
        """Delete a job (or job id); NotFound if it is reserved elsewhere or missing."""
        await self._call(c.Delete(job_id(job)))

    async def delete_many(self, jobs: Iterable[Job[Any] | int]) -> None:
        """Delete many jobs with pipelined deletes; BatchError after every reply was read
        if any failed (see `Client.delete_many`)."""
        self._core.batch_results(await self._pipeline(self._core.delete_many(jobs)))

    async def release(
        self, job: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY
    ) -> None:
        """Give back a job this connection reserved, with a new priority and delay."""
        await self._call(c.Release(job_id(job), priority, delay))

    async def bury(self, job: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set aside a job this connection reserved until it is kicked."""
        await self._call(c.Bury(job_id(job), priority))

    async def touch(self, job: Job[Any] | int) -> None:
        """Ask for more time on a reserved job: its TTR starts again."""
        await self._call(c.Touch(job_id(job)))

    async def watch(self, tube: str) -> int:
        """Add `tube` to the watch list; returns how many tubes are watched."""
        return await self._call(c.Watch(tube))

    async def ignore(self, tube: str) -> int:
        """Remove `tube` from the watch list; NotIgnored if it is the last one."""
        return await self._call(c.Ignore(tube))

    # ----------------------------------------------------------------- inspecting

    async def peek(self, id: Job[Any] | int) -> Job[T]:
        """The job with this id, without reserving it."""
        return self._core.job(await self._call(c.Peek(job_id(id))))

    async def peek_ready(self) -> Job[T]:
        """The next ready job of the used tube (NotFound if none)."""
        return self._core.job(await self._call(c.PeekReady()))

    async def peek_delayed(self) -> Job[T]:
        """The delayed job of the used tube that becomes ready first (NotFound if none)."""
        return self._core.job(await self._call(c.PeekDelayed()))

    async def peek_buried(self) -> Job[T]:
        """The job of the used tube buried longest ago (NotFound if none)."""
        return self._core.job(await self._call(c.PeekBuried()))

    async def kick(self, bound: int) -> int:
        """Move up to `bound` buried (else delayed) jobs of the used tube to ready."""
        return await self._call(c.Kick(bound))

    async def kick_job(self, job: Job[Any] | int) -> None:
        """Move one buried or delayed job to ready (NotFound if it is neither)."""
        await self._call(c.KickJob(job_id(job)))

    async def stats(self) -> Stats:
        """Server statistics, typed (see `Client.stats`)."""
        return await self._call(c.Stats())

    async def stats_tube(self, tube: str) -> StatsTube:
        """Statistics of one tube (NotFound if it does not exist)."""
        return await self._call(c.StatsTube(tube))

    async def stats_job(self, job: Job[Any] | int) -> StatsJob:
        """Statistics of one job (NotFound if it does not exist)."""
        return await self._call(c.StatsJob(job_id(job)))

    async def list_tubes(self) -> list[str]:
        """Every tube that exists on the server."""
        return await self._call(c.ListTubes())

    tubes = list_tubes

    async def using(self) -> str:
        """The used tube."""
        return await self._call(c.ListTubeUsed())

    async def watching(self) -> list[str]:
        """The watch list."""
        return await self._call(c.ListTubesWatched())

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from `tube` for `delay` seconds (0 ends a pause)."""
        await self._call(c.PauseTube(tube, delay))

    # ----------------------------------------------------------------- job tracking
    # Extension (tubeserver); see `Client.finish` and the methods after it.

    async def finish(self, job: Job[Any] | int, result: T | None = None) -> None:
        """Delete a job as `delete` does and keep `result` (None: empty) for wait_result."""
        cmd = c.Finish(job_id(job), self._core.encode_data(result))
        cmd.unwrap(await self._extension(cmd))

    async def fail(
        self, job: Job[Any] | int, reason: T | None, priority: int = DEFAULT_PRIORITY
    ) -> None:
        """Bury a job this connection reserved, keeping `reason` for wait_result."""
        cmd = c.Fail(job_id(job), priority, self._core.encode_data(reason))
        cmd.unwrap(await self._extension(cmd))

    async def wait_result(self, id: Job[Any] | int, timeout: int) -> T | None:
        """A job's result once it is finished, waiting up to `timeout` whole seconds;
        JobFailed, TimedOut or NotFound otherwise (see `Client.wait_result`)."""
        cmd = c.Result(job_id(id), timeout)
        return self._core.result(cmd, await self._extension(cmd, timeout))

    async def status(self, id: Job[Any] | int) -> JobStatus:
        """The status of a live or finished job (NotFound if unknown)."""
        cmd = c.JobStatus(job_id(id))
        return cmd.unwrap(await self._extension(cmd))

    async def checkpoint(self, job: Job[Any] | int, data: T | None) -> None:
        """Store `data` with a job this connection reserved and restart its TTR."""
        cmd = c.Checkpoint(job_id(job), self._core.encode_data(data))
        cmd.unwrap(await self._extension(cmd))

    async def peek_checkpoint(self, id: Job[Any] | int) -> T | None:
        """A job's checkpoint (None if empty); NotFound if it has none or no such job."""
        cmd = c.PeekCheckpoint(job_id(id))
        return self._core.checkpoint(cmd.unwrap(await self._extension(cmd)))

    # ----------------------------------------------------------------- flow control
    # Extension (tubeserver); see `Client.put_unique` and the methods after it.

    async def put_unique(
        self, body: T, key: str, window: int = 0, *, priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> Unique:
        """Store a job unless the used tube has one holding `key`: ``Unique(id, new)``."""
        cmd = self._core.put_unique(body, key, window, priority, delay, ttr)
        return cmd.unwrap(await self._extension(cmd))

    async def put_after(
        self, body: T, parents: Iterable[Job[Any] | int], *, priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY, ttr: int = DEFAULT_TTR,
    ) -> int:
        """Store a job that waits until every parent has finished; returns its id."""
        cmd = self._core.put_after(body, parents, priority, delay, ttr)
        return cmd.unwrap(await self._extension(cmd))

    async def schedule(
        self, name: str, tube: str, body: T, spec: str, *, priority: int = DEFAULT_PRIORITY,
        ttr: int = DEFAULT_TTR,
    ) -> None:
        """Create or replace the schedule `name` (cron or ``every N``; BadFormat if bad)."""
        cmd = self._core.schedule(name, tube, body, spec, priority, ttr)
        cmd.unwrap(await self._extension(cmd))

    async def unschedule(self, name: str) -> None:
        """Remove the schedule `name` (NotFound if there is none)."""
        cmd = c.Unschedule(name)
        cmd.unwrap(await self._extension(cmd))

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        cmd = c.ListSchedules()
        return cmd.unwrap(await self._extension(cmd))

    async def tube_limits(
        self, tube: str, max_reserved: int = 0, max_jobs: int = 0, rate: float = 0
    ) -> None:
        """Set `tube`'s limits (0: none; all three 0 removes them)."""
        cmd = c.TubeLimits(tube, max_reserved, max_jobs, rate)
        cmd.unwrap(await self._extension(cmd))

    async def list_tube_limits(self) -> list[TubeLimits]:
        """The limits of every tube that has some, by tube."""
        cmd = c.ListTubeLimits()
        return cmd.unwrap(await self._extension(cmd))

    # ----------------------------------------------------------------- admin
    # Extension (tubeserver); see `Client.list_jobs` and the methods after it.

    async def list_jobs(
        self, tube: str, state: str = "ready", offset: int = 0, limit: int = 100
    ) -> list[JobSummary]:
        """Up to `limit` jobs of `tube` in `state`, from the `offset`-th on (NotFound: no
        such tube)."""
        cmd = c.ListJobs(tube, state, offset, limit)
        return cmd.unwrap(await self._extension(cmd))

    async def clear_tube(self, tube: str, state: str) -> int:
        """Delete every job of `tube` in `state`; returns how many."""
        cmd = c.ClearTube(tube, state)
        return cmd.unwrap(await self._extension(cmd))

    async def kick_tube(self, tube: str, bound: int) -> int:
        """Kick up to `bound` buried (else delayed) jobs of `tube`; returns how many."""
        cmd = c.KickTube(tube, bound)
        return cmd.unwrap(await self._extension(cmd))

    async def tube_info(self, tube: str) -> TubeInfo:
        """`tube`'s jobs by state, oldest ready age, counters, pause and limits."""
        cmd = c.TubeInfo(tube)
        return cmd.unwrap(await self._extension(cmd))
