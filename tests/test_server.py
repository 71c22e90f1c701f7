"""Network-level tests of the trio server: timing, concurrency, pipelining, hang-ups, drain.

Most tests connect in-memory streams to `Server.handle` with the ticker running, under
pytest-trio's `autojump_clock`, so seconds of TTR, delay, pause and reserve timeout pass in
no wall time and every "at T" claim is exact. A few end-to-end tests at the bottom talk to a
real `python -m tubeserver` process over loopback TCP. Reply bytes themselves are the
differential tests' business; here the question is *when* and *to whom* replies arrive.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import attrs
import procs
import pytest
import trio
import trio.testing

from tubeserver import connection
from tubeserver.invariants import check_invariants
from tubeserver.server import Server

DEFAULT_MAX_JOB_SIZE = 65535
BIG_MAX_JOB_SIZE = 2 << 20  # 2 MiB, for the large-body tests
MIB = 1 << 20
# Virtual seconds a reply may take before the test fails (free under the autojump clock).
REPLY_LIMIT = 1000.0
# How close to an instant "not before T" / "by T" look (virtual seconds).
EPS = 0.001
FRAMED = (b"RESERVED", b"FOUND", b"OK")
WALL_LIMIT = 10.0  # real seconds any in-memory test may take before its server is stopped


# --------------------------------------------------------------------------- helpers


class Client:
    """A protocol client on one trio stream: send lines, read exactly one framed reply.

    Reads are cancel-safe: a read cancelled half-way keeps what arrived for the next one.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> None:
        data = await self.stream.receive_some(1 << 16)
        if not data:
            raise EOFError(f"connection closed; unparsed bytes {bytes(self._buf)!r}")
        self._buf += data

    async def reply(self, limit: float = REPLY_LIMIT) -> bytes:
        """One whole reply: its line, plus its body for RESERVED/FOUND/OK."""
        with trio.fail_after(limit):
            while (end := self._buf.find(b"\r\n")) < 0:
                await self._fill()
            word, *args = bytes(self._buf[:end]).split(b" ")
            total = end + 2
            if word in FRAMED:
                total += int(args[-1]) + 2
                while len(self._buf) < total:
                    await self._fill()
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            return frame

    async def cmd(self, line: str) -> bytes:
        await self.send(line.encode("ascii") + b"\r\n")
        return await self.reply()

    async def put(self, body: bytes = b"job", pri: int = 0, delay: int = 0,
                  ttr: int = 60) -> int:
        await self.send(b"put %d %d %d %d\r\n%b\r\n" % (pri, delay, ttr, len(body), body))
        reply = await self.reply()
        assert reply.startswith(b"INSERTED "), reply
        return int(reply.split()[1])

    async def reserve(self, command: str = "reserve") -> tuple[int, bytes]:
        return reserved(await self.cmd(command))

    async def yaml(self, command: str) -> dict[str, str]:
        return parse_yaml(await self.cmd(command))

    async def stats(self) -> dict[str, str]:
        return await self.yaml("stats")

    async def stats_job(self, job_id: int) -> dict[str, str]:
        return await self.yaml(f"stats-job {job_id}")

    async def half_close(self) -> None:
        assert isinstance(self.stream, trio.abc.HalfCloseableStream)
        await self.stream.send_eof()

    async def expect_eof(self) -> None:
        """The server closes this connection, sending nothing more."""
        with trio.fail_after(REPLY_LIMIT):
            while data := await self.stream.receive_some(1 << 16):
                self._buf += data
        assert not self._buf, bytes(self._buf)


def reserved(frame: bytes) -> tuple[int, bytes]:
    """(id, body) of a RESERVED reply; fails the test on any other reply."""
    head, _, rest = frame.partition(b"\r\n")
    word, job_id, size = head.split(b" ")
    assert word == b"RESERVED", frame
    assert rest == rest[: int(size)] + b"\r\n"
    return int(job_id), rest[:-2]


def parse_yaml(frame: bytes) -> dict[str, str]:
    """The flat `key: value` map of an OK stats reply (string quotes stripped)."""
    head, _, payload = frame.partition(b"\r\n")
    assert head.startswith(b"OK "), frame
    out: dict[str, str] = {}
    for line in payload.decode().splitlines()[1:]:
        key, _, value = line.partition(": ")
        out[key] = value.strip('"')
    return out


