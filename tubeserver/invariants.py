"""The engine's structural promises, checked from outside: tests call `check_invariants`
after every step (the hypothesis state machine, the hub and WAL tests), and nothing else does.
Kept apart from engine.py so the coordinator stays about rules, not about checking them."""

from __future__ import annotations

from .engine import BURIED, DELAYED, READY, RESERVED, WAITING, Engine
from .flow import Flow
from .keys import key_name
from .limits import DEFAULT_TUBE
from .tracking import check_tracker
from .tube import Tube


def check_invariants(engine: Engine) -> None:
    """Assert every structural promise of the engine; tests call this after every step.

    Every job sits in exactly one container matching its state, heap bookkeeping agrees with
    a recount, reserved jobs belong to live sessions, every timed state has a live timer, no
    tube is left holding both a waiter and a reservable job, and empty unused tubes are gone.
    """
    e = engine
    assert e.tubes.get(DEFAULT_TUBE) is not None
    assert [t.index for t in e.tube_list] == list(range(len(e.tube_list)))
    assert {t.name: t for t in e.tube_list} == e.tubes

    timed = e.timers.live_targets()
    counts: dict[Tube, list[int]] = {t: [0, 0, 0, 0, 0] for t in e.tube_list}
    for job_id, job in e.jobs.items():
        assert job.id == job_id and 0 < job_id < e._next_id
        assert e.tubes.get(job.tube.name) is job.tube, f"job {job_id} in a dropped tube"
        c = counts[job.tube]
        if job.state is READY:
            c[0] += 1
        elif job.state is DELAYED:
            c[1] += 1
            assert id(job) in timed, f"delayed job {job_id} has no timer"
        elif job.state is BURIED:
            c[2] += 1
            assert job.tube.buried.get(job_id) is job
        elif job.state is RESERVED:
            c[3] += 1
            s = job.reserver
            assert s is not None and s in e.sessions and s.reserved.get(job_id) is job
            assert id(job) in timed, f"reserved job {job_id} has no TTR timer"
        elif job.state is WAITING:
            c[4] += 1
            assert job.tube.waiting.get(job_id) is job
            assert job.extra is not None and job.extra.parents, f"job {job_id} waits on nothing"
        else:
            raise AssertionError(f"job {job_id} is {job.state}")
        if job.state is not RESERVED:
            assert job.reserver is None

    for t in e.tube_list:
        ready = t.ready.jobs()
        assert len(ready) == len({j.id for j in ready}) == t.ready_count == counts[t][0]
        assert all(e.jobs.get(j.id) is j for j in ready)
        assert t.urgent_count == sum(1 for j in ready if j.pri < 1024)
        t.ready.check()
        t.ages.check([j.created for j in ready])
        delayed = t.delayed.jobs()
        assert len(delayed) == len({j.id for j in delayed}) == t.delayed_count == counts[t][1]
        t.delayed.check()
        assert len(t.buried) == counts[t][2]
        assert all(j.state is BURIED and e.jobs.get(i) is j for i, j in t.buried.items())
        assert t.reserved_count == counts[t][3]
        assert len(t.waiting) == counts[t][4]
        assert t.limits is e.flow.limits.get(t.name)
        using = sum(1 for s in e.sessions if s.used is t)
        watching = sum(1 for s in e.sessions if t in s.watched)
        assert (t.using, t.watching) == (using, watching), t.name
        assert t.name == DEFAULT_TUBE or using or watching or t.job_count, f"{t.name} lingers"
        for s in t.waiters:
            assert s.waiter is not None and t in s.watched
        limits = t.limits
        # A limited tube's room as of its bucket's last refill: no engine step lies between.
        room = 1 if limits is None else limits.room(t.reserved_count, limits.refilled)
        if t.waiters and not t.paused and t.peek_ready() is not None and not room:
            assert limits is not None
            if limits.rate_bound(t.reserved_count):
                assert id(limits) in timed, f"tube {t.name}: waiters held by its rate, no timer"
        if t.waiters and not t.paused and t.peek_ready() is not None and room:
            # Only batch reservers still short of a full batch may wait beside ready jobs.
            for s in t.waiters:
                assert s.waiter is not None and s.waiter.count is not None, (
                    f"tube {t.name} has a single waiter and a ready job")
                assert e._available(s, limits.refilled if limits is not None else 0.0) < (
                    s.waiter.count), f"tube {t.name}: a full batch waits"
        if t.paused:
            assert id(t) in timed
        assert t not in e._dirty, "a change was left unmatched"

    assert e._batch_waiters == sum(
        1 for s in e.sessions if s.waiter is not None and s.waiter.count is not None)
    for s in e.sessions:
        assert not s.closed and s.used.name in e.tubes and s.watched
        assert len(set(map(id, s.watched))) == len(s.watched)
        assert all(e.tubes.get(t.name) is t for t in s.watched)
        for job_id, job in s.reserved.items():
            assert job.state is RESERVED and job.reserver is s and job.id == job_id
        if s.waiter is not None:
            assert all(s in t.waiters for t in s.watched)
            if s.waiter.timeout_at is not None:
                assert id(s) in timed
        if s.result_wait is not None:
            assert s.waiter is None, "a session waits in a reserve and a result at once"
            assert id(s) in timed, "a result waiter has no timer"
    quota = e.quota
    assert quota.body_bytes == sum(len(j.body) for j in e.jobs.values()), "quota miscounts"
    check_tracker(e.tracker, e.jobs, e.sessions)
    check_flow(e.flow, timed)


def check_flow(flow: Flow, timed: set[int]) -> None:
    """Keys, dependencies and schedules agree with the jobs."""
    e = flow.engine
    waiting = 0
    for job in e.jobs.values():
        extra = job.extra
        if extra is not None and extra.key is not None:
            hold = flow.keys.holds.get(key_name(job.tube.name, extra.key))
            assert hold is not None and hold.job_id == job.id and hold.live, (
                f"job {job.id} lost its key")
        if job.state is WAITING:
            waiting += 1
            assert extra is not None and extra.parents is not None
            for parent in extra.parents:
                assert parent in e.jobs, f"job {job.id} waits on a gone parent {parent}"
                assert flow.deps.children[parent].get(job.id) is job
    assert flow.deps.waiting == waiting
    for parent, children in flow.deps.children.items():
        assert children and parent in e.jobs
        assert all(c.state is WAITING for c in children.values())
    for name, hold in flow.keys.holds.items():
        if hold.live:  # a key maps to at most one live job, and that job knows it
            holder = e.jobs.get(hold.job_id)
            assert holder is not None and holder.extra is not None
            assert key_name(holder.tube.name, holder.extra.key or "") == name
    if flow.keys.ended:
        assert id(flow.keys) in timed, "key windows with no timer"
    if flow.schedules.table:
        assert id(flow.schedules) in timed, "schedules with no timer"
