"""Job tracking composed into the engine: results, outcomes, checkpoints and their waiters.

The store of kept records and the table of `result` waiters are tracking.py's; this is the
glue the engine owns, as flow.py is for flow control: the tracking commands (`result`,
`job-status`, `checkpoint`, `peek-checkpoint`), what a job's finish leaves behind (its record,
kept or not, and the answers for its waiters), and the two timers, a waiter's timeout and
the oldest record's expiry. Time comes in as `now`, as everywhere in the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .errors import NotFound, TimedOut
from .job import Job, JobState
from .timers import EXPIRE, RESULT
from .tracking import NOTE_CHECKPOINT, Outcome, ResultWait, Tracker, outcome
from .wakeup import Wakeup

if TYPE_CHECKING:
    from .engine import Engine
    from .session import Session

_BURIED: Final = JobState.BURIED
_FINISHED: Final = JobState.FINISHED
_DELETED: Final = JobState.DELETED


class Results:
    __slots__ = ("engine", "tracker")

    def __init__(self, engine: Engine, tracker: Tracker) -> None:
        self.engine = engine
        self.tracker = tracker

    # --- commands ----------------------------------------------------------------------

    def result(self, s: Session, job_id: int, timeout: float, now: float) -> Outcome | None:
        """The outcome of a finished or buried job; else None, and `s` waits for it (or
        TimedOut at once when `timeout` is 0)."""
        e = self.engine
        job = e.jobs.get(job_id)
        if job is None:
            return outcome(_found(self.tracker.record(job_id)))
        if job.state is _BURIED:
            return outcome(job)
        if timeout == 0:
            raise TimedOut()
        wait = ResultWait(job_id, e.timers.next_seq(), now + timeout)
        self.tracker.add_waiter(s, wait)
        e.timers.push(now + timeout, RESULT, s, wait.seq)
        return None

    def job_status(self, job_id: int) -> Job:
        """A live job, or the kept record of a finished one."""
        job = self.engine.jobs.get(job_id)
        return job if job is not None else _found(self.tracker.record(job_id))

    def checkpoint(self, s: Session, job_id: int, data: bytes, now: float) -> None:
        job = s.reserved.get(job_id)
        if job is None:
            raise NotFound()
        journal = self.engine.journal
        if journal is not None:
            journal.admit_note(len(data))
        job.more().checkpoint = data
        self.engine.touch(s, job_id, now)
        if journal is not None:
            journal.note(job, NOTE_CHECKPOINT)

    def peek_checkpoint(self, job_id: int) -> bytes:
        job = self.engine.jobs.get(job_id)
        extra = None if job is None else job.extra
        if extra is None or extra.checkpoint is None:
            raise NotFound()
        return extra.checkpoint

    # --- what a job's end leaves ---------------------------------------------------------

    def finished(self, job: Job, result: bytes, keep: bool, now: float) -> None:
        """`job` left the live jobs by delete or finish: its waiters get `result`, and it
        becomes its own record if `keep` (the journal was told already)."""
        tracker = self.tracker
        if tracker.waiters:
            self.answer(job.id, Outcome(job.id, False, result))
        if keep:
            job.move(_FINISHED)
            job.body = result
            job.deadline = now
            extra = job.extra
            if extra is not None:
                extra.checkpoint = None
            journal = self.engine.journal
            for gone in tracker.keep(job):
                if journal is not None:
                    journal.forget(gone)
            if tracker.timer_at is None:
                self.set_expiry(tracker.expires(job))
        else:
            job.move(_DELETED)
            if tracker.ttl > 0:
                tracker.evicted += 1  # larger than the whole bound, or no room in the log

    def answer(self, job_id: int, result: Outcome) -> None:
        """Everyone waiting in `result` on `job_id` gets `result`."""
        wakeups = self.engine.wakeups
        for s in self.tracker.take_waiters(job_id):
            wakeups.append(Wakeup(s, None, None, outcome=result))

    # --- timers --------------------------------------------------------------------------

    def set_expiry(self, at: float) -> None:
        self.tracker.timer_at = at
        self.engine.timers.push(at, EXPIRE, self.tracker, at)

    def expire(self, now: float) -> None:
        """The EXPIRE timer: drop the records due, and set the timer for the next."""
        tracker = self.tracker
        tracker.timer_at = None
        journal = self.engine.journal
        for gone in tracker.expire(now):
            if journal is not None:
                journal.forget(gone)
        due = tracker.next_expiry()
        if due is not None:
            self.set_expiry(due)

    def timed_out(self, s: Session) -> None:
        """A RESULT timer: `s` stopped waiting without an answer."""
        self.tracker.remove_waiter(s)
        self.engine.wakeups.append(Wakeup(s, None, TimedOut()))


def _found(job: Job | None) -> Job:
    if job is None:
        raise NotFound()
    return job