async def nothing_before(client: Client, when: float) -> None:
    """No reply reaches `client` before virtual time `when`."""
    with trio.move_on_at(when):
        got = await client.reply()
        pytest.fail(f"unexpected reply {got!r} at t={trio.current_time()} (< {when})")


async def reply_by(client: Client, when: float) -> bytes:
    """The next reply, which must arrive by virtual time `when`."""
    with trio.fail_at(when):
        return await client.reply()


async def reply_at(client: Client, when: float) -> bytes:
    """The next reply, which must arrive at virtual time `when`: not before, not after."""
    await nothing_before(client, when - EPS)
    return await reply_by(client, when + EPS)


@attrs.define
class Harness:
    """A Server with its ticker running in the test's nursery; `connect` adds a client."""

    server: Server
    nursery: trio.Nursery

    async def connect(self, *, lockstep: bool = False) -> Client:
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        client_end, server_end = pair()
        self.nursery.start_soon(self.server.handle, server_end)
        await trio.testing.wait_all_tasks_blocked()  # the session exists, in connect order
        return Client(client_end)

    async def settle(self) -> None:
        """Let every task run until all are blocked, without advancing the clock."""
        await trio.testing.wait_all_tasks_blocked()


async def _harness(nursery: trio.Nursery, max_job_size: int) -> AsyncIterator[Harness]:
    # pytest-trio only takes the clock from the test's own arguments: each test asks for
    # `autojump_clock`, and this guards against one that forgets.
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    server = Server(max_job_size)
    nursery.start_soon(server.run_ticker)
    # Virtual deadlines cannot stop a server task that spins without ever blocking (the
    # autojump clock never moves then): a wall-clock watchdog cancels the server's tasks,
    # after which the test's own virtual timeouts fire.
    token = trio.lowlevel.current_trio_token()
    bitten = threading.Event()

    def bite() -> None:
        bitten.set()
        nursery.cancel_scope.cancel()

    watchdog = threading.Timer(WALL_LIMIT, token.run_sync_soon, (bite,))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield Harness(server, nursery)
    finally:
        watchdog.cancel()
    assert not bitten.is_set(), f"the server was still busy after {WALL_LIMIT}s of wall time"
    await trio.testing.wait_all_tasks_blocked()
    check_invariants(server.engine)


