"""The epoll hub on real loopback and UNIX sockets, in-process: what only real sockets show.

The protocol over the hub is the business of the differential, real-client, CLI and WAL
process tests (they all talk to a `python -m tubeserver` process); here: backpressure against
a client that does not read, hang-ups and resets, quit, a failed commit and durable replies,
wakeups from the ticker rousing a parked hub, a UNIX listener, a burst of connects, and
shutdown. Real sockets need real time: every wait here is bounded and short.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tubeserver.connection import SEND_HIGH_WATER
from tubeserver.hub import ACCEPT_RETRY, Hub, trio_epoll_fd
from tubeserver.invariants import check_invariants
from tubeserver.rounds import Client as HubClient
from tubeserver.server import Config, Server, serve

MIB = 1 << 20
LIMIT = 10.0  # seconds any one reply may take
FRAMED = (b"RESERVED", b"FOUND", b"OK")


class Conn:
    """A protocol client on one real socket stream; reads one framed reply at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> bytes:
        with trio.fail_after(LIMIT):
            while (end := self._buf.find(b"\r\n")) < 0:
                await self._fill()
            word, *args = bytes(self._buf[:end]).split(b" ")
            total = end + 2 + (int(args[-1]) + 2 if word in FRAMED else 0)
            while len(self._buf) < total:
                await self._fill()
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            return frame

    async def cmd(self, line: bytes) -> bytes:
        await self.send(line + b"\r\n")
        return await self.reply()

    async def stats(self, command: bytes = b"stats") -> dict[str, str]:
        frame = await self.cmd(command)
        assert frame.startswith(b"OK "), frame
        pairs = (line.partition(": ") for line in frame.decode().splitlines()[2:])
        return {key: value.strip('"') for key, _, value in pairs}

    async def expect_eof(self) -> None:
        with trio.fail_after(LIMIT):
            while data := await self.stream.receive_some(1 << 16):
                self._buf += data
        assert not self._buf, bytes(self._buf)

    async def _fill(self) -> None:
        data = await self.stream.receive_some(1 << 16)
        if not data:
            raise EOFError(f"connection closed; unparsed bytes {bytes(self._buf)!r}")
        self._buf += data


@attrs.define
class Running:
    server: Server
    hub: Hub
    listener: trio.SocketListener
    cancel: trio.CancelScope

    async def connect(self) -> Conn:
        addr = self.listener.socket.getsockname()
        if isinstance(addr, str):
            stream = await trio.open_unix_socket(addr)
        else:
            stream = await trio.open_tcp_stream(*addr[:2])
        return Conn(stream)

    def client(self, conn: Conn) -> HubClient:
        """The hub's record of `conn`."""
        mine = conn.stream.socket.getsockname()
        peer = f"{mine[0]}:{mine[1]}"
        (found,) = [c for c in self.hub._rounds.clients.values() if c.peer == peer]
        return found


@asynccontextmanager
async def running(listener: trio.SocketListener | None = None, *,
                  wal_dir: Path | None = None, fsync_ms: int | None = None
                  ) -> AsyncIterator[Running]:
    server = Server(2 * MIB)
    if wal_dir is not None:
        server.open_wal(Config("127.0.0.1", 0, 2 * MIB, wal_dir=str(wal_dir),
                               fsync_ms=fsync_ms))
    if listener is None:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    hub = Hub(server, [listener])
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run_ticker)
            if server.wal is not None and server.wal.fsync_ms is not None:
                nursery.start_soon(server.run_syncer)
            nursery.start_soon(hub.run)
            yield Running(server, hub, listener, nursery.cancel_scope)
            nursery.cancel_scope.cancel()
        check_invariants(server.engine)
        assert not server.conns and not server.engine.sessions
    finally:
        await trio.aclose_forcefully(listener)
        server.close_wal()


