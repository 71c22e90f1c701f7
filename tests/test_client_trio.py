"""The trio client against a real tubeserver and a real beanstalkd on loopback.

The same ground as tests/test_client_sync.py (every method, bodies, pipelining, batches,
failures), awaited, plus what only an async client has: cancellation safety (a command
cancelled after it was sent closes the connection, and the server hands the job to someone
else), tasks sharing one client, `async with` and connect/aclose. Misbehaving servers are
small trio servers in the test's nursery. Real sockets need the real clock (no
autojump_clock: it would jump while waiting on the network); every wait is bounded by
trio.fail_after, and nothing asserts timings.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import procs
import pytest
import trio
import tubeclient
from tubeclient import (
    BatchError,
    ConnectFailed,
    ConnectionClosed,
    DeadlineSoon,
    DecodeError,
    ExtensionNotSupported,
    IOTimeout,
    Job,
    NotFound,
    NotIgnored,
    PutOptions,
    TimedOut,
    TrioClient,
    UnexpectedReply,
)

SERVER_KINDS = ("tubeserver", "beanstalkd")
IO = 10.0
_tubes = itertools.count(1)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[procs.RunningServer]:
    with procs.server(server_kind) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


@pytest.fixture
def tube(request: pytest.FixtureRequest) -> str:
    return f"{request.node.originalname[:60]}.{next(_tubes)}"


def client(srv: procs.RunningServer, **kw: Any) -> TrioClient[Any]:
    kw.setdefault("io_timeout", IO)
    kw.setdefault("connect_timeout", IO)
    c: TrioClient[Any] = TrioClient(srv.addr, **kw)
    return c


@contextlib.asynccontextmanager
async def scripted_server(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[tuple[str, int]]:
    """A trio TCP server on loopback running `handler` for each connection."""
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        host, port = listeners[0].socket.getsockname()[:2]
        yield (host, port)
        nursery.cancel_scope.cancel()


def replying(reply: bytes, *, close: bool) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def handler(stream: trio.SocketStream) -> None:
        with trio.move_on_after(IO):
            await stream.receive_some(65536)
            if reply:
                await stream.send_all(reply)
            if not close:
                while await stream.receive_some(65536):
                    pass
        await stream.aclose()

    return handler


# --------------------------------------------------------------------------- every method


async def test_every_method(server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(30):
        async with client(server, use=tube, watch=tube) as c:
            assert c.server == f"{server.host}:{server.port}"
            assert await c.using() == tube
            assert await c.watching() == [tube]
            assert tube in await c.list_tubes()
            assert await c.tubes() == await c.list_tubes()
            a = await c.put(b"a", priority=10)
            b = await c.put(b"b", priority=5, delay=100)
            assert await c.peek(a) == Job(a, b"a", c.server)
            assert (await c.peek_ready()).id == a
            assert await c.peek_delayed() == Job(b, b"b", c.server)
            with pytest.raises(NotFound):
                await c.peek_buried()

            job = await c.reserve(timeout=1)
            assert job == Job(a, b"a", c.server)
            await c.touch(job)
            await c.release(job, priority=7)
            stats = await c.stats_job(a)
            assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 7, 1)

            job = await c.reserve_job(a)
            await c.bury(job, priority=3)
            assert (await c.peek_buried()).id == a
            assert await c.kick(10) == 1
            await c.kick_job(b)
            assert (await c.stats_job(b))["state"] == "ready"
            assert (await c.stats_tube(tube))["current-jobs-ready"] == 2

            await c.pause_tube(tube, 100)
            assert (await c.stats_tube(tube))["pause"] == 100
            with pytest.raises(TimedOut):
                await c.reserve(timeout=0)
            await c.pause_tube(tube, 0)
            assert (await c.reserve()).id == a  # buried with priority 3, ahead of b's 5
            await c.release(a, priority=3)

            assert await c.watch("other-" + tube) == 2
            assert await c.ignore("other-" + tube) == 1
            with pytest.raises(NotIgnored):
                await c.ignore(tube)
            assert await c.use("default") == "default"

            await c.delete(a)
            await c.delete(Job(b, b"", c.server))
            with pytest.raises(NotFound):
                await c.delete(a)
            s = await c.stats()
            assert isinstance(s["rusage-stime"], float)
            assert isinstance(s["draining"], bool)
        assert c.closed
        with pytest.raises(ConnectionClosed):
            await c.stats()


async def test_connect_and_aclose_explicitly(server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        c = await TrioClient.connect(server.addr, use=tube, encoding="utf-8", io_timeout=IO)
        try:
            assert await c.using() == tube
            job_id = await c.put("café ✓")
            assert (await c.peek(job_id)).body == "café ✓"
            await c.delete(job_id)
        finally:
            await c.aclose()
        assert c.closed
        await c.aclose()  # idempotent


async def test_bodies(server: procs.RunningServer, tube: str) -> None:
    value = {"a": [1, 2], "b": b"\r\n", "c": None}
    with trio.fail_after(IO):
        async with client(server, use=tube, watch=tube) as raw, \
                client(server, use=tube, watch=tube, serializer="msgpack") as mp:
            for body in [b"", b"\r\n", bytes(range(256)), b"x" * 65535]:
                job_id = await raw.put(body)
                assert (await raw.reserve(timeout=1)) == Job(job_id, body, raw.server)
                await raw.delete(job_id)
            await mp.put(value)
            job = await mp.reserve(timeout=1)
            assert job.body == value
            await mp.delete(job)


async def test_undecodable_body(server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with client(server, use=tube) as producer, \
                client(server, watch=tube, encoding="utf-8") as consumer:
            job_id = await producer.put(b"\xff")
            with pytest.raises(DecodeError) as info:
                await consumer.reserve(timeout=1)
            await consumer.delete(info.value.job)
            with pytest.raises(NotFound):
                await producer.peek(job_id)


async def test_put_many_delete_many(server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with client(server, use=tube, watch=tube) as c:
            ids = await c.put_many([b"a", (b"b", PutOptions(delay=60)), b"c"])
            assert (await c.stats_job(ids[1]))["state"] == "delayed"
            many = await c.put_many([b"%d" % i for i in range(1500)])
            assert many == sorted(many)
            with pytest.raises(BatchError) as info:
                await c.delete_many([*ids, 2**40, *many])
            assert [i for i, _ in info.value.errors] == [3]
            assert (await c.stats_tube(tube))["current-jobs-ready"] == 0
            assert await c.using() == tube


async def test_deadline_soon(server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with client(server, use=tube, watch=tube) as c:
            await c.put(b"short", ttr=1)
            job = await c.reserve(timeout=1)
            with pytest.raises(DeadlineSoon):
                await c.reserve(timeout=2)
            await c.delete(job)


async def test_unix_socket_tubeserver(tmp_path: Path) -> None:
    path = str(tmp_path / "t.sock")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tubeserver", "--listen", f"unix:{path}"]
    )
    try:
        with trio.fail_after(IO):
            while True:  # bounded by fail_after
                try:
                    c: TrioClient[bytes] = await TrioClient.connect(path, io_timeout=IO)
                    break
                except ConnectFailed:
                    await trio.sleep(0.02)
            async with c:
                job_id = await c.put(b"unix")
                assert await c.reserve(timeout=1) == Job(job_id, b"unix", path)
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


# --------------------------------------------------------------------------- concurrency


async def test_tasks_share_a_client(server: procs.RunningServer, tube: str) -> None:
    ids: list[int] = []
    with trio.fail_after(IO):
        async with client(server, use=tube) as c:

            async def producer(n: int) -> None:
                for i in range(10):
                    ids.append(await c.put(b"%d-%d" % (n, i)))

            async with trio.open_nursery() as nursery:
                for n in range(10):
                    nursery.start_soon(producer, n)
            assert len(set(ids)) == 100
            assert (await c.stats_tube(tube))["current-jobs-ready"] == 100
            await c.delete_many(ids)


async def test_cancelled_reserve_closes_the_connection_and_loses_no_job(
    server: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with client(server, watch=tube) as waiter, \
                client(server, use=tube, watch=tube) as other:
            with trio.move_on_after(0.2):
                await waiter.reserve()  # blocks: the tube is empty
            assert waiter.closed  # its reply could still come: the connection was dropped
            with pytest.raises(ConnectionClosed):
                await waiter.put(b"x")
            # The server forgot the dead waiter: a new job goes to a live connection.
            job_id = await other.put(b"for the living")
            job = await other.reserve(timeout=5)
            assert job.id == job_id
            await other.delete(job)


async def test_cancelled_after_reserving_returns_the_job(
    server: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with client(server, use=tube, watch=tube) as c, \
                client(server, watch=tube) as other:
            job_id = await c.put(b"held")
            held = await other.reserve(timeout=1)
            assert held.id == job_id
            await other.aclose()  # closing releases the reservation at once
            job = await c.reserve(timeout=5)
            assert job.id == job_id
            await c.delete(job)


# --------------------------------------------------------------------------- reserve-batch


async def test_reserve_batch_probe(
    server: procs.RunningServer, server_kind: str, tube: str
) -> None:
    with trio.fail_after(IO):
        async with client(server, use=tube, watch=tube) as c:
            await c.put(b"one")
            try:
                jobs = await c.reserve_batch(4, 0)
            except ExtensionNotSupported:
                with pytest.raises(ExtensionNotSupported):
                    await c.reserve_batch(4, 0)
                job = await c.reserve(timeout=1)
            else:
                assert server_kind == "tubeserver", "beanstalkd has no reserve-batch"
                (job,) = jobs
            assert job.body == b"one"
            await c.delete(job)


@pytest.fixture(scope="module")
def batch_server() -> Iterator[procs.RunningServer]:
    """A tubeserver for the live batch tests, skipped (only) while it lacks the extension.
    The probe uses the sync client: a skip from a sync fixture keeps its reason."""
    with procs.tubeserver() as srv:
        with tubeclient.Client(srv.addr, watch="batch-probe", io_timeout=IO) as probe:
            try:
                probe.reserve_batch(1, 0)
            except ExtensionNotSupported:
                pytest.skip("server does not support reserve-batch yet")
        yield srv


async def test_reserve_batch_live(batch_server: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with client(batch_server, use=tube, watch=tube) as c:
            assert await c.reserve_batch(2, 0) == []
            ids = await c.put_many([b"a", b"b", b"c"])
            got: list[Job[bytes]] = []
            for _ in range(3):
                got += await c.reserve_batch(3, 1)
                if len(got) == 3:
                    break
            assert sorted(j.id for j in got) == ids
            await c.delete_many(got)


async def test_reserved_batch_over_a_socket() -> None:
    reply = b"RESERVED-BATCH 2\r\nRESERVED 7 2\r\n\r\n\r\nRESERVED 9 1\r\nx\r\n"
    with trio.fail_after(IO):
        async with scripted_server(replying(reply, close=False)) as addr:
            async with TrioClient(addr, io_timeout=IO) as c:
                jobs = await c.reserve_batch(2, 0)
            name = f"{addr[0]}:{addr[1]}"
            assert jobs == [Job(7, b"\r\n", name), Job(9, b"x", name)]


# --------------------------------------------------------------------------- failures


async def test_connect_refused() -> None:
    with trio.fail_after(IO):
        with pytest.raises(ConnectFailed):
            await TrioClient.connect(("127.0.0.1", procs.free_port()))
        with pytest.raises(ConnectFailed):
            async with TrioClient("/nonexistent/tube.sock"):
                pass  # pragma: no cover


async def test_silent_server_io_timeout() -> None:
    with trio.fail_after(IO):
        async with scripted_server(replying(b"", close=False)) as addr:
            c: TrioClient[bytes] = await TrioClient.connect(addr, io_timeout=0.2)
            with pytest.raises(IOTimeout):
                await c.reserve(timeout=0)
            assert c.closed
            with pytest.raises(ConnectionClosed):
                await c.stats()


async def test_reply_cut_off_and_garbage() -> None:
    with trio.fail_after(IO):
        async with scripted_server(replying(b"FOUND 1 10\r\nab", close=True)) as addr:
            async with TrioClient(addr, io_timeout=IO) as c:
                with pytest.raises(ConnectionClosed):
                    await c.peek(1)
                assert c.closed
        async with scripted_server(replying(b"NOPE\r\n", close=False)) as addr:
            async with TrioClient(addr, io_timeout=IO) as c:
                with pytest.raises(UnexpectedReply):
                    await c.stats()
                assert c.closed


async def test_bad_arguments_do_not_touch_the_connection(server: procs.RunningServer) -> None:
    with trio.fail_after(IO):
        async with client(server) as c:
            with pytest.raises(ValueError):
                await c.watch("no spaces allowed")
            with pytest.raises(ValueError):
                await c.release(1, priority=2**32)
            assert await c.using() == "default"
    with pytest.raises(ValueError):
        TrioClient(server.addr, encoding="utf-8", serializer="msgpack")  # type: ignore[call-overload]
    assert tubeclient.TrioClient is TrioClient
