"""Several servers from one blocking client: a producer pool and a consumer pool.

Servers know nothing of each other (as with beanstalkd): distribution is the client's job.

`ProducerPool` puts each job on one server chosen by a `Balancer` strategy (round robin or
random with failover, or rendezvous hashing on a key without failover) and returns a `Job`
that names that server. `ConsumerPool` keeps one connection per server and reserves from all
of them in turn: a round of non-blocking ``reserve-with-timeout 0`` over every server, then a
short blocking reserve (`wait` seconds) on one server, rotating, so a busy server cannot
starve the others and an idle one does not block the rest for long. Each job is finished
(delete/release/bury/touch, and the tracking extension's finish/fail/checkpoint) on the
connection that reserved it, found by `Job.server`.

What a pool does not promise, plainly:

* no ordering or priority across servers: priorities order jobs within one server only;
* no exactly-once delivery: a put that times out after the server stored it is retried on
  another server and the job then exists twice (at-least-once; make jobs idempotent);
* job ids are unique per server only: a job is identified by (`Job.server`, `Job.id`);
* no replication: the jobs of a stopped server wait for that server to come back;
* when a consumer connection is lost, the jobs it had reserved go back to ready on their
  server; finishing such a job then fails (release/bury/touch raise NotFound or
  ConnectionClosed) or, for delete of a job that is ready again, still deletes it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from ssl import SSLContext
from typing import Any, Generic, Literal, TypedDict, TypeVar, Unpack, overload

from .balance import DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, Backoff, Balancer, Strategy
from .balance import check_addresses as _check_addresses
from .bodies import Serializer, resolve
from .commands import check_tube
from .core import Access, check_timeout, watch_setup
from .errors import (
    ConnectionClosed,
    Draining,
    InternalError,
    NoServerAvailable,
    OutOfMemory,
    TimedOut,
    UnexpectedReply,
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
from .sync import Client

T = TypeVar("T")
R = TypeVar("R")

# Errors after which a producer pool tries the next server. JOB_TOO_BIG, BAD_FORMAT and the
# like are the caller's problem and would fail everywhere: they are raised at once.
FAILOVER_ERRORS: tuple[type[Exception], ...] = (
    ConnectionClosed, UnexpectedReply, Draining, OutOfMemory, InternalError,
)
# Errors after which the connection itself is gone (the client has closed it already).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (ConnectionClosed, UnexpectedReply)
DEFAULT_WAIT = 1


class ProducerOptions(TypedDict, total=False):
    """Keyword options of the producer pools (see `ProducerPool`)."""

    strategy: Strategy
    use: str
    connect_timeout: float | None
    io_timeout: float | None
    backoff: float
    max_backoff: float
    seed: int | None
    ssl: SSLContext | bool | None
    server_hostname: str | None
    token: str | None


class ConsumerOptions(TypedDict, total=False):
    """Keyword options of the consumer pools (see `ConsumerPool`)."""

    watch: str | Iterable[str]
    connect_timeout: float | None
    io_timeout: float | None
    backoff: float
    max_backoff: float
    seed: int | None
    ssl: SSLContext | bool | None
    server_hostname: str | None
    token: str | None
    wait: int


def check_wait(wait: int) -> int:
    """The blocking-reserve slice of a consumer pool: whole seconds, at least 1."""
    if isinstance(wait, bool) or not isinstance(wait, int) or wait < 1:
        raise ValueError(f"wait must be a whole number of seconds >= 1, not {wait!r}")
    return wait


def check_reserve_timeout(timeout: float | None) -> float | None:
    """A pool reserve timeout: None (forever) or seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
        timeout >= 0 and math.isfinite(timeout)
    ):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


