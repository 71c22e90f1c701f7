"""--stall-timeout: a connection that sent part of a line or of a body and then nothing is
closed, logged, counted, and its reserved jobs go back to ready; idle connections and ones
blocked in a reserve stay open however long. Real loopback sockets on both paths, a 0.3 s
timeout, and waits bounded by generous limits (no timing asserted beyond "closed by then")."""

from __future__ import annotations

import logging

import pytest
import trio
from caps_harness import PATHS, running
from test_hub import LIMIT, eventually

from tubeserver.caps import Caps

STALL = 0.3


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("partial", [b"put 0 0 60", b"put 0 0 60 10\r\nabc",
                                     b"put 0 0 60 100000\r\n" + b"x" * 1000, b"x" * 300])
async def test_a_connection_stalled_mid_command_is_closed(
        path: str, partial: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Part of a line; part of a body; part of a body too big to keep (being dropped); an
    over-long line being dropped."""
    caplog.set_level(logging.WARNING, logger="tubeserver")
    async with running(path, Caps(stall_timeout=STALL)) as r:
        holder, other = await r.connect(), await r.connect()
        assert await holder.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert await holder.cmd(b"reserve") == b"RESERVED 1 1\r\nx\r\n"
        await holder.send(partial)
        await holder.expect_eof()  # within LIMIT
        stats = await other.stats()
        assert (stats["connections-stalled"], stats["current-jobs-ready"]) == ("1", "1")
        lines = [rec.getMessage() for rec in caplog.records]
        assert sum("stalled mid-command" in line for line in lines) == 1, lines


async def test_idle_and_waiting_connections_are_never_closed(path: str) -> None:
    async with running(path, Caps(stall_timeout=STALL)) as r:
        idle = await r.connect()
        used = await r.connect()
        assert await used.cmd(b"list-tube-used") == b"USING default\r\n"
        waiter = await r.connect()
        await waiter.send(b"reserve\r\n")
        result = await r.connect()
        assert await result.cmd(b"use r") == b"USING r\r\n"
        assert await result.cmd(b"put 0 0 60 1\r\nr") == b"INSERTED 1\r\n"
        await result.send(b"result 1 60\r\n")  # blocked in `result` for the job
        other = await r.connect()
        await eventually(lambda: r.server.engine.tubes["default"].waiters, "the reserve")
        await eventually(lambda: r.server.engine.tracker.waiting, "the result")
        await trio.sleep(10 * STALL)
        stats = await other.stats()
        assert (stats["connections-stalled"], stats["current-connections"]) == ("0", "5")
        assert await idle.cmd(b"list-tube-used") == b"USING default\r\n"
        assert await used.cmd(b"list-tube-used") == b"USING default\r\n"
        assert await other.cmd(b"put 0 0 60 1\r\ny") == b"INSERTED 2\r\n"
        assert await waiter.reply() == b"RESERVED 2 1\r\ny\r\n"
        assert await other.cmd(b"delete 1") == b"DELETED\r\n"
        assert await result.reply() == b"RESULT 1 0\r\n"  # (and its empty data)


async def test_a_slow_sender_that_keeps_sending_is_not_closed(path: str) -> None:
    """The timeout runs from the last byte received, not from the command's start."""
    async with running(path, Caps(stall_timeout=STALL)) as r:
        slow = await r.connect()
        body = b"0123456789"
        await slow.send(b"put 0 0 60 %d\r\n" % len(body))
        for byte in body:
            await trio.sleep(STALL / 3)
            await slow.send(bytes([byte]))
        with trio.fail_after(LIMIT):
            assert await slow.cmd(b"") == b"INSERTED 1\r\n"
        assert (await slow.stats())["connections-stalled"] == "0"


async def test_no_stall_timeout_by_default(path: str) -> None:
    async with running(path) as r:
        stalled = await r.connect()
        await stalled.send(b"put 0 0 60 10\r\nabc")
        await trio.sleep(1.0)
        await stalled.send(b"defghij\r\n")
        assert await stalled.reply() == b"INSERTED 1\r\n"
