"""One tube: its ready heap, delay heap, buried FIFO, pause, counters and waiting sessions.

Heaps use lazy deletion: an entry carries the job's `token` at push time and is stale once
the job has left that state or been pushed again. Stale entries are skipped on read and
swept when they outnumber live ones, so removing a job from the middle is O(1).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

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


class Tube:
    """One tube; hashed by identity (the engine keys dicts by tubes)."""

    __slots__ = (
        "buried", "cmd_delete", "cmd_pause", "delayed", "index", "name", "pause",
        "pause_token", "paused_until", "ready", "reserved_count", "total_jobs",
        "urgent_count", "using", "waiters", "watching",
    )

    def __init__(self, name: str, index: int = 0) -> None:
        self.name = name
        self.ready = LazyHeap(JobState.READY)
        self.delayed = LazyHeap(JobState.DELAYED)
        self.buried: dict[int, Job] = {}  # insertion order is the FIFO order
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

    def __repr__(self) -> str:
        return f"Tube({self.name!r})"

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