class ProducerPool(Generic[T]):
    """Puts jobs on several servers.

    ``ProducerPool([("10.0.0.1", 11300), ("10.0.0.2", 11300)], strategy="round_robin")``.
    Strategies: ``"round_robin"`` (servers in turn) and ``"random"`` fail over to the next
    server on a connection error, an I/O timeout, DRAINING, OUT_OF_MEMORY or INTERNAL_ERROR;
    the failed server sits out a backoff window (`backoff` doubling up to `max_backoff`
    seconds, jittered) and is reconnected after it. ``"hash"`` sends ``put(body, key=k)``
    to the server that owns `k` (rendezvous hashing) and does not fail over: the error is
    raised. Connections open lazily, on first use of each server.

    Other arguments are those of `Client` (`encoding`, `serializer`, `use`, timeouts, `ssl`,
    `server_hostname`, `token`: every connection, reconnects too, gets TLS and the token);
    `seed` fixes the random choices (for tests). See the module docstring for what a pool
    does not promise: in short, at-least-once, no ordering across servers, ids per server.
    """

    @overload
    def __init__(
        self: ProducerPool[bytes], addresses: Sequence[Address], *, encoding: None = None,
        serializer: None = None, **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ProducerPool[str], addresses: Sequence[Address], *, encoding: str,
        serializer: None = None, **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ProducerPool[T], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Serializer[T], **options: Unpack[ProducerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ProducerPool[Any], addresses: Sequence[Address], *, encoding: None = None,
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
        self._clients: list[Client[T] | None] = [None] * len(self._addresses)
        self._closed = False

    @property
    def servers(self) -> list[str]:
        """The servers' names, as `Job.server` spells them."""
        return list(self._balancer.names)

    def _client(self, i: int) -> Client[T]:
        if self._closed:
            raise ConnectionClosed("the pool is closed")
        client = self._clients[i]
        if client is None or client.closed:
            self._clients[i] = None
            client = Client(
                self._addresses[i], serializer=self._serializer, use=self._use,
                connect_timeout=self._connect_timeout, io_timeout=self._io_timeout,
                ssl=self._access.tls, server_hostname=self._access.server_hostname,
                token=self._access.token,
            )
            self._clients[i] = client
        return client

    def put(
        self, body: T, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR, *, key: str | bytes | None = None,
    ) -> Job[T]:
        """Store a job on one server and return it as a Job naming that server.

        `key` is required with strategy "hash" and refused otherwise. With failover, every
        server is tried at most once; NoServerAvailable (with each server's error) is raised
        when none accepted. Errors that would fail on any server (JobTooBig, a bad argument)
        are raised at once.
        """
        order = self._balancer.order(time.monotonic(), key)
        errors: dict[str, BaseException] = {}
        for i in order:
            try:
                job_id = self._client(i).put(body, priority, delay, ttr)
            except FAILOVER_ERRORS as e:
                if isinstance(e, CONNECTION_ERRORS):
                    self._drop(i)
                self._balancer.failover(i, time.monotonic(), e, errors)
                continue
            self._balancer.succeeded(i)
            return Job(job_id, body, self._balancer.names[i])
        raise NoServerAvailable(errors)

    def _drop(self, i: int) -> None:
        client, self._clients[i] = self._clients[i], None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        for i in range(len(self._clients)):
            self._drop(i)

    def __enter__(self) -> ProducerPool[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ConsumerPool(Generic[T]):
    """Reserves jobs from several servers and finishes each on the connection that reserved it.

    ``ConsumerPool([a, b], watch="emails")``; then ``job = pool.reserve(timeout=5)``,
    ``pool.delete(job)``. One connection per server; `reserve` polls every server without
    waiting, then waits at most `wait` whole seconds on one server (rotating), and repeats
    until a job comes or `timeout` has passed. A job on a server other than the one being
    waited on is therefore picked up within about `wait` seconds. A server whose connection
    fails is skipped and reconnected after a backoff (`backoff` doubling up to
    `max_backoff`), while the others keep being served; `connect_timeout` bounds how long
    a reconnect attempt to an unreachable host may stall a round.

    Other arguments are those of `Client`. Not thread-safe: use one pool per thread. See
    the module docstring for what a pool does not promise.
    """

    @overload
    def __init__(
        self: ConsumerPool[bytes], addresses: Sequence[Address], *, encoding: None = None,
        serializer: None = None, **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ConsumerPool[str], addresses: Sequence[Address], *, encoding: str,
        serializer: None = None, **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ConsumerPool[T], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Serializer[T], **options: Unpack[ConsumerOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: ConsumerPool[Any], addresses: Sequence[Address], *, encoding: None = None,
        serializer: Literal["msgpack"], **options: Unpack[ConsumerOptions],
    ) -> None: ...
    def __init__(
        self,
        addresses: Sequence[Address],
        *,
        encoding: str | None = None,
        serializer: Serializer[Any] | str | None = None,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = DEFAULT_IO_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        seed: int | None = None,
        wait: int = DEFAULT_WAIT,
        ssl: SSLContext | bool | None = None,
        server_hostname: str | None = None,
        token: str | None = None,
    ) -> None:
        self._addresses = _check_addresses(addresses)
        self._names = [server_name(a) for a in self._addresses]
        self._index = {name: i for i, name in enumerate(self._names)}
        self._serializer: Serializer[T] = resolve(encoding, serializer)
        self._watch = [watch] if isinstance(watch, str) else list(watch)
        watch_setup(DEFAULT_TUBE, self._watch)  # validate now, not at the first connect
        self._connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        self._io_timeout = check_timeout(io_timeout, "io_timeout")
        self._access = Access.check(ssl, server_hostname, token)
        self._wait = check_wait(wait)
        self._rng = random.Random(seed)
        self._health = [Backoff(backoff, max_backoff) for _ in self._addresses]
        self._clients: list[Client[T] | None] = [None] * len(self._addresses)
        self._poll_next = 0  # first server of the next polling round
        self._wait_next = 0  # server of the next blocking wait
        self._closed = False

    @property
    def servers(self) -> list[str]:
        """The servers' names, as `Job.server` spells them."""
        return list(self._names)

    @property
    def connected(self) -> list[str]:
        """The servers with an open connection right now."""
        return [n for n, c in zip(self._names, self._clients, strict=True) if c is not None]

    def _connected(self, i: int, now: float) -> Client[T] | None:
        """The open connection to server `i`, connecting if its backoff allows."""
        client = self._clients[i]
        if client is not None and not client.closed:
            return client
        self._clients[i] = None
        if not self._health[i].ready(now):
            return None
        try:
            client = Client(
                self._addresses[i], serializer=self._serializer, watch=self._watch,
                connect_timeout=self._connect_timeout, io_timeout=self._io_timeout,
                ssl=self._access.tls, server_hostname=self._access.server_hostname,
                token=self._access.token,
            )
        except CONNECTION_ERRORS:
            self._health[i].failed(time.monotonic(), self._rng)
            return None
        self._health[i].succeeded()
        self._clients[i] = client
        return client

    def _lost(self, i: int) -> None:
        client, self._clients[i] = self._clients[i], None
        if client is not None:
            client.close()
        self._health[i].failed(time.monotonic(), self._rng)

    def _try(self, i: int, client: Client[T], timeout: int) -> Job[T] | None:
        try:
            return client.reserve(timeout=timeout)
        except TimedOut:
            return None
        except CONNECTION_ERRORS:
            self._lost(i)
            return None

    def reserve(self, timeout: float | None = None) -> Job[T]:
        """Reserve a job from any server; TimedOut when none came within about `timeout`
        seconds (None: keep trying forever; 0: one round of polls).

        Each round polls every reachable server once, starting after the server that gave
        the previous job, then waits up to `wait` seconds on one server. The deadline is
        checked between rounds, so the call may return up to about a second late. Raises
        DeadlineSoon (from the server concerned) when a job this pool holds there is about
        to pass its TTR, and DecodeError as `Client.reserve` does (bury `error.job` through
        the pool). ConnectionClosed only when the pool is closed: unreachable servers are
        skipped.
        """
        limit = check_reserve_timeout(timeout)
        end = None if limit is None else time.monotonic() + limit
        n = len(self._names)
        while True:
            if self._closed:
                raise ConnectionClosed("the pool is closed")
            start = self._poll_next
            for k in range(n):
                i = (start + k) % n
                client = self._connected(i, time.monotonic())
                if client is not None and (job := self._try(i, client, 0)) is not None:
                    self._poll_next = (i + 1) % n
                    return job
            now = time.monotonic()
            left = None if end is None else end - now
            if left is not None and left <= 0:
                raise TimedOut()
            seconds = self._wait if left is None else min(self._wait, math.ceil(left))
            target = next(
                ((self._wait_next + k) % n for k in range(n)
                 if self._clients[(self._wait_next + k) % n] is not None),
                None,
            )
            if target is None:
                # Every server is down: sleep until one may be retried (bounded).
                retry = min(h.retry_at for h in self._health) - now
                pause = min(max(retry, 0.01), seconds)
                time.sleep(pause)
                continue
            self._wait_next = (target + 1) % n
            client = self._clients[target]
            assert client is not None
            if (job := self._try(target, client, seconds)) is not None:
                self._poll_next = (target + 1) % n
                return job

    def _owner(self, job: Job[Any]) -> Client[T]:
        if job.server is None or job.server not in self._index:
            raise ValueError(f"job {job.id} comes from {job.server!r}, not from this pool")
        client = self._clients[self._index[job.server]]
        if client is None or client.closed:
            raise ConnectionClosed(
                f"the connection to {job.server} that reserved job {job.id} was lost; the "
                "server has put the job back to ready"
            )
        return client

    def _finish(self, job: Job[Any], action: Callable[[Client[T]], R]) -> R:
        client = self._owner(job)
        try:
            return action(client)
        except CONNECTION_ERRORS:
            self._lost(self._index[client.server])
            raise

    def delete(self, job: Job[Any]) -> None:
        """Delete a job this pool reserved, on its server's connection."""
        self._finish(job, lambda c: c.delete(job.id))

    def release(
        self, job: Job[Any], priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY
    ) -> None:
        """Release a job this pool reserved, on its server's connection."""
        self._finish(job, lambda c: c.release(job.id, priority, delay))

    def bury(self, job: Job[Any], priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a job this pool reserved, on its server's connection."""
        self._finish(job, lambda c: c.bury(job.id, priority))

    def touch(self, job: Job[Any]) -> None:
        """Restart the TTR of a job this pool reserved, on its server's connection."""
        self._finish(job, lambda c: c.touch(job.id))

    def finish(self, job: Job[Any], result: T | None = None) -> None:
        """Extension: finish a job this pool reserved with `result`, on its server's
        connection (see `Client.finish`)."""
        self._finish(job, lambda c: c.finish(job.id, result))

    def fail(self, job: Job[Any], reason: T | None, priority: int = DEFAULT_PRIORITY) -> None:
        """Extension: bury a job this pool reserved, keeping `reason` (see `Client.fail`)."""
        self._finish(job, lambda c: c.fail(job.id, reason, priority))

    def checkpoint(self, job: Job[Any], data: T | None) -> None:
        """Extension: store a checkpoint with a job this pool reserved and restart its TTR."""
        self._finish(job, lambda c: c.checkpoint(job.id, data))

    def peek_checkpoint(self, job: Job[Any]) -> T | None:
        """Extension: the checkpoint of a job this pool reserved, read on its server's
        connection, to resume from it (NotFound if it has none)."""
        return self._finish(job, lambda c: c.peek_checkpoint(job.id))

    def close(self) -> None:
        """Close every connection (idempotent); reserved jobs go back to ready."""
        self._closed = True
        for i, client in enumerate(self._clients):
            self._clients[i] = None
            if client is not None:
                client.close()

    def __enter__(self) -> ConsumerPool[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

