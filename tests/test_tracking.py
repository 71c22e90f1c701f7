"""Job tracking in the engine: kept records, result waiters, reasons and checkpoints.

The state machine in test_engine_state.py drives all of it against a model; these are the
rules spelled out one scenario each, readable as documentation of protocol.md's section.
"""

from __future__ import annotations

import pytest

from tubeserver.engine import Engine
from tubeserver.errors import NotFound, TimedOut
from tubeserver.invariants import check_invariants
from tubeserver.job import JobState
from tubeserver.session import Session
from tubeserver.stats import job_status, wall_time
from tubeserver.tracking import RECORD_COST, Outcome, Tracker


def answers(engine: Engine) -> list[tuple[int, bool, int, bytes] | tuple[int, str]]:
    """The drained wakeups as (session, failed, job, data), or (session, error name)."""
    out: list[tuple[int, bool, int, bytes] | tuple[int, str]] = []
    for w in engine.drain_wakeups():
        if w.outcome is not None:
            out.append((w.session.id, w.outcome.failed, w.outcome.job_id, w.outcome.data))
        else:
            out.append((w.session.id, type(w.error).__name__))
    return out


def outcome(o: Outcome | None) -> tuple[bool, int, bytes] | None:
    return None if o is None else (o.failed, o.job_id, o.data)


def reserved(engine: Engine, now: float = 0.0) -> tuple[Session, int]:
    """A worker session holding a fresh job (ttr 10)."""
    s = engine.connect()
    job = engine.put(s, 0, 0, 10, b"body", now)
    assert engine.reserve(s, 0, now) is job
    return s, job.id


def test_finish_keeps_the_result_while_beanstalkd_commands_see_nothing() -> None:
    e = Engine()
    s, job_id = reserved(e)
    e.delete(s, job_id, 1.0, b"42")
    with pytest.raises(NotFound):
        e.peek(job_id)  # stats-job, peek, kick-job: NOT_FOUND as in beanstalkd
    assert job_id not in e.jobs
    assert outcome(e.results.result(s, job_id, 5, 2.0)) == (False, job_id, b"42")
    record = e.results.job_status(job_id)
    assert record.state is JobState.FINISHED and record.body == b"42"
    check_invariants(e)


def test_a_plain_delete_is_a_finish_with_an_empty_result() -> None:
    e = Engine()
    s, job_id = reserved(e)
    e.delete(s, job_id, 1.0)
    assert outcome(e.results.result(s, job_id, 0, 1.0)) == (False, job_id, b"")


def test_every_waiter_is_answered_once_when_the_job_finishes() -> None:
    e = Engine()
    worker, job_id = reserved(e)
    a, b = e.connect(), e.connect()
    assert e.results.result(a, job_id, 30, 0.0) is None
    assert e.results.result(b, job_id, 60, 0.0) is None
    assert e.tracker.waiting == 2 and not a.worker and not b.worker
    check_invariants(e)
    e.delete(worker, job_id, 1.0, b"ok")
    assert sorted(answers(e)) == [(a.id, False, job_id, b"ok"), (b.id, False, job_id, b"ok")]
    e.tick(100.0)  # their timeout timers are stale now
    assert answers(e) == [] and e.tracker.waiting == 0
    check_invariants(e)


def test_fail_buries_with_a_reason_that_bury_and_kick_keep() -> None:
    e = Engine()
    worker, job_id = reserved(e)
    waiter = e.connect()
    assert e.results.result(waiter, job_id, 30, 0.0) is None
    e.bury(worker, job_id, 7, 0.0, b"disk full")
    assert answers(e) == [(waiter.id, True, job_id, b"disk full")]
    assert outcome(e.results.result(waiter, job_id, 30, 1.0)) == (True, job_id, b"disk full")
    e.kick_job(job_id, 2.0)
    assert e.reserve(worker, 0, 2.0) is not None
    e.bury(worker, job_id, 7, 0.0)  # a plain bury keeps the last reason
    assert outcome(e.results.result(waiter, job_id, 0, 3.0)) == (True, job_id, b"disk full")
    e.kick_job(job_id, 4.0)
    assert e.results.result(waiter, job_id, 10, 4.0) is None  # live again: waits for what's next
    check_invariants(e)


def test_result_times_out_and_zero_answers_at_once() -> None:
    e = Engine()
    _, job_id = reserved(e)
    waiter = e.connect()
    with pytest.raises(TimedOut):
        e.results.result(waiter, job_id, 0, 0.0)
    assert e.results.result(waiter, job_id, 2, 0.0) is None
    assert e.next_deadline() == 2.0
    e.tick(2.0)
    assert answers(e) == [(waiter.id, "TimedOut")]
    check_invariants(e)


def test_unknown_ids_are_not_found_and_a_closed_waiter_loses_nothing() -> None:
    e = Engine()
    worker, job_id = reserved(e)
    with pytest.raises(NotFound):
        e.results.result(worker, 999, 5, 0.0)
    waiter = e.connect()
    assert e.results.result(waiter, job_id, 30, 0.0) is None
    e.cancel_wait(waiter)  # it hung up
    e.disconnect(waiter, 0.5)
    e.delete(worker, job_id, 1.0, b"r")
    assert answers(e) == []
    check_invariants(e)


