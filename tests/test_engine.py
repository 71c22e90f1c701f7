"""Unit tests for the job engine: one test per protocol rule, plus its timing and memory promises.

Everything runs on explicit `now` values; no clock, no sleeps. `check_invariants` runs after
every test (the fixture) and inside scenarios where bookkeeping must survive churn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tubeserver.engine import Engine
from tubeserver.errors import (
    DeadlineSoon,
    Draining,
    NotFound,
    NotIgnored,
    ProtocolError,
    TimedOut,
)
from tubeserver.invariants import check_invariants
from tubeserver.job import Job, JobState
from tubeserver.session import Session

READY, RESERVED, DELAYED, BURIED = (
    JobState.READY, JobState.RESERVED, JobState.DELAYED, JobState.BURIED,
)


def put(e: Engine, s: Session, pri: int = 0, delay: int = 0, ttr: int = 10,
        now: float = 0.0) -> Job:
    return e.put(s, pri, delay, ttr, b"body", now)


def reserve_id(e: Engine, s: Session, now: float = 0.0) -> int:
    job = e.reserve(s, 0, now)
    assert job is not None
    return job.id


def wakeups(e: Engine) -> list[tuple[int, int | None, type[ProtocolError] | None]]:
    return [(w.session.id, None if w.job is None else w.job.id,
             None if w.error is None else type(w.error)) for w in e.drain_wakeups()]


def run_ticker(e: Engine, until: float) -> None:
    """What server.run_ticker does: sleep until next_deadline, then tick at exactly that time."""
    while (due := e.next_deadline()) is not None and due <= until:
        e.tick(due)
        check_invariants(e)


def tube_names(e: Engine) -> list[str]:
    return [t.name for t in e.tube_list]


@pytest.fixture
def e() -> Iterator[Engine]:
    engine = Engine()
    yield engine
    check_invariants(engine)  # whatever the test did, the bookkeeping must still agree


# --- choosing jobs ------------------------------------------------------------------------


def test_priority_order_matches_beanstalkd(e: Engine) -> None:
    s = e.connect()
    for pri in (10, 5, 10, 5, 0):
        put(e, s, pri)
    assert [reserve_id(e, s) for _ in range(5)] == [5, 2, 4, 1, 3]
    with pytest.raises(TimedOut):
        e.reserve(s, 0, 0.0)
    check_invariants(e)


def test_equal_priority_is_fifo_and_release_keeps_id_order(e: Engine) -> None:
    s = e.connect()
    ids = [put(e, s, 7).id for _ in range(20)]
    first = reserve_id(e, s)
    e.release(s, first, 7, 0, 0.0)  # back in, still ahead of the others by id
    assert [reserve_id(e, s) for _ in range(20)] == ids
    check_invariants(e)


def test_reserve_takes_best_across_watched_tubes_and_skips_paused(e: Engine) -> None:
    p, w = e.connect(), e.connect()
    e.use(p, "a")
    put(e, p, 5)  # 1 in a
    e.use(p, "b")
    put(e, p, 3)  # 2 in b
    put(e, p, 9)  # 3 in b
    e.watch(w, "a")
    e.watch(w, "b")
    e.pause_tube("b", 10, 0.0)
    assert reserve_id(e, w) == 1  # b's better job is paused
    with pytest.raises(TimedOut):
        e.reserve(w, 0, 0.0)
    e.pause_tube("b", 0, 0.0)
    assert reserve_id(e, w) == 2
    check_invariants(e)


def test_ttr_zero_becomes_one(e: Engine) -> None:
    s = e.connect()
    assert put(e, s, ttr=0).ttr == 1


def test_put_while_draining(e: Engine) -> None:
    s = e.connect()
    e.draining = True
    with pytest.raises(Draining):
        put(e, s)
    assert not e.jobs
    e.draining = False
    assert put(e, s).id == 1


# --- delete, release, bury, touch, reserve-job --------------------------------------------


def test_delete_rules(e: Engine) -> None:
    a, b = e.connect(), e.connect()
    ready = put(e, a, 0)
    mine = put(e, a, 1)
    theirs = put(e, a, 2)
    delayed = put(e, a, delay=5)
    buried = put(e, a, 3)
    assert reserve_id(e, a) == ready.id
    assert reserve_id(e, a) == mine.id
    assert reserve_id(e, b) == theirs.id
    assert reserve_id(e, a) == buried.id
    e.bury(a, buried.id, 3, 0.0)
    e.release(a, ready.id, 0, 0, 0.0)
    with pytest.raises(NotFound):
        e.delete(a, theirs.id, 0.0)  # reserved by another session
    assert e.jobs[theirs.id].state is RESERVED
    for job in (ready, mine, delayed, buried):  # ready, own reserved, delayed, buried: any tube
        e.delete(b if job is not mine else a, job.id, 0.0)
    for job_id in (ready.id, 999, 0):
        with pytest.raises(NotFound):
            e.delete(a, job_id, 0.0)
    e.delete(b, theirs.id, 0.0)
    assert not e.jobs
    check_invariants(e)


@pytest.mark.parametrize("verb", ["release", "bury", "touch"])
def test_release_bury_touch_only_on_own_reserved_jobs(e: Engine, verb: str) -> None:
    a, b = e.connect(), e.connect()
    held = put(e, a)
    ready = put(e, a)
    buried = put(e, a)
    assert reserve_id(e, a) == held.id
    e.reserve_job(a, buried.id, 0.0)
    e.bury(a, buried.id, 0, 0.0)
    actions: dict[str, Callable[[Session, int], None]] = {
        "release": lambda s, i: e.release(s, i, 0, 0, 1.0),
        "bury": lambda s, i: e.bury(s, i, 0, 0.0),
        "touch": lambda s, i: e.touch(s, i, 1.0),
    }
    act = actions[verb]
    for s, job_id in ((b, held.id), (a, ready.id), (a, buried.id), (a, 12345)):
        with pytest.raises(NotFound):
            act(s, job_id)
    act(a, held.id)
    check_invariants(e)


def test_release_with_delay_and_new_priority(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, pri=100)
    put(e, s, pri=50)
    assert reserve_id(e, s) == 2
    assert reserve_id(e, s) == 1
    e.release(s, 1, 10, 3, 1.0)
    assert (job.state, job.pri, job.deadline) == (DELAYED, 10, 4.0)
    e.release(s, 2, 20, 0, 1.0)
    assert e.peek_delayed(s) is job
    e.tick(3.99)
    assert job.state is DELAYED
    e.tick(4.0)
    assert job.state is READY
    assert [reserve_id(e, s, 4.0) for _ in range(2)] == [1, 2]  # pri 10 before pri 20
    check_invariants(e)


def test_bury_is_fifo_and_sets_priority(e: Engine) -> None:
    s = e.connect()
    for _ in range(3):
        put(e, s, pri=1)
    for job_id in (2, 3, 1):
        e.reserve_job(s, job_id, 0.0)
        e.bury(s, job_id, 99, 0.0)
    assert list(e.tubes["default"].buried) == [2, 3, 1]
    assert e.peek_buried(s).id == 2
    assert all(e.jobs[i].pri == 99 for i in (1, 2, 3))
    check_invariants(e)


def test_touch_moves_the_deadline(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, ttr=5)
    reserve_id(e, s, 0.0)
    e.touch(s, job.id, 3.0)
    assert job.deadline == 8.0
    run_ticker(e, 7.99)
    assert job.state is RESERVED  # the stale 5.0 timer did not expire it
    run_ticker(e, 8.0)
    assert job.state is READY and job.timeouts == 1


def test_reserve_job_rules(e: Engine) -> None:
    a, b = e.connect(), e.connect()
    e.use(a, "elsewhere")  # a tube nobody watches
    ready, delayed, buried = put(e, a), put(e, a, delay=9), put(e, a)
    e.reserve_job(a, buried.id, 0.0)
    e.bury(a, buried.id, 0, 0.0)
    e.pause_tube("elsewhere", 100, 0.0)
    for job in (ready, delayed, buried):  # any tube, paused or not, watched or not
        assert e.reserve_job(b, job.id, 0.0) is job
        assert job.state is RESERVED and job.reserver is b
    for s in (a, b):  # reserved by anyone, including itself: NOT_FOUND
        with pytest.raises(NotFound):
            e.reserve_job(s, ready.id, 0.0)
    with pytest.raises(NotFound):
        e.reserve_job(a, 77, 0.0)
    # reserve-job never answers DEADLINE_SOON
    e.release(b, delayed.id, 0, 0, 0.0)
    assert e.reserve_job(b, delayed.id, 9.5) is delayed
    # a job reserved from delayed/buried goes back to ready on release and on TTR expiry
    e.release(b, buried.id, 0, 0, 9.5)
    assert buried.state is READY
    e.tick(10.0)
    assert ready.state is READY and ready.timeouts == 1
    check_invariants(e)


# --- kick, peek ---------------------------------------------------------------------------


def test_kick_buried_before_delayed_never_both(e: Engine) -> None:
    s = e.connect()
    d1, d2, d3 = put(e, s, delay=30), put(e, s, delay=10), put(e, s, delay=20)
    b1, b2 = put(e, s), put(e, s)
    for job in (b2, b1):
        e.reserve_job(s, job.id, 0.0)
        e.bury(s, job.id, 0, 0.0)
    assert e.kick(s, 10, 0.0) == 2  # all buried, no delayed job
    assert (b1.state, b2.state, d1.state) == (READY, READY, DELAYED)
    assert b2.kicks == 1
    assert e.kick(s, 2, 0.0) == 2  # earliest deadline first
    assert (d2.state, d3.state, d1.state) == (READY, READY, DELAYED)
    assert e.kick(s, 5, 0.0) == 1
    assert e.kick(s, 5, 0.0) == 0
    check_invariants(e)


def test_kick_bound_on_buried_and_used_tube_only(e: Engine) -> None:
    s, other = e.connect(), e.connect()
    e.use(other, "x")
    put(e, other, delay=5)
    for _ in range(3):
        job = put(e, s)
        e.reserve_job(s, job.id, 0.0)
        e.bury(s, job.id, 0, 0.0)
    assert e.kick(s, 0, 0.0) == 0
    assert e.kick(s, 2, 0.0) == 2
    assert list(e.tubes["default"].buried) == [4]
    assert e.kick(s, 2, 0.0) == 1
    assert e.tubes["x"].delayed_count == 1
    check_invariants(e)


def test_kick_job_only_buried_or_delayed(e: Engine) -> None:
    s = e.connect()
    ready, reserved, delayed, buried = put(e, s, 0), put(e, s, 1), put(e, s, delay=5), put(e, s)
    e.reserve_job(s, reserved.id, 0.0)
    e.reserve_job(s, buried.id, 0.0)
    e.bury(s, buried.id, 0, 0.0)
    for job_id in (ready.id, reserved.id, 42):
        with pytest.raises(NotFound):
            e.kick_job(job_id, 0.0)
    e.kick_job(delayed.id, 0.0)
    e.kick_job(buried.id, 0.0)
    assert delayed.state is READY and buried.state is READY
    run_ticker(e, 100.0)  # the old delay timer must not disturb the kicked job
    assert delayed.state is READY
    check_invariants(e)


def test_peek_commands_use_the_used_tube(e: Engine) -> None:
    s, w = e.connect(), e.connect()
    e.use(s, "t")
    for getter in (e.peek_ready, e.peek_delayed, e.peek_buried):
        with pytest.raises(NotFound):
            getter(s)
    a, b = put(e, s, pri=5), put(e, s, pri=1)
    d1, d2 = put(e, s, delay=9), put(e, s, delay=4)
    e.pause_tube("t", 100, 0.0)
    assert e.peek_ready(s) is b  # paused tubes can still be peeked
    assert e.peek_delayed(s) is d2
    e.reserve_job(s, a.id, 0.0)
    e.bury(s, a.id, 0, 0.0)
    assert e.peek_buried(s) is a
    with pytest.raises(NotFound):
        e.peek_ready(w)  # w uses default
    assert e.peek(d1.id) is d1
    with pytest.raises(NotFound):
        e.peek(1000)


# --- watch, ignore, tubes -----------------------------------------------------------------


def test_watch_and_ignore_counts(e: Engine) -> None:
    s = e.connect()
    assert e.watch(s, "a") == 2
    assert e.watch(s, "a") == 2
    assert e.ignore(s, "nope") == 2  # not watched, does not exist: count unchanged
    assert e.ignore(s, "default") == 1
    with pytest.raises(NotIgnored):
        e.ignore(s, "a")
    assert e.ignore(s, "default") == 1  # not watched any more: unchanged, no error
    assert [t.name for t in s.watched] == ["a"]
    check_invariants(e)


def test_tube_lifetime(e: Engine) -> None:
    s, t = e.connect(), e.connect()
    e.use(s, "x")
    assert "x" in e.tubes
    e.use(s, "default")
    assert "x" not in e.tubes  # unused, unwatched, empty
    e.watch(t, "y")
    e.use(s, "y")
    job = put(e, s)
    e.use(s, "default")
    e.ignore(t, "y")
    assert "y" in e.tubes  # still holds a job
    e.reserve_job(t, job.id, 0.0)
    assert "y" in e.tubes  # a reserved job keeps it too
    e.delete(t, job.id, 0.0)
    assert "y" not in e.tubes
    e.use(s, "z")
    e.watch(s, "w")
    e.disconnect(s, 0.0)
    e.disconnect(t, 0.0)
    assert tube_names(e) == ["default"]  # default never goes
    with pytest.raises(NotFound):
        e.pause_tube("z", 1, 0.0)
    check_invariants(e)


def test_tube_list_swap_removes(e: Engine) -> None:
    s = e.connect()
    holders = {}
    for name in "abcd":
        holders[name] = e.connect()
        e.watch(holders[name], name)
    assert tube_names(e) == ["default", "a", "b", "c", "d"]
    e.disconnect(holders["b"], 0.0)
    assert tube_names(e) == ["default", "a", "d", "c"]  # the last tube took b's place
    e.disconnect(holders["c"], 0.0)
    assert tube_names(e) == ["default", "a", "d"]  # removing the last one: plain pop
    e.use(s, "e")
    assert tube_names(e) == ["default", "a", "d", "e"]
    e.ignore(holders["a"], "a")
    assert tube_names(e) == ["default", "e", "d"]
    assert [t.index for t in e.tube_list] == [0, 1, 2]
    check_invariants(e)


def test_watch_list_swap_removes(e: Engine) -> None:
    s = e.connect()
    for name in "abc":
        e.watch(s, name)
    e.ignore(s, "default")
    assert [t.name for t in s.watched] == ["c", "a", "b"]


# --- DEADLINE_SOON, waiters, timeouts -----------------------------------------------------


def test_deadline_soon_at_reserve_time(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, ttr=3)
    assert reserve_id(e, s, 0.0) == job.id
    assert e.reserve(s, None, 1.99) is None  # outside the margin: waits
    e.cancel_wait(s)
    for timeout in (None, 0, 5):  # DEADLINE_SOON even for a zero timeout
        with pytest.raises(DeadlineSoon):
            e.reserve(s, timeout, 2.0)
    other = put(e, s, ttr=3, now=2.0)
    assert e.reserve(s, None, 2.5) is other  # a ready job is reserved anyway
    assert job.state is RESERVED  # DEADLINE_SOON releases nothing
    check_invariants(e)


def test_deadline_soon_with_ttr_one_is_immediate(e: Engine) -> None:
    s = e.connect()
    put(e, s, ttr=1)
    reserve_id(e, s, 0.0)
    with pytest.raises(DeadlineSoon):
        e.reserve(s, None, 0.0)


def test_deadline_soon_for_a_waiter(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, ttr=3)
    reserve_id(e, s, 0.0)
    assert e.reserve(s, None, 0.5) is None
    assert (due := e.next_deadline()) is not None and due <= 2.0
    e.tick(1.99)
    assert wakeups(e) == []
    run_ticker(e, 2.0)
    assert wakeups(e) == [(s.id, None, DeadlineSoon)]
    assert s.waiter is None and job.state is RESERVED
    check_invariants(e)


def test_deadline_soon_wins_when_due_with_the_timeout(e: Engine) -> None:
    """beanstalkd's conn_timeout checks the margin first: at a tie DEADLINE_SOON wins."""
    s = e.connect()
    put(e, s, ttr=2)
    reserve_id(e, s, 0.0)  # deadline 2.0: the margin starts at 1.0
    assert e.reserve(s, 1, 0.0) is None  # times out at 1.0
    run_ticker(e, 1.0)
    assert wakeups(e) == [(s.id, None, DeadlineSoon)]


