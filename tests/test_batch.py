"""reserve-batch, the batch-reserve extension: engine rules and the wire format.

Engine tests drive the pure engine with explicit times; wire tests reuse the in-memory
harness of test_server.py (autojump clock) to check framing, timing and fairness.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_server import EPS, Client, Harness, harness, nothing_before, reply_at, reply_by

from tubeserver import commands as c
from tubeserver.engine import Engine, Wakeup
from tubeserver.errors import BadFormat, DeadlineSoon, TimedOut
from tubeserver.invariants import check_invariants
from tubeserver.job import Job
from tubeserver.parser import Parser
from tubeserver.session import Session

__all__ = ["harness"]  # the fixture, imported for the wire tests


# --------------------------------------------------------------------------- engine


def put(e: Engine, s: Session, n: int = 1, pri: int = 0, ttr: int = 60,
        now: float = 0.0) -> list[int]:
    return [e.put(s, pri, 0, ttr, b"b%d" % i, now).id for i in range(n)]


def ids(jobs: list[Job] | tuple[Job, ...] | None) -> list[int]:
    assert jobs is not None
    return [j.id for j in jobs]


def woken(e: Engine) -> list[Wakeup]:
    out = e.drain_wakeups()
    check_invariants(e)
    return out


def test_full_batch_at_once_in_priority_then_id_order() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    a = put(e, p, 3, pri=5)
    b = put(e, p, 2, pri=1)
    jobs = e.reserve_batch(w, 4, 10, 0.0)
    assert ids(jobs) == [*b, *a[:2]]
    assert all(j.reserver is w for j in jobs or [])
    check_invariants(e)


def test_timeout_zero_takes_what_is_ready_or_times_out() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    with pytest.raises(TimedOut):
        e.reserve_batch(w, 5, 0, 0.0)
    put(e, p, 2)
    assert len(ids(e.reserve_batch(w, 5, 0, 0.0))) == 2
    assert w.waiter is None
    check_invariants(e)


def test_waiting_batch_holds_no_jobs_and_fills_when_count_is_ready() -> None:
    e = Engine()
    p, w, other = e.connect(), e.connect(), e.connect()
    assert e.reserve_batch(w, 3, 10, 0.0) is None
    put(e, p, 2, now=1.0)
    assert woken(e) == []
    # The two jobs stay ready: visible and reservable by id, not held by the waiter.
    assert [j.state.value for j in e.jobs.values()] == ["ready", "ready"]
    (third,) = put(e, p, 1, now=2.0)
    (wake,) = woken(e)
    assert wake.session is w and wake.job is None and wake.error is None
    assert ids(wake.batch) == [1, 2, third]
    # TTR counts from delivery, not from when the waiter arrived.
    assert {j.deadline for j in wake.batch or ()} == {62.0}
    assert other.reserved == {}


def test_partial_batch_when_the_timeout_passes_and_timed_out_when_empty() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    assert e.reserve_batch(w, 10, 5, 0.0) is None
    put(e, p, 3, now=1.0)
    e.tick(4.9)
    assert woken(e) == []
    e.tick(5.0)
    (wake,) = woken(e)
    assert ids(wake.batch) == [1, 2, 3]
    assert e.reserve_batch(w, 10, 5, 5.0) is None
    e.tick(10.0)
    (wake,) = woken(e)
    assert wake.batch is None and isinstance(wake.error, TimedOut)


def test_a_single_reserver_gets_jobs_only_after_an_older_batch_waiter() -> None:
    """FIFO across kinds: the older batch waiter gets a partial batch, then the newcomer."""
    e = Engine()
    p, w, single = e.connect(), e.connect(), e.connect()
    assert e.reserve_batch(w, 10, 60, 0.0) is None
    put(e, p, 2, now=1.0)
    assert woken(e) == []
    with pytest.raises(TimedOut):
        e.reserve(single, 0, 2.0)  # the batch waiter was first in line: it takes both
    (wake,) = woken(e)
    assert wake.session is w and ids(wake.batch) == [1, 2]
    put(e, p, 1, now=3.0)
    job = e.reserve(single, 0, 3.0)
    assert job is not None and job.id == 3


def test_a_blocked_single_waiter_makes_the_batch_waiter_flush() -> None:
    e = Engine()
    p, w, single = e.connect(), e.connect(), e.connect()
    assert e.reserve_batch(w, 10, 60, 0.0) is None
    assert e.reserve(single, None, 0.0) is None
    put(e, p, 1, now=1.0)  # first in line is the batch waiter: it gets the job
    (wake,) = woken(e)
    assert wake.session is w and ids(wake.batch) == [1]
    put(e, p, 1, now=2.0)  # now the single waiter is first
    (wake,) = woken(e)
    assert wake.session is single and wake.job is not None and wake.job.id == 2


def test_an_older_single_waiter_is_served_first() -> None:
    e = Engine()
    p, single, w = e.connect(), e.connect(), e.connect()
    assert e.reserve(single, None, 0.0) is None
    assert e.reserve_batch(w, 2, 60, 0.0) is None
    put(e, p, 3, now=1.0)
    wakes = woken(e)
    assert [(x.session, ids(x.batch) if x.batch else x.job and x.job.id) for x in wakes] == [
        (single, 1), (w, [2, 3])]


def test_batch_waiters_wait_for_full_batches_oldest_first() -> None:
    e = Engine()
    p, w1, w2 = e.connect(), e.connect(), e.connect()
    assert e.reserve_batch(w1, 3, 60, 0.0) is None
    assert e.reserve_batch(w2, 3, 60, 0.0) is None
    put(e, p, 2)
    assert woken(e) == []  # neither is full: nobody forces a partial batch
    put(e, p, 4)
    wakes = woken(e)
    assert [(x.session, ids(x.batch)) for x in wakes] == [(w1, [1, 2, 3]), (w2, [4, 5, 6])]


def test_a_smaller_batch_behind_may_be_served_before_a_larger_one() -> None:
    e = Engine()
    p, big, small = e.connect(), e.connect(), e.connect()
    assert e.reserve_batch(big, 5, 60, 0.0) is None
    assert e.reserve_batch(small, 2, 60, 0.0) is None
    put(e, p, 2)
    (wake,) = woken(e)
    assert wake.session is small and ids(wake.batch) == [1, 2]
    assert big.waiter is not None


def test_disconnect_while_waiting_loses_nothing() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    assert e.reserve_batch(w, 5, 60, 0.0) is None
    put(e, p, 3)
    e.disconnect(w, 1.0)
    assert woken(e) == []
    assert sorted(j.state.value for j in e.jobs.values()) == ["ready"] * 3
    assert len(ids(e.reserve_batch(p, 5, 0, 1.0))) == 3


def test_deadline_soon_for_batches() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    put(e, p, 1, ttr=2)
    assert e.reserve(w, 0, 0.0) is not None  # deadline 2.0, margin from 1.0
    with pytest.raises(DeadlineSoon):
        e.reserve_batch(w, 5, 10, 1.0)
    put(e, p, 2, now=1.0)
    # Some jobs are ready: a worker in its margin gets them now rather than waiting.
    assert len(ids(e.reserve_batch(w, 5, 10, 1.0))) == 2


def test_a_waiting_batch_gets_deadline_soon_or_its_partial_batch_at_the_margin() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    put(e, p, 1, ttr=3)
    assert e.reserve(w, 0, 0.0) is not None  # margin from 2.0
    assert e.reserve_batch(w, 5, 60, 0.0) is None
    e.tick(2.0)
    (wake,) = woken(e)
    assert isinstance(wake.error, DeadlineSoon)
    e.touch(w, 1, 2.0)  # deadline 5.0, margin from 4.0
    assert e.reserve_batch(w, 5, 60, 2.0) is None
    put(e, p, 1, now=3.0)
    e.tick(4.0)
    (wake,) = woken(e)
    assert ids(wake.batch) == [2]


def test_paused_tubes_do_not_count_towards_a_batch() -> None:
    e = Engine()
    p, w = e.connect(), e.connect()
    put(e, p, 3)
    e.pause_tube("default", 10, 0.0)
    assert e.reserve_batch(w, 2, 60, 0.0) is None
    e.tick(10.0)
    (wake,) = woken(e)
    assert ids(wake.batch) == [1, 2]


def test_parser_bounds_count_and_timeout() -> None:
    def parse(line: bytes) -> c.Event | None:
        parser = Parser(100)
        parser.feed(line + b"\r\n")
        return parser.next_event()

    assert parse(b"reserve-batch 1 0") == c.ReserveBatch(1, 0)
    assert parse(b"reserve-batch 1000 2147483647") == c.ReserveBatch(1000, 2147483647)
    for bad in (b"reserve-batch 0 1", b"reserve-batch 1001 1", b"reserve-batch 5",
                b"reserve-batch 5 2147483648", b"reserve-batch 5 1 ", b"reserve-batch -1 1",
                b"reserve-batch"):
        assert parse(bad) == c.Rejected(BadFormat()), bad


# --------------------------------------------------------------------------- wire


async def read_batch(client: Client, when: float) -> list[tuple[int, bytes]]:
    head = await reply_by(client, when)
    word, count = head.rstrip(b"\r\n").split(b" ")
    assert word == b"RESERVED-BATCH", head
    out = []
    for _ in range(int(count)):
        frame = await reply_by(client, when)
        line, _, rest = frame.partition(b"\r\n")
        _, job_id, size = line.split(b" ")
        assert rest == rest[: int(size)] + b"\r\n"
        out.append((int(job_id), rest[:-2]))
    return out


async def test_wire_full_batch_with_binary_bodies(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await harness.connect(), await harness.connect()
    bodies = [b"a\r\nb", b"", b"\x00\xff" * 100]
    for body in bodies:
        await producer.put(body)
    await worker.send(b"reserve-batch 3 0\r\n")
    got = await read_batch(worker, trio.current_time() + EPS)
    assert [b for _, b in got] == bodies
    assert await worker.cmd("reserve-batch 3 0") == b"TIMED_OUT\r\n"


async def test_wire_waits_for_the_count_then_answers(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-batch 2 30\r\n")
    t0 = trio.current_time()
    await producer.put(b"one")
    await nothing_before(worker, t0 + 10)
    await producer.put(b"two")
    got = await read_batch(worker, trio.current_time() + EPS)
    assert [b for _, b in got] == [b"one", b"two"]


async def test_wire_partial_batch_at_the_timeout_and_timed_out_when_empty(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-batch 5 4\r\n")
    t0 = trio.current_time()
    await producer.put(b"x")
    await nothing_before(worker, t0 + 4 - EPS)
    assert [b for _, b in await read_batch(worker, t0 + 4 + EPS)] == [b"x"]
    await worker.send(b"reserve-batch 5 4\r\n")
    t1 = trio.current_time()
    assert await reply_at(worker, t1 + 4) == b"TIMED_OUT\r\n"


async def test_wire_disconnect_while_waiting_returns_nothing_lost(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    producer, worker = await harness.connect(), await harness.connect()
    await worker.send(b"reserve-batch 5 60\r\n")
    await producer.put(b"kept")
    await worker.stream.aclose()
    await harness.settle()
    stats = await producer.stats()
    assert (stats["current-jobs-ready"], stats["current-waiting"]) == ("1", "0")


async def test_wire_batch_and_single_reservers_share_a_stream_of_jobs(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """Neither kind starves: with both kinds blocked, a steady trickle reaches both."""
    producer = await harness.connect()
    batcher, single = await harness.connect(), await harness.connect()
    got_batch: list[int] = []
    got_single: list[int] = []

    async def batch_loop() -> None:
        while len(got_batch) + len(got_single) < 40:
            await batcher.send(b"reserve-batch 10 5\r\n")
            head = await batcher.reply()
            if head == b"TIMED_OUT\r\n":
                continue
            for _ in range(int(head.split()[1])):
                got_batch.append(int((await batcher.reply()).split()[1]))

    async def single_loop() -> None:
        while len(got_batch) + len(got_single) < 40:
            reply = await single.cmd("reserve-with-timeout 5")
            if reply != b"TIMED_OUT\r\n":
                got_single.append(int(reply.split()[1]))

    with trio.fail_after(1000):
        async with trio.open_nursery() as n:
            n.start_soon(batch_loop)
            n.start_soon(single_loop)
            for _ in range(40):
                await producer.put(b"j")
                await trio.sleep(0.5)
    assert sorted(got_batch + got_single) == list(range(1, 41))
    assert got_batch and got_single
