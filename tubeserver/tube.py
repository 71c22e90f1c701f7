"""One tube: its ready heap, delay heap, buried FIFO, jobs waiting on parents, pause, limits,
counters and waiting sessions.

Each heap is an indexed binary heap of Job objects: a job records its position (`job.pos`)
in the one heap its state keeps it in, so a job leaves from anywhere in O(log n) and no
entry tuple or stale entry is ever made. Compiled by mypyc, comparing two jobs is a few
native field reads; a heap of (key, id, token, job) tuples cost a tuple per push and
rich comparisons per sift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .ages import Ages
from .histogram import JOB_BOUNDS, Histogram
from .job import Job, JobState
from .limits import URGENT_PRIORITY

if TYPE_CHECKING:
    from .session import Session
    from .tubelimits import TubeLimits

_READY: Final = JobState.READY
_DELAYED: Final = JobState.DELAYED


class JobHeap:
    """A min-heap of the jobs in one state, ordered by (pri, id) for ready jobs and by
    (deadline, id) for delayed ones. `items[i].pos == i` for every job in it."""

    __slots__ = ("by_deadline", "items", "state")

    def __init__(self, state: JobState) -> None:
        self.items: list[Job] = []
        self.state = state
        self.by_deadline = state is _DELAYED

    def __len__(self) -> int:
        return len(self.items)

    def _less(self, a: Job, b: Job) -> bool:
        if self.by_deadline:
            return a.deadline < b.deadline or (a.deadline == b.deadline and a.id < b.id)
        return a.pri < b.pri or (a.pri == b.pri and a.id < b.id)

    def push(self, job: Job) -> None:
        items = self.items
        job.pos = len(items)
        items.append(job)
        self._up(job.pos)

    def add(self, job: Job) -> None:
        """`push` without keeping the heap order, for bulk loading; `reorder` after."""
        job.pos = len(self.items)
        self.items.append(job)

    def reorder(self) -> None:
        for i in range(len(self.items) // 2 - 1, -1, -1):
            self._down(i)

    def peek(self) -> Job | None:
        items = self.items
        return items[0] if items else None

    def remove(self, job: Job) -> None:
        """`job`, in this heap, is leaving it."""
        items = self.items
        i = job.pos
        last = items.pop()
        job.pos = -1
        if last is job:
            return
        items[i] = last
        last.pos = i
        if i and self._less(last, items[(i - 1) >> 1]):
            self._up(i)
        else:
            self._down(i)

    def jobs(self) -> list[Job]:
        """The jobs, in no particular order."""
        return list(self.items)

    def _up(self, i: int, top: int = 0) -> None:
        """Move the job at `i` up to its place, not above position `top`."""
        items = self.items
        job = items[i]
        while i > top:
            parent = (i - 1) >> 1
            above = items[parent]
            if not self._less(job, above):
                break
            items[i] = above
            above.pos = i
            i = parent
        items[i] = job
        job.pos = i

    def _down(self, i: int) -> None:
        """Move the job at `i` down to its place. As heapq: the smaller child rises into the
        hole down to a leaf (one comparison a level), then the job sifts up from there; a
        job taken from the end usually belongs near the bottom, so that is the cheap way."""
        items = self.items
        n = len(items)
        job = items[i]
        top = i
        child = 2 * i + 1
        while child < n:
            right = child + 1
            if right < n and not self._less(items[child], items[right]):
                child = right
            below = items[child]
            items[i] = below
            below.pos = i
            i = child
            child = 2 * i + 1
        items[i] = job
        job.pos = i
        self._up(i, top)

    def check(self) -> None:
        """Assert the heap order and that every job knows its place (for invariant checks)."""
        items = self.items
        for i, job in enumerate(items):
            assert job.pos == i and job.state is self.state, (job, i)
            assert not i or not self._less(job, items[(i - 1) >> 1]), (job, i)


class Tube:
    """One tube; hashed by identity (the engine keys dicts by tubes)."""

    __slots__ = (
        "ages", "buried", "buries", "cmd_delete", "cmd_pause", "delayed", "first_id", "index",
        "kicks",
        "limits", "name", "pause", "pause_token", "paused_until", "queue_time", "ready",
        "releases", "reserved_count", "reserves", "run_time", "timeouts", "total_jobs",
        "urgent_count", "using", "waiters", "waiting", "watching",
    )

    def __init__(self, name: str, index: int = 0) -> None:
        self.name = name
        self.ready = JobHeap(_READY)
        self.delayed = JobHeap(_DELAYED)
        self.buried: dict[int, Job] = {}  # insertion order is the FIFO order
        self.waiting: dict[int, Job] = {}  # put-after jobs whose parents are not all finished
        # Its tube-limits (tubelimits.py), shared with the engine's table; None: no limits.
        self.limits: TubeLimits | None = None
        self.urgent_count = 0
        self.reserved_count = 0
        self.total_jobs = 0
        self.cmd_delete = 0
        self.cmd_pause = 0
        self.pause = 0  # seconds of the last pause-tube
        self.paused_until = 0.0  # 0.0: not paused
        self.pause_token = 0
        self.using = 0  # sessions whose used tube this is
        self.watching = 0  # sessions watching it
        self.waiters: dict[Session, None] = {}  # insertion order = arrival order
        self.index = index  # position in the engine's tube list
        # No job of this tube has a smaller id (set by the engine; 1 after a restart, whose
        # jobs come back in any order): where clear-tube starts walking ids (admin.py).
        self.first_id = 1
        # For the metrics only (stats-tube keeps beanstalkd's keys): the oldest ready job,
        # events counted per tube, seconds from put to first reserve and reserve to finish.
        self.ages = Ages()
        self.reserves = 0
        self.timeouts = 0
        self.releases = 0
        self.buries = 0
        self.kicks = 0
        self.queue_time = Histogram(JOB_BOUNDS)
        self.run_time = Histogram(JOB_BOUNDS)

    def __repr__(self) -> str:
        return f"Tube({self.name!r})"

    @property
    def paused(self) -> bool:
        return self.paused_until > 0.0

    @property
    def ready_count(self) -> int:
        return len(self.ready.items)

    @property
    def delayed_count(self) -> int:
        return len(self.delayed.items)

    @property
    def job_count(self) -> int:
        return (len(self.ready.items) + len(self.delayed.items) + len(self.buried)
                + self.reserved_count + len(self.waiting))

    def count(self, state: str) -> int:
        """Its jobs in `state` ("ready", "reserved", "delayed", "buried", "waiting"; waiting
        jobs apart from delayed ones, as the admin commands name them)."""
        if state == "ready":
            return len(self.ready.items)
        if state == "reserved":
            return self.reserved_count
        if state == "delayed":
            return len(self.delayed.items)
        if state == "buried":
            return len(self.buried)
        return len(self.waiting)

    def push_ready(self, job: Job) -> None:
        self.ready.push(job)
        self.ages.enter(job.created)
        if job.pri < URGENT_PRIORITY:
            self.urgent_count += 1

    def add_ready(self, job: Job) -> None:
        """`push_ready` without keeping the heap order (restoring); `ready.reorder` after."""
        self.ready.add(job)
        self.ages.enter(job.created)
        if job.pri < URGENT_PRIORITY:
            self.urgent_count += 1

    def peek_ready(self) -> Job | None:
        return self.ready.peek()

    def take_ready(self, job: Job) -> None:
        """`job` (ready, in this tube) is leaving the ready state."""
        self.ready.remove(job)
        self.ages.leave(job.created)
        if job.pri < URGENT_PRIORITY:
            self.urgent_count -= 1

    def push_delayed(self, job: Job) -> None:
        self.delayed.push(job)

    def peek_delayed(self) -> Job | None:
        return self.delayed.peek()

    def take_delayed(self, job: Job) -> None:
        """`job` (delayed, in this tube) is leaving the delayed state."""
        self.delayed.remove(job)
