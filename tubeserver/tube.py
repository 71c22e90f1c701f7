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

ReadyEntry = tuple[int, int, int, Job]  # (pri, id, token, job)
DelayEntry = tuple[float, int, int, Job]  # (ready-at, id, token, job)

_SWEEP_MIN = 64


@attrs.define(slots=True, eq=False)
class Tube:
    name: str
    ready: list[ReadyEntry] = attrs.Factory(list)
    delayed: list[DelayEntry] = attrs.Factory(list)
    buried: dict[int, Job] = attrs.Factory(dict)  # insertion order is the FIFO order
    ready_count: int = 0
    urgent_count: int = 0
    delayed_count: int = 0
    reserved_count: int = 0
    stale_ready: int = 0
    stale_delayed: int = 0
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
    def job_count(self) -> int:
        return self.ready_count + self.delayed_count + len(self.buried) + self.reserved_count

    # --- ready -------------------------------------------------------------------------

    def push_ready(self, job: Job) -> None:
        job.token += 1
        heapq.heappush(self.ready, (job.pri, job.id, job.token, job))
        self.ready_count += 1
        if job.pri < URGENT_PRIORITY:
            self.urgent_count += 1

    def peek_ready(self) -> Job | None:
        heap = self.ready
        while heap:
            _, _, token, job = heap[0]
            if job.token == token and job.state is JobState.READY:
                return job
            heapq.heappop(heap)
            self.stale_ready -= 1
        return None

    def take_ready(self, job: Job) -> None:
        """`job` (ready, in this tube) is leaving the ready state."""
        self.ready_count -= 1
        if job.pri < URGENT_PRIORITY:
            self.urgent_count -= 1
        heap = self.ready
        if heap and heap[0][3] is job and heap[0][2] == job.token:
            heapq.heappop(heap)
            return
        self.stale_ready += 1
        if self.stale_ready > _SWEEP_MIN and self.stale_ready > self.ready_count:
            self.ready = [e for e in heap if e[3] is not job and _live(e, JobState.READY)]
            heapq.heapify(self.ready)
            self.stale_ready = 0

    # --- delayed -----------------------------------------------------------------------

    def push_delayed(self, job: Job) -> None:
        job.token += 1
        heapq.heappush(self.delayed, (job.deadline, job.id, job.token, job))
        self.delayed_count += 1

    def peek_delayed(self) -> Job | None:
        heap = self.delayed
        while heap:
            _, _, token, job = heap[0]
            if job.token == token and job.state is JobState.DELAYED:
                return job
            heapq.heappop(heap)
            self.stale_delayed -= 1
        return None

    def take_delayed(self, job: Job) -> None:
        """`job` (delayed, in this tube) is leaving the delayed state."""
        self.delayed_count -= 1
        heap = self.delayed
        if heap and heap[0][3] is job and heap[0][2] == job.token:
            heapq.heappop(heap)
            return
        self.stale_delayed += 1
        if self.stale_delayed > _SWEEP_MIN and self.stale_delayed > self.delayed_count:
            self.delayed = [e for e in heap if e[3] is not job and _live(e, JobState.DELAYED)]
            heapq.heapify(self.delayed)
            self.stale_delayed = 0

    # --- invariants --------------------------------------------------------------------

    def live_ready(self) -> list[Job]:
        return [e[3] for e in self.ready if _live(e, JobState.READY)]

    def live_delayed(self) -> list[Job]:
        return [e[3] for e in self.delayed if _live(e, JobState.DELAYED)]


def _live(entry: ReadyEntry | DelayEntry, state: JobState) -> bool:
    job = entry[3]
    return job.token == entry[2] and job.state is state
