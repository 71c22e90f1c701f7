"""The age of a tube's oldest ready job, for the metrics, without walking its jobs.

The ready heap is ordered by (pri, id), so its top is not the oldest job. Beside it each tube
counts its ready jobs by the whole second they were put in (`created`, the engine's clock) and
keeps a min-heap of those seconds. A job entering or leaving the ready state changes one count
(nothing per job is stored, so a ready job costs no memory here); a second whose count drops to
zero leaves the dict at once and the heap lazily, when `oldest` meets it at the top. The heap
holds at most one entry per change of a second from no jobs to some; should repeats pile up
it is rebuilt from the dict, whose size is the span of ages in seconds, not the job count.
Second resolution, as beanstalkd's `age`.
"""

from __future__ import annotations

import heapq
import math
from typing import Final

SLACK: Final = 64  # stale heap entries tolerated beyond the live seconds before a rebuild


class Ages:
    __slots__ = ("counts", "heap")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # second -> ready jobs put in it
        self.heap: list[int] = []  # those seconds, and seconds no longer in `counts`

    def enter(self, created: float) -> None:
        second = math.floor(created)
        counts = self.counts
        n = counts.get(second, 0)
        counts[second] = n + 1
        if n == 0:
            heap = self.heap
            if len(heap) > 2 * len(counts) + SLACK:
                self.heap = sorted(counts)  # a sorted list is a heap
            else:
                heapq.heappush(heap, second)

    def leave(self, created: float) -> None:
        second = math.floor(created)
        counts = self.counts
        n = counts[second] - 1
        if n:
            counts[second] = n
        else:
            del counts[second]

    def oldest(self) -> int | None:
        """The second the oldest ready job was put in, or None when none is ready."""
        heap = self.heap
        counts = self.counts
        while heap:
            if heap[0] in counts:
                return heap[0]
            heapq.heappop(heap)
        return None

    def check(self, created: list[float]) -> None:
        """Assert the counts match the ready jobs' put times (for invariant checks)."""
        expected: dict[int, int] = {}
        for t in created:
            second = math.floor(t)
            expected[second] = expected.get(second, 0) + 1
        assert self.counts == expected, (self.counts, expected)
        assert set(self.counts) <= set(self.heap)
        assert self.oldest() == min(expected, default=None)
