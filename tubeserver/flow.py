"""Flow control composed into the engine: unique keys, dependencies, tube limits, schedules.

Each rule lives in its own pure module (keys.py, deps.py, tubelimits.py, schedules.py); this
is the glue the engine owns: the extension commands, what a job's end does to its key and its
waiting children, the timers of key windows and schedule firings, and the values these leave
in the write-ahead log. `now` is the engine's clock; `wall_offset` (the wall clock minus the
engine's, set by whoever runs the engine) places calendars and logged times. Reading no clock
itself, it stays as testable as the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .deps import Deps
from .errors import Draining, InternalError, NotFound, OutOfMemory, TubeFull
from .job import Job, JobState
from .keys import Keys, key_name
from .schedules import SCHEDULES_MAX, Schedule, Schedules, Spec
from .timers import KEYS, SCHEDULE
from .tracking import NOTE_REASON, outcome
from .tubelimits import TubeLimits

if TYPE_CHECKING:
    from .engine import Engine
    from .session import Session

# What a journal's meta record holds (the write-ahead log's MetaRec kinds, which match these).
META_KEY: Final = 0
META_LIMITS: Final = 1
META_SCHEDULE: Final = 2
META_COST: Final = 160  # room asked of the journal for a meta record, plus its data
LIMITS_MAX: Final = 10_000  # tubes with limits

_DELAYED: Final = JobState.DELAYED
_BURIED: Final = JobState.BURIED


def cancelled_reason(parent: int) -> bytes:
    return b"parent %d was deleted before it finished" % parent


class Flow:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keys = Keys()
        self.deps = Deps()
        self.limits: dict[str, TubeLimits] = {}  # by tube name, whether the tube exists or not
        self.schedules = Schedules()
        self.wall_offset = 0.0
        self.fired = 0  # schedule firings that made a job
        self.duplicates = 0  # put-unique answered DUPLICATE

    # --- unique keys -------------------------------------------------------------------

    def put_unique(self, s: Session, key: str, window: int, pri: int, delay: int, ttr: int,
                   body: bytes, now: float) -> tuple[int, bool]:
        """(id, True) for a new job; (the holder's id, False) when the key is taken."""
        e = self.engine
        if e.draining:
            raise Draining()
        name = key_name(s.used.name, key)
        holder = self.keys.holder(name, now)
        if holder is not None:
            self.duplicates += 1
            return holder, False
        job = e.put(s, pri, delay, ttr, body, now, more=META_COST + len(name))
        self.keys.take(name, job.id, now + window)
        job.more().key = key
        if e.journal is not None:
            e.journal.meta(META_KEY, name, self.meta_value(META_KEY, name))
        return job.id, True

    def expire_keys(self, now: float) -> None:
        self.keys.timer_at = None
        self.keys.expire(now)
        self._arm_keys()

    def _arm_keys(self) -> None:
        keys = self.keys
        at = keys.next_expiry()
        if at is not None and (keys.timer_at is None or at < keys.timer_at):
            keys.timer_at = at
            self.engine.timers.push(at, KEYS, keys, at)

    # --- dependencies ------------------------------------------------------------------

    def put_after(self, s: Session, parents: list[int], pri: int, delay: int, ttr: int,
                  body: bytes, now: float) -> Job:
        """A job that waits for `parents` (distinct ids): those still live; a parent with a
        kept record has finished; any other is NotFound, and nothing is stored."""
        e = self.engine
        open_parents = []
        for parent in parents:
            if parent in e.jobs:
                open_parents.append(parent)
            elif e.tracker.record(parent) is None:
                raise NotFound()
        return e.put(s, pri, delay, ttr, body, now, open_parents or None)

    def job_ended(self, job: Job, ran: bool, now: float) -> None:
        """`job` was deleted or finished; `ran`: by the connection that had it reserved."""
        extra = job.extra
        if extra is not None and extra.key is not None:
            self.keys.release(key_name(job.tube.name, extra.key), job.id, now)
            self._arm_keys()
        if job.id not in self.deps.children:
            return
        if ran:
            for child in self.deps.finished(job.id):
                self._release(child, now)
        else:
            reason = cancelled_reason(job.id)
            for child in self.deps.cancelled(job.id):
                self._cancel(child, reason)

    def _release(self, child: Job, now: float) -> None:
        """Every parent of `child` finished: its own delay starts now (or it is ready)."""
        e = self.engine
        e._detach(child)
        if child.delay:
            child.move(_DELAYED)
            e._start_delay(child, now)
        else:
            e._make_ready(child)
        if e.journal is not None:
            e.journal.update(child)  # room kept for it since it began to wait (wal.py)

    def _cancel(self, child: Job, reason: bytes) -> None:
        """A parent of `child` will never finish: bury it with the reason."""
        e = self.engine
        e._detach(child)
        child.buries += 1
        child.more().reason = reason
        child.move(_BURIED)
        child.tube.buried[child.id] = child
        if e.journal is not None:
            e.journal.update(child)
            e.journal.note(child, NOTE_REASON)
        if e.tracker.waiters:
            e.results.answer(child.id, outcome(child))

    def restore_waiting(self, job: Job) -> bool:
        """Start-up: a waiting job read from the log; False when no parent of it is live
        any more (they finished: a cancelled one would have buried it, in the same frame),
        and it is ready instead."""
        e = self.engine
        extra = job.extra
        parents = [] if extra is None or extra.parents is None else extra.parents
        open_parents = [p for p in parents if p in e.jobs and p != job.id]
        if open_parents:
            job.tube.waiting[job.id] = job
            self.deps.wait(job, open_parents)
            return True
        if extra is not None:
            extra.parents = None
        job.state = JobState.READY
        return False

    # --- tube limits -------------------------------------------------------------------

    def set_limits(self, name: str, max_reserved: int, max_jobs: int, rate: float,
                   now: float) -> None:
        """tube-limits; all zero removes them."""
        e = self.engine
        limits = self.limits.get(name)
        clear = not (max_reserved or max_jobs or rate)
        if limits is None and not clear and len(self.limits) >= LIMITS_MAX:
            raise OutOfMemory()
        if e.journal is not None:
            e.journal.admit_meta(META_COST + len(name))
        if clear:
            self.limits.pop(name, None)
            limits = None
        elif limits is None:
            limits = self.limits[name] = TubeLimits(name, max_reserved, max_jobs, rate, now)
        else:
            limits.set(max_reserved, max_jobs, rate, now)
        tube = e.tubes.get(name)
        if tube is not None:
            tube.limits = limits
            e._dirty[tube] = None
        if e.journal is not None:
            e.journal.meta(META_LIMITS, name, self.meta_value(META_LIMITS, name))
        e._match(now)

    def reopen(self, limits: TubeLimits) -> None:
        """The rate timer: the tube has a token again."""
        limits.timer_at = None
        tube = self.engine.tubes.get(limits.name)
        if tube is not None and tube.limits is limits:
            self.engine._dirty[tube] = None

    # --- schedules ---------------------------------------------------------------------

    def schedule(self, name: str, tube: str, pri: int, ttr: int, body: bytes, spec: Spec,
                 now: float) -> Schedule:
        table = self.schedules.table
        if name not in table and len(table) >= SCHEDULES_MAX:
            raise OutOfMemory()
        e = self.engine
        if e.journal is not None:
            e.journal.admit_meta(META_COST + len(name) + len(tube) + len(body) + len(spec.text))

        sched = self.schedules.put(name, tube, pri, ttr, body, spec, now + self.wall_offset)
        if e.journal is not None:
            e.journal.meta(META_SCHEDULE, name, sched.record())
        self._arm_schedules()
        return sched

    def unschedule(self, name: str) -> None:
        if name not in self.schedules.table:
            raise NotFound()
        e = self.engine
        if e.journal is not None:
            e.journal.admit_meta(META_COST + len(name))
        del self.schedules.table[name]
        if e.journal is not None:
            e.journal.meta(META_SCHEDULE, name, None)
        self._arm_schedules()

    def fire(self, now: float) -> None:
        """The schedule timer: every schedule due by the wall clock makes its job."""
        self.schedules.timer_at = None
        wall = now + self.wall_offset
        for sched in self.schedules.due(wall):
            self._fire(sched, wall, now)
        self._arm_schedules()

    def _fire(self, sched: Schedule, wall: float, now: float) -> None:
        e = self.engine
        job = None
        if not (sched.spec.single and sched.last_job in e.jobs):  # else its last job lives
            tube = e.tube(sched.tube)
            try:
                # The log's room for the schedule's record comes with the job's, so both
                # land in one frame: a crash never keeps the job and loses the firing.
                job = e.insert(tube, sched.pri, 0, sched.ttr, sched.body, now,
                               more=self._record_size(sched))
            except (TubeFull, Draining, OutOfMemory, InternalError):
                e._maybe_drop(tube)
        sched.next_at = self.schedules.next_after(sched.spec, wall, sched.next_at)
        if job is None:
            sched.skipped += 1
            if e.journal is not None:
                try:
                    e.journal.admit_meta(self._record_size(sched))
                except (OutOfMemory, InternalError):
                    return  # the skip is not logged: after a restart it may fire again
        else:
            sched.made += 1
            sched.last_job = job.id
            sched.last_at = wall
            self.fired += 1
        if e.journal is not None:
            e.journal.meta(META_SCHEDULE, sched.name, sched.record())

    def _record_size(self, sched: Schedule) -> int:
        return (META_COST + len(sched.name) + len(sched.tube) + len(sched.body)
                + len(sched.spec.text))

    def set_wall_offset(self, offset: float) -> None:
        """The runner's latest reading of wall minus engine clock; a change of more than a
        second (the clock was set) moves the schedule timer."""
        moved = abs(offset - self.wall_offset) > 1.0
        self.wall_offset = offset
        if moved:
            self.schedules.timer_at = None
            self._arm_schedules()

    def _arm_schedules(self) -> None:
        schedules = self.schedules
        soonest = schedules.soonest()
        if soonest is None:
            schedules.timer_at = None
            return
        at = soonest - self.wall_offset
        if schedules.timer_at != at:
            schedules.timer_at = at
            self.engine.timers.push(at, SCHEDULE, schedules, at)

    # --- the write-ahead log -----------------------------------------------------------

    def meta_value(self, kind: int, name: str) -> Any:
        """The value of a meta record for (kind, name) now, or None when it is gone; times
        on the wall clock."""
        if kind == META_KEY:
            hold = self.keys.holds.get(name)
            return None if hold is None else [hold.job_id, hold.until + self.wall_offset]
        if kind == META_LIMITS:
            limits = self.limits.get(name)
            return None if limits is None else [limits.max_reserved, limits.max_jobs,
                                                limits.rate]
        sched = self.schedules.table.get(name)
        return None if sched is None else sched.record()

    def restore_meta(self, kind: int, name: str, value: Any, now: float) -> None:
        """Start-up, after the jobs: a meta record's latest value (times on the wall clock,
        `wall_offset` already set)."""
        e = self.engine
        if kind == META_KEY:
            job_id, until = value[0], value[1] - self.wall_offset
            job = e.jobs.get(job_id)
            if job is None and until <= now:
                return
            self.keys.restore(name, job_id, until, job is not None)
            held = job if job is not None else e.tracker.record(job_id)
            if held is not None:
                held.more().key = name.partition(" ")[2]
            self._arm_keys()
        elif kind == META_LIMITS:
            limits = self.limits[name] = TubeLimits(name, value[0], value[1], value[2], now)
            tube = e.tubes.get(name)
            if tube is not None:
                tube.limits = limits
        elif kind == META_SCHEDULE:
            self.schedules.restore(name, value)
            self._arm_schedules()
