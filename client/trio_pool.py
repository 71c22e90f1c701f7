"""Several servers from trio: a producer pool and a consumer pool fed by reserver tasks.

`TrioProducerPool` is `ProducerPool` awaited: the same strategies, failover and backoff
(`balance.Balancer`); concurrent puts share one connection per server, opened lazily under a
per-server lock.

`TrioConsumerPool` runs, inside its own nursery, `per_server` reserver tasks for every
server. Each task owns one connection: it reserves (``reserve-with-timeout wait``), hands
the job to a consumer through an unbuffered memory channel, and reserves nothing else until
that job is finished through the pool (delete, release or bury; finish or fail with the
tracking extension). So every job is finished on the connection that reserved it, that
connection is idle when the finishing command comes (no wait behind a blocking reserve), and
at most `per_server` jobs per server are reserved at a time: one may be waiting in the
channel for a consumer while its TTR runs. A task whose connection fails reconnects with
jittered exponential backoff; the other servers keep feeding the channel. Leaving
``async with`` cancels the tasks: their connections close, and the server puts jobs that
were reserved but not finished back to ready.

The same non-promises as `tubeclient.pool`: no ordering or priority across servers,
at-least-once (never exactly-once), job ids unique per server only, no replication.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterable, Sequence
from ssl import SSLContext
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, Unpack, overload

import attrs
import trio

from .balance import DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, Backoff, Balancer, Strategy
from .balance import check_addresses as _check_addresses
from .bodies import Serializer, resolve
from .commands import check_tube
from .core import Access, check_timeout, watch_setup
from .errors import (
    ConnectionClosed,
    DeadlineSoon,
    DecodeError,
    NoServerAvailable,
    ServerError,
    TimedOut,
)
from .job import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DELAY,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    Address,
    Job,
    server_name,
)
from .pool import (
    CONNECTION_ERRORS,
    FAILOVER_ERRORS,
    ConsumerOptions,
    ProducerOptions,
    check_reserve_timeout,
    check_wait,
)
from .trio_client import TrioClient

T = TypeVar("T")
DEFAULT_TRIO_WAIT = 5
# A reserver task starts afresh on a new connection after these (INTERNAL_ERROR and the like
# included); anything else is a bug and propagates out of the pool.
RESERVER_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, ServerError)


class TrioProducerPool(Generic[T]):
    """Puts jobs on several servers, from trio tasks; see `tubeclient.ProducerPool`.

    ``async with TrioProducerPool([a, b], strategy="random") as pool:
    job = await pool.put(b"...")``. Connections open lazily; `aclose()` closes them.
    """

    @overload
    def __init__(
        self: TrioProducerPool[bytes], addresses: Sequence[Address], *,
        encoding: None = None, serializer: None = None, **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioProducerPool[str], addresses: Sequence[Address], *, encoding: str,
        serializer: None = None, **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioProducerPool[T], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Serializer[T], **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioProducerPool[Any], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Literal["msgpack"], **options: Unpack[ProducerOptions],
    ) -> None: ...
    def __init__(
        self,
        addresses: Sequence[Address],
        *,
        encoding: str | None = None,
        serializer: Serializer[Any] | str | None = None,
        strategy: Strategy = "round_robin",
        use: str = DEFAULT_TUBE,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = DEFAULT_IO_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        seed: int | None = None,
        ssl: SSLContext | bool | None = None,
        server_hostname: str | None = None,
        token: str | None = None,
    ) -> None:
        self._addresses = _check_addresses(addresses)
        self._serializer: Serializer[T] = resolve(encoding, serializer)
        self._use = check_tube(use)
        self._connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        self._io_timeout = check_timeout(io_timeout, "io_timeout")
        self._access = Access.check(ssl, server_hostname, token)
        self._balancer = Balancer(
            [server_name(a) for a in self._addresses], strategy, random.Random(seed),
            backoff=backoff, max_backoff=max_backoff,
        )
        self._clients: list[TrioClient[T] | None] = [None] * len(self._addresses)
        self._locks = [trio.Lock() for _ in self._addresses]
        self._closed = False

    @property
    def servers(self) -> list[str]:
        """The servers' names, as `Job.server` spells them."""
        return list(self._balancer.names)

    async def _client(self, i: int) -> TrioClient[T]:
        async with self._locks[i]:
            if self._closed:
                raise ConnectionClosed("the pool is closed")
            client = self._clients[i]
            if client is None or client.closed:
                self._clients[i] = None
                client = await TrioClient.connect(
                    self._addresses[i], serializer=self._serializer, use=self._use,
                    connect_timeout=self._connect_timeout, io_timeout=self._io_timeout,
                    ssl=self._access.tls, server_hostname=self._access.server_hostname,
                    token=self._access.token,
                )
                self._clients[i] = client
            return client

    async def put(
        self, body: T, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR, *, key: str | bytes | None = None,
    ) -> Job[T]:
        """Store a job on one server and return it as a Job naming that server (see
        `ProducerPool.put`: failover, NoServerAvailable, `key` for "hash")."""
        order = self._balancer.order(trio.current_time(), key)
        errors: dict[str, BaseException] = {}
        for i in order:
            try:
                job_id = await (await self._client(i)).put(body, priority, delay, ttr)
            except FAILOVER_ERRORS as e:
                if isinstance(e, CONNECTION_ERRORS):
                    await self._drop(i)
                self._balancer.failover(i, trio.current_time(), e, errors)
                continue
            self._balancer.succeeded(i)
            return Job(job_id, body, self._balancer.names[i])
        raise NoServerAvailable(errors)

    async def _drop(self, i: int) -> None:
        client, self._clients[i] = self._clients[i], None
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        for i in range(len(self._clients)):
            await self._drop(i)

    async def __aenter__(self) -> TrioProducerPool[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@attrs.define
class _Held:
    """A job handed to a consumer: the connection that reserved it, and the event its
    reserver task waits on until the job is finished."""

    client: TrioClient[Any]
    done: trio.Event = attrs.Factory(trio.Event)


class TrioConsumerPool(Generic[T]):
    """Reserves jobs from several servers with one task per connection (see the module
    docstring); finish every job through the pool.

    ::

        async with TrioConsumerPool([a, b], watch="emails") as pool:
            async for job in pool:
                ...
                await pool.delete(job)

    `per_server` connections (reserver tasks) per server bound how many jobs are reserved
    at once per server; `wait` is their ``reserve-with-timeout`` in whole seconds (a dead
    connection is noticed within `wait` + `io_timeout`). Other arguments are those of
    `TrioClient`.
    """

    @overload
    def __init__(
        self: TrioConsumerPool[bytes], addresses: Sequence[Address], *,
        encoding: None = None, serializer: None = None, per_server: int = 1,
        **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioConsumerPool[str], addresses: Sequence[Address], *, encoding: str,
        serializer: None = None, per_server: int = 1, **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioConsumerPool[T], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Serializer[T], per_server: int = 1, **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: TrioConsumerPool[Any], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Literal["msgpack"], per_server: int = 1,
        **options: Unpack[ConsumerOptions],
    ) -> None: ...
    def __init__(
        self,
        addresses: Sequence[Address],
        *,
        encoding: str | None = None,
        serializer: Serializer[Any] | str | None = None,
        per_server: int = 1,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = DEFAULT_IO_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        seed: int | None = None,
        wait: int = DEFAULT_TRIO_WAIT,
        ssl: SSLContext | bool | None = None,
        server_hostname: str | None = None,
        token: str | None = None,
    ) -> None:
        self._addresses = _check_addresses(addresses)
        self._names = [server_name(a) for a in self._addresses]
        self._serializer: Serializer[T] = resolve(encoding, serializer)
        if isinstance(per_server, bool) or not isinstance(per_server, int) or per_server < 1:
            raise ValueError(f"per_server must be an int >= 1, not {per_server!r}")
        self._per_server = per_server
        self._watch = [watch] if isinstance(watch, str) else list(watch)
        watch_setup(DEFAULT_TUBE, self._watch)  # validate now, not in the tasks
        self._connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        self._io_timeout = check_timeout(io_timeout, "io_timeout")
        self._access = Access.check(ssl, server_hostname, token)
        self._wait = check_wait(wait)
        self._backoff = (backoff, max_backoff)
        self._rng = random.Random(seed)
        self._held: dict[tuple[str, int], _Held] = {}
        self._connected: dict[int, int] = {}  # server index -> open reserver connections
        send, receive = trio.open_memory_channel[Job[T] | DecodeError](0)
        self._send, self._receive = send, receive
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._entered = False

    @property
    def servers(self) -> list[str]:
        """The servers' names, as `Job.server` spells them."""
        return list(self._names)

    @property
    def connected(self) -> list[str]:
        """The servers with at least one open reserver connection right now."""
        return [self._names[i] for i, n in sorted(self._connected.items()) if n > 0]

    async def __aenter__(self) -> TrioConsumerPool[T]:
        if self._entered:
            raise RuntimeError("a TrioConsumerPool can be entered only once")
        self._entered = True
        stack = contextlib.AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack, self._nursery = stack, nursery
        for i in range(len(self._addresses)):
            for _ in range(self._per_server):
                nursery.start_soon(self._reserver, i)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._nursery is not None and self._stack is not None
        self._nursery.cancel_scope.cancel()
        self._receive.close()
        try:
            return bool(await self._stack.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            # The nursery wraps an exception from the `async with` body; give it back as
            # it was. A group holding anything else (a reserver task's bug) propagates.
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False
            raise
        finally:
            self._send.close()

    # ----------------------------------------------------------------- reserver tasks

    async def _reserver(self, i: int) -> None:
        backoff = Backoff(*self._backoff)
        while True:
            try:
                client = await TrioClient.connect(
                    self._addresses[i], serializer=self._serializer, watch=self._watch,
                    connect_timeout=self._connect_timeout, io_timeout=self._io_timeout,
                    ssl=self._access.tls, server_hostname=self._access.server_hostname,
                    token=self._access.token,
                )
            except CONNECTION_ERRORS:
                await trio.sleep(backoff.failed(trio.current_time(), self._rng))
                continue
            backoff.succeeded()
            self._connected[i] = self._connected.get(i, 0) + 1
            try:
                await self._serve(client)
                return  # the pool is closing
            except RESERVER_ERRORS:
                pass
            finally:
                self._connected[i] -= 1
                await client.aclose()
            await trio.sleep(backoff.failed(trio.current_time(), self._rng))

    async def _serve(self, client: TrioClient[T]) -> None:
        while True:
            item: Job[T] | DecodeError
            try:
                item = await client.reserve(timeout=self._wait)
            except TimedOut:
                continue
            except DeadlineSoon:  # only if a finished job's reply raced; wait it out
                await trio.sleep(1)
                continue
            except DecodeError as e:
                item = e
            job = item.job if isinstance(item, DecodeError) else item
            held = _Held(client)
            self._held[(client.server, job.id)] = held
            try:
                await self._send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._held.pop((client.server, job.id), None)
                return
            await held.done.wait()

    # ----------------------------------------------------------------- consumers

    async def reserve(self, timeout: float | None = None) -> Job[T]:
        """The next job from any server; TimedOut after `timeout` seconds (None: wait as long
        as it takes). At most `per_server` jobs per server are out at once: finish jobs
        (delete, release, bury, finish, fail) to receive more. Raises DecodeError for a body the
        serializer rejects (finish `error.job` through the pool, e.g. bury it) and
        ConnectionClosed once the pool is closed."""
        limit = check_reserve_timeout(timeout)
        if self._nursery is None:
            raise RuntimeError("use `async with TrioConsumerPool(...) as pool:` first")
        with trio.move_on_after(math.inf if limit is None else limit):
            try:
                item = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ConnectionClosed("the pool is closed") from None
            if isinstance(item, DecodeError):
                raise item
            return item
        raise TimedOut()

    def __aiter__(self) -> TrioConsumerPool[T]:
        return self

    async def __anext__(self) -> Job[T]:
        try:
            return await self.reserve()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    def _take(self, job: Job[Any], finish: bool) -> _Held:
        key = (job.server or "", job.id)
        held = self._held.pop(key, None) if finish else self._held.get(key)
        if held is None:
            raise ValueError(
                f"job {job.id} from {job.server!r} is not held by this pool (never handed "
                "out, or already finished)"
            )
        return held

    async def delete(self, job: Job[Any]) -> None:
        """Delete a job the pool handed out (on the connection that reserved it); its
        reserver task then reserves the next one, whatever the outcome."""
        held = self._take(job, finish=True)
        try:
            await held.client.delete(job.id)
        finally:
            held.done.set()

    async def release(
        self, job: Job[Any], priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY
    ) -> None:
        """Release a job the pool handed out, on the connection that reserved it."""
        held = self._take(job, finish=True)
        try:
            await held.client.release(job.id, priority, delay)
        finally:
            held.done.set()

    async def bury(self, job: Job[Any], priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a job the pool handed out, on the connection that reserved it."""
        held = self._take(job, finish=True)
        try:
            await held.client.bury(job.id, priority)
        finally:
            held.done.set()

    async def touch(self, job: Job[Any]) -> None:
        """Restart the TTR of a job the pool handed out (it stays held)."""
        await self._take(job, finish=False).client.touch(job.id)

    async def finish(self, job: Job[Any], result: T | None = None) -> None:
        """Extension: finish a job the pool handed out with `result`, on the connection
        that reserved it (see `Client.finish`)."""
        held = self._take(job, finish=True)
        try:
            await held.client.finish(job.id, result)
        finally:
            held.done.set()

    async def fail(
        self, job: Job[Any], reason: T | None, priority: int = DEFAULT_PRIORITY
    ) -> None:
        """Extension: bury a job the pool handed out, keeping `reason` (see `Client.fail`)."""
        held = self._take(job, finish=True)
        try:
            await held.client.fail(job.id, reason, priority)
        finally:
            held.done.set()

    async def checkpoint(self, job: Job[Any], data: T | None) -> None:
        """Extension: store a checkpoint with a job the pool handed out (it stays held)."""
        await self._take(job, finish=False).client.checkpoint(job.id, data)

    async def peek_checkpoint(self, job: Job[Any]) -> T | None:
        """Extension: the checkpoint of a job the pool handed out (NotFound if none)."""
        return await self._take(job, finish=False).client.peek_checkpoint(job.id)
