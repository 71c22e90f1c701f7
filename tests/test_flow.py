"""Flow control in the engine: unique keys, dependencies, tube limits and schedules.

The state machine in test_engine_state.py drives keys, dependencies and limits against a
model; these are the rules spelled out one scenario each, readable as documentation of
protocol.md's "Flow control" section. Time is passed in; wall time is `now + wall_offset`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tubeserver.engine import Engine
from tubeserver.errors import Draining, NotFound, OutOfMemory, TimedOut, TubeFull
from tubeserver.flow import cancelled_reason
from tubeserver.invariants import check_invariants
from tubeserver.job import Job, JobState
from tubeserver.schedules import BadSpec, parse_spec
from tubeserver.session import Session
from tubeserver.stats import (
    ADMIN_COMMAND_KEYS,
    COMMAND_KEYS,
    FLOW_COMMAND_KEYS,
    TRACKING_COMMAND_KEYS,
    ProcessInfo,
    job_stats,
    job_status,
    server_stats,
    tube_stats,
)
from tubeserver.tracking import Tracker


def state(job: Job) -> JobState:
    """A job's state (a call, so that mypy does not narrow it across the engine's moves)."""
    return job.state


def ids(engine: Engine) -> list[tuple[int, int | None]]:
    """Drained wakeups as (session, job id or None)."""
    return [(w.session.id, None if w.job is None else w.job.id) for w in engine.drain_wakeups()]


def reserve(e: Engine, s: Session, now: float = 0.0) -> Job | None:
    try:
        return e.reserve(s, 0, now)
    except TimedOut:
        return None


def run(e: Engine, until: float) -> None:
    """The ticker: every deadline up to `until`, checking the invariants at each."""
    for _ in range(10_000):
        due = e.next_deadline()
        if due is None or due > until:
            return
        e.tick(due)
        check_invariants(e)
    raise AssertionError("the ticker did not settle")


# --- unique keys -------------------------------------------------------------------------


def test_put_unique_answers_the_holder_while_the_key_is_taken() -> None:
    e = Engine()
    s = e.connect()
    first, new = e.flow.put_unique(s, "report-7", 0, 0, 0, 10, b"a", 0.0)
    assert new
    assert e.flow.put_unique(s, "report-7", 0, 0, 0, 10, b"b", 1.0) == (first, False)
    assert len(e.jobs) == 1 and e.jobs[first].body == b"a"  # nothing stored
    assert job_status(e.jobs[first], e.tracker, 0.0)[-2] == ("key", "report-7")
    e.use(s, "other")  # keys are per tube
    assert e.flow.put_unique(s, "report-7", 0, 0, 0, 10, b"c", 1.0)[1]
    check_invariants(e)


def test_a_key_is_free_once_its_job_is_gone_and_its_window_passed() -> None:
    e = Engine()
    s = e.connect()
    first, _ = e.flow.put_unique(s, "k", 60, 0, 0, 10, b"", 0.0)
    assert reserve(e, s) is e.jobs[first]
    e.delete(s, first, 5.0)
    # Finished, but put 5 s ago with a 60 s window: still a duplicate of the finished job.
    assert e.flow.put_unique(s, "k", 60, 0, 0, 10, b"", 30.0) == (first, False)
    run(e, 60.0)
    check_invariants(e)
    assert not e.flow.keys.holds  # the window passed: the hold is gone, memory back
    second, new = e.flow.put_unique(s, "k", 60, 0, 0, 10, b"", 60.0)
    assert new and second != first


def test_a_live_job_holds_its_key_past_the_window() -> None:
    e = Engine()
    s = e.connect()
    first, _ = e.flow.put_unique(s, "k", 1, 0, 0, 10, b"", 0.0)
    assert e.flow.put_unique(s, "k", 1, 0, 0, 10, b"", 100.0) == (first, False)
    e.delete(s, first, 100.0)  # deleted after its window: free at once
    assert e.flow.put_unique(s, "k", 1, 0, 0, 10, b"", 100.0)[1]
    check_invariants(e)


def test_put_unique_into_a_full_or_draining_server_stores_no_key() -> None:
    e = Engine()
    s = e.connect()
    e.flow.set_limits("default", 0, 1, 0, 0.0)
    e.put(s, 0, 0, 10, b"", 0.0)
    with pytest.raises(TubeFull):
        e.flow.put_unique(s, "k", 60, 0, 0, 10, b"", 0.0)
    assert not e.flow.keys.holds
    e.draining = True
    with pytest.raises(Draining):
        e.flow.put_unique(s, "k", 60, 0, 0, 10, b"", 0.0)


# --- dependencies ------------------------------------------------------------------------


def chain(e: Engine, s: Session) -> tuple[int, int, int]:
    """extract -> transform -> load, each waiting on the one before."""
    a = e.put(s, 0, 0, 10, b"extract", 0.0).id
    b = e.flow.put_after(s, [a], 0, 0, 10, b"transform", 0.0).id
    c = e.flow.put_after(s, [b], 0, 0, 10, b"load", 0.0).id
    return a, b, c


def test_a_chain_runs_one_step_at_a_time() -> None:
    e = Engine()
    s = e.connect()
    a, b, c = chain(e, s)
    assert [e.jobs[i].state for i in (a, b, c)] == [
        JobState.READY, JobState.WAITING, JobState.WAITING]
    order = []
    for step in range(3):
        job = reserve(e, s, float(step))
        assert job is not None and reserve(e, s, float(step)) is None  # one at a time
        order.append(job.body)
        e.delete(s, job.id, float(step))
        check_invariants(e)
    assert order == [b"extract", b"transform", b"load"]


def test_a_waiting_job_is_delayed_to_beanstalkd_commands() -> None:
    e = Engine()
    s = e.connect()
    a = e.put(s, 0, 0, 10, b"", 0.0).id
    b = e.flow.put_after(s, [a], 0, 7, 10, b"", 0.0)
    stats = dict(job_stats(b, 2.0))
    assert stats["state"] == "delayed" and stats["time-left"] == 7
    assert dict(tube_stats(e.tubes["default"], 0.0))["current-jobs-delayed"] == 1
    assert dict(job_status(b, e.tracker, 0.0))["state"] == "waiting"
    assert dict(job_status(b, e.tracker, 0.0))["parents"] == str(a)
    with pytest.raises(NotFound):
        e.peek_delayed(s)  # not in the delay heap: it has no time yet
    assert e.kick(s, 10, 0.0) == 0  # kick leaves it waiting
    assert state(b) is JobState.WAITING


def test_the_childs_delay_starts_when_the_last_parent_finishes() -> None:
    e = Engine()
    s = e.connect()
    p1 = e.put(s, 0, 0, 10, b"", 0.0).id
    p2 = e.put(s, 0, 0, 10, b"", 0.0).id
    child = e.flow.put_after(s, [p1, p2], 0, 5, 10, b"", 0.0)
    for now, parent in ((1.0, p1), (3.0, p2)):
        assert reserve(e, s, now) is e.jobs[parent]
        e.delete(s, parent, now)
    assert child.state is JobState.DELAYED and child.deadline == 3.0 + 5
    check_invariants(e)


def test_parents_already_finished_count_and_unknown_ones_store_nothing() -> None:
    e = Engine()
    s = e.connect()
    done = e.put(s, 0, 0, 10, b"", 0.0).id
    assert reserve(e, s) is not None
    e.delete(s, done, 0.0)  # a kept record: finished
    assert e.flow.put_after(s, [done], 0, 0, 10, b"", 0.0).state is JobState.READY
    with pytest.raises(NotFound):
        e.flow.put_after(s, [done, 999], 0, 0, 10, b"", 0.0)
    assert len(e.jobs) == 1


def test_a_buried_parent_keeps_the_child_waiting_until_it_is_kicked_and_finishes() -> None:
    e = Engine()
    s = e.connect()
    parent = e.put(s, 0, 0, 10, b"", 0.0).id
    child = e.flow.put_after(s, [parent], 0, 0, 10, b"", 0.0)
    assert reserve(e, s) is e.jobs[parent]
    e.bury(s, parent, 0, 0.0, b"boom")
    assert state(child) is JobState.WAITING
    e.kick_job(parent, 1.0)
    assert reserve(e, s, 1.0) is e.jobs[parent]
    e.delete(s, parent, 2.0)
    assert state(child) is JobState.READY
    check_invariants(e)


def test_a_parent_deleted_without_running_buries_its_children_with_a_reason() -> None:
    e = Engine()
    s, waiter = e.connect(), e.connect()
    parent = e.put(s, 0, 0, 10, b"", 0.0).id
    child = e.flow.put_after(s, [parent], 0, 0, 10, b"", 0.0)
    grandchild = e.flow.put_after(s, [child.id], 0, 0, 10, b"", 0.0)
    assert e.results.result(waiter, child.id, 60, 0.0) is None
    e.delete(s, parent, 1.0)  # cancelled: it was ready, nobody ran it
    assert child.state is JobState.BURIED and child.buries == 1
    assert child.extra is not None and child.extra.reason == cancelled_reason(parent)
    (wake,) = e.drain_wakeups()
    assert wake.outcome is not None and wake.outcome.failed
    assert state(grandchild) is JobState.WAITING  # its parent is buried, not gone
    e.delete(s, child.id, 2.0)  # deleting the buried child cancels the grandchild
    assert state(grandchild) is JobState.BURIED
    check_invariants(e)


def test_kick_job_and_reserve_job_release_a_waiting_job() -> None:
    e = Engine()
    s = e.connect()
    parent = e.put(s, 0, 0, 10, b"", 0.0).id
    a = e.flow.put_after(s, [parent], 0, 0, 10, b"", 0.0)
    b = e.flow.put_after(s, [parent], 0, 0, 10, b"", 0.0)
    e.kick_job(a.id, 0.0)
    assert a.state is JobState.READY and a.kicks == 1
    assert e.reserve_job(s, b.id, 0.0) is b
    assert not e.flow.deps.children and e.flow.deps.waiting == 0
    check_invariants(e)


# --- tube limits -------------------------------------------------------------------------


def test_max_reserved_holds_back_reserves_across_connections() -> None:
    e = Engine()
    w1, w2, w3, p = e.connect(), e.connect(), e.connect(), e.connect()
    e.flow.set_limits("default", 2, 0, 0, 0.0)
    for _ in range(4):
        e.put(p, 0, 0, 10, b"", 0.0)
    first, second = reserve(e, w1), reserve(e, w2)
    assert first is not None and second is not None
    assert e.reserve(w3, None, 0.0) is None  # waits, with two jobs ready
    check_invariants(e)
    e.delete(w1, first.id, 1.0)
    assert ids(e) == [(w3.id, first.id + 2)]
    with pytest.raises(TimedOut):  # two reserved again: no room, though two are ready
        e.reserve_batch(w1, 10, 0, 1.0)
    check_invariants(e)


def limited(max_reserved: int, rate: float, jobs: int) -> tuple[Engine, Session, Session]:
    """An engine whose default tube has limits and `jobs` ready jobs: (engine, worker,
    producer)."""
    e = Engine()
    w, p = e.connect(), e.connect()
    e.flow.set_limits("default", max_reserved, 0, rate, 0.0)
    for _ in range(jobs):
        e.put(p, 0, 0, 100, b"", 0.0)
    return e, w, p


def test_reserve_batch_takes_no_more_than_the_room() -> None:
    e, w, _ = limited(3, 0, 10)
    batch = e.reserve_batch(w, 10, 0, 0.0)
    assert batch is not None and len(batch) == 3
    check_invariants(e)


def test_max_jobs_refuses_puts_with_tube_full_and_limits_outlive_the_tube() -> None:
    e = Engine()
    s = e.connect()
    e.flow.set_limits("emails", 0, 2, 0, 0.0)
    assert "emails" not in e.tubes  # limits are configuration: no tube is made
    e.use(s, "emails")
    e.put(s, 0, 0, 10, b"", 0.0)
    e.put(s, 0, 5, 10, b"", 0.0)  # delayed jobs count too
    with pytest.raises(TubeFull):
        e.put(s, 0, 0, 10, b"", 0.0)
    e.flow.set_limits("emails", 0, 0, 0, 0.0)  # all zero: no limits
    e.put(s, 0, 0, 10, b"", 0.0)
    assert e.tubes["emails"].limits is None and not e.flow.limits
    check_invariants(e)


def test_rate_hands_out_a_burst_then_rate_a_second_and_waiters_are_woken() -> None:
    e, w, _ = limited(0, 2, 6)
    got = [reserve(e, w) for _ in range(3)]
    assert [j is not None for j in got] == [True, True, False]  # a burst of 2
    assert e.reserve(w, None, 0.0) is None  # waits for the next token
    check_invariants(e)
    run(e, 0.49)
    assert ids(e) == []
    run(e, 0.5)  # one token a half second at 2 a second
    assert [job for _, job in ids(e)] == [3]
    check_invariants(e)


def test_fractional_rates() -> None:
    e, w, _ = limited(0, 0.1, 2)  # one job every ten seconds
    assert reserve(e, w) is not None and reserve(e, w, 9.9) is None
    assert reserve(e, w, 10.0) is not None


# --- schedules ---------------------------------------------------------------------------


def test_specs() -> None:
    assert parse_spec("every 60").every == 60
    assert parse_spec("single  0 2 * * *").text == "single 0 2 * * *"
    assert parse_spec("*/5 * * * mon-fri").cron == "*/5 * * * mon-fri"
    for bad in ("", "every", "every 0", "every -1", "every 1.5", "0 2 * *", "61 * * * *",
                "0 0 30 2 *", "* * * * * *", "single", "single every", "@daily"):
        with pytest.raises(BadSpec):
            parse_spec(bad)


def test_every_fires_on_its_grid_and_counts() -> None:
    e = Engine()
    e.flow.wall_offset = 1_000_000.0
    e.flow.schedule("tick", "ticks", 5, 30, b"go", parse_spec("every 10"), 0.0)
    check_invariants(e)
    run(e, 35.0)
    jobs = sorted(e.jobs.values(), key=lambda j: j.id)
    assert [(j.tube.name, j.pri, j.ttr, j.body, j.created) for j in jobs] == [
        ("ticks", 5, 30, b"go", t) for t in (10.0, 20.0, 30.0)]
    sched = e.flow.schedules.table["tick"]
    assert (sched.made, sched.next_at) == (3, 1_000_040.0)
    assert sched.last_job == jobs[-1].id


def test_missed_firings_coalesce_into_one_job() -> None:
    e = Engine()
    e.flow.schedule("tick", "ticks", 0, 30, b"", parse_spec("every 10"), 0.0)
    e.tick(95.0)  # the ticker was away for 9 firings
    assert len(e.jobs) == 1 and e.flow.schedules.table["tick"].next_at == 100.0


def test_single_instance_skips_while_the_last_job_lives() -> None:
    e = Engine()
    w = e.connect()
    e.watch(w, "ticks")
    e.flow.schedule("tick", "ticks", 0, 30, b"", parse_spec("single every 10"), 0.0)
    run(e, 30.0)
    sched = e.flow.schedules.table["tick"]
    assert (sched.made, sched.skipped, len(e.jobs)) == (1, 2, 1)
    job = reserve(e, w, 30.0)
    assert job is not None
    e.delete(w, job.id, 31.0)
    run(e, 40.0)
    assert (sched.made, sched.skipped) == (2, 2)


def test_cron_in_a_time_zone_across_a_dst_jump() -> None:
    e = Engine()
    e.flow.schedules.tz = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp()
    e.flow.wall_offset = start  # the engine's clock starts at 0
    e.flow.schedule("night", "t", 0, 30, b"", parse_spec("30 2 * * *"), 0.0)
    run(e, 2 * 86400.0)
    fired = sorted(datetime.fromtimestamp(j.created + start, UTC) for j in e.jobs.values())
    # 02:30 does not exist on 29 March in Berlin: it runs at 03:00 local (01:00 UTC), once.
    assert fired == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                     datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


def test_replacing_with_the_same_definition_keeps_the_next_firing() -> None:
    e = Engine()
    spec = parse_spec("every 100")
    e.flow.schedule("s", "t", 0, 30, b"x", spec, 0.0)
    e.flow.schedule("s", "t", 0, 30, b"x", spec, 50.0)  # an app declaring it at each start
    assert e.flow.schedules.table["s"].next_at == 100.0
    e.flow.schedule("s", "t", 0, 30, b"y", spec, 50.0)  # changed: the grid starts anew
    assert e.flow.schedules.table["s"].next_at == 150.0
    e.flow.unschedule("s")
    with pytest.raises(NotFound):
        e.flow.unschedule("s")
    assert e.next_deadline() is None or not e.flow.schedules.table
    check_invariants(e)


def test_a_firing_into_a_full_tube_is_skipped() -> None:
    e = Engine()
    e.flow.set_limits("t", 0, 1, 0, 0.0)
    e.flow.schedule("s", "t", 0, 30, b"", parse_spec("every 1"), 0.0)
    run(e, 3.0)
    sched = e.flow.schedules.table["s"]
    assert (sched.made, sched.skipped) == (1, 2)
    check_invariants(e)


def test_schedule_count_is_bounded() -> None:
    e = Engine()
    spec = parse_spec("every 60")
    for i in range(10_000):
        e.flow.schedule(f"s{i}", "t", 0, 30, b"", spec, 0.0)
    with pytest.raises(OutOfMemory):
        e.flow.schedule("one-more", "t", 0, 30, b"", spec, 0.0)
    e.flow.schedule("s1", "t", 0, 30, b"new", spec, 0.0)  # replacing is fine


def test_stats_count_flow_control() -> None:
    e = Engine(Tracker())
    s = e.connect()
    e.flow.put_unique(s, "k", 0, 0, 0, 10, b"", 0.0)
    e.flow.put_unique(s, "k", 0, 0, 0, 10, b"", 0.0)
    e.flow.put_after(s, [1], 0, 0, 10, b"", 0.0)
    info = ProcessInfo(1, "v", "id", "h", "os", "p", 100, 0.0)
    counts = dict.fromkeys([*COMMAND_KEYS, *TRACKING_COMMAND_KEYS, *FLOW_COMMAND_KEYS,
                            *ADMIN_COMMAND_KEYS], 0)
    stats = dict(server_stats(e, counts, info, 0.0))
    assert (stats["current-dependent-jobs"], stats["current-unique-keys"],
            stats["unique-duplicates"], stats["current-jobs-delayed"]) == (1, 1, 1, 1)

