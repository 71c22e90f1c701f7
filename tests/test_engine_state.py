"""Model-based test of the job engine: a hypothesis state machine runs the real Engine and a
small independent model side by side, and compares jobs, tubes, sessions and wakeups each step.

Commands go through the same door as in production: before each one the engine is ticked
when `next_deadline() <= now` (as `Dispatcher.handle` does), so a `next_deadline` that is too
late shows up as a divergence. Time moves in quarter seconds so that deadlines tie exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from tubeserver.engine import Engine
from tubeserver.errors import (
    DeadlineSoon,
    NotFound,
    NotIgnored,
    ProtocolError,
    TimedOut,
    TubeFull,
)
from tubeserver.flow import cancelled_reason
from tubeserver.invariants import check_invariants
from tubeserver.limits import CLEAR_STATES, LIST_STATES
from tubeserver.schedules import parse_spec
from tubeserver.session import Session
from tubeserver.tracking import RECORD_COST, Tracker

T = TypeVar("T")
MARGIN = 1.0  # DEADLINE_SOON safety margin, seconds
DEFAULT = "default"
READY, RESERVED, DELAYED, BURIED = "ready", "reserved", "delayed", "buried"
WAITING = "waiting"  # put-after, until its parents finish
# What `result` answers: (failed, job id, data).
Answer = tuple[bool, int, bytes]
# A wakeup: session id, job id (a tuple of ids for reserve-batch, an Answer for `result`), and
# the errors the engine may answer with (empty: jobs or an answer).
Outcome = tuple[int, int | tuple[int, ...] | Answer | None, tuple[type[ProtocolError], ...]]
# Job tracking in the machine: records kept a few seconds, in little memory, so that expiry
# and eviction both happen within a program.
RECORD_TTL = 6.0
RECORD_MEMORY = 3 * RECORD_COST + 8
DATA = st.sampled_from([b"", b"x", b"done", b"a longer result"])

TUBES = st.sampled_from([DEFAULT, "a", "b"])
PRIS = st.sampled_from([0, 5, 5, 10, 1023, 1024, 2**32 - 1])
DELAYS = st.sampled_from([0, 0, 0, 1, 2, 5])
TTRS = st.sampled_from([0, 1, 2, 3, 5, 8])
TIMEOUTS = st.sampled_from([None, None, 0, 0, 0.5, 1, 2, 3])
STEPS = st.sampled_from([0.25, 0.5, 1.0, 1.0, 2.0, 3.0, 10.0, "next", "next", "due"])
HOW = st.sampled_from(["release", "bury", "touch", "delete", "reserve_job", "finish", "fail",
                       "checkpoint"])
OWN_HOW = st.sampled_from(["release", "release", "bury", "touch", "delete", "finish", "fail",
                           "checkpoint"])


@attrs.define
class MJob:
    id: int
    tube: str
    pri: int
    ttr: int
    state: str
    deadline: float = 0.0  # delayed: when it becomes ready; reserved: when its TTR expires
    reserver: int | None = None
    buried_seq: int = 0
    timeouts: int = 0
    reserves: int = 0
    releases: int = 0
    buries: int = 0
    kicks: int = 0
    reason: bytes | None = None
    checkpoint: bytes | None = None
    result: bytes = b""  # once finished
    finished: float = 0.0
    delay: int = 0
    key: str | None = None  # put-unique
    parents: list[int] = attrs.Factory(list)  # put-after: the parents still open


@attrs.define
class MSession:
    id: int
    used: str
    watched: list[str]
    reserved: set[int] = attrs.Factory(set)
    wait_seq: int | None = None  # set while the session waits in a reserve
    timeout_at: float | None = None
    soon_at: float | None = None  # when the wait's DEADLINE_SOON check is next due
    count: int | None = None  # reserve-batch: the jobs wanted; None for a plain reserve
    result_for: int | None = None  # the job it waits on in `result`
    result_until: float = 0.0


class Model:
    """What the engine should do, written as plainly as possible (linear scans everywhere)."""

    def __init__(self, ttl: float) -> None:
        self.now = 0.0
        self.ttl = ttl
        self.records: dict[int, MJob] = {}  # finished jobs kept, oldest first
        self.jobs: dict[int, MJob] = {}
        self.sessions: dict[int, MSession] = {}
        self.tubes = [DEFAULT]  # creation order; a vanishing tube is replaced by the last one
        self.paused: dict[str, float] = {}  # tube -> pause end
        self.next_id = 1
        self.seq = 0
        self.timeouts = 0
        self.wakeups: list[Outcome] = []
        self.keys: dict[tuple[str, str], tuple[int, float]] = {}  # -> (job id, window end)
        self.limits: dict[str, tuple[int, int]] = {}  # tube -> (max reserved, max jobs)
        # `every` schedules: name -> [tube, every, single, next, last job, made, skipped]
        self.schedules: dict[str, list[Any]] = {}

    # --- helpers ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def ensure_tube(self, name: str) -> None:
        if name not in self.tubes:
            self.tubes.append(name)

    def maybe_drop(self, name: str) -> None:
        alive = (
            name == DEFAULT
            or any(s.used == name or name in s.watched for s in self.sessions.values())
            or any(j.tube == name for j in self.jobs.values())
        )
        if alive or name not in self.tubes:
            return
        i = self.tubes.index(name)
        last = self.tubes.pop()
        if last != name:
            self.tubes[i] = last
        self.paused.pop(name, None)

    def in_state(self, tube: str, state: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.tube == tube and j.state == state]

    def room(self, tube: str) -> int:
        """How many more of the tube's jobs may be reserved (tube-limits' max-reserved)."""
        most = self.limits.get(tube, (0, 0))[0]
        return 10**9 if not most else max(0, most - len(self.in_state(tube, RESERVED)))

    def best_ready(self, tubes: list[str]) -> MJob | None:
        ready = [j for t in tubes if t not in self.paused and self.room(t)
                 for j in self.in_state(t, READY)]
        return min(ready, key=lambda j: (j.pri, j.id), default=None)

    def soonest(self, s: MSession) -> float | None:
        return min((self.jobs[i].deadline for i in s.reserved), default=None)

    def own(self, sid: int, job_id: int) -> MJob:
        if job_id not in self.sessions[sid].reserved:
            raise NotFound()
        return self.jobs[job_id]

    def take(self, sid: int, job: MJob) -> None:
        job.state, job.reserver, job.deadline = RESERVED, sid, self.now + job.ttr
        job.reserves += 1
        self.sessions[sid].reserved.add(job.id)

    def unreserve(self, job: MJob) -> None:
        assert job.reserver is not None
        self.sessions[job.reserver].reserved.discard(job.id)
        job.reserver = None

    def end_wait(self, s: MSession) -> None:
        s.wait_seq = s.timeout_at = s.soon_at = s.count = None

    def waiting(self) -> list[MSession]:
        """Waiting sessions, oldest first."""
        return sorted((s for s in self.sessions.values() if s.wait_seq is not None),
                      key=lambda s: s.wait_seq or 0)

    def available(self, s: MSession) -> int:
        return sum(min(len(self.in_state(t, READY)), self.room(t)) for t in s.watched
                   if t not in self.paused)

    def take_best(self, sid: int, count: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            job = self.best_ready(self.sessions[sid].watched)
            if job is None:
                break
            self.take_limited(sid, job)
            taken.append(job.id)
        return taken

    def take_limited(self, sid: int, job: MJob) -> None:
        """A reserve's take: never past the tube's max-reserved (reserve-job, which names
        its job, is not held back, as it is not by a pause)."""
        most = self.limits.get(job.tube, (0, 0))[0]
        assert not most or len(self.in_state(job.tube, RESERVED)) < most, "over max-reserved"
        self.take(sid, job)

    def grant(self, s: MSession) -> None:
        """Answer waiter `s` with what is ready for it: one job, or up to its batch."""
        count = s.count
        self.end_wait(s)
        taken = self.take_best(s.id, 1 if count is None else count)
        assert taken
        self.wakeups.append((s.id, taken[0] if count is None else tuple(taken), ()))

    def next_served(self, line: list[MSession]) -> MSession | None:
        """Of one tube's waiters (oldest first): the head as soon as anyone wants a single
        job, else the first batch waiter whose whole batch is ready, else nobody."""
        for s in line:
            if s.count is None:
                return line[0]
            if self.available(s) >= s.count:
                return s
        return None

    def match(self) -> None:
        """Serve waiters: among tubes with a ready job and someone to serve there, the one
        with the globally best job first."""
        while True:
            waiting = self.waiting()
            best: tuple[int, int] | None = None
            served: MSession | None = None
            for t in self.tubes:
                job = self.best_ready([t])
                if job is None:
                    continue
                s = self.next_served([w for w in waiting if t in w.watched])
                if s is not None and (best is None or (job.pri, job.id) < best):
                    best, served = (job.pri, job.id), s
            if served is None:
                return
            self.grant(served)

    def due(self) -> None:
        """tick(now), also when the ticker runs late and several deadlines passed at once.

        Job and pause changes due by `now` apply first and ready jobs go to waiters (so a
        waiter whose timeout also passed still gets the job, as in beanstalkd's prottick);
        then a session still waiting gets DEADLINE_SOON if a job it still holds is within
        the margin at `now`, else TIMED_OUT if its timeout has passed.
        """
        now = self.now
        for s in self.sessions.values():
            if s.result_for is not None and s.result_until <= now:
                s.result_for = None
                self.wakeups.append((s.id, None, (TimedOut,)))
        for job_id, record in list(self.records.items()):
            if record.finished + self.ttl <= now:
                del self.records[job_id]
        for j in self.jobs.values():
            if j.state == DELAYED and j.deadline <= now:
                j.state = READY
            elif j.state == RESERVED and j.deadline <= now:
                self.unreserve(j)
                j.state = READY
                j.timeouts += 1
                self.timeouts += 1
        for name, until in list(self.paused.items()):
            if until <= now:
                del self.paused[name]
        self.fire()
        self.match()
        # Timer order in the engine: due DEADLINE_SOON checks first, then due timeouts, each
        # by its time and then by arrival. A batch waiter answered by either takes what is
        # ready (a partial batch) when anything is.
        soon: list[tuple[MSession, bool]] = []
        timed_out: list[MSession] = []
        for s in self.waiting():
            wait_due = s.timeout_at is not None and s.timeout_at <= now
            soonest = self.soonest(s)
            if soonest is not None and now >= soonest - MARGIN:
                # DEADLINE_SOON, also when the timeout is due too: beanstalkd's conn_timeout
                # checks the margin first. Only a late tick that finds the timeout strictly
                # earlier than the margin may answer either.
                assert s.soon_at is not None and s.soon_at <= now
                soon.append((s, wait_due and (s.timeout_at or 0.0) < s.soon_at))
            elif wait_due:
                timed_out.append(s)
            elif s.soon_at is not None and s.soon_at <= now:
                # The held job the margin was for has expired: the check moves later.
                s.soon_at = None if soonest is None else soonest - MARGIN
        soon.sort(key=lambda x: (x[0].soon_at or 0.0, x[0].wait_seq or 0))
        timed_out.sort(key=lambda s: (s.timeout_at or 0.0, s.wait_seq or 0))
        for s, late in soon:
            if self.available(s):
                self.grant(s)
                continue
            self.end_wait(s)
            self.wakeups.append((s.id, None, (DeadlineSoon, TimedOut) if late else
                                 (DeadlineSoon,)))
        for s in timed_out:
            if self.available(s):
                self.grant(s)
                continue
            self.end_wait(s)
            self.wakeups.append((s.id, None, (TimedOut,)))

    def next_event(self) -> float | None:
        times = [j.deadline for j in self.jobs.values() if j.state in (DELAYED, RESERVED)]
        times += self.paused.values()
        times += [r.finished + self.ttl for r in self.records.values()]
        times += [s.result_until for s in self.sessions.values() if s.result_for is not None]
        times += [sched[3] for sched in self.schedules.values()]
        for s in self.sessions.values():
            if s.wait_seq is not None:
                if s.timeout_at is not None:
                    times.append(s.timeout_at)
                soonest = self.soonest(s)
                if soonest is not None:
                    times.append(soonest - MARGIN)
        return min(times, default=None)

    # --- commands --------------------------------------------------------------------

    def connect(self, sid: int) -> None:
        self.sessions[sid] = MSession(sid, DEFAULT, [DEFAULT])

    def disconnect(self, sid: int) -> None:
        self.due()  # the engine applies due timers first, as before any command
        s = self.sessions[sid]
        self.end_wait(s)
        s.result_for = None
        for job_id in sorted(s.reserved):
            job = self.jobs[job_id]
            self.unreserve(job)
            job.state = READY
        used, s.used = s.used, ""
        self.maybe_drop(used)
        while s.watched:
            self.maybe_drop(s.watched.pop(0))
        del self.sessions[sid]
        self.match()

    def cancel_wait(self, sid: int) -> None:
        self.end_wait(self.sessions[sid])
        self.sessions[sid].result_for = None

    def put(self, sid: int, pri: int, delay: int, ttr: int, parents: list[int] | None = None
            ) -> int:
        tube = self.sessions[sid].used
        most = self.limits.get(tube, (0, 0))[1]
        if most and sum(1 for j in self.jobs.values() if j.tube == tube) >= most:
            raise TubeFull()
        job = MJob(self.next_id, tube, pri, max(ttr, 1), READY, delay=delay)
        self.next_id += 1
        self.jobs[job.id] = job
        if parents:
            job.state, job.parents = WAITING, parents
        elif delay:
            job.state, job.deadline = DELAYED, self.now + delay
        self.match()
        return job.id

    def put_unique(self, sid: int, key: str, window: int, pri: int, delay: int,
                   ttr: int) -> tuple[int, bool]:
        name = (self.sessions[sid].used, key)
        held = self.keys.get(name)
        if held is not None and (held[0] in self.jobs or self.now < held[1]):
            return held[0], False
        job_id = self.put(sid, pri, delay, ttr)
        self.keys[name] = (job_id, self.now + window)
        self.jobs[job_id].key = key
        return job_id, True

    def put_after(self, sid: int, parents: list[int], pri: int, delay: int, ttr: int) -> int:
        if any(p not in self.jobs and p not in self.records for p in parents):
            raise NotFound()
        return self.put(sid, pri, delay, ttr, [p for p in parents if p in self.jobs])

    def schedule(self, name: str, tube: str, every: int, single: bool) -> None:
        old = self.schedules.get(name)
        if old is not None and old[:3] == [tube, every, single]:
            return  # the same definition: nothing changes
        counts = [0, 0, 0] if old is None else old[4:]
        self.schedules[name] = [tube, every, single, self.now + every, *counts]

    def unschedule(self, name: str) -> None:
        if self.schedules.pop(name, None) is None:
            raise NotFound()

    def fire(self) -> None:
        """Schedules due by now, soonest first: one job each however many firings passed."""
        for sched in sorted(self.schedules.values(), key=lambda x: x[3]):
            tube, every, single, at, last = sched[:5]
            if at > self.now:
                continue
            most = self.limits.get(tube, (0, 0))[1]
            if (single and last in self.jobs) or (
                    most and sum(1 for j in self.jobs.values() if j.tube == tube) >= most):
                sched[6] += 1
            else:
                self.ensure_tube(tube)
                job = MJob(self.next_id, tube, 0, 5, READY)
                self.next_id += 1
                self.jobs[job.id] = job
                sched[4] = job.id
                sched[5] += 1
            sched[3] = at + every * (int((self.now - at) // every) + 1)

    def tube_limits(self, name: str, max_reserved: int, max_jobs: int) -> None:
        if max_reserved or max_jobs:
            self.limits[name] = (max_reserved, max_jobs)
        else:
            self.limits.pop(name, None)
        self.match()

    def parent_gone(self, parent: int, ran: bool) -> None:
        """Children waiting on `parent` (in put order): released when it ran and was their
        last, else buried with the reason."""
        for child in sorted(self.jobs.values(), key=lambda j: j.id):
            if child.state != WAITING or parent not in child.parents:
                continue
            if ran:
                child.parents.remove(parent)
                if not child.parents:
                    if child.delay:
                        child.state, child.deadline = DELAYED, self.now + child.delay
                    else:
                        child.state = READY
            else:
                child.parents = []
                child.state, child.buried_seq = BURIED, self._next_seq()
                child.buries += 1
                child.reason = cancelled_reason(parent)
                self.answer(child.id, (True, child.id, child.reason))

    def use(self, sid: int, name: str) -> str:
        s = self.sessions[sid]
        self.ensure_tube(name)
        old, s.used = s.used, name
        self.maybe_drop(old)
        return name

    def watch(self, sid: int, name: str) -> int:
        s = self.sessions[sid]
        self.ensure_tube(name)
        if name not in s.watched:
            s.watched.append(name)
        return len(s.watched)

    def ignore(self, sid: int, name: str) -> int:
        s = self.sessions[sid]
        if name not in s.watched:
            return len(s.watched)
        if len(s.watched) == 1:
            raise NotIgnored()
        i = s.watched.index(name)
        last = s.watched.pop()
        if last != name:
            s.watched[i] = last
        self.maybe_drop(name)
        return len(s.watched)

    def reserve(self, sid: int, timeout: float | None) -> int | None:
        s = self.sessions[sid]
        # Batch waiters holding out beside jobs `s` could take were first in line: each
        # takes what is ready for it now, oldest first, before `s` does.
        contested = [t for t in s.watched if t not in self.paused and self.in_state(t, READY)]
        for h in self.waiting():
            if any(t in h.watched for t in contested) and self.available(h):
                self.grant(h)
        job = self.best_ready(s.watched)
        if job is not None:
            self.take_limited(sid, job)
            return job.id
        self.wait(s, None, timeout)
        return None

    def reserve_batch(self, sid: int, count: int, timeout: float | None) -> tuple[int, ...] | None:
        s = self.sessions[sid]
        available = self.available(s)
        soonest = self.soonest(s)
        soon = soonest is not None and self.now >= soonest - MARGIN
        if available >= count or (available and (timeout == 0 or soon)):
            return tuple(self.take_best(sid, count))
        self.wait(s, count, timeout)
        return None

    def wait(self, s: MSession, count: int | None, timeout: float | None) -> None:
        soonest = self.soonest(s)
        if soonest is not None and self.now >= soonest - MARGIN:
            raise DeadlineSoon()
        if timeout == 0:
            raise TimedOut()
        s.wait_seq = self._next_seq()
        s.timeout_at = None if timeout is None else self.now + timeout
        s.soon_at = None if soonest is None else soonest - MARGIN
        s.count = count

    def reserve_job(self, sid: int, job_id: int) -> int:
        job = self.jobs.get(job_id)
        if job is None or job.state == RESERVED:
            raise NotFound()
        job.parents = []
        self.take(sid, job)
        return job_id

    def delete(self, sid: int, job_id: int, result: bytes = b"") -> None:
        job = self.jobs.get(job_id)
        if job is None or (job.state == RESERVED and job.reserver != sid):
            raise NotFound()
        ran = job.state == RESERVED
        if ran:
            self.unreserve(job)
        del self.jobs[job_id]
        self.answer(job_id, (False, job_id, result))
        self.parent_gone(job_id, ran)
        self.maybe_drop(job.tube)
        self.match()
        job.state, job.result, job.finished, job.checkpoint = "finished", result, self.now, None
        cost = RECORD_COST + len(result) + len(job.reason or b"")
        if self.ttl > 0 and cost <= RECORD_MEMORY:
            self.records[job_id] = job
            while sum(RECORD_COST + len(r.result) + len(r.reason or b"")
                      for r in self.records.values()) > RECORD_MEMORY:
                del self.records[next(iter(self.records))]

    def answer(self, job_id: int, answer: Answer) -> None:
        for s in self.sessions.values():
            if s.result_for == job_id:
                s.result_for = None
                self.wakeups.append((s.id, answer, ()))

    def result(self, sid: int, job_id: int, timeout: float) -> Answer | None:
        job = self.jobs.get(job_id)
        if job is None:
            record = self.records.get(job_id)
            if record is None:
                raise NotFound()
            return (False, job_id, record.result)
        if job.state == BURIED:
            return (True, job_id, job.reason or b"")
        if timeout == 0:
            raise TimedOut()
        s = self.sessions[sid]
        s.result_for, s.result_until = job_id, self.now + timeout
        return None

    def job_status(self, job_id: int) -> tuple[str, int, int, int, bytes | None]:
        job = self.jobs.get(job_id) or self.records.get(job_id)
        if job is None:
            raise NotFound()
        return (job.state, job.reserves, job.buries, job.kicks, job.reason)

    def checkpoint(self, sid: int, job_id: int, data: bytes) -> None:
        self.touch(sid, job_id)
        self.jobs[job_id].checkpoint = data

    def peek_checkpoint(self, job_id: int) -> bytes:
        job = self.jobs.get(job_id)
        if job is None or job.checkpoint is None:
            raise NotFound()
        return job.checkpoint

    def release(self, sid: int, job_id: int, pri: int, delay: int) -> None:
        job = self.own(sid, job_id)
        self.unreserve(job)
        job.pri = pri
        job.releases += 1
        if delay:
            job.state, job.deadline = DELAYED, self.now + delay
        else:
            job.state = READY
        self.match()  # a ready job, or room again in a limited tube

    def bury(self, sid: int, job_id: int, pri: int, reason: bytes | None = None) -> None:
        job = self.own(sid, job_id)
        self.unreserve(job)
        job.pri, job.state, job.buried_seq = pri, BURIED, self._next_seq()
        job.buries += 1
        if reason is not None:
            job.reason = reason
        self.answer(job_id, (True, job_id, job.reason or b""))
        self.match()  # a limited tube may have room again

    def touch(self, sid: int, job_id: int) -> None:
        job = self.own(sid, job_id)
        job.deadline = self.now + job.ttr

    def peek(self, job_id: int) -> int:
        if job_id not in self.jobs:
            raise NotFound()
        return job_id

    def peek_ready(self, sid: int) -> int:
        ready = self.in_state(self.sessions[sid].used, READY)  # pause does not matter
        return _found(min(ready, key=lambda j: (j.pri, j.id), default=None))

    def peek_delayed(self, sid: int) -> int:
        delayed = self.in_state(self.sessions[sid].used, DELAYED)
        return _found(min(delayed, key=lambda j: (j.deadline, j.id), default=None))

    def peek_buried(self, sid: int) -> int:
        buried = self.in_state(self.sessions[sid].used, BURIED)
        return _found(min(buried, key=lambda j: j.buried_seq, default=None))

    def buried_fifo(self, tube: str) -> list[int]:
        return [j.id for j in sorted(self.in_state(tube, BURIED), key=lambda j: j.buried_seq)]

    def kick(self, sid: int, bound: int) -> int:
        return self.kick_tube(self.sessions[sid].used, bound)

    def kick_tube(self, tube: str, bound: int) -> int:
        if tube not in self.tubes:
            raise NotFound()
        if buried := self.in_state(tube, BURIED):
            jobs = sorted(buried, key=lambda j: j.buried_seq)
        else:
            jobs = sorted(self.in_state(tube, DELAYED), key=lambda j: (j.deadline, j.id))
        for job in jobs[:bound]:
            job.state = READY
            job.kicks += 1
        self.match()
        return len(jobs[:bound])

    def kick_job(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (BURIED, DELAYED, WAITING):
            raise NotFound()
        job.state, job.parents = READY, []
        job.kicks += 1
        self.match()

    def list_jobs(self, tube: str, state: str, offset: int, limit: int) -> list[int]:
        if tube not in self.tubes:
            raise NotFound()
        order: dict[str, Callable[[MJob], Any]] = {
            READY: lambda j: (j.pri, j.id), DELAYED: lambda j: (j.deadline, j.id),
            BURIED: lambda j: j.buried_seq, RESERVED: lambda j: (j.deadline, j.id),
            WAITING: lambda j: j.id}
        jobs = sorted(self.in_state(tube, state), key=order[state])
        return [j.id for j in jobs[offset:offset + limit]]

    def clear_tube(self, tube: str, state: str, order: list[int]) -> int:
        """Delete the tube's jobs of `state`, in `order` (the engine's snapshot: which job
        goes first is no concern of the model's, only that each is an ordinary delete)."""
        if tube not in self.tubes:
            raise NotFound()
        assert sorted(order) == sorted(j.id for j in self.in_state(tube, state))
        cleared = 0
        for job_id in order:
            job = self.jobs.get(job_id)
            if job is not None and job.state == state:  # not moved by an earlier delete
                self.delete(-1, job_id)
                cleared += 1
        return cleared

    def pause_tube(self, name: str, delay: int) -> None:
        if name not in self.tubes:
            raise NotFound()
        if delay:
            self.paused[name] = self.now + delay
        else:
            self.paused.pop(name, None)
            self.match()


def _found(job: MJob | None) -> int:
    if job is None:
        raise NotFound()
    return job.id


def _outcome(fn: Callable[[], T]) -> tuple[T | None, type[ProtocolError] | None]:
    try:
        return fn(), None
    except ProtocolError as e:
        return None, type(e)


class EngineMachine(RuleBasedStateMachine):
    """Rules are commands of idle sessions plus time; key rules appear twice for weight."""

    sessions = Bundle("sessions")
    jobs = Bundle("jobs")

    ttl = RECORD_TTL

    def __init__(self) -> None:
        super().__init__()
        self.e = Engine(Tracker(self.ttl, RECORD_MEMORY))
        self.m = Model(self.ttl)

    # --- plumbing --------------------------------------------------------------------

    def sync(self) -> None:
        """What Dispatcher.handle does before every command."""
        due = self.e.next_deadline()
        if due is not None and due <= self.m.now:
            self.e.tick(self.m.now)
        self.m.due()

    def both(
        self, engine: Callable[[], T], model: Callable[[], object], sync: bool = True
    ) -> T | None:
        """Run one command on both sides (after the pre-command tick); same result or error."""
        if sync:
            self.sync()
        got, got_err = _outcome(engine)
        want, want_err = _outcome(model)
        assert got_err is want_err, f"engine raised {got_err}, model {want_err}"
        value = getattr(got, "id", got)
        assert value == want, f"engine gave {value!r}, model {want!r}"
        return got

    def idle(self, s: Session) -> bool:
        """A session blocked in reserve or result sends no commands (its connection waits)."""
        ms = self.m.sessions[s.id]
        return ms.wait_seq is None and ms.result_for is None

    def job_command(self, s: Session, job_id: int, how: str, pri: int, delay: int,
                    data: bytes = b"") -> None:
        e, m, now = self.e, self.m, self.m.now
        if how == "release":
            self.both(lambda: e.release(s, job_id, pri, delay, now),
                      lambda: m.release(s.id, job_id, pri, delay))
        elif how == "bury":
            self.both(lambda: e.bury(s, job_id, pri, now), lambda: m.bury(s.id, job_id, pri))
        elif how == "touch":
            self.both(lambda: e.touch(s, job_id, now), lambda: m.touch(s.id, job_id))
        elif how == "delete":
            self.both(lambda: e.delete(s, job_id, now), lambda: m.delete(s.id, job_id))
        elif how == "finish":
            self.both(lambda: e.delete(s, job_id, now, data),
                      lambda: m.delete(s.id, job_id, data))
        elif how == "fail":
            self.both(lambda: e.bury(s, job_id, pri, now, data),
                      lambda: m.bury(s.id, job_id, pri, data))
        elif how == "checkpoint":
            self.both(lambda: e.results.checkpoint(s, job_id, data, now),
                      lambda: m.checkpoint(s.id, job_id, data))
        else:
            self.both(lambda: e.reserve_job(s, job_id, now),
                      lambda: m.reserve_job(s.id, job_id))

    # --- sessions --------------------------------------------------------------------

    @initialize(target=sessions)
    def start(self) -> object:
        return multiple(self.connect(), self.connect())

    @precondition(lambda self: len(self.m.sessions) < 4)
    @rule(target=sessions)
    def connect(self) -> Session:
        s = self.e.connect()
        self.m.connect(s.id)
        return s

    @precondition(lambda self: len(self.m.sessions) > 1)
    @rule(s=consumes(sessions), hangup=st.booleans(), ticked=st.booleans())
    def disconnect(self, s: Session, hangup: bool, ticked: bool) -> None:
        """Quit, or (`hangup`) hang up while waiting: the connection cancels, then closes.

        Engine.disconnect applies due timers itself (not `ticked`: the ticker is late); with
        `ticked` the ticker has caught up just before.
        """
        if ticked:
            self.sync()
        if hangup:
            self.e.cancel_wait(s)
            self.m.cancel_wait(s.id)
        self.e.disconnect(s, self.m.now)
        self.m.disconnect(s.id)

    # --- producer --------------------------------------------------------------------

    @rule(target=jobs, s=sessions, pri=PRIS, delay=DELAYS, ttr=TTRS, feed=st.booleans())
    def put(self, s: Session, pri: int, delay: int, ttr: int, feed: bool) -> object:
        """Put a job; with `feed`, first `use` a tube that a waiting session watches."""
        if not self.idle(s):
            return multiple()
        waiting = [w for w in self.m.sessions.values() if w.wait_seq is not None]
        if feed and waiting:
            name = min(waiting, key=lambda w: w.wait_seq or 0).watched[-1]
            self.both(lambda: self.e.use(s, name).name, lambda: self.m.use(s.id, name))
        now = self.m.now
        job = self.both(
            lambda: self.e.put(s, pri, delay, ttr, b"x", now),
            lambda: self.m.put(s.id, pri, delay, ttr),
        )
        return multiple() if job is None else job.id  # None: TUBE_FULL

    # --- flow control ------------------------------------------------------------------

    @rule(target=jobs, s=sessions, key=st.sampled_from(["k1", "k2"]),
          window=st.sampled_from([0, 1, 5]), pri=PRIS, delay=DELAYS, ttr=TTRS)
    def put_unique(self, s: Session, key: str, window: int, pri: int, delay: int,
                   ttr: int) -> object:
        if not self.idle(s):
            return multiple()
        now = self.m.now
        got = self.both(lambda: self.e.flow.put_unique(s, key, window, pri, delay, ttr, b"u",
                                                       now),
                        lambda: self.m.put_unique(s.id, key, window, pri, delay, ttr))
        return multiple() if got is None else got[0]

    @rule(target=jobs, s=sessions, parents=st.lists(st.one_of(jobs, st.just(10**6)),
                                                    min_size=1, max_size=3, unique=True),
          pri=PRIS, delay=DELAYS, ttr=TTRS)
    def put_after(self, s: Session, parents: list[int], pri: int, delay: int,
                  ttr: int) -> object:
        if not self.idle(s):
            return multiple()
        now = self.m.now
        job = self.both(lambda: self.e.flow.put_after(s, list(parents), pri, delay, ttr, b"a",
                                                      now),
                        lambda: self.m.put_after(s.id, list(parents), pri, delay, ttr))
        return multiple() if job is None else job.id

    @rule(name=TUBES, max_reserved=st.sampled_from([0, 0, 1, 2]),
          max_jobs=st.sampled_from([0, 0, 2, 5]))
    def tube_limits(self, name: str, max_reserved: int, max_jobs: int) -> None:
        """Limits without a rate (the rate's token bucket is test_flow.py's)."""
        now = self.m.now
        self.both(lambda: self.e.flow.set_limits(name, max_reserved, max_jobs, 0, now),
                  lambda: self.m.tube_limits(name, max_reserved, max_jobs))

    @rule(max_reserved=st.sampled_from([1, 1, 2]))
    def limit_default(self, max_reserved: int) -> None:
        """The tube every session starts on, held to one or two reserved jobs: reserves
        then wait beside ready jobs until a holder lets go."""
        self.tube_limits(DEFAULT, max_reserved, 0)

    @rule(name=st.sampled_from(["s1", "s2"]), tube=TUBES, every=st.sampled_from([1, 2, 3]),
          single=st.booleans(), drop=st.booleans())
    def schedule(self, name: str, tube: str, every: int, single: bool, drop: bool) -> None:
        """`every` schedules (wall clock = the engine's here; cron is test_flow.py's)."""
        flow, m, now = self.e.flow, self.m, self.m.now
        if drop:
            self.both(lambda: flow.unschedule(name), lambda: m.unschedule(name))
            return
        spec = parse_spec(("single " if single else "") + f"every {every}")
        self.both(lambda: flow.schedule(name, tube, 0, 5, b"s", spec, now) and None,
                  lambda: m.schedule(name, tube, every, single))

    @rule(s=sessions, n=st.integers(70, 100), delay=st.sampled_from([0, 2]))
    def churn(self, s: Session, n: int, delay: int) -> None:
        """Put `n` jobs, then delete nine in ten, newest first: most deletes hit the middle
        of the tube's ready (or delay) heap, enough to make the tube sweep stale entries.
        Time stands still meanwhile, so one pre-command tick serves them all."""
        if not self.idle(s):
            return
        self.sync()
        now, e, m = self.m.now, self.e, self.m
        ids = []
        for i in range(n):
            pri, d = i % 7, delay and delay + i % 3
            job = self.both(partial(e.put, s, pri, d, 5, b"x", now),
                            partial(m.put, s.id, pri, d, 5), sync=False)
            if job is not None:  # else TUBE_FULL
                ids.append(job.id)
        for job_id in reversed(ids):
            if job_id % 10:
                self.both(partial(e.delete, s, job_id, now), partial(m.delete, s.id, job_id),
                          sync=False)

    @rule(s=sessions, verb=st.sampled_from(["use", "watch", "ignore"]), name=TUBES)
    def tube_command(self, s: Session, verb: str, name: str) -> None:
        if not self.idle(s):
            return
        if verb == "use":
            self.both(lambda: self.e.use(s, name).name, lambda: self.m.use(s.id, name))
        elif verb == "watch":
            self.both(lambda: self.e.watch(s, name), lambda: self.m.watch(s.id, name))
        else:
            self.both(lambda: self.e.ignore(s, name), lambda: self.m.ignore(s.id, name))

    # --- worker ----------------------------------------------------------------------

    @rule(s=sessions, timeout=TIMEOUTS, holder=st.booleans())
    def reserve(self, s: Session, timeout: float | None, holder: bool) -> None:
        """Reserve; with `holder`, the first idle session that holds a job reserves instead."""
        holders = [h for h in self.m.sessions.values() if h.reserved and h.wait_seq is None]
        if holder and holders:
            s = next(x for x in self.e.sessions if x.id == holders[0].id)
        if self.idle(s):
            now = self.m.now
            self.both(
                lambda: self.e.reserve(s, timeout, now), lambda: self.m.reserve(s.id, timeout)
            )

    @rule(s=sessions, timeout=TIMEOUTS, holder=st.booleans())
    def reserve_more(self, s: Session, timeout: float | None, holder: bool) -> None:
        self.reserve(s, timeout, holder)

    @rule(s=sessions, count=st.integers(1, 4), timeout=TIMEOUTS, holder=st.booleans())
    def reserve_batch(self, s: Session, count: int, timeout: float | None,
                      holder: bool) -> None:
        holders = [h for h in self.m.sessions.values() if h.reserved and h.wait_seq is None]
        if holder and holders:
            s = next(x for x in self.e.sessions if x.id == holders[0].id)
        if self.idle(s):
            now = self.m.now

            def engine() -> tuple[int, ...] | None:
                jobs = self.e.reserve_batch(s, count, timeout, now)
                return None if jobs is None else tuple(j.id for j in jobs)

            self.both(engine, lambda: self.m.reserve_batch(s.id, count, timeout))

    @rule(s=sessions, i=st.integers(0, 3), how=OWN_HOW, pri=PRIS, delay=DELAYS, data=DATA)
    def own_job(self, s: Session, i: int, how: str, pri: int, delay: int, data: bytes) -> None:
        """A worker acts on a job it holds (when it holds none: on job id `i`)."""
        held = sorted(self.m.sessions[s.id].reserved)
        if self.idle(s):
            self.job_command(s, held[i % len(held)] if held else i, how, pri, delay, data)

    @rule(s=sessions, job_id=st.one_of(jobs, st.just(10**6)), how=HOW, pri=PRIS, delay=DELAYS,
          data=DATA)
    def any_job(self, s: Session, job_id: int, how: str, pri: int, delay: int,
                data: bytes) -> None:
        """Any job id: others' reserved jobs, gone ones, ready/delayed/buried ones."""
        if self.idle(s):
            self.job_command(s, job_id, how, pri, delay, data)

    # --- job tracking ----------------------------------------------------------------

    @rule(s=sessions, job_id=st.one_of(jobs, st.just(10**6)), pick=st.integers(0, 7),
          live=st.booleans(), timeout=st.sampled_from([0, 1, 2, 5, 30, 30]))
    def result(self, s: Session, job_id: int, pick: int, live: bool, timeout: int) -> None:
        """`result`: answered now (finished, buried, unknown, timeout 0) or waits. With
        `live`, on a job still live (most often one that some session holds, so that a
        finish or fail soon answers it)."""
        if not self.idle(s):
            return
        if live and self.m.jobs:
            held = sorted(j for ms in self.m.sessions.values() for j in ms.reserved)
            ids = held or sorted(self.m.jobs)
            job_id = ids[pick % len(ids)]
        now = self.m.now

        def engine() -> Answer | None:
            got = self.e.results.result(s, job_id, timeout, now)
            return None if got is None else (got.failed, got.job_id, got.data)

        self.both(engine, lambda: self.m.result(s.id, job_id, timeout))

    @rule(s=sessions, job_id=st.one_of(jobs, st.just(10**6)), pick=st.integers(0, 7),
          live=st.booleans(), timeout=st.sampled_from([0, 1, 2, 5, 30, 30]))
    def result_more(self, s: Session, job_id: int, pick: int, live: bool, timeout: int) -> None:
        self.result(s, job_id, pick, live, timeout)

    @rule(job_id=st.one_of(jobs, st.just(10**6)), what=st.sampled_from(["status", "peek"]))
    def inspect_job(self, job_id: int, what: str) -> None:
        """job-status (live jobs and kept records alike), or peek-checkpoint."""
        e, m = self.e, self.m
        if what == "peek":
            self.both(lambda: e.results.peek_checkpoint(job_id), lambda: m.peek_checkpoint(job_id))
            return

        def engine() -> tuple[str, int, int, int, bytes | None]:
            job = e.results.job_status(job_id)
            reason = None if job.extra is None else job.extra.reason
            return (job.state.value, job.reserves, job.buries, job.kicks, reason)

        self.both(engine, lambda: m.job_status(job_id))

    # --- other commands --------------------------------------------------------------

    @rule(s=sessions, job_id=st.one_of(jobs, st.just(0)),
          which=st.sampled_from(["id", "ready", "delayed", "buried"]))
    def peek(self, s: Session, job_id: int, which: str) -> None:
        e, m = self.e, self.m
        if not self.idle(s):
            return
        if which == "id":
            self.both(lambda: e.peek(job_id), lambda: m.peek(job_id))
        elif which == "ready":
            self.both(lambda: e.peek_ready(s), lambda: m.peek_ready(s.id))
        elif which == "delayed":
            self.both(lambda: e.peek_delayed(s), lambda: m.peek_delayed(s.id))
        else:
            self.both(lambda: e.peek_buried(s), lambda: m.peek_buried(s.id))

    @rule(s=sessions, bound=st.integers(0, 3), job_id=st.one_of(st.none(), jobs))
    def kick(self, s: Session, bound: int, job_id: int | None) -> None:
        """`kick <bound>` on the used tube, or `kick-job <id>` when given an id."""
        now = self.m.now
        if job_id is not None:
            self.both(lambda: self.e.kick_job(job_id, now), lambda: self.m.kick_job(job_id))
        elif self.idle(s):
            self.both(lambda: self.e.kick(s, bound, now), lambda: self.m.kick(s.id, bound))

    # --- admin commands (admin.py) -----------------------------------------------------

    @rule(name=TUBES, state=st.sampled_from(LIST_STATES), offset=st.integers(0, 3),
          limit=st.integers(1, 4))
    def list_jobs(self, name: str, state: str, offset: int, limit: int) -> None:
        self.both(lambda: [j.id for j in self.e.admin.list_jobs(name, state, offset, limit)],
                  lambda: self.m.list_jobs(name, state, offset, limit))

    @rule(s=sessions, name=TUBES, state=st.sampled_from(CLEAR_STATES))
    def clear_tube(self, s: Session, name: str, state: str) -> None:
        """clear-tube, done at once (programs hold fewer jobs than a slice; test_admin.py
        covers clears that take several ticks)."""
        if not self.idle(s):
            return
        self.sync()
        tube = self.e.tubes.get(name)
        order: list[int] = []
        if tube is not None:
            jobs = {READY: tube.ready.items, DELAYED: tube.delayed.items,
                    BURIED: list(tube.buried.values()), WAITING: list(tube.waiting.values())}
            order = [j.id for j in reversed(jobs[state])]
        now = self.m.now
        self.both(lambda: self.e.admin.clear(s, name, state, now),
                  lambda: self.m.clear_tube(name, state, order), sync=False)

    @rule(name=TUBES, bound=st.integers(0, 3))
    def kick_tube(self, name: str, bound: int) -> None:
        now = self.m.now
        self.both(lambda: self.e.admin.kick(name, bound, now),
                  lambda: self.m.kick_tube(name, bound))

    @rule(name=TUBES, delay=st.sampled_from([0, 0, 1, 2, 5]))
    def pause_tube(self, name: str, delay: int) -> None:
        now = self.m.now
        self.both(
            lambda: self.e.pause_tube(name, delay, now), lambda: self.m.pause_tube(name, delay)
        )

    # --- time ------------------------------------------------------------------------

    @rule(step=STEPS, tick=st.booleans())
    def advance(self, step: float | str, tick: bool) -> None:
        """Time passes by `step` seconds, or up to the model's ("next") or the engine's
        ("due") next deadline. With `tick` the ticker runs at once; without, the next
        command's pre-tick catches up, as when the ticker lags behind a busy connection.
        """
        if step == "next":
            at = self.m.next_event()
        elif step == "due":
            at = self.e.next_deadline()
        else:
            assert isinstance(step, float)
            at = self.m.now + step
        if at is not None and at > self.m.now:
            self.m.now = at
        if tick:
            self.e.tick(self.m.now)
            self.m.due()

    # --- checks ----------------------------------------------------------------------

    @invariant()
    def engine_self_check(self) -> None:
        check_invariants(self.e)

    @invariant()
    def same_wakeups(self) -> None:
        """Drained after every step, as the server does after every batch of commands."""
        got = [(w.session.id,
                tuple(j.id for j in w.batch) if w.batch is not None
                else (w.outcome.failed, w.outcome.job_id, w.outcome.data)
                if w.outcome is not None
                else None if w.job is None else w.job.id, w.error)
               for w in self.e.drain_wakeups()]
        want, self.m.wakeups = self.m.wakeups, []
        # Sessions are woken independently: only the order within one session matters.
        got.sort(key=lambda o: o[0])
        want.sort(key=lambda o: o[0])
        text = f"wakeups (session, job, error): engine {got}, model {want}"
        assert [o[:2] for o in got] == [o[:2] for o in want], text
        for (_, _, error), (_, _, allowed) in zip(got, want, strict=True):
            assert type(error) in allowed if allowed else error is None, text

    @invariant()
    def same_state(self) -> None:
        e, m = self.e, self.m
        assert sorted(e.jobs) == sorted(m.jobs)
        for job_id, mj in m.jobs.items():
            j = e.jobs[job_id]
            reserver = None if j.reserver is None else j.reserver.id
            assert (j.state.value, j.tube.name, j.pri, j.ttr, reserver) == (
                mj.state, mj.tube, mj.pri, mj.ttr, mj.reserver), job_id
            assert (j.timeouts, j.reserves, j.releases, j.buries, j.kicks) == (
                mj.timeouts, mj.reserves, mj.releases, mj.buries, mj.kicks), job_id
            if mj.state in (DELAYED, RESERVED):
                assert j.deadline == mj.deadline, job_id
            extra = j.extra
            tracked = (None, None, None, []) if extra is None else (
                extra.reason, extra.checkpoint, extra.key, extra.parents or [])
            assert tracked == (mj.reason, mj.checkpoint, mj.key, mj.parents), job_id
        assert (e.job_timeouts, e.total_jobs) == (m.timeouts, m.next_id - 1)
        assert [j.id for j in e.tracker.order] == list(m.records)
        for job_id, record in m.records.items():
            kept = e.tracker.records[job_id]
            assert (kept.body, kept.deadline) == (record.result, record.finished), job_id
        assert [t.name for t in e.tube_list] == m.tubes
        for t in e.tube_list:
            assert (t.ready_count, t.delayed_count, len(t.buried), t.reserved_count,
                    len(t.waiting)) == tuple(len(m.in_state(t.name, state))
                                             for state in (READY, DELAYED, BURIED, RESERVED,
                                                           WAITING))
            assert list(t.buried) == m.buried_fifo(t.name)
            assert (t.paused_until if t.paused else None) == m.paused.get(t.name)
            waiting = [s for s in m.sessions.values()
                       if s.wait_seq is not None and t.name in s.watched]
            assert [s.id for s in t.waiters] == [
                s.id for s in sorted(waiting, key=lambda s: s.wait_seq or 0)]
        assert {name: (x.next_at, x.last_job, x.made, x.skipped)
                for name, x in e.flow.schedules.table.items()} == {
            name: tuple(x[3:]) for name, x in m.schedules.items()}
        assert sorted(s.id for s in e.sessions) == sorted(m.sessions)
        for s in e.sessions:
            ms = m.sessions[s.id]
            assert s.used.name == ms.used and [t.name for t in s.watched] == ms.watched
            assert set(s.reserved) == ms.reserved
            assert (s.waiter is None) == (ms.wait_seq is None)
            wait = s.result_wait
            assert (None if wait is None else (wait.job_id, wait.timeout_at)) == (
                None if ms.result_for is None else (ms.result_for, ms.result_until))
            if s.waiter is not None:
                assert (s.waiter.timeout_at, s.waiter.count) == (ms.timeout_at, ms.count)

    @invariant()
    def next_deadline_not_late(self) -> None:
        want = self.m.next_event()
        if want is not None:
            got = self.e.next_deadline()
            assert got is not None and got <= want, f"next_deadline {got}, next event {want}"


# About 10 s: 200 programs of up to 80 steps.
EngineMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=80, deadline=None
)
TestEngineMachine = EngineMachine.TestCase


class UntrackedMachine(EngineMachine):
    """--result-ttl 0: nothing is kept after a job finishes; waiters are still answered."""

    ttl = 0.0


UntrackedMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=80, deadline=None
)
TestUntrackedMachine = UntrackedMachine.TestCase


def _steps(m: EngineMachine) -> None:
    m.engine_self_check()
    m.next_deadline_not_late()
    m.same_state()
    m.same_wakeups()


def test_machine_a_limited_tube_serves_its_waiter_when_a_holder_lets_go() -> None:
    """Programs hypothesis reaches rarely, spelled out through the machine (and so checked
    against the model and the invariants at every step)."""
    for how in ("delete", "bury", "release", "finish"):
        m = EngineMachine()
        s0, s1 = m.connect(), m.connect()
        m.limit_default(1)
        for _ in range(2):
            m.put(s0, 0, 0, 5, False)
        m.reserve(s0, None, False)
        _steps(m)
        m.reserve(s1, None, False)  # waits beside a ready job: the tube is full
        _steps(m)
        m.own_job(s0, 0, how, 0, 0, b"")
        _steps(m)


def test_machine_a_finished_jobs_key_stays_taken_for_its_window() -> None:
    m = EngineMachine()
    s0, _ = m.connect(), m.connect()
    first = m.put_unique(s0, "k1", 5, 0, 0, 5)
    assert isinstance(first, int)
    _steps(m)
    m.any_job(s0, first, "delete", 0, 0, b"")
    _steps(m)
    m.advance(1.0, True)
    m.put_unique(s0, "k1", 5, 0, 0, 5)  # DUPLICATE: within the window of the first
    _steps(m)
    m.advance(10.0, True)
    m.put_unique(s0, "k1", 5, 0, 0, 5)  # free again
    _steps(m)
    m.put_after(s0, [first, 10**6], 0, 0, 5)  # NOT_FOUND: no such parent
    _steps(m)