async def eventually(condition: Callable[[], object], what: str) -> None:
    with trio.move_on_after(LIMIT):
        while not condition():
            await trio.sleep(0.01)
        return
    pytest.fail(f"not within {LIMIT} s: {what}")


# --------------------------------------------------------------------------- backpressure


async def test_a_client_that_does_not_read_is_neither_parsed_nor_buffered_without_bound() -> None:
    async with running() as r:
        setup = await r.connect()
        body = bytes(MIB)
        assert await setup.cmd(b"put 0 0 60 %d\r\n%b" % (len(body), body)) == b"INSERTED 1\r\n"
        slow = await r.connect()
        count = 40  # 40 MiB of replies if the server ran them all
        await slow.send(b"peek 1\r\n" * count)
        await trio.sleep(0.3)
        hub_client = r.client(slow)
        assert hub_client.stalled
        assert len(hub_client.unsent) < SEND_HIGH_WATER + MIB
        peeks = int((await setup.stats())["cmd-peek"])
        assert peeks < count // 2, "commands ran whose replies could not be sent"
        # Meanwhile everyone else is served.
        assert await setup.cmd(b"list-tube-used") == b"USING default\r\n"
        for _ in range(count):
            assert await slow.reply() == b"FOUND 1 %d\r\n%b\r\n" % (len(body), body)
        assert (await setup.stats())["cmd-peek"] == str(count)


async def test_replies_of_a_large_pipelined_batch_arrive_whole_and_in_order() -> None:
    async with running() as r:
        conn = await r.connect()
        count = 5000
        await conn.send(b"".join(b"put %d 0 60 5\r\n%05d\r\n" % (i, i) for i in range(count)))
        await conn.send(b"".join(b"peek %d\r\n" % (i + 1) for i in range(count)))
        for i in range(count):
            assert await conn.reply() == b"INSERTED %d\r\n" % (i + 1)
        for i in range(count):
            assert await conn.reply() == b"FOUND %d 5\r\n%05d\r\n" % (i + 1, i)


# --------------------------------------------------------------------------- waits


async def test_input_after_a_blocking_reserve_waits_for_the_wakeup() -> None:
    async with running() as r:
        worker, producer = await r.connect(), await r.connect()
        await worker.send(b"reserve\r\nput 0 0 60 4\r\nmine\r\nlist-tube-used\r\n")
        await trio.sleep(0.1)
        assert (await producer.stats())["cmd-put"] == "0"
        assert await producer.cmd(b"put 0 0 60 6\r\ntheirs") == b"INSERTED 1\r\n"
        assert await worker.reply() == b"RESERVED 1 6\r\ntheirs\r\n"
        assert await worker.reply() == b"INSERTED 2\r\n"
        assert await worker.reply() == b"USING default\r\n"


async def test_a_wakeup_from_the_ticker_rouses_the_parked_hub() -> None:
    async with running() as r:
        waiter = await r.connect()
        t0 = trio.current_time()
        assert await waiter.cmd(b"reserve-with-timeout 1") == b"TIMED_OUT\r\n"
        assert 0.9 < trio.current_time() - t0 < 3


async def test_an_idle_hub_sleeps_in_its_own_epoll_and_still_lets_trio_run() -> None:
    """With nothing else for trio to run, the hub waits in its own epoll (a wakeup then costs
    one epoll_wait, not two and a trip through trio's scheduler). The client here is a
    thread, so trio is idle while it talks; its end reaches trio through trio's epoll, which
    the hub watches meanwhile."""
    assert trio_epoll_fd() is not None, "trio's internals moved: the hub always waits in trio"
    async with running() as r:
        addr = r.listener.socket.getsockname()

        def client() -> list[bytes]:
            replies = []
            with socket.create_connection(addr[:2], timeout=LIMIT) as sock:
                for _ in range(20):
                    sock.sendall(b"put 0 0 60 1\r\nx\r\n")
                    replies.append(sock.recv(64))
            return replies

        replies = await trio.to_thread.run_sync(client)
        assert all(reply.startswith(b"INSERTED") for reply in replies), replies
        assert r.hub.direct_wakeups > 0