@pytest.fixture
async def harness(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    async for h in _harness(nursery, DEFAULT_MAX_JOB_SIZE):
        yield h


@pytest.fixture
async def big_harness(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    async for h in _harness(nursery, BIG_MAX_JOB_SIZE):
        yield h


# --------------------------------------------------------------------------- reserve waits


async def test_blocked_reserve_is_woken_by_a_put_from_another_connection(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    await worker.send(b"reserve\r\n")
    t0 = trio.current_time()
    await nothing_before(worker, t0 + 100)
    assert (await producer.stats())["current-waiting"] == "1"

    job_id = await producer.put(b"hello")
    t1 = trio.current_time()
    assert reserved(await reply_by(worker, t1 + EPS)) == (job_id, b"hello")
    job = await producer.stats_job(job_id)
    assert (job["state"], job["reserves"]) == ("reserved", "1")
    assert (await producer.stats())["current-waiting"] == "0"


async def test_reserve_with_timeout_times_out_after_exactly_the_timeout(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, observer = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-with-timeout 5\r\n")
    t0 = trio.current_time()
    assert await reply_at(worker, t0 + 5) == b"TIMED_OUT\r\n"
    stats = await observer.stats()
    assert (stats["current-waiting"], stats["cmd-reserve-with-timeout"]) == ("0", "1")
    # The connection is still usable, and no second answer turns up later.
    assert await worker.cmd("list-tube-used") == b"USING default\r\n"
    await nothing_before(worker, trio.current_time() + 100)


async def test_reserve_with_timeout_zero_never_blocks(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker = await harness.connect()
    t0 = trio.current_time()
    assert await worker.cmd("reserve-with-timeout 0") == b"TIMED_OUT\r\n"
    job_id = await worker.put(b"x")
    assert await worker.reserve("reserve-with-timeout 0") == (job_id, b"x")
    assert trio.current_time() == t0


async def test_reserve_with_timeout_served_early_leaves_no_stray_timeout(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-with-timeout 10\r\n")
    t0 = trio.current_time()
    await trio.sleep(4)
    job_id = await producer.put()
    assert reserved(await reply_at(worker, t0 + 4))[0] == job_id
    # The stale 10-second timer fires into nothing: no TIMED_OUT, and a second wait
    # started now times out after its own 10 seconds, not at t0 + 10.
    await nothing_before(worker, t0 + 10 + 1)
    await worker.send(b"reserve-with-timeout 10\r\n")
    t1 = trio.current_time()
    assert await reply_at(worker, t1 + 10) == b"TIMED_OUT\r\n"


# --------------------------------------------------------------------------- TTR


async def test_ttr_expiry_hands_the_job_to_a_waiting_worker(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    slow, other = await harness.connect(), await harness.connect()
    job_id = await slow.put(b"work", ttr=3)
    assert await slow.reserve() == (job_id, b"work")
    t0 = trio.current_time()

    # Nobody sends anything from here on: only the ticker can bring the job back.
    await other.send(b"reserve\r\n")
    assert await reply_at(other, t0 + 3) == b"RESERVED %d 4\r\nwork\r\n" % job_id
    job = await other.stats_job(job_id)
    assert (job["state"], job["reserves"], job["timeouts"]) == ("reserved", "2", "1")
    assert (await other.stats())["job-timeouts"] == "1"
    # The silent worker lost the job.
    assert await slow.cmd(f"delete {job_id}") == b"NOT_FOUND\r\n"
    assert await slow.cmd(f"touch {job_id}") == b"NOT_FOUND\r\n"


async def test_ttr_expiry_happens_with_no_traffic_at_all(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """beanstalkd #262/#380: a silent worker's job must not stay reserved past its TTR."""
    slow, observer = await harness.connect(), await harness.connect()
    ids = [await slow.put(b"j%d" % ttr, ttr=ttr) for ttr in range(1, 21)]
    for _ in ids:
        await slow.reserve()
    engine = harness.server.engine
    t0 = trio.current_time()

    await trio.sleep(2.5)  # no command reaches the server meanwhile
    assert engine.job_timeouts == 2
    assert [engine.jobs[i].state.value for i in ids[:3]] == ["ready", "ready", "reserved"]
    await trio.sleep_until(t0 + 20 + EPS)
    assert engine.job_timeouts == 20
    assert {engine.jobs[i].state.value for i in ids} == {"ready"}

    stats = await observer.stats()
    assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == ("0", "20")
    assert stats["job-timeouts"] == "20"
    assert (await observer.stats_job(ids[-1]))["timeouts"] == "1"


async def test_touch_moves_the_ttr_expiry(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, other = await harness.connect(), await harness.connect()
    job_id = await worker.put(ttr=3)
    await worker.reserve()
    t0 = trio.current_time()
    await other.send(b"reserve\r\n")
    for at in (2, 4):  # touches at t0+2 and t0+4: expiry moves to t0+5, then to t0+7
        await trio.sleep_until(t0 + at)
        assert await worker.cmd(f"touch {job_id}") == b"TOUCHED\r\n"
    assert reserved(await reply_at(other, t0 + 7))[0] == job_id
    assert (await other.stats_job(job_id))["timeouts"] == "1"


async def test_a_job_reserved_again_after_expiry_gets_a_fresh_ttr(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker = await harness.connect()
    job_id = await worker.put(ttr=4)
    await worker.reserve()
    await trio.sleep(5)
    assert await worker.reserve() == (job_id, b"job")  # expired at +4, so ready again
    t1 = trio.current_time()
    await trio.sleep(3.5)
    assert (await worker.stats_job(job_id))["state"] == "reserved"
    await trio.sleep_until(t1 + 4 + EPS)
    assert harness.server.engine.jobs[job_id].state.value == "ready"
    assert harness.server.engine.job_timeouts == 2


# --------------------------------------------------------------------------- DEADLINE_SOON


async def test_deadline_soon_one_second_before_the_ttr(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, observer = await harness.connect(), await harness.connect()
    job_id = await worker.put(ttr=3)
    await worker.reserve()
    t0 = trio.current_time()
    await worker.send(b"reserve\r\n")
    assert await reply_at(worker, t0 + 2) == b"DEADLINE_SOON\r\n"
    # DEADLINE_SOON releases nothing: the job stays reserved until its TTR.
    job = await observer.stats_job(job_id)
    assert (job["state"], job["time-left"]) == ("reserved", "1")
    assert (await observer.stats())["current-waiting"] == "0"
    await trio.sleep_until(t0 + 3 + EPS)
    assert harness.server.engine.jobs[job_id].state.value == "ready"
    assert await worker.reserve() == (job_id, b"job")


async def test_deadline_soon_at_once_with_ttr_1(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker = await harness.connect()
    await worker.put(ttr=1)
    await worker.reserve()
    t0 = trio.current_time()
    assert await worker.cmd("reserve") == b"DEADLINE_SOON\r\n"
    assert await worker.cmd("reserve-with-timeout 0") == b"DEADLINE_SOON\r\n"
    assert await worker.cmd("reserve-with-timeout 60") == b"DEADLINE_SOON\r\n"
    assert trio.current_time() == t0


async def test_deadline_soon_beats_a_longer_reserve_timeout(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker = await harness.connect()
    await worker.put(ttr=3)
    await worker.reserve()
    t0 = trio.current_time()
    await worker.send(b"reserve-with-timeout 10\r\n")
    assert await reply_at(worker, t0 + 2) == b"DEADLINE_SOON\r\n"


async def test_a_shorter_reserve_timeout_beats_deadline_soon(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker = await harness.connect()
    await worker.put(ttr=10)
    await worker.reserve()
    t0 = trio.current_time()
    await worker.send(b"reserve-with-timeout 1\r\n")
    assert await reply_at(worker, t0 + 1) == b"TIMED_OUT\r\n"


async def test_a_new_job_beats_deadline_soon(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    first = await worker.put(ttr=5)
    await worker.reserve()
    t0 = trio.current_time()
    await worker.send(b"reserve\r\n")
    await trio.sleep(1)
    second = await producer.put(b"second")
    assert await reply_at(worker, t0 + 1) == b"RESERVED %d 6\r\nsecond\r\n" % second
    # Both held; the next reserve is DEADLINE_SOON at first's deadline minus one second.
    await worker.send(b"reserve\r\n")
    assert await reply_at(worker, t0 + 4) == b"DEADLINE_SOON\r\n"
    assert [(await producer.stats_job(i))["state"] for i in (first, second)] == [
        "reserved", "reserved"]


# --------------------------------------------------------------------------- delays, pauses


async def test_delayed_job_becomes_ready_at_its_delay(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    client = await harness.connect()
    job_id = await client.put(b"later", delay=5)
    t0 = trio.current_time()
    assert (await client.cmd("peek-delayed")).startswith(b"FOUND %d " % job_id)
    assert await client.cmd("peek-ready") == b"NOT_FOUND\r\n"
    await trio.sleep_until(t0 + 5 - EPS)
    assert await client.cmd("reserve-with-timeout 0") == b"TIMED_OUT\r\n"
    await trio.sleep_until(t0 + 5)
    assert await client.cmd("peek-delayed") == b"NOT_FOUND\r\n"
    assert (await client.cmd("peek-ready")).startswith(b"FOUND %d " % job_id)
    assert await client.reserve("reserve-with-timeout 0") == (job_id, b"later")


async def test_a_waiter_gets_a_delayed_job_when_its_delay_ends(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    await worker.send(b"reserve\r\n")
    job_id = await producer.put(b"later", delay=7)
    t0 = trio.current_time()
    assert reserved(await reply_at(worker, t0 + 7)) == (job_id, b"later")


async def test_release_with_delay_comes_back_after_the_delay(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, other = await harness.connect(), await harness.connect()
    job_id = await worker.put()
    await worker.reserve()
    assert await worker.cmd(f"release {job_id} 0 4") == b"RELEASED\r\n"
    t0 = trio.current_time()
    assert (await other.stats_job(job_id))["state"] == "delayed"
    await other.send(b"reserve\r\n")
    assert reserved(await reply_at(other, t0 + 4))[0] == job_id


async def test_reserve_waits_until_the_pause_ends(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, admin = await harness.connect(), await harness.connect()
    job_id = await admin.put()
    assert await admin.cmd("pause-tube default 10") == b"PAUSED\r\n"
    t0 = trio.current_time()
    await worker.send(b"reserve\r\n")
    await trio.sleep(3)
    tube = await admin.yaml("stats-tube default")
    assert (tube["pause"], tube["pause-time-left"], tube["current-waiting"]) == ("10", "7", "1")
    assert reserved(await reply_at(worker, t0 + 10))[0] == job_id


async def test_pause_tube_zero_wakes_waiters_at_once(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, admin = await harness.connect(), await harness.connect()
    job_id = await admin.put()
    await admin.cmd("pause-tube default 1000")
    await worker.send(b"reserve\r\n")
    await trio.sleep(50)
    assert await admin.cmd("pause-tube default 0") == b"PAUSED\r\n"
    t1 = trio.current_time()
    assert reserved(await reply_by(worker, t1 + EPS))[0] == job_id
    # The cancelled pause's timer must not pause the tube again later.
    await trio.sleep(1000)
    assert (await admin.yaml("stats-tube default"))["pause"] == "0"


# --------------------------------------------------------------------------- hang-ups


async def test_closing_returns_reserved_jobs_to_ready(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    holder, waiter = await harness.connect(), await harness.connect()
    ids = [await holder.put(b"a"), await holder.put(b"b")]
    for _ in ids:
        await holder.reserve()
    await waiter.send(b"reserve\r\n")
    await nothing_before(waiter, trio.current_time() + 10)

    await holder.stream.aclose()
    t1 = trio.current_time()
    assert reserved(await reply_by(waiter, t1 + EPS))[0] == ids[0]
    job = await waiter.stats_job(ids[1])
    assert (job["state"], job["timeouts"]) == ("ready", "0")  # not counted as a timeout
    stats = await waiter.stats()
    assert (stats["current-connections"], stats["job-timeouts"]) == ("1", "0")


async def test_closing_while_waiting_cancels_the_wait(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    waiter, other = await harness.connect(), await harness.connect()
    await waiter.send(b"reserve\r\n")
    await harness.settle()
    assert (await other.stats())["current-waiting"] == "1"
    await waiter.stream.aclose()
    await harness.settle()
    stats = await other.stats()
    assert (stats["current-waiting"], stats["current-connections"]) == ("0", "1")
    job_id = await other.put()
    assert (await other.stats_job(job_id))["state"] == "ready"  # nobody took it


async def test_half_close_while_waiting_answers_timed_out_and_closes(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    waiter, other = await harness.connect(), await harness.connect()
    await waiter.send(b"reserve\r\n")
    await nothing_before(waiter, trio.current_time() + 10)
    await waiter.half_close()
    t1 = trio.current_time()
    assert await reply_by(waiter, t1 + EPS) == b"TIMED_OUT\r\n"
    await waiter.expect_eof()
    stats = await other.stats()
    assert (stats["current-waiting"], stats["current-connections"]) == ("0", "1")
    job_id = await other.put()
    assert (await other.stats_job(job_id))["state"] == "ready"


async def test_half_close_with_a_timeout_wait_leaves_no_timer_behind(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    waiter, other = await harness.connect(), await harness.connect()
    await waiter.send(b"reserve-with-timeout 5\r\n")
    await trio.sleep(1)
    await waiter.half_close()
    assert await waiter.reply() == b"TIMED_OUT\r\n"
    await waiter.expect_eof()
    await trio.sleep(10)  # the old 5 s timer fires into nothing
    assert (await other.stats())["current-waiting"] == "0"


# --------------------------------------------------------------------------- pipelining


async def test_pipelined_commands_are_answered_in_order(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    client = await harness.connect()
    batch = b"".join(b"put %d 0 60 3\r\nj%02d\r\n" % (i, i) for i in range(100))
    await client.send(batch + b"stats\r\nlist-tube-used\r\npeek-ready\r\n")
    assert [await client.reply() for _ in range(100)] == [
        b"INSERTED %d\r\n" % i for i in range(1, 101)
    ]
    assert parse_yaml(await client.reply())["current-jobs-ready"] == "100"
    assert await client.reply() == b"USING default\r\n"
    assert await client.reply() == b"FOUND 1 3\r\nj00\r\n"


async def test_commands_pipelined_after_a_blocking_reserve_wait_for_it(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    await worker.send(b"use t\r\nwatch t\r\nignore default\r\nreserve\r\n"
                      b"put 0 0 60 4\r\nmine\r\nlist-tube-used\r\n")
    assert [await worker.reply() for _ in range(3)] == [
        b"USING t\r\n", b"WATCHING 2\r\n", b"WATCHING 1\r\n"
    ]
    await nothing_before(worker, trio.current_time() + 100)
    # The put after the reserve has not run: had it, the worker would have served itself.
    tube = await producer.yaml("stats-tube t")
    assert (tube["total-jobs"], tube["current-waiting"]) == ("0", "1")

    await producer.cmd("use t")
    job_id = await producer.put(b"theirs")
    assert reserved(await worker.reply()) == (job_id, b"theirs")
    assert await worker.reply() == b"INSERTED %d\r\n" % (job_id + 1)
    assert await worker.reply() == b"USING t\r\n"
    assert (await producer.yaml("stats-tube t"))["current-jobs-ready"] == "1"


async def test_input_pipelined_during_a_wait_is_kept_beyond_the_buffer_limit(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    body = bytes(60000)
    count = connection.WAIT_BUFFER_LIMIT // len(body) + 5  # more than the server buffers
    await worker.send(b"reserve\r\n")
    await worker.send(b"".join(b"put 0 0 60 %d\r\n%b\r\n" % (len(body), body)
                               for _ in range(count)))
    await nothing_before(worker, trio.current_time() + 10)
    assert (await producer.stats())["cmd-put"] == "0"
    job_id = await producer.put(b"go")
    assert reserved(await worker.reply()) == (job_id, b"go")
    replies = [await worker.reply() for _ in range(count)]
    assert replies == [b"INSERTED %d\r\n" % (job_id + i) for i in range(1, count + 1)]


# --------------------------------------------------------------------------- fairness


async def test_waiters_are_served_oldest_first(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    w = [await harness.connect() for _ in range(4)]
    producer = await harness.connect()
    for waiter in w:
        await waiter.send(b"reserve\r\n")
        await harness.settle()  # fix the arrival order
    first = [await producer.put(b"%d" % i) for i in range(2)]
    assert [reserved(await waiter.reply())[0] for waiter in w[:2]] == first

    # A served waiter that asks again queues behind the two still waiting.
    assert await w[0].cmd(f"delete {first[0]}") == b"DELETED\r\n"
    await w[0].send(b"reserve\r\n")
    await harness.settle()
    await producer.send(b"put 0 0 60 1\r\na\r\n" * 3)  # one batch of three puts
    ids = [int((await producer.reply()).split()[1]) for _ in range(3)]
    assert [reserved(await waiter.reply())[0] for waiter in (w[2], w[3], w[0])] == ids
    await nothing_before(w[1], trio.current_time() + 10)


async def test_one_put_wakes_exactly_one_waiter(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    waiters = [await harness.connect() for _ in range(3)]
    producer = await harness.connect()
    for w in waiters:
        await w.send(b"reserve-with-timeout 20\r\n")
        await harness.settle()
    t0 = trio.current_time()
    job_id = await producer.put()
    assert reserved(await waiters[0].reply())[0] == job_id
    for w in waiters[1:]:
        assert await reply_at(w, t0 + 20) == b"TIMED_OUT\r\n"


# --------------------------------------------------------------------------- sizes, drain


async def test_one_mebibyte_body_round_trip(
    big_harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await big_harness.connect(), await big_harness.connect()
    body = os.urandom(MIB)
    job_id = await producer.put(body)
    assert await worker.reserve() == (job_id, body)
    assert (await worker.cmd(f"peek {job_id}")) == b"FOUND %d %d\r\n%b\r\n" % (
        job_id, MIB, body)
    # One byte over the limit is refused and the connection carries on.
    over = bytes(BIG_MAX_JOB_SIZE + 1)
    await producer.send(b"put 0 0 60 %d\r\n%b\r\n" % (len(over), over))
    assert await producer.reply() == b"JOB_TOO_BIG\r\n"
    assert await producer.cmd("list-tube-used") == b"USING default\r\n"


async def test_drain_mode_refuses_puts_only(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await harness.connect(), await harness.connect()
    job_id = await producer.put(b"before")
    harness.server.engine.draining = True
    await producer.send(b"put 0 0 60 5\r\nafter\r\nuse t\r\n")
    assert await producer.reply() == b"DRAINING\r\n"
    assert await producer.reply() == b"USING t\r\n"  # the body was consumed, not parsed
    assert await worker.reserve() == (job_id, b"before")
    assert await worker.cmd(f"delete {job_id}") == b"DELETED\r\n"
    stats = await worker.stats()
    assert (stats["draining"], stats["total-jobs"], stats["cmd-put"]) == ("true", "1", "2")


# --------------------------------------------------------------------------- concurrency


async def test_a_job_ready_at_the_timeout_instant_beats_the_timeout(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    worker, producer = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-with-timeout 5\r\n")
    t0 = trio.current_time()
    job_id = await producer.put(delay=5)
    assert reserved(await reply_at(worker, t0 + 5))[0] == job_id


@attrs.define
class Holding:
    worker: int
    start: float
    end: float


async def test_many_workers_with_ttr_expiries_never_share_a_job(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """Workers delete, release, or fall silent past the TTR; no job is ever held twice."""
    jobs, workers, ttr = 60, 8, 3
    rng = random.Random(1234)
    holdings: dict[int, list[Holding]] = {}
    deleted: list[int] = []
    silent_drops = 0

    async def work(n: int, client: Client) -> None:
        nonlocal silent_drops
        for _ in range(40 * jobs):  # bound; the loop ends once every job is deleted
            reply = await client.cmd("reserve-with-timeout 2")
            if reply == b"TIMED_OUT\r\n":
                if len(deleted) == jobs:
                    return
                continue
            job_id, _ = reserved(reply)
            held = Holding(n, trio.current_time(), math.inf)
            holdings.setdefault(job_id, []).append(held)
            await trio.sleep(rng.choice([0, 0.5, 1]))
            roll = rng.random()
            if roll < 0.2:  # fall silent: the TTR takes the job back
                held.end = held.start + ttr
                silent_drops += 1
                await trio.sleep(ttr + 0.5)
            elif roll < 0.4:
                assert await client.cmd(f"release {job_id} 0 0") == b"RELEASED\r\n"
                held.end = trio.current_time()
            else:
                assert await client.cmd(f"delete {job_id}") == b"DELETED\r\n"
                held.end = trio.current_time()
                deleted.append(job_id)
        pytest.fail(f"worker {n} did not finish")

    clients = [await harness.connect() for _ in range(workers + 1)]
    with trio.fail_after(100_000):
        async with trio.open_nursery() as nursery:
            for n, client in enumerate(clients[1:]):
                nursery.start_soon(work, n, client)
            for i in range(jobs):
                await clients[0].put(b"%d" % i, ttr=ttr)
                await trio.sleep(rng.choice([0, 0.1, 0.7]))

    assert sorted(deleted) == list(range(1, jobs + 1))  # each job deleted exactly once
    for job_id, spans in holdings.items():
        for a, b in itertools.pairwise(spans):
            assert a.end <= b.start, f"job {job_id} held by {a} and {b} at once"
    stats = await clients[0].stats()
    assert stats["job-timeouts"] == str(silent_drops) and silent_drops > 0
    assert [stats[f"current-jobs-{k}"] for k in ("ready", "reserved", "delayed")] == ["0"] * 3


# ------------------------------------------------------------- a slow reader blocks no one


async def test_a_waiter_is_served_while_another_clients_send_is_blocked(
    big_harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """A put whose batch then blocks sending to a slow reader must still wake the waiter."""
    waiter, setup = await big_harness.connect(), await big_harness.connect()
    slow = await big_harness.connect(lockstep=True)  # never reads: its sends block
    await setup.cmd("use other")
    big = await setup.put(bytes(connection.SEND_HIGH_WATER + 1))
    await waiter.send(b"reserve\r\n")
    await big_harness.settle()
    await slow.send(b"put 0 0 60 1\r\nj\r\npeek %d\r\n" % big)
    t1 = trio.current_time()
    assert reserved(await reply_by(waiter, t1 + 1))[1] == b"j"


# --------------------------------------------------------------------------- real TCP


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[procs.RunningServer]:
    with procs.tubeserver("-z", str(BIG_MAX_JOB_SIZE)) as srv:
        yield srv


class SyncClient(procs.Conn):
    """A blocking socket client for the real-TCP tests; every read is bounded."""

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(socket.create_connection(addr, timeout=10), timeout=10)


@pytest.fixture
def tcp(tcp_server: procs.RunningServer) -> Iterator[list[SyncClient]]:
    """Up to 32 connections to the shared server (opened lazily), all closed afterwards."""
    opened: list[SyncClient] = []
    yield opened
    for c in opened:
        c.close()


def _open(tcp_server: procs.RunningServer, opened: list[SyncClient], n: int,
          tube: str) -> list[SyncClient]:
    assert len(opened) + n <= 32
    new = [SyncClient(tcp_server.addr) for _ in range(n)]
    opened.extend(new)
    for c in new:
        assert c.cmd(b"use " + tube.encode()) == b"USING %b\r\n" % tube.encode()
        assert c.cmd(b"watch " + tube.encode()) == b"WATCHING 2\r\n"
        assert c.cmd(b"ignore default") == b"WATCHING 1\r\n"
    return new


def test_tcp_waiters_each_get_one_distinct_job(
    tcp_server: procs.RunningServer, tcp: list[SyncClient]
) -> None:
    *workers, producer = _open(tcp_server, tcp, 20, "tcp-fanout")
    for w in workers:
        w.raw(b"reserve-with-timeout 10\r\n")
    # Every wait is registered before the jobs arrive (or the test would still pass: the
    # claim is one job per worker, each job once).
    producer.raw(b"".join(b"put 0 0 60 2\r\n%02d\r\n" % i for i in range(len(workers))))
    inserted = [int(producer.reply().split()[1]) for _ in workers]
    got = [reserved(w.reply()) for w in workers]
    assert sorted(job_id for job_id, _ in got) == sorted(inserted)
    assert sorted(body for _, body in got) == [b"%02d" % i for i in range(len(workers))]


def test_tcp_half_close_while_waiting(
    tcp_server: procs.RunningServer, tcp: list[SyncClient]
) -> None:
    (waiter,) = _open(tcp_server, tcp, 1, "tcp-halfclose")
    waiter.raw(b"reserve\r\n")
    waiter.sock.shutdown(socket.SHUT_WR)
    assert waiter.reply() == b"TIMED_OUT\r\n"
    assert waiter.sock.recv(100) == b""


def test_tcp_one_mebibyte_body_and_pipelining(
    tcp_server: procs.RunningServer, tcp: list[SyncClient]
) -> None:
    producer, worker = _open(tcp_server, tcp, 2, "tcp-big")
    body = os.urandom(MIB)
    producer.raw(b"put 0 0 60 %d\r\n%b\r\n" % (len(body), body) * 3 + b"list-tube-used\r\n")
    ids = [int(producer.reply().split()[1]) for _ in range(3)]
    assert producer.reply() == b"USING tcp-big\r\n"
    worker.raw(b"".join(b"reserve-with-timeout 0\r\ndelete %d\r\n" % i for i in ids))
    for job_id in ids:
        assert reserved(worker.reply()) == (job_id, body)
        assert worker.reply() == b"DELETED\r\n"


def test_tcp_disconnect_returns_the_job(
    tcp_server: procs.RunningServer, tcp: list[SyncClient]
) -> None:
    holder, waiter = _open(tcp_server, tcp, 2, "tcp-disconnect")
    job_id = int(holder.cmd(b"put 0 0 60 1\r\nx").split()[1])
    assert reserved(holder.cmd(b"reserve-with-timeout 0"))[0] == job_id
    waiter.raw(b"reserve-with-timeout 10\r\n")
    holder.close()
    assert reserved(waiter.reply()) == (job_id, b"x")
