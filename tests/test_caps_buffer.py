"""--max-connection-buffer: a client that pipelines without reading is paused, and neither its
unparsed input nor its unsent replies grow past the cap, reserve-batch's whole-batch reply
included; others are served meanwhile, and it gets every reply in order once it reads. A
real flood on loopback, on both socket paths, measured by the server's own figures (what
/api/connections reports)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import procs
import pytest
import trio
from caps_harness import PATHS, Running, running
from test_http import with_http
from test_hub import LIMIT, Conn

from tubeserver.caps import Caps, buffer_floor
from tubeserver.engine import Engine
from tubeserver.invariants import check_invariants
from tubeserver.limits import FRAME_OVERHEAD

KIB = 1 << 10


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_reserve_batch_hands_out_no_more_than_its_byte_budget() -> None:
    e = Engine()
    s = e.connect()
    for _ in range(5):
        e.put(s, 0, 0, 60, bytes(1000), 0.0)
    e.batch_bytes = 2 * (1000 + FRAME_OVERHEAD)
    jobs = e.reserve_batch(s, 5, 0, 0.0)
    assert jobs is not None and [j.id for j in jobs] == [1, 2]
    e.batch_bytes = 10
    jobs = e.reserve_batch(s, 5, 0, 0.0)
    assert jobs is not None and [j.id for j in jobs] == [3], "at least one job"
    # A waiting batch reserver is served within the budget too.
    w = e.connect()
    assert e.reserve_batch(w, 3, None, 0.0) is None
    e.put(s, 0, 0, 60, bytes(1000), 0.0)
    (wakeup,) = e.drain_wakeups()
    assert wakeup.batch is not None and [j.id for j in wakeup.batch] == [4]
    check_invariants(e)


async def expect(conn: Conn, data: bytes) -> None:
    """The next len(data) bytes `conn` receives are `data` (many small replies at once)."""
    with trio.fail_after(LIMIT):
        while len(conn._buf) < len(data):
            await conn._fill()
    got = bytes(conn._buf[:len(data)])
    del conn._buf[:len(data)]
    assert got == data


async def sample(r: Running, cap: int, peaks: list[int], rounds: int, every: float) -> None:
    """Watch every connection's buffered bytes; each must stay within the cap."""
    for _ in range(rounds):
        for peer in r.peers():
            buffered_in, buffered_out = peer.buffered()
            assert buffered_in <= cap and buffered_out <= cap, (buffered_in, buffered_out)
            peaks[0] = max(peaks[0], buffered_in)
            peaks[1] = max(peaks[1], buffered_out)
        await trio.sleep(every)


async def test_a_flooding_client_is_paused_within_its_buffer_cap(path: str) -> None:
    size = 256 * KIB
    cap = buffer_floor(size)  # the tightest allowed: 640 KiB
    async with running(path, Caps(connection_buffer=cap), max_job_size=size) as r:
        setup = await r.connect()
        body = bytes(range(256)) * (size // 256)
        for i in range(1 + 8):  # job 1 to peek; 2-9 in "big" for a reserve-batch
            if i == 1:
                assert await setup.cmd(b"use big") == b"USING big\r\n"
            assert await setup.cmd(b"put 0 0 60 %d\r\n%b" % (size, body)) == (
                b"INSERTED %d\r\n" % (i + 1))
        flood = await r.connect()
        peeks = 40  # 10 MiB of replies
        small = 200_000  # 3 MB of small replies, 3 MB of input
        script = (b"peek 1\r\n" * peeks + b"watch big\r\nignore default\r\nreserve-batch 8 0\r\n"
                  + b"list-tube-used\r\n" * small + b"peek 1\r\n" * 4)
        peaks = [0, 0]
        async with trio.open_nursery() as nursery:
            # It sends all of it and reads nothing (the send blocks when the server stops
            # reading it: the kernel's buffers fill).
            nursery.start_soon(flood.send, script)
            await sample(r, cap, peaks, 30, 0.01)
            # Everyone else is served meanwhile.
            other = await r.connect()
            with trio.fail_after(LIMIT):
                assert await other.cmd(b"list-tube-used") == b"USING default\r\n"
            assert peaks[1] >= 256 * KIB, "the flood never filled its output"
            assert int((await other.stats())["cmd-peek"]) < peeks, "it was not paused"
            # Now it reads: every reply, in order, while the cap still holds.
            for _ in range(peeks):
                assert await flood.reply() == b"FOUND 1 %d\r\n%b\r\n" % (size, body)
                await sample(r, cap, peaks, 1, 0)
            assert await flood.reply() == b"WATCHING 2\r\n"
            assert await flood.reply() == b"WATCHING 1\r\n"
            head = await flood.reply()
            assert head.startswith(b"RESERVED-BATCH ")
            count = int(head.split()[1])
            assert 1 <= count < 8, "the batch is cut to what fits in the buffer"
            for i in range(count):
                assert await flood.reply() == b"RESERVED %d %d\r\n%b\r\n" % (i + 2, size, body)
            for _ in range(small // 10_000):
                await expect(flood, b"USING default\r\n" * 10_000)
                await sample(r, cap, peaks, 1, 0)
            for _ in range(4):
                assert await flood.reply() == b"FOUND 1 %d\r\n%b\r\n" % (size, body)
        stats = await other.stats()
        assert stats["cmd-peek"] == str(peeks + 4)
        assert stats["current-jobs-reserved"] == str(count)


async def test_a_connection_waiting_in_reserve_reads_no_more_than_its_cap(path: str) -> None:
    size = 65535
    cap = buffer_floor(size)
    async with running(path, Caps(connection_buffer=cap), max_job_size=size) as r:
        waiter = await r.connect()
        async with trio.open_nursery() as nursery:
            # Blocked in a reserve, it pipelines 4 MB more; the server reads it only to
            # notice a hang-up, up to the cap.
            nursery.start_soon(waiter.send, b"reserve\r\n" + b"list-tube-used\r\n" * 250_000)
            peaks = [0, 0]
            await sample(r, cap, peaks, 30, 0.01)
            assert peaks[0] > cap // 2, "its input was not read at all"
            producer = await r.connect()
            assert await producer.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
            assert await waiter.reply() == b"RESERVED 1 1\r\nx\r\n"
            for _ in range(25):
                await expect(waiter, b"USING default\r\n" * 10_000)
                await sample(r, cap, peaks, 1, 0)


def test_api_connections_reports_buffered_bytes(tmp_path: Path) -> None:
    with with_http(tmp_path) as (server, base), procs.Conn.tcp(server.port) as conn:
        conn.raw(b"put 0 0 60 10\r\nabc")  # a body still to come
        for _ in range(100):
            with urllib.request.urlopen(base + "/api/connections", timeout=5) as resp:
                (entry,) = json.load(resp)
            if entry["buffered-in"]:
                break
            time.sleep(0.02)
        assert (entry["buffered-in"], entry["buffered-out"]) == (3, 0)
