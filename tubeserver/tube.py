"""One tube: its ready heap, delay heap, buried FIFO, pause, counters and waiting sessions.

Heaps use lazy deletion: an entry carries the job's `token` at push time and is stale once
the job has left that state or been pushed again. Stale entries are skipped on read and
swept when they outnumber live ones, so removing a job from the middle is O(1).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import attrs

from .job import Job, JobState
from .limits import URGENT_PRIORITY

if TYPE_CHECKING:
    from .session import Session

Entry = tuple[float, int, int, Job]  # (pri or ready-at, id, token, job)

_SWEEP_MIN = 64


class LazyHeap:
    """A min-heap of the jobs in one state, ordered by (key, id), with O(1) removal.

    A removed job's entry stays until it reaches the top or a sweep; it is recognised as
    stale because the job has left `state` or was pushed again since (a new `token`).
    """

    __slots__ = ("entries", "live", "stale", "state")

    def __init__(self, state: JobState) -> None:
        self.entries: list[Entry] = []
        self.live = 0
        self.stale = 0
        self.state = state

    def __len__(self) -> int:
        """Entries held, stale ones included (the memory cost, not the job count)."""
        return len(self.entries)

    def push(self, key: float, job: Job) -> None:
        job.token += 1
        heapq.heappush(self.entries, (key, job.id, job.token, job))
        self.live += 1

    def add(self, key: float, job: Job) -> None:
        """`push` without keeping the heap order, for bulk loading; `reorder` after."""
        job.token += 1
        self.entries.append((key, job.id, job.token, job))
        self.live += 1

    def reorder(self) -> None:
        heapq.heapify(self.entries)

    def peek(self) -> Job | None:
        entries = self.entries
        while entries:
            _, _, token, job = entries[0]
            if job.token == token and job.state is self.state:
                return job
            heapq.heappop(entries)
            self.stale -= 1
        return None

    def remove(self, job: Job) -> None:
        """`job`, still in this heap's state, is leaving it."""
        self.live -= 1
        entries = self.entries
        if entries and entries[0][3] is job and entries[0][2] == job.token:
            heapq.heappop(entries)
            return
        self.stale += 1
        if self.stale > _SWEEP_MIN and self.stale > self.live:
            self.entries = [e for e in entries if e[3] is not job and self._live(e)]
            heapq.heapify(self.entries)
            self.stale = 0

    def jobs(self) -> list[Job]:
        """The live jobs, in no particular order."""
        return [e[3] for e in self.entries if self._live(e)]

    def _live(self, entry: Entry) -> bool:
        job = entry[3]
        return job.token == entry[2] and job.state is self.state


@attrs.define(slots=True, eq=False)
class Tube:
    name: str
    ready: LazyHeap = attrs.Factory(lambda: LazyHeap(JobState.READY))
    delayed: LazyHeap = attrs.Factory(lambda: LazyHeap(JobState.DELAYED))
    buried: dict[int, Job] = attrs.Factory(dict)  # insertion order is the FIFO order
    urgent_count: int = 0
    reserved_count: int = 0
    total_jobs: int = 0
    cmd_delete: int = 0
    cmd_pause: int = 0
    pause: int = 0  # seconds of the last pause-tube
    paused_until: float = 0.0  # 0.0: not paused
    pause_token: int = 0
    using: int = 0  # sessions whose used tube this is
    watching: int = 0  # sessions watching it
    waiters: dict[Session, None] = attrs.Factory(dict)  # insertion order = arrival order
    index: int = 0  # position in the engine's tube list

    @property
    def paused(self) -> bool:
        return self.paused_until > 0.0

    @property
    def ready_count(self) -> int:
        return self.ready.live

    @property
    def delayed_count(self) -> int:
        return self.delayed.live

    @property
    def job_count(self) -> int:
        return self.ready.live + self.delayed.live + len(self.buried) + self.reserved_count

    def push_ready(self, job: Job) -> None:
        self.ready.push(job.pri, job)
        if job.pri < URGENT_PRIORITY:
            self.urgent_count += 1

    def peek_ready(self) -> Job | None:
        return self.ready.peek()

    def take_ready(self, job: Job) -> None:
        """`job` (ready, in this tube) is leaving the ready state."""
        self.ready.remove(job)
        if job.pri < URGENT_PRIORITY:
            self.urgent_count -= 1

    def push_delayed(self, job: Job) -> None:
        self.delayed.push(job.deadline, job)

    def peek_delayed(self) -> Job | None:
        return self.delayed.peek()

    def take_delayed(self, job: Job) -> None:
        """`job` (delayed, in this tube) is leaving the delayed state."""
        self.delayed.remove(job)
