"""Operators' commands composed into the engine: list a tube's jobs by state, clear a tube of
one state's jobs, kick within a named tube (protocol.md "Admin commands").

Every one is bounded so that no other client waits long on it. A listing returns at most
LIST_MAX jobs and its offset is bounded too (limits.py): ready and delayed jobs live in heaps,
so the n-th in reserve order is found by a best-first walk of the heap's tree, O(n log n) in
the offset.
A clear deletes SLICE jobs at a time: the first slice at once, the rest one per engine tick,
each a timer entry due at once, so the network layer serves other clients between slices. The
client that asked waits as a blocked reserve does and is answered `CLEARED <n>` by a Wakeup.
Up to SNAPSHOT_MAX jobs, it copies the list of the jobs in that state and deletes those still
in it when reached. Beyond, a copy would stall everyone (a million jobs: tens of milliseconds
of touching every job), so it walks the job ids instead, from the tube's first to the last
made before the command, deleting each job of the tube found in that state: a bounded number
of ids per tick. Either way jobs put after the command are spared, and so are jobs that left
the state before the clear reached them. Each job is deleted as by `delete`, so the log, job
records, unique keys and dependent jobs see an ordinary delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Final

from .errors import NotFound
from .job import Job, JobState
from .timers import CLEAR

if TYPE_CHECKING:
    from .engine import Engine
    from .session import Session
    from .tube import JobHeap, Tube

SLICE: Final = 1000  # jobs one step of clear-tube deletes (limits.py has the others)
SCAN: Final = 4  # ... and it looks at up to SCAN x SLICE ids when walking them
SNAPSHOT_MAX: Final = 10_000  # the most jobs a clear copies the list of

_STATE: Final = {s.value: s for s in JobState}


class Clearing:
    """One clear-tube under way: a list of jobs, or a range of ids, still to look at."""

    __slots__ = ("done", "jobs", "last_id", "next_id", "session", "state", "tube")

    def __init__(self, session: Session, tube: Tube, state: JobState, jobs: list[Job],
                 next_id: int, last_id: int) -> None:
        self.session = session
        self.tube = tube
        self.state = state
        self.jobs = jobs  # taken from the end
        self.next_id = next_id  # then these ids, up to last_id
        self.last_id = last_id
        self.done = 0


class Admin:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clearing: list[Clearing] = []
        self.timer_at: float | None = None  # the live CLEAR timer (timers.py)
        self.slice = SLICE  # tests make it small
        self.cleared = 0  # jobs deleted by clear-tube, for the metrics

    def list_jobs(self, name: str, state: str, offset: int, limit: int) -> list[Job]:
        """Up to `limit` jobs of `state` in tube `name`, from the `offset`-th on: ready ones
        in reserve order, delayed by when they become ready, buried in kick order, reserved
        by when their TTR ends, waiting by id."""
        tube = self._tube(name)
        if state == "ready":
            return _walk(tube.ready, offset, limit)
        if state == "delayed":
            return _walk(tube.delayed, offset, limit)
        if state == "buried":
            return _slice(tube.buried.values(), offset, limit)
        if state == "waiting":
            return _slice(tube.waiting.values(), offset, limit)
        reserved = [j for s in self.engine.sessions for j in s.reserved.values()
                    if j.tube is tube]
        reserved.sort(key=_by_deadline)
        return reserved[offset:offset + limit]

    def clear(self, s: Session, name: str, state: str, now: float) -> int | None:
        """Delete the jobs of `state` in tube `name`: their count, or None when it goes on in
        later ticks (`s` is then answered by a Wakeup)."""
        tube = self._tube(name)
        st = _STATE[state]
        jobs: list[Job] = []
        first, last = 1, 0  # no ids to walk
        if tube.count(state) > SNAPSHOT_MAX:
            first, last = tube.first_id, self.engine.next_id - 1
        elif state == "ready":
            jobs = list(tube.ready.items)
        elif state == "delayed":
            jobs = list(tube.delayed.items)
        elif state == "buried":
            jobs = list(tube.buried.values())
        else:
            jobs = list(tube.waiting.values())
        work = Clearing(s, tube, st, jobs, first, last)
        if self._step(work, now):
            return work.done
        self.clearing.append(work)
        if self.timer_at is None:
            self.arm(now)
        return None

    def kick(self, name: str, bound: int, now: float) -> int:
        return self.kick_tube(self._tube(name), bound, now)

    def kick_tube(self, tube: Tube, bound: int, now: float) -> int:
        """kick in `tube`: up to `bound` of its buried jobs if it has any, else delayed ones
        (the engine's `kick` for the used tube, and kick-tube)."""
        e = self.engine
        from_buried = bool(tube.buried)  # decided once: never both kinds in one kick
        if e.journal is not None:
            kickable = len(tube.buried) if from_buried else tube.delayed_count
            e.journal.admit_updates(min(bound, kickable))
        kicked = 0
        if from_buried:
            # Taken in one pass: a dict keeps the holes of deleted entries until it is
            # resized, so asking for the first entry after each kick would be quadratic.
            for job in list(islice(tube.buried.values(), bound)):
                e._kick(job)
                kicked += 1
        else:
            while kicked < bound:
                delayed = tube.peek_delayed()
                if delayed is None:
                    break
                e._kick(delayed)
                kicked += 1
        e._match(now)
        return kicked

    def step(self, now: float) -> None:
        """One slice of each clear under way (the engine's tick, on the CLEAR timer)."""
        self.timer_at = None
        going: list[Clearing] = []
        for work in self.clearing:
            if self._step(work, now):
                self.engine.cleared(work.session, work.done)
            else:
                going.append(work)
        self.clearing = going
        if going:
            self.arm(now)

    def arm(self, now: float) -> None:
        self.timer_at = now
        self.engine.timers.push(now, CLEAR, self, now)

    def _step(self, work: Clearing, now: float) -> bool:
        """Look at up to a slice of `work`'s jobs (or SCAN slices of its ids), deleting those
        of its tube still in its state; True once none is left."""
        engine = self.engine
        live = engine.jobs
        jobs = work.jobs
        tube = work.tube
        state = work.state
        n = 0
        while jobs and n < self.slice:
            job = jobs.pop()  # from the end: a heap's last job leaves without sifting
            n += 1
            if job.state is state and live.get(job.id) is job:
                self._delete(work, job, now)
        looked = 0
        while work.next_id <= work.last_id and n < self.slice and looked < SCAN * self.slice:
            found = live.get(work.next_id)
            work.next_id += 1
            looked += 1
            if found is not None and found.tube is tube and found.state is state:
                self._delete(work, found, now)
                n += 1
        if engine.tubes.get(tube.name) is not tube:  # the tube went with its last job
            jobs.clear()
            work.next_id = work.last_id + 1
        return not jobs and work.next_id > work.last_id

    def _delete(self, work: Clearing, job: Job, now: float) -> None:
        self.engine.delete(work.session, job.id, now)
        work.done += 1
        self.cleared += 1

    def _tube(self, name: str) -> Tube:
        tube = self.engine.tubes.get(name)
        if tube is None:
            raise NotFound()
        return tube


def _by_deadline(job: Job) -> tuple[float, int]:
    return job.deadline, job.id


def _walk(heap: JobHeap, offset: int, limit: int) -> list[Job]:
    """Jobs `offset` to `offset + limit` of `heap` in its order: the heap's tree walked
    best-first (a node's children are never before it), so only the first offset + limit
    nodes and their children are looked at. The frontier is a heap of positions in `heap`
    compared with the heap's own order: native comparisons, no tuple per node."""
    items = heap.items
    n = len(items)
    out: list[Job] = []
    frontier: list[int] = [0] if n else []
    seen = 0
    while frontier and len(out) < limit:
        i = _pop(frontier, heap)
        if seen >= offset:
            out.append(items[i])
        seen += 1
        child = 2 * i + 1
        if child < n:
            _push(frontier, heap, child)
            if child + 1 < n:
                _push(frontier, heap, child + 1)
    return out


def _push(frontier: list[int], heap: JobHeap, pos: int) -> None:
    items = heap.items
    job = items[pos]
    i = len(frontier)
    frontier.append(pos)
    while i:
        parent = (i - 1) >> 1
        above = frontier[parent]
        if not heap._less(job, items[above]):
            break
        frontier[i] = above
        i = parent
    frontier[i] = pos


def _pop(frontier: list[int], heap: JobHeap) -> int:
    items = heap.items
    top = frontier[0]
    last = frontier.pop()
    n = len(frontier)
    if not n:
        return top
    job = items[last]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        right = child + 1
        if right < n and heap._less(items[frontier[right]], items[frontier[child]]):
            child = right
        if not heap._less(items[frontier[child]], job):
            break
        frontier[i] = frontier[child]
        i = child
    frontier[i] = last
    return top


def _slice(jobs: Iterable[Job], offset: int, limit: int) -> list[Job]:
    return list(islice(jobs, offset, offset + limit))
