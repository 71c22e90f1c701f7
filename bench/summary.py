"""The arithmetic of a report: medians with min-max, percentiles, ratios and targets.

Pure functions on numbers, so the tests can pin them down without running anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import attrs


@attrs.frozen
class Spread:
    median: float
    low: float
    high: float
    n: int


def spread(samples: Sequence[float]) -> Spread | None:
    """Median, min and max of the samples; None when there are none."""
    if not samples:
        return None
    return Spread(float(statistics.median(samples)), float(min(samples)),
                  float(max(samples)), len(samples))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of unsorted `values`: a value that occurred."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def ratio(ours: Spread | None, theirs: Spread | None) -> float | None:
    """tubeserver's median over beanstalkd's; None when either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs.median == 0:
        return None
    return ours.median / theirs.median


@attrs.frozen
class Target:
    """A goal for a ratio: `>= 1.0` for rates, `<= 2.0` for latency, memory and time."""

    op: str  # ">=" or "<="
    value: float

    def __attrs_post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"target operator {self.op!r}")

    @property
    def text(self) -> str:
        return f"{self.op} {self.value:g}"

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value


def status(target: Target | None, measured: float | None) -> str:
    """`pass`, `MISS`, or `` when there is no target or no ratio."""
    if target is None or measured is None:
        return ""
    return "pass" if target.met(measured) else "MISS"


def near_ceiling(measured: Spread | None, ceiling: Spread | None, higher_is_better: bool = True,
                 share: float = 0.8) -> bool:
    """True when a server's median got within `share` of what the generator does against the
    null responder: for a rate, `share` of its ceiling; for a latency, a floor of at least
    `share` of the server's number. Then the number may be the generator's, not the server's."""
    if measured is None or ceiling is None or ceiling.median <= 0:
        return False
    if higher_is_better:
        return measured.median >= share * ceiling.median
    return ceiling.median >= share * measured.median


GENERATOR_BOUND = "generator-bound"


def judge(target: Target | None, measured: float | None, ours_bound: bool,
          theirs_bound: bool) -> str:
    """`status`, except that a generator-bound row cannot pass: it reads `generator-bound`.
    A miss stays a miss when only beanstalkd was bound: its true number is better still."""
    base = status(target, measured)
    if not base or not (ours_bound or theirs_bound):
        return base
    if base == "MISS" and not ours_bound:
        return base
    return GENERATOR_BOUND


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal counts (the first ones get the remainder)."""
    if parts < 1:
        raise ValueError("at least one part")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def human(value: float | None, unit: str = "") -> str:
    """Compact numbers for the table: 12.3k, 1.25M, 0.84."""
    if value is None:
        return "-"
    a = abs(value)
    if a >= 10e6:
        text = f"{value / 1e6:.1f}M"
    elif a >= 1e6:
        text = f"{value / 1e6:.2f}M"
    elif a >= 10e3:
        text = f"{value / 1e3:.1f}k"
    elif a >= 1e3:
        text = f"{value / 1e3:.2f}k"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit
