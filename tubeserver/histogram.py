"""Fixed-bucket histograms the engine fills as it runs (time in queue, run time) and the
server fills around fsync, for the Prometheus exposition (metrics.py).

Plain counters, no library: the engine must stay pure and compilable, and an observation is
one bisect and two additions. Bucket `i` counts values <= bounds[i] (Prometheus' `le`), the
last one everything above; cumulative counts are made when exported, not per observation.
"""

from __future__ import annotations

from bisect import bisect_left

# Not Final: compiled, a Final tuple read from another module was found unset at run time.
# Seconds from put to first reserve, and from reserve to finish: milliseconds to an hour.
# Few buckets: each is a series per tube in every scrape.
JOB_BOUNDS = (0.005, 0.05, 0.5, 5.0, 30.0, 300.0, 3600.0)
# Seconds an fsync takes: a tenth of a millisecond to a second.
SYNC_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, +Inf last, as Prometheus wants."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