async def test_hang_up_while_waiting_answers_timed_out_and_closes() -> None:
    async with running() as r:
        waiter, other = await r.connect(), await r.connect()
        await waiter.send(b"reserve\r\n")
        await eventually(lambda: r.server.engine.tubes["default"].waiters, "a waiter")
        await waiter.stream.send_eof()
        assert await waiter.reply() == b"TIMED_OUT\r\n"
        await waiter.expect_eof()
        assert await other.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert (await other.stats(b"stats-job 1"))["state"] == "ready"


# --------------------------------------------------------------------------- endings


async def test_quit_sends_the_earlier_replies_then_closes() -> None:
    async with running() as r:
        conn = await r.connect()
        await conn.send(b"put 0 0 60 1\r\nx\r\nquit\r\nlist-tube-used\r\n")
        assert await conn.reply() == b"INSERTED 1\r\n"
        await conn.expect_eof()
        await eventually(lambda: not r.server.conns, "the session gone")


async def test_a_reset_connection_gives_its_reserved_job_to_a_waiter() -> None:
    async with running() as r:
        holder, waiter = await r.connect(), await r.connect()
        assert await holder.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert await holder.cmd(b"reserve") == b"RESERVED 1 1\r\nx\r\n"
        await waiter.send(b"reserve\r\n")
        holder.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
        holder.stream.socket.close()  # RST, not FIN
        assert await waiter.reply() == b"RESERVED 1 1\r\nx\r\n"


async def test_shutdown_closes_every_client_and_returns_reserved_jobs() -> None:
    async with running() as r:
        holder, idle = await r.connect(), await r.connect()
        assert await holder.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert await holder.cmd(b"reserve") == b"RESERVED 1 1\r\nx\r\n"
        r.cancel.cancel()
    # running() checked that no session is left; the clients see the end.
    await holder.expect_eof()
    await idle.expect_eof()
    assert r.server.engine.jobs[1].state.name == "READY"


async def test_a_burst_of_connects_is_all_accepted_and_served() -> None:
    async with running() as r:
        conns = []
        async with trio.open_nursery() as nursery:
            async def one() -> None:
                conn = await r.connect()
                conns.append(conn)
                assert await conn.cmd(b"list-tube-used") == b"USING default\r\n"
            for _ in range(200):
                nursery.start_soon(one)
        assert (await conns[0].stats())["current-connections"] == "200"


async def test_accepting_pauses_when_descriptors_run_out() -> None:
    async with running() as r:
        await trio.testing.wait_all_tasks_blocked()  # the hub is listening
        ((fd, real),) = r.hub._listeners.items()
        calls = 0

        class Full:
            """The listener, once out of descriptors."""

            def accept(self) -> tuple[socket.socket, object]:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise OSError(errno.EMFILE, "Too many open files")
                return real.accept()

        r.hub._listeners[fd] = Full()  # type: ignore[assignment]
        try:
            t0 = trio.current_time()
            conn = await r.connect()
            assert await conn.cmd(b"list-tube-used") == b"USING default\r\n"
            assert trio.current_time() - t0 >= ACCEPT_RETRY * 0.9  # no busy retrying
            assert 2 <= calls <= 3
        finally:
            r.hub._listeners[fd] = real


# --------------------------------------------------------------------------- UNIX sockets


async def test_unix_socket_commands_sent_just_before_closing_still_run(tmp_path: Path) -> None:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(tmp_path / "s"))
    sock.listen(128)
    async with running(trio.SocketListener(sock)) as r:
        # A UNIX peer's close shows as EPOLLHUP while its last bytes are still unread.
        for i in range(20):
            gone = await r.connect()
            await gone.send(b"put 0 0 60 1\r\n%d\r\n" % (i % 10))
            await gone.stream.aclose()
        other = await r.connect()
        await eventually(lambda: len(r.server.conns) == 1, "the closed clients gone")
        assert (await other.stats())["total-jobs"] == "20"