def test_records_expire_after_the_ttl_on_the_engines_timer() -> None:
    e = Engine(Tracker(ttl=10.0))
    s, first = reserved(e, 0.0)
    e.delete(s, first, 1.0)
    s2, second = reserved(e, 2.0)
    e.delete(s2, second, 5.0)
    e.tick(10.9)
    assert [j.id for j in e.tracker.order] == [first, second]
    e.tick(11.0)
    assert [j.id for j in e.tracker.order] == [second] and e.tracker.expired == 1
    e.tick(14.9)
    assert e.next_deadline() == 15.0
    e.tick(15.0)
    assert not e.tracker.records and e.tracker.bytes == 0 and e.next_deadline() is None
    with pytest.raises(NotFound):
        e.results.job_status(first)
    check_invariants(e)


def test_the_oldest_records_are_evicted_past_the_memory_bound() -> None:
    e = Engine(Tracker(ttl=100.0, memory=2 * RECORD_COST + 9))  # one record of 205 fits
    s = e.connect()
    ids = []
    for i in range(3):
        job = e.put(s, 0, 0, 10, b"x", float(i))
        e.delete(s, job.id, float(i), b"12345")
        ids.append(job.id)
    assert [j.id for j in e.tracker.order] == ids[2:] and e.tracker.evicted == 2
    assert e.tracker.bytes == RECORD_COST + 5
    big = e.put(s, 0, 0, 10, b"x", 5.0)
    e.delete(s, big.id, 5.0, b"y" * (3 * RECORD_COST))  # larger than the whole bound
    assert big.id not in e.tracker.records and e.tracker.evicted == 3
    check_invariants(e)


def test_checkpoints_stay_with_the_job_through_retries_and_go_with_it() -> None:
    e = Engine()
    worker, job_id = reserved(e)
    other = e.connect()
    with pytest.raises(NotFound):
        e.results.peek_checkpoint(job_id)  # none yet
    with pytest.raises(NotFound):
        e.results.checkpoint(other, job_id, b"step 1", 1.0)  # only the holder may
    e.results.checkpoint(worker, job_id, b"step 1", 5.0)
    assert e.jobs[job_id].deadline == 15.0  # restarted like touch
    e.tick(15.0)  # TTR runs out: ready again, checkpoint kept
    assert e.jobs[job_id].state is JobState.READY
    assert e.results.peek_checkpoint(job_id) == b"step 1"
    assert e.reserve(other, 0, 16.0) is not None
    e.bury(other, job_id, 0, 0.0)
    e.kick_job(job_id, 17.0)
    assert e.results.peek_checkpoint(job_id) == b"step 1"
    assert e.reserve(other, 0, 18.0) is not None
    e.delete(other, job_id, 19.0, b"done")
    with pytest.raises(NotFound):
        e.results.peek_checkpoint(job_id)
    check_invariants(e)


def test_with_ttl_zero_nothing_is_kept_but_waiters_are_answered() -> None:
    e = Engine(Tracker(ttl=0.0))
    worker, job_id = reserved(e)
    waiter = e.connect()
    assert e.results.result(waiter, job_id, 30, 0.0) is None
    e.delete(worker, job_id, 1.0, b"r")
    assert answers(e) == [(waiter.id, False, job_id, b"r")]
    assert not e.tracker.records
    with pytest.raises(NotFound):
        e.results.result(waiter, job_id, 0, 2.0)
    check_invariants(e)


def test_job_status_shows_wall_clock_times_and_sizes() -> None:
    e = Engine(Tracker(ttl=3600.0))
    wall = 1_800_000_000.0  # the wall clock minus the engine's clock
    s = e.connect()
    job = e.put(s, 5, 0, 10, b"body", 1.0)
    status = dict(job_status(job, e.tracker, wall))
    assert status["state"] == "ready" and status["reserved"] == "" and status["finished"] == ""
    assert status["created"] == wall_time(wall + 1.0) == "2027-01-15T08:00:01.000000Z"
    assert status["checkpoint-bytes"] == -1 and status["expires"] == ""
    assert e.reserve(s, 0, 2.5) is job
    e.results.checkpoint(s, job.id, b"abc", 3.0)
    status = dict(job_status(job, e.tracker, wall))
    assert (status["state"], status["reserves"], status["checkpoint-bytes"]) == ("reserved", 1, 3)
    assert status["reserved"] == "2027-01-15T08:00:02.500000Z"
    e.delete(s, job.id, 4.0, b"result")
    status = dict(job_status(e.results.job_status(job.id), e.tracker, wall))
    assert status["state"] == "finished" and status["result-bytes"] == 6
    assert status["finished"] == "2027-01-15T08:00:04.000000Z"
    assert status["expires"] == "2027-01-15T09:00:04.000000Z"
    assert status["checkpoint-bytes"] == -1
    assert [k for k, _ in job_status(job, e.tracker, wall)] == [
        "id", "tube", "state", "pri", "delay", "ttr", "reserves", "timeouts", "releases",
        "buries", "kicks", "created", "reserved", "finished", "result-bytes", "reason-bytes",
        "checkpoint-bytes", "expires", "key", "parents"]
