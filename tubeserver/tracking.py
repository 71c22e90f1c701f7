"""Job tracking: the kept records of finished jobs, and the sessions waiting in `result`.

A finished job (deleted by `finish` or `delete`) is not dropped while tracking is on: the Job
object itself becomes its record (state FINISHED, `body` its result, `deadline` when it
finished) and moves out of the engine's live jobs into `records`, so a plain delete allocates
nothing. Every record is kept TTL seconds after it finished, so records expire in the order
they were made: `order` holds them oldest first, and expiry and eviction pop from its front.
(A deque beside the dict, not the dict's own order: a dict popped from the front again and
again makes each `next(iter(...))` scan past the holes left behind, which turned a long drain
quadratic.) One timer on the engine's heap stands for the front's expiry (`timer_at`); when
it fires the engine expires what is due and sets the next.

Memory: each record counts RECORD_COST plus its result and reason; past `memory`, the oldest
records are evicted. Checkpoints belong to live jobs and are dropped when a job finishes.

Waiters: `result` on a live job that is neither buried nor finished registers the session
under the job id. The job's outcome answers all its waiters at once (the engine turns them
into Wakeups); a waiter's timeout rides on the engine's timer heap, checked against the
waiter's seq as a reserve's is. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from .idmap import IdMap
from .job import Job, JobState

if TYPE_CHECKING:
    from .session import Session

# What a kept record costs beyond its result and reason, measured on the compiled build: the
# Job object (~170 bytes with its allocator header), its slot in `records` (~85 bytes a
# record as the dict grows), and room for a JobExtra. (RSS per record reads higher right after
# a drain: the freed bodies' memory stays in the process, for new jobs to reuse.)
RECORD_COST: Final = 300
DEFAULT_TTL: Final = 86400.0  # seconds: one day, as Celery's result_expires
DEFAULT_MEMORY: Final = 64 * 1024 * 1024
# What a journal note records (the write-ahead log's NoteRec kinds, which match these).
NOTE_REASON: Final = 0
NOTE_CHECKPOINT: Final = 1
NOTE_PARENTS: Final = 2  # a waiting job's open parents (deps.py)


class Outcome:
    """What a `result` answers: the job finished with `data` as its result, or (`failed`) it
    is buried with `data` as its last reason. Made when it happens, so the answer a waiter
    gets does not change if the job moves on before the reply is written."""

    __slots__ = ("data", "failed", "job_id")

    def __init__(self, job_id: int, failed: bool, data: bytes) -> None:
        self.job_id = job_id
        self.failed = failed
        self.data = data

    def __repr__(self) -> str:
        return f"Outcome({self.job_id}, failed={self.failed}, {self.data!r})"


class ResultWait:
    """A session blocked in `result`: the job it waits on, and its order for timers."""

    __slots__ = ("job_id", "seq", "timeout_at")

    def __init__(self, job_id: int, seq: int, timeout_at: float | None) -> None:
        self.job_id = job_id
        self.seq = seq
        self.timeout_at = timeout_at  # None: wait forever


def cost(job: Job) -> int:
    """The memory a kept record counts: RECORD_COST, its result and its reason."""
    extra = job.extra
    reason = None if extra is None else extra.reason
    return RECORD_COST + len(job.body) + (0 if reason is None else len(reason))


def outcome(job: Job) -> Outcome:
    """A finished job's result, or a buried one's reason."""
    if job.state is JobState.BURIED:
        extra = job.extra
        reason = None if extra is None else extra.reason
        return Outcome(job.id, True, b"" if reason is None else reason)
    return Outcome(job.id, False, job.body)


class Tracker:
    """The store of kept records and the table of result waiters."""

    def __init__(self, ttl: float = DEFAULT_TTL, memory: int = DEFAULT_MEMORY) -> None:
        self.ttl = ttl  # seconds a record is kept; 0: records are off
        self.memory = memory  # bytes all records may cost together
        self.records = IdMap()  # finished jobs by id (a plain dict's growth stalls)
        self.order: deque[Job] = deque()  # the same, oldest first
        self.bytes = 0
        self.expired = 0
        self.evicted = 0
        self.waiters: dict[int, list[Session]] = {}  # job id -> sessions, first come first
        self.waiting = 0  # sessions waiting in `result`
        self.timer_at: float | None = None  # the pending expiry timer on the engine's heap

    # --- records ---------------------------------------------------------------------

    def fits(self, result: bytes, reason: bytes | None) -> bool:
        """Would a record with this result and reason be kept at all?"""
        size = RECORD_COST + len(result) + (0 if reason is None else len(reason))
        return self.ttl > 0 and size <= self.memory

    def keep(self, job: Job) -> list[Job]:
        """Keep the finished `job` (its `deadline` is when it finished; `fits` said yes) as
        the newest record. Returns the oldest records evicted to make room for it."""
        self.records.add(job)
        self.order.append(job)
        self.bytes += cost(job)
        evicted: list[Job] = []
        while self.bytes > self.memory:
            evicted.append(self._drop_oldest())
        self.evicted += len(evicted)
        return evicted

    def record(self, job_id: int) -> Job | None:
        return self.records.get(job_id)

    def expires(self, job: Job) -> float:
        return job.deadline + self.ttl

    def next_expiry(self) -> float | None:
        return self.order[0].deadline + self.ttl if self.order else None

    def expire(self, now: float) -> list[Job]:
        """Drop the records due by `now`; returns them."""
        order = self.order
        ttl = self.ttl
        expired: list[Job] = []
        while order:
            if order[0].deadline + ttl > now:
                break
            expired.append(self._drop_oldest())
        self.expired += len(expired)
        return expired

    def _drop_oldest(self) -> Job:
        job = self.order.popleft()
        self.records.remove(job.id)
        self.bytes -= cost(job)
        return job

    # --- waiters ---------------------------------------------------------------------

    def add_waiter(self, s: Session, wait: ResultWait) -> None:
        s.result_wait = wait
        self.waiters.setdefault(wait.job_id, []).append(s)
        self.waiting += 1

    def remove_waiter(self, s: Session) -> None:
        wait = s.result_wait
        if wait is None:
            return
        s.result_wait = None
        sessions = self.waiters[wait.job_id]
        sessions.remove(s)
        if not sessions:
            del self.waiters[wait.job_id]
        self.waiting -= 1

    def take_waiters(self, job_id: int) -> list[Session]:
        """The sessions waiting on `job_id`, no longer waiting."""
        sessions = self.waiters.pop(job_id, None)
        if sessions is None:
            return []
        for s in sessions:
            s.result_wait = None
        self.waiting -= len(sessions)
        return sessions


def check_tracker(tracker: Tracker, live: dict[int, Job], sessions: dict[Session, None]) -> None:
    """Assert the tracker's promises (the engine's check_invariants calls this)."""
    assert len(tracker.order) == len(tracker.records) == len(tracker.records.values())
    total = 0
    last = float("-inf")
    for job in tracker.order:
        job_id = job.id
        assert tracker.records.get(job_id) is job and job.state is JobState.FINISHED
        assert job_id not in live, f"job {job_id} is both live and kept"
        assert job.deadline >= last, "records out of expiry order"
        last = job.deadline
        total += cost(job)
    assert total == tracker.bytes <= tracker.memory
    if tracker.records:
        due = tracker.next_expiry()
        assert tracker.timer_at is not None and due is not None and tracker.timer_at <= due
    count = 0
    for job_id, waiting in tracker.waiters.items():
        assert waiting, f"an empty waiter list for job {job_id}"
        held = live.get(job_id)
        assert held is not None and held.state is not JobState.BURIED, (
            f"waiters on job {job_id}, which is {'gone' if held is None else 'buried'}")
        for s in waiting:
            assert s in sessions and s.result_wait is not None
            assert s.result_wait.job_id == job_id and s.waiter is None
        count += len(waiting)
    assert count == tracker.waiting == sum(1 for s in sessions if s.result_wait is not None)
