"""The job engine: every job, tube and session, and every rule of the protocol's state.

Pure: it never reads a clock (each method takes `now`, monotonic seconds) and never does I/O.
Time-driven changes (delays ending, TTRs expiring, pauses ending, reserve timeouts) live in one
timer heap; the caller sleeps until `next_deadline()` and then calls `tick(now)`. Blocked
reserves register a waiter; when one is served or times out the engine queues a `Wakeup` that
the network layer collects with `drain_wakeups()`. A timer entry is only ever dropped after
its condition was re-checked, so a TTR expiry cannot be lost (beanstalkd #262, #380).
"""

from __future__ import annotations

from typing import Final, Protocol

from .admin import Admin
from .errors import (
    DeadlineSoon,
    Draining,
    NotFound,
    NotIgnored,
    TimedOut,
    TubeFull,
)
from .flow import Flow
from .job import Job, JobState
from .limits import DEADLINE_MARGIN, DEFAULT_TUBE
from .results import Results
from .session import Session, Waiter
from .timers import (
    CLEAR,
    DELAY,
    EXPIRE,
    KEYS,
    LIMIT,
    PAUSE,
    RESULT,
    SCHEDULE,
    SOON,
    TTR,
    WAIT,
    Timer,
    Timers,
)
from .tracking import NOTE_PARENTS, NOTE_REASON, Tracker, outcome
from .tube import Tube
from .tubelimits import TubeLimits
from .wakeup import Wakeup

__all__ = ["Engine", "Journal", "Wakeup"]  # Wakeup: wakeup.py's, here for the network layer

# Final: compiled, these are static reads rather than lookups in the module's globals.
READY: Final = JobState.READY
RESERVED: Final = JobState.RESERVED
DELAYED: Final = JobState.DELAYED
BURIED: Final = JobState.BURIED
DELETED: Final = JobState.DELETED
FINISHED: Final = JobState.FINISHED
WAITING: Final = JobState.WAITING



class Journal(Protocol):
    """Where the engine reports the changes that must outlive the process (the write-ahead
    log). Each `admit_*` is asked before a change and may refuse it by raising a
    ProtocolError (the log is full or broken); the other methods are told after the change,
    before any waiter can take the job, so they see the state the client was told about.
    Job tracking: `admit_finish` says whether a finished job's record can be kept (a plain
    delete is never refused: it is then not kept); `finish` is told before the job becomes
    its record (its body still the job's); `note` after a reason or checkpoint is set;
    `forget` when a kept record expires or is evicted."""

    def admit_put(self, tube: str, size: int, parents: int = 0) -> None: ...
    def admit_updates(self, count: int) -> None: ...
    def admit_pause(self, tube: str) -> None: ...
    def admit_finish(self, job: Job, result: int, keep: bool) -> bool: ...
    def admit_note(self, size: int) -> None: ...
    def put(self, job: Job) -> None: ...
    def update(self, job: Job) -> None: ...
    def pause(self, tube: Tube) -> None: ...
    def finish(self, job: Job, result: bytes, finished: float, keep: bool) -> None: ...
    def note(self, job: Job, kind: int) -> None: ...
    def forget(self, job: Job) -> None: ...
    def admit_meta(self, size: int) -> None: ...
    def meta(self, kind: int, name: str, value: object) -> None: ...


class Engine:
    def __init__(self, tracker: Tracker | None = None) -> None:
        self.jobs: dict[int, Job] = {}  # live jobs; finished ones are in tracker.records
        self.tracker = Tracker() if tracker is None else tracker
        self.tubes: dict[str, Tube] = {}
        self.tube_list: list[Tube] = []  # creation order, swap-removed like beanstalkd
        self.sessions: dict[Session, None] = {}
        self.draining = False
        self.job_timeouts = 0
        self.total_jobs = 0
        self.total_connections = 0
        self._next_id = 1
        self._next_session = 1
        self.timers = Timers()
        self._dirty: dict[Tube, None] = {}  # tubes that may now match a waiter to a job
        self.wakeups: list[Wakeup] = []  # for the network layer: drain_wakeups
        self._batch_waiters = 0  # waiting reserve-batch sessions: only they can hold out
        self._ticking = False  # inside tick's timer loop: new jobs are matched after it
        self.journal: Journal | None = None
        # Flow control (flow.py): unique keys, dependencies, tube limits, schedules.
        self.flow = Flow(self)
        # Operators' commands (admin.py): list-jobs, clear-tube, kick-tube.
        self.admin = Admin(self)
        # Job tracking's commands and timers (results.py).
        self.results = Results(self, self.tracker)
        self._tube(DEFAULT_TUBE)

    # --- sessions --------------------------------------------------------------------

    def connect(self) -> Session:
        default = self._tube(DEFAULT_TUBE)
        s = Session(self._next_session, default, [default])
        self._next_session += 1
        default.using += 1
        default.watching += 1
        self.sessions[s] = None
        self.total_connections += 1
        return s

    def disconnect(self, s: Session, now: float) -> None:
        """Forget a session; its reserved jobs go back to ready (not counted as timeouts)."""
        if s.closed:
            return
        if self.timers.due(now):
            # As before any command: TTRs that ran out count as timeouts, whatever the
            # ticker's lag.
            self.tick(now)
        self.cancel_wait(s)
        for job in list(s.reserved.values()):
            self._detach(job)
            self._make_ready(job)
        s.used.using -= 1
        self._maybe_drop(s.used)
        for t in s.watched:
            t.watching -= 1
            self._maybe_drop(t)
        s.watched = []
        s.closed = True
        del self.sessions[s]
        self._match(now)

    # --- producer commands -------------------------------------------------------------

    def start_put(self, s: Session) -> None:
        """A put header was accepted on `s`: as in beanstalkd, the connection counts as a
        producer from then on, whatever becomes of the put (EXPECTED_CRLF, DRAINING, ...)."""
        s.producer = True

    def put(self, s: Session, pri: int, delay: int, ttr: int, body: bytes, now: float,
            parents: list[int] | None = None, more: int = 0) -> Job:
        """put; with `parents` (live job ids) the job waits until they finish (flow.py)."""
        s.producer = True
        return self.insert(s.used, pri, delay, ttr, body, now, parents, more)

    def insert(self, tube: Tube, pri: int, delay: int, ttr: int, body: bytes, now: float,
               parents: list[int] | None = None, more: int = 0) -> Job:
        """A new job in `tube` (put's, and a schedule's firing). `more`: log room for the
        caller's records that go with it (flow.py), asked for in the same breath so that
        they land in the same frame."""
        if self.draining:
            raise Draining()
        limits = tube.limits
        if limits is not None and limits.full(tube.job_count):
            raise TubeFull()
        journal = self.journal
        if journal is not None:
            journal.admit_put(tube.name, len(body) + more, 0 if parents is None else len(parents))
        job = Job(self._next_id, tube, pri, delay, max(ttr, 1), body, now, READY)
        self._next_id += 1
        self.jobs[job.id] = job
        tube.total_jobs += 1
        self.total_jobs += 1
        if parents is not None:
            job.state = WAITING
            tube.waiting[job.id] = job
            self.flow.deps.wait(job, parents)
            if journal is not None:
                journal.put(job)
                journal.note(job, NOTE_PARENTS)
        elif delay:
            job.state = DELAYED
            self._start_delay(job, now)
            if journal is not None:
                journal.put(job)
        else:
            tube.push_ready(job)
            if journal is not None:
                journal.put(job)
            if tube.waiters:  # else nobody to match: a later reserve finds the job itself
                self._dirty[tube] = None
                if not self._ticking:  # a firing's job: tick matches once all are ready
                    self._match(now)
        return job

    def use(self, s: Session, name: str) -> Tube:
        tube = self._tube(name)
        tube.using += 1
        old, s.used = s.used, tube
        old.using -= 1
        self._maybe_drop(old)
        return tube

    # --- worker commands ---------------------------------------------------------------

    def reserve(self, s: Session, timeout: float | None, now: float) -> Job | None:
        """Reserve the best ready job now, or register `s` as a waiter and return None.

        Raises DeadlineSoon when a job `s` holds is within the safety margin of its TTR and
        nothing is ready, and TimedOut for a zero timeout with nothing ready.
        """
        s.worker = True
        if self._batch_waiters and any(
            t.waiters and t.ready_count and self._open(t, now) for t in s.watched
        ):
            # Older batch reservers are holding out for a full batch on jobs `s` could take:
            # they were first in line, so they get what is ready now (a partial batch) first.
            self._flush_holders(s, now)
        job = self._best_ready(s, now)
        if job is None:
            self._wait(s, None, timeout, now)
            return None
        self._detach(job)
        self._reserve(s, job, now)
        return job

    def reserve_batch(self, s: Session, count: int, timeout: float | None,
                      now: float) -> list[Job] | None:
        """Reserve `count` jobs at once, or register `s` as a batch waiter and return None.

        Returns at once with `count` jobs when that many are ready, or with what is ready
        (at least one) when `timeout` is 0 or `s` is within its deadline margin. A waiting
        batch reserver holds no jobs: they stay ready for everyone until its batch is full,
        its timeout passes (a partial batch), or a single reserver competes for them.
        """
        s.worker = True
        available = self._available(s, now)
        if available >= count or (available and (timeout == 0 or self._deadline_soon(s, now))):
            return self._take_best(s, count, now)
        self._wait(s, count, timeout, now)
        return None

    def _wait(self, s: Session, count: int | None, timeout: float | None, now: float) -> None:
        """Nothing (or not enough) is ready for `s`: answer now, or make it a waiter."""
        soonest = self._soonest_deadline(s)
        if soonest is not None and now >= soonest - DEADLINE_MARGIN:
            raise DeadlineSoon()
        if timeout == 0:
            raise TimedOut()
        waiter = Waiter(self.timers.next_seq(), None if timeout is None else now + timeout, count)
        s.waiter = waiter
        if count is not None:
            self._batch_waiters += 1
        for t in s.watched:
            t.waiters[s] = None
            if t.limits is not None and t.ready_count:
                self._open(t, now)  # held back by its rate: arm the timer that reopens it
        if waiter.timeout_at is not None:
            self.timers.push(waiter.timeout_at, WAIT, s, waiter.seq)
        if soonest is not None:
            self.timers.push(soonest - DEADLINE_MARGIN, SOON, s, waiter.seq)

    def cancel_wait(self, s: Session) -> None:
        """`s` no longer waits in a reserve or a `result` (it hung up or went away)."""
        if s.result_wait is not None:
            self.tracker.remove_waiter(s)
        if s.waiter is None:
            return
        for t in s.watched:
            del t.waiters[s]
        if s.waiter.count is not None:
            self._batch_waiters -= 1
        s.waiter = None

    def reserve_job(self, s: Session, job_id: int, now: float) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.state is RESERVED:
            raise NotFound()
        s.worker = True  # as beanstalkd: only once a job is reserved this way
        self._detach(job)
        self._reserve(s, job, now)
        return job

    def delete(self, s: Session, job_id: int, now: float, result: bytes = b"") -> None:
        """delete, and finish (a delete that keeps a result)."""
        job = self.jobs.get(job_id)
        if job is None or (job.state is RESERVED and job.reserver is not s):
            raise NotFound()
        ran = job.state is RESERVED  # finished by its worker, not cancelled (deps.py)
        tracker = self.tracker
        extra = job.extra
        keep = tracker.fits(result, None if extra is None else extra.reason)
        journal = self.journal
        if journal is not None:
            keep = journal.admit_finish(job, len(result), keep)
        self._detach(job)
        del self.jobs[job_id]
        if journal is not None:
            journal.finish(job, result, now, keep)
        self.results.finished(job, result, keep, now)
        if extra is not None or self.flow.deps.children:
            self.flow.job_ended(job, ran, now)
        if ran:
            job.tube.run_time.observe(now - job.reserved_at)
        job.tube.cmd_delete += 1
        self._maybe_drop(job.tube)
        if self._dirty:  # a limited tube has room again, or children were released
            self._match(now)

    def release(self, s: Session, job_id: int, pri: int, delay: int, now: float) -> None:
        job = self._own(s, job_id)
        if self.journal is not None:
            self.journal.admit_updates(1)
        self._detach(job)
        job.pri = pri
        job.delay = delay
        job.releases += 1
        job.tube.releases += 1
        if delay:
            job.move(DELAYED)
            self._start_delay(job, now)
        else:
            self._make_ready(job)
        if self.journal is not None:
            self.journal.update(job)
        self._match(now)

    def bury(self, s: Session, job_id: int, pri: int, now: float,
             reason: bytes | None = None) -> None:
        """bury, and fail (a bury that keeps a reason)."""
        job = self._own(s, job_id)
        if self.journal is not None:
            self.journal.admit_updates(1)
            if reason is not None:
                self.journal.admit_note(len(reason))
        self._detach(job)
        job.pri = pri
        job.buries += 1
        job.tube.buries += 1
        if reason is not None:
            job.more().reason = reason
        job.move(BURIED)
        job.tube.buried[job.id] = job
        if self.journal is not None:
            self.journal.update(job)
            if reason is not None:
                self.journal.note(job, NOTE_REASON)
        if self.tracker.waiters:
            self.results.answer(job_id, outcome(job))
        if self._dirty:  # a limited tube has room again
            self._match(now)

    def touch(self, s: Session, job_id: int, now: float) -> None:
        job = self._own(s, job_id)
        job.deadline = now + job.ttr
        self.timers.push(job.deadline, TTR, job, job.deadline)

    def watch(self, s: Session, name: str) -> int:
        tube = self._tube(name)
        if tube not in s.watched:
            s.watched.append(tube)
            tube.watching += 1
        return len(s.watched)

    def ignore(self, s: Session, name: str) -> int:
        tube = self.tubes.get(name)
        if tube is None or tube not in s.watched:
            return len(s.watched)
        if len(s.watched) == 1:
            raise NotIgnored()
        _swap_remove(s.watched, tube)
        tube.watching -= 1
        self._maybe_drop(tube)
        return len(s.watched)

    # --- other commands ----------------------------------------------------------------

    def peek(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound()
        return job

    def peek_ready(self, s: Session) -> Job:
        return _found(s.used.peek_ready())

    def peek_delayed(self, s: Session) -> Job:
        return _found(s.used.peek_delayed())

    def peek_buried(self, s: Session) -> Job:
        buried = s.used.buried
        return _found(next(iter(buried.values())) if buried else None)

    def kick(self, s: Session, bound: int, now: float) -> int:
        """Kick up to `bound` jobs of the used tube: buried ones if it has any, else delayed."""
        return self.admin.kick_tube(s.used, bound, now)

    def kick_job(self, job_id: int, now: float) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (BURIED, DELAYED, WAITING):
            raise NotFound()
        if self.journal is not None:
            self.journal.admit_updates(1)
        self._kick(job)
        self._match(now)

    def pause_tube(self, name: str, delay: int, now: float) -> None:
        tube = self.tubes.get(name)
        if tube is None:
            raise NotFound()
        if self.journal is not None:
            self.journal.admit_pause(name)
        tube.pause = delay
        tube.cmd_pause += 1
        tube.pause_token += 1
        if delay:
            tube.paused_until = now + delay
            self.timers.push(tube.paused_until, PAUSE, tube, tube.pause_token)
        else:
            # beanstalkd pauses for 1 ns, which has passed by the next command: unpause now.
            tube.paused_until = 0.0
            self._dirty[tube] = None
        if self.journal is not None:
            self.journal.pause(tube)
        self._match(now)

    # --- restoring from the log ---------------------------------------------------------

    def tube(self, name: str) -> Tube:
        """The tube called `name`, made if needed (for restoring, restore.py, and a
        schedule's firing; a tube left empty goes away again, in `finish_restore` or with
        its last job)."""
        return self._tube(name)

    @property
    def next_id(self) -> int:
        return self._next_id

    # --- time --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick` next has work to do (possibly earlier, never later)."""
        return self.timers.next_at()

    def tick(self, now: float) -> None:
        """Apply every time-driven change due at `now`."""
        # Entries come out live (their condition re-checked): act on each.
        timers = self.timers
        waits: list[Timer] = []
        clearing = False
        self._ticking = True
        try:
            while (entry := timers.pop_due(now)) is not None:
                kind = entry[2]
                target = entry[3]
                if kind == DELAY or kind == TTR:
                    assert isinstance(target, Job)
                    self._detach(target)
                    if kind == TTR:
                        target.timeouts += 1
                        target.tube.timeouts += 1
                        self.job_timeouts += 1
                    self._make_ready(target)
                elif kind == PAUSE:
                    assert isinstance(target, Tube)
                    target.paused_until = 0.0
                    self._dirty[target] = None
                elif kind == RESULT:
                    assert isinstance(target, Session)
                    self.results.timed_out(target)
                elif kind == LIMIT:
                    assert isinstance(target, TubeLimits)
                    self.flow.reopen(target)
                elif kind == KEYS:
                    self.flow.expire_keys(now)
                elif kind == SCHEDULE:
                    self.flow.fire(now)
                elif kind == CLEAR:
                    clearing = True  # after the loop, or its next slice would be due too
                elif kind == EXPIRE:
                    self.results.expire(now)
                else:
                    waits.append(entry)
        finally:
            self._ticking = False
        if clearing:
            self.admin.step(now)
        # Jobs that became available go to waiters before any waiter is timed out.
        self._match(now)
        # When both are due, DEADLINE_SOON wins over TIMED_OUT (as in beanstalkd).
        waits.sort(key=lambda entry: entry[2] != SOON)
        for _, _, kind, target, check in waits:
            assert isinstance(target, Session)
            waiter = target.waiter
            if waiter is None or waiter.seq != check:
                continue
            if kind == SOON:
                soonest = self._soonest_deadline(target)
                if soonest is None:
                    continue
                if now < soonest - DEADLINE_MARGIN:
                    self.timers.push(soonest - DEADLINE_MARGIN, SOON, target, waiter.seq)
                    continue
            # Timed out, or deadline soon: a batch waiter takes whatever is ready now. (A
            # single waiter never has a job ready here: it would have been served.)
            if self._available(target, now):
                self._grant(target, now)
            else:
                self.cancel_wait(target)
                error = TimedOut() if kind == WAIT else DeadlineSoon()
                self.wakeups.append(Wakeup(target, None, error))

    def cleared(self, s: Session, count: int) -> None:
        """A clear-tube that went on in slices is done (admin.py)."""
        self.wakeups.append(Wakeup(s, None, None, cleared=count))

    def drain_wakeups(self) -> list[Wakeup]:
        wakeups, self.wakeups = self.wakeups, []
        return wakeups

    # --- internals ---------------------------------------------------------------------

    def _tube(self, name: str) -> Tube:
        tube = self.tubes.get(name)
        if tube is None:
            tube = Tube(name, index=len(self.tube_list))
            tube.first_id = self._next_id
            tube.limits = self.flow.limits.get(name)
            self.tubes[name] = tube
            self.tube_list.append(tube)
        return tube

    def _maybe_drop(self, tube: Tube) -> None:
        if tube.using or tube.watching or tube.job_count or tube.name == DEFAULT_TUBE:
            return
        del self.tubes[tube.name]
        # Its pause goes with it, so the pause timer reads as stale and can be swept.
        was_paused = tube.paused
        tube.paused_until = 0.0
        tube.pause_token += 1
        if was_paused and self.journal is not None:
            # A tube made again later starts unpaused; the log must say so too.
            self.journal.pause(tube)
        last = self.tube_list.pop()
        if last is not tube:
            self.tube_list[tube.index] = last
            last.index = tube.index
        self._dirty.pop(tube, None)

    def _own(self, s: Session, job_id: int) -> Job:
        job = s.reserved.get(job_id)
        if job is None:
            raise NotFound()
        return job

    def _best_ready(self, s: Session, now: float) -> Job | None:
        best: Job | None = None
        for tube in s.watched:
            if tube.paused or (tube.limits is not None and not self._open(tube, now)):
                continue
            job = tube.peek_ready()
            if job is not None and (best is None or (job.pri, job.id) < (best.pri, best.id)):
                best = job
        return best

    def _soonest_deadline(self, s: Session) -> float | None:
        if not s.reserved:
            return None
        return min(job.deadline for job in s.reserved.values())

    def _detach(self, job: Job) -> None:
        """Take `job` out of the container its current state keeps it in."""
        tube = job.tube
        state = job.state
        if state is READY:
            tube.take_ready(job)
        elif state is DELAYED:
            tube.take_delayed(job)
        elif state is BURIED:
            del tube.buried[job.id]
        elif state is RESERVED:
            tube.reserved_count -= 1
            assert job.reserver is not None
            del job.reserver.reserved[job.id]
            job.reserver = None
            if tube.limits is not None and tube.waiters:
                self._dirty[tube] = None  # it may be under its max-reserved again
        elif state is WAITING:
            del tube.waiting[job.id]
            self.flow.deps.forget(job)

    def _make_ready(self, job: Job) -> None:
        job.move(READY)
        job.tube.push_ready(job)
        if job.tube.waiters:
            self._dirty[job.tube] = None

    def _start_delay(self, job: Job, now: float) -> None:
        job.deadline = now + job.delay
        job.tube.push_delayed(job)
        self.timers.push(job.deadline, DELAY, job, job.deadline)

    def _reserve(self, s: Session, job: Job, now: float) -> None:
        job.move(RESERVED)
        job.reserver = s
        job.deadline = now + job.ttr
        job.reserved_at = now
        tube = job.tube
        if not job.reserves:
            tube.queue_time.observe(now - job.created)
        job.reserves += 1
        tube.reserves += 1
        tube.reserved_count += 1
        if tube.limits is not None:
            tube.limits.take(now)
        s.reserved[job.id] = job
        self.timers.push(job.deadline, TTR, job, job.deadline)

    def _kick(self, job: Job) -> None:
        self._detach(job)
        job.kicks += 1
        job.tube.kicks += 1
        self._make_ready(job)
        if self.journal is not None:
            self.journal.update(job)

    def _match(self, now: float) -> None:
        """Hand ready jobs to waiters: the globally best job among tubes that have both."""
        dirty = self._dirty
        while dirty:
            best: Job | None = None
            for tube in list(dirty):
                job = (tube.peek_ready() if tube.waiters and self._open(tube, now)
                       else None)
                if job is None:
                    del dirty[tube]
                elif best is None or (job.pri, job.id) < (best.pri, best.id):
                    best = job
            if best is None:
                return
            s = self._next_served(best.tube, now)
            if s is None:
                # Only batch reservers holding out for more: the jobs stay ready for others.
                del dirty[best.tube]
                continue
            self._grant(s, now)

    def _next_served(self, tube: Tube, now: float) -> Session | None:
        """Which of `tube`'s waiters gets its ready jobs now, if any.

        The first waiter in line is served when any waiter wants a single job (a batch
        reserver at the head then gets a partial batch); a batch reserver further back is
        served when its whole batch is ready; otherwise batch reservers keep waiting.
        """
        first: Session | None = None
        for s in tube.waiters:
            if first is None:
                first = s
            assert s.waiter is not None
            count = s.waiter.count
            if count is None:
                return first
            if self._available(s, now) >= count:
                return s
        return None

    def _grant(self, s: Session, now: float) -> None:
        """Answer waiter `s` with the jobs ready for it (at least one must be)."""
        assert s.waiter is not None
        count = s.waiter.count
        self.cancel_wait(s)
        jobs = self._take_best(s, 1 if count is None else count, now)
        if count is None:
            self.wakeups.append(Wakeup(s, jobs[0], None))
        else:
            self.wakeups.append(Wakeup(s, None, None, tuple(jobs)))

    def _flush_holders(self, s: Session, now: float) -> None:
        holders = {h: None for t in s.watched if t.ready_count and self._open(t, now)
                   for h in t.waiters}
        for h in sorted(holders, key=lambda h: h.waiter.seq if h.waiter else 0):
            if h.waiter is not None and self._available(h, now):
                self._grant(h, now)

    def _available(self, s: Session, now: float) -> int:
        """How many jobs `s` could reserve now."""
        count = 0
        for t in s.watched:
            if t.paused:
                continue
            limits = t.limits
            count += t.ready_count if limits is None else min(
                t.ready_count, limits.room(t.reserved_count, now))
        return count

    def _open(self, tube: Tube, now: float) -> bool:
        """Whether a job of `tube` may be handed out now (unpaused, within its limits). When
        only its rate holds it back and clients wait, a timer reopens it."""
        if tube.paused:
            return False
        limits = tube.limits
        if limits is None or limits.room(tube.reserved_count, now) > 0:
            return True
        if tube.waiters and tube.ready_count and limits.rate_bound(tube.reserved_count):
            at = limits.next_token(now)
            if limits.timer_at is None or limits.timer_at > at:
                limits.timer_at = at
                self.timers.push(at, LIMIT, limits, at)
        return False

    def _take_best(self, s: Session, count: int, now: float) -> list[Job]:
        """Reserve up to `count` of the best ready jobs for `s`, in (pri, id) order."""
        jobs: list[Job] = []
        while len(jobs) < count:
            job = self._best_ready(s, now)
            if job is None:
                break
            self._detach(job)
            self._reserve(s, job, now)
            jobs.append(job)
        return jobs

    def _deadline_soon(self, s: Session, now: float) -> bool:
        soonest = self._soonest_deadline(s)
        return soonest is not None and now >= soonest - DEADLINE_MARGIN


def _found(job: Job | None) -> Job:
    if job is None:
        raise NotFound()
    return job


def _swap_remove(items: list[Tube], item: Tube) -> None:
    i = items.index(item)
    last = items.pop()
    if last is not item:
        items[i] = last