def test_timeout_before_deadline_soon(e: Engine) -> None:
    s = e.connect()
    put(e, s, ttr=5)
    reserve_id(e, s, 0.0)
    assert e.reserve(s, 2, 0.0) is None
    run_ticker(e, 10.0)
    assert wakeups(e)[0] == (s.id, None, TimedOut)


def test_waiter_times_out(e: Engine) -> None:
    s = e.connect()
    assert e.reserve(s, 2, 1.0) is None
    e.tick(2.99)
    assert wakeups(e) == [] and s.waiter is not None
    e.tick(3.0)
    assert wakeups(e) == [(s.id, None, TimedOut)]
    assert s.waiter is None
    put(e, e.connect(), now=4.0)  # nobody is waiting any more
    assert wakeups(e) == []
    check_invariants(e)


def test_zero_timeout_never_waits(e: Engine) -> None:
    s = e.connect()
    with pytest.raises(TimedOut):
        e.reserve(s, 0, 0.0)
    assert s.waiter is None and not e.tubes["default"].waiters


def test_waiter_woken_by_put_from_another_session(e: Engine) -> None:
    w, p = e.connect(), e.connect()
    e.watch(w, "jobs")
    assert e.reserve(w, None, 0.0) is None
    e.use(p, "jobs")
    job = put(e, p, ttr=7, now=3.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    assert job.state is RESERVED and job.reserver is w and job.deadline == 10.0
    assert w.waiter is None and not e.tubes["jobs"].waiters and not e.tubes["default"].waiters
    check_invariants(e)


def test_waiters_served_oldest_first_best_job_first(e: Engine) -> None:
    w1, w2, w3, p = e.connect(), e.connect(), e.connect(), e.connect()
    for i, w in enumerate((w1, w2, w3)):
        assert e.reserve(w, None, float(i)) is None
    for pri in (9, 3):
        put(e, p, pri, delay=1, now=5.0)  # both become ready at 6.0, in one tick
    put(e, p, 5, delay=1, now=5.0)
    e.tick(6.0)
    assert wakeups(e) == [(w1.id, 2, None), (w2.id, 3, None), (w3.id, 1, None)]
    check_invariants(e)


def test_waiter_wakes_on_release_kick_and_disconnect(e: Engine) -> None:
    a, w = e.connect(), e.connect()
    job = put(e, a)
    reserve_id(e, a)
    assert e.reserve(w, None, 0.0) is None
    e.bury(a, job.id, 0, 0.0)
    e.kick(a, 1, 1.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    e.release(w, job.id, 0, 0, 2.0)
    reserve_id(e, a, 2.0)
    assert e.reserve(w, None, 2.0) is None
    e.disconnect(a, 3.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    assert job.timeouts == 0 and job.reserver is w
    check_invariants(e)


def test_disconnect_returns_jobs_and_cancels_its_wait(e: Engine) -> None:
    a, b = e.connect(), e.connect()
    j1, j2 = put(e, a, ttr=5), put(e, a, ttr=5)
    reserve_id(e, a)
    reserve_id(e, a)
    e.watch(a, "other")
    assert e.reserve(a, 5, 0.0) is None
    e.disconnect(a, 1.0)
    assert (j1.state, j2.state, j1.timeouts, e.job_timeouts) == (READY, READY, 0, 0)
    assert a not in e.sessions and "other" not in e.tubes
    run_ticker(e, 100.0)  # its wait and TTR timers are dead
    assert wakeups(e) == [] and e.job_timeouts == 0
    assert reserve_id(e, b, 100.0) == j1.id
    e.disconnect(a, 100.0)  # twice is harmless
    check_invariants(e)


def test_cancel_wait_then_commands_again(e: Engine) -> None:
    s = e.connect()
    assert e.reserve(s, None, 0.0) is None
    e.cancel_wait(s)
    e.cancel_wait(s)
    job = put(e, e.connect())
    assert wakeups(e) == [] and job.state is READY
    assert reserve_id(e, s) == job.id


# --- TTR expiry and delays: never lost ----------------------------------------------------


@pytest.mark.parametrize("late", [0.0, 1e-9, 0.5, 1000.0])
def test_ttr_expiry_exact_or_late(e: Engine, late: float) -> None:
    s = e.connect()
    job = put(e, s, ttr=2)
    reserve_id(e, s, 1.0)
    assert e.next_deadline() == 3.0
    e.tick(2.999999)
    assert job.state is RESERVED
    e.tick(3.0 + late)
    assert job.state is READY and job.timeouts == 1 and e.job_timeouts == 1
    assert job.reserver is None and not s.reserved
    check_invariants(e)


def test_ttr_expiry_driven_by_next_deadline_alone(e: Engine) -> None:
    """Whatever touches/reserves happened, ticking only at next_deadline() loses no expiry."""
    s = e.connect()
    jobs = [put(e, s, ttr=ttr) for ttr in (3, 1, 2, 3)]
    now = 0.0
    for job in jobs:
        e.reserve_job(s, job.id, now)
        now += 0.25
    e.touch(s, jobs[0].id, 0.5)  # 3.5
    e.touch(s, jobs[0].id, 0.75)  # 3.75
    run_ticker(e, 1000.0)
    assert all(j.state is READY and j.timeouts == 1 for j in jobs)
    due = e.next_deadline()
    assert due is None or due > 1000.0
    check_invariants(e)


def test_ttr_expired_job_goes_to_a_waiter(e: Engine) -> None:
    a, w = e.connect(), e.connect()
    job = put(e, a, ttr=2)
    reserve_id(e, a, 0.0)
    assert e.reserve(w, None, 0.0) is None
    run_ticker(e, 2.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    assert job.reserver is w and job.timeouts == 1 and job.deadline == 4.0


def test_delay_becomes_ready_exactly_at_deadline(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, delay=3, now=1.0)
    assert job.state is DELAYED and e.next_deadline() == 4.0
    with pytest.raises(TimedOut):
        e.reserve(s, 0, 3.99)
    e.tick(4.0)
    assert job.state is READY
    assert reserve_id(e, s, 4.0) == job.id


def test_late_tick_gives_jobs_before_timing_waiters_out(e: Engine) -> None:
    s, p = e.connect(), e.connect()
    assert e.reserve(s, 2, 0.0) is None  # times out at 2
    job = put(e, p, delay=3, now=0.0)  # ready at 3
    e.tick(5.0)  # the ticker ran late: both are due
    assert wakeups(e) == [(s.id, job.id, None)]


# --- pause --------------------------------------------------------------------------------


def test_pause_and_timed_unpause_wake_waiters(e: Engine) -> None:
    s, w = e.connect(), e.connect()
    e.pause_tube("default", 5, 0.0)
    job = put(e, s)
    with pytest.raises(TimedOut):
        e.reserve(w, 0, 1.0)
    assert e.reserve(w, None, 1.0) is None
    assert wakeups(e) == []
    run_ticker(e, 4.99)
    assert wakeups(e) == []
    run_ticker(e, 5.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    assert not e.tubes["default"].paused
    check_invariants(e)


def test_pause_zero_unpauses_at_once(e: Engine) -> None:
    s, w = e.connect(), e.connect()
    e.pause_tube("default", 100, 0.0)
    job = put(e, s)
    assert e.reserve(w, None, 0.0) is None
    e.pause_tube("default", 0, 1.0)
    assert wakeups(e) == [(w.id, job.id, None)]
    run_ticker(e, 200.0)  # the old pause timer does nothing
    assert not e.tubes["default"].paused
    check_invariants(e)


def test_repause_replaces_the_pause(e: Engine) -> None:
    s = e.connect()
    e.pause_tube("default", 10, 0.0)
    e.pause_tube("default", 2, 1.0)
    put(e, s)
    run_ticker(e, 3.0)
    assert reserve_id(e, s, 3.0) == 1
    e.pause_tube("default", 2, 3.0)
    e.pause_tube("default", 10, 4.0)
    run_ticker(e, 13.99)
    assert e.tubes["default"].paused
    run_ticker(e, 14.0)
    assert not e.tubes["default"].paused


def test_pause_missing_tube(e: Engine) -> None:
    with pytest.raises(NotFound):
        e.pause_tube("nope", 1, 0.0)


# --- memory: lazy deletion must stay bounded ----------------------------------------------


def test_ready_heap_sweeps_stale_entries(e: Engine) -> None:
    s = e.connect()
    jobs = [put(e, s, pri=i % 7) for i in range(1000)]
    tube = e.tubes["default"]
    for job in jobs[100:900]:  # from the middle, never the heap top
        e.delete(s, job.id, 0.0)
        assert len(tube.ready) <= 2 * tube.ready_count + 65
    check_invariants(e)
    left = sorted(jobs[:100] + jobs[900:], key=lambda j: (j.pri, j.id))
    assert [reserve_id(e, s) for _ in range(200)] == [j.id for j in left]
    check_invariants(e)


def test_delay_heap_sweeps_stale_entries(e: Engine) -> None:
    s = e.connect()
    jobs = [put(e, s, delay=1 + i % 50) for i in range(1000)]
    tube = e.tubes["default"]
    for job in jobs[1::2]:
        if job.id % 4 == 0:
            e.kick_job(job.id, 0.0)
        else:
            e.delete(s, job.id, 0.0)
        assert len(tube.delayed) <= 2 * tube.delayed_count + 65
    check_invariants(e)
    run_ticker(e, 100.0)
    assert tube.delayed_count == 0 and tube.ready_count == 750


def test_timer_heap_sweeps_after_many_touches(e: Engine) -> None:
    s = e.connect()
    job = put(e, s, ttr=10)
    reserve_id(e, s, 0.0)
    now = 0.0
    for _ in range(20000):
        now += 0.001
        e.touch(s, job.id, now)
        assert len(e.timers.heap) <= 4097 + 8
    check_invariants(e)
    e.tick(now + 9.999)
    assert job.state is RESERVED
    e.tick(now + 10.0)
    assert job.state is READY and job.timeouts == 1


def test_timer_heap_stays_bounded_with_waiter_churn(e: Engine) -> None:
    w, p = e.connect(), e.connect()
    for i in range(10000):
        now = float(i)
        assert e.reserve(w, 1000, now) is None  # a long timeout: its timer outlives the wait
        job = put(e, p, now=now)
        assert wakeups(e) == [(w.id, job.id, None)]
        e.delete(w, job.id, 0.0)
        assert len(e.timers.heap) <= 4097 + 8
    check_invariants(e)


def test_timer_heap_forgets_pauses_of_vanished_tubes(e: Engine) -> None:
    """A paused tube that vanishes must not keep its pause timer alive for ever."""
    s = e.connect()
    for i in range(4500):
        e.use(s, f"t{i}")
        e.pause_tube(f"t{i}", 4_000_000_000, 0.0)
        e.use(s, "default")  # t{i} is now unused and empty: it goes
    assert len(e.tubes) == 1
    job = put(e, s)
    e.reserve_job(s, job.id, 0.0)
    for i in range(10):
        e.touch(s, job.id, float(i))
    held = len(e.timers.heap)
    assert held <= 4097 + 8, f"{held} timer entries for 1 job, 1 session and 1 tube"


def test_disconnect_under_ticker_lag_still_counts_expired_ttrs(e: Engine) -> None:
    """A TTR that ran out before the connection closed is a timeout, even if no tick ran."""
    p, w = e.connect(), e.connect()
    job = e.put(p, 0, 0, 2, b"x", 0.0)
    assert e.reserve(w, 0, 0.0) is job
    e.disconnect(w, 5.0)  # no tick since t=0: the ticker is late
    assert (job.timeouts, e.job_timeouts, job.state.value) == (1, 1, "ready")
    check_invariants(e)
