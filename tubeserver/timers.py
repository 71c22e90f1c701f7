"""The engine's timer heap: every time-driven change waits here as one entry.

An entry is (at, seq, kind, target, check). `check` must still match its target when the entry
comes due, otherwise the entry is stale (the job was touched or deleted, the waiter served, the
pause replaced) and is skipped. Entries are never removed early, which would need an index per
entry; a sweep drops the stale ones once they could outnumber the live ones, so the heap stays
within a constant factor of the live timers however much churn there is.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from .job import Job, JobState
from .keys import Keys
from .schedules import Schedules
from .session import Session
from .tracking import Tracker
from .tube import Tube
from .tubelimits import TubeLimits

DELAY: Final = 0  # a delayed job becomes ready
TTR: Final = 1  # a reserved job's time to run ends
PAUSE: Final = 2  # a paused tube resumes
WAIT: Final = 3  # a waiting reserve times out
SOON: Final = 4  # a waiting reserve's client has a job whose TTR is about to end
RESULT: Final = 5  # a `result` waiter's timeout
# From here on, each kind has one target (the module) whose `timer_at` is its live entry.
EXPIRE: Final = 6  # the oldest kept record's expiry
LIMIT: Final = 7  # a rate-limited tube has a token again
KEYS: Final = 8  # a unique key's window ends
SCHEDULE: Final = 9  # a schedule fires
CLEAR: Final = 10  # a clear-tube under way deletes its next slice
Timer = tuple[float, int, int, object, float]

SWEEP_MIN: Final = 4096  # below this many entries, stale ones just wait to be popped

_DELAYED: Final = JobState.DELAYED
_RESERVED: Final = JobState.RESERVED


class Timers:
    __slots__ = ("_sweep_at", "heap", "seq")

    def __init__(self) -> None:
        self.heap: list[Timer] = []
        self.seq = 0  # shared with waiters, so a waiter and its timers agree on one number
        self._sweep_at = SWEEP_MIN

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def push(self, at: float, kind: int, target: object, check: float) -> None:
        self.seq += 1
        heap = self.heap
        heapq.heappush(heap, (at, self.seq, kind, target, check))
        if len(heap) > self._sweep_at:
            # Amortised: the next sweep waits until the heap has doubled again.
            self.heap = heap = [e for e in heap if live(e)]
            heapq.heapify(heap)
            self._sweep_at = max(SWEEP_MIN, 2 * len(heap))

    def add_unordered(self, at: float, kind: int, target: object, check: float) -> None:
        """Restoring many entries at once: `reorder` must follow before any `pop_due`."""
        self.seq += 1
        self.heap.append((at, self.seq, kind, target, check))

    def reorder(self) -> None:
        heapq.heapify(self.heap)
        self._sweep_at = max(SWEEP_MIN, 2 * len(self.heap))

    def next_at(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def due(self, now: float) -> bool:
        return bool(self.heap) and self.heap[0][0] <= now

    def pop_due(self, now: float) -> Timer | None:
        """The earliest live entry due at `now`, or None; stale entries on the way are
        dropped. Entries pushed meanwhile are seen by the next call."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if live(entry):
                return entry
        return None

    def live_targets(self) -> set[int]:
        """ids of every target with a live entry (for the invariant checks)."""
        return {id(entry[3]) for entry in self.heap if live(entry)}


def live(entry: Timer) -> bool:
    """Whether the entry's condition still holds for its target."""
    kind = entry[2]
    target = entry[3]
    check = entry[4]
    if kind == DELAY:
        assert isinstance(target, Job)
        return target.state is _DELAYED and target.deadline == check
    if kind == TTR:
        assert isinstance(target, Job)
        return target.state is _RESERVED and target.deadline == check
    if kind == PAUSE:
        assert isinstance(target, Tube)
        return target.paused and target.pause_token == check
    if kind >= EXPIRE:  # one timer per target, the one its `timer_at` names
        if kind == CLEAR:
            return _timer_at(target) == check  # admin.py's Admin, which imports this module
        assert isinstance(target, Tracker | TubeLimits | Keys | Schedules)
        return target.timer_at == check
    assert isinstance(target, Session)
    if kind == RESULT:
        return target.result_wait is not None and target.result_wait.seq == check
    return target.waiter is not None and target.waiter.seq == check


def _timer_at(target: Any) -> object:
    return target.timer_at