# --------------------------------------------------------------------------- the log


async def test_a_failed_commit_turns_only_logged_replies_into_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(wal_dir=tmp_path) as r:
        async def fail(seq: int, whole_round: bool = False) -> bool:
            return False

        monkeypatch.setattr(r.server, "commit", fail)
        conn = await r.connect()
        await conn.send(b"put 0 0 60 1\r\nx\r\nlist-tube-used\r\nput 0 0 60 1\r\ny\r\n"
                        b"peek 1\r\n")
        assert await conn.reply() == b"INTERNAL_ERROR\r\n"
        assert await conn.reply() == b"USING default\r\n"
        assert await conn.reply() == b"INTERNAL_ERROR\r\n"
        assert await conn.reply() == b"FOUND 1 1\r\nx\r\n"


async def test_durable_replies_wait_for_their_fsync(tmp_path: Path) -> None:
    async with running(wal_dir=tmp_path, fsync_ms=0) as r:
        wal = r.server.wal
        assert wal is not None
        conns = [await r.connect() for _ in range(10)]

        async def producer(conn: Conn) -> None:
            for _ in range(20):
                reply = await conn.cmd(b"put 0 0 60 1\r\nx")
                job_id = int(reply.split()[1])
                assert wal.synced >= r.server.engine.jobs[job_id].seq

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(producer, conn)
        assert len(r.server.engine.jobs) == 200


async def test_with_f0_a_failed_fsync_fails_only_the_logged_replies_it_covered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(wal_dir=tmp_path, fsync_ms=0) as r:
        conn = await r.connect()
        assert await conn.cmd(b"put 0 0 60 2\r\nok") == b"INSERTED 1\r\n"
        assert r.server.wal is not None

        def broken(plan: object) -> None:
            raise OSError(errno.EIO, "injected")

        monkeypatch.setattr(r.server.wal, "run_sync", broken)
        await conn.send(b"put 0 0 60 2\r\nno\r\nlist-tube-used\r\npeek 1\r\n")
        assert await conn.reply() == b"INTERNAL_ERROR\r\n"
        assert await conn.reply() == b"USING default\r\n"
        assert await conn.reply() == b"FOUND 1 2\r\nok\r\n"
        assert await conn.cmd(b"delete 1") == b"INTERNAL_ERROR\r\n"


async def test_with_f0_a_pipelining_client_gets_every_reply_in_order(
        tmp_path: Path) -> None:
    """Puts pipelined faster than fsync rounds go: every reply, in order, each once its
    record is durable."""
    async with running(wal_dir=tmp_path, fsync_ms=0) as r:
        conn = await r.connect()
        count = 3000
        await conn.send(b"".join(b"put %d 0 60 5\r\n%05d\r\n" % (i, i) for i in range(count)))
        await conn.send(b"peek %d\r\n" % count)
        wal = r.server.wal
        assert wal is not None
        for i in range(count):
            assert await conn.reply() == b"INSERTED %d\r\n" % (i + 1)
            assert wal.synced >= r.server.engine.jobs[i + 1].seq
        assert await conn.reply() == b"FOUND %d 5\r\n%05d\r\n" % (count, count - 1)


async def test_without_epoll_the_server_serves_a_task_per_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not Linux: serve() falls back to trio's listeners and one Connection task each."""
    monkeypatch.delattr(select, "epoll")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, Config("127.0.0.1", 0, 65535))
        port = listeners[0].socket.getsockname()[1]
        conn = Conn(await trio.open_tcp_stream("127.0.0.1", port))
        assert await conn.cmd(b"put 0 0 60 2\r\nhi") == b"INSERTED 1\r\n"
        assert await conn.cmd(b"reserve") == b"RESERVED 1 2\r\nhi\r\n"
        nursery.cancel_scope.cancel()
