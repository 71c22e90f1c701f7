"""The ratio chart: one horizontal bar per row, tubeserver / beanstalkd (or the two columns a
row names), with the target marked.

matplotlib is an optional extra (`pip install tubeserver[bench]`); without it `draw` returns
False and the runner says so. Rendering uses the Agg canvas directly: no display, no pyplot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .report import Row
from .workloads import BEANSTALKD, TUBESERVER

PASS, MISS, NONE, BOUND = "#4c9a5b", "#c8553d", "#8c8c8c", "#d9a21b"


def draw(rows: Sequence[Row], path: Path, title: str) -> bool:
    """Write the chart to `path` (PNG); False when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return False
    items = [r for r in rows if r.ratio is not None or r.target is not None]
    fig = Figure(figsize=(10, 0.42 * max(len(items), 1) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = [r.ratio if r.ratio is not None and r.ratio > 0 else 0.0 for r in items]
    present = [v for v in values if v > 0] + [r.target.value for r in items if r.target]
    low = min([*present, 1.0]) / 1.6
    high = max([*present, 1.0]) * 1.6
    colors = [{"": NONE, "pass": PASS, "MISS": MISS}.get(r.status, BOUND) for r in items]
    ys = list(range(len(items)))
    # Bars grow from parity (1.0): left means the first column (tubeserver) has less of the
    # metric than the second (beanstalkd, or what the label names).
    ax.barh(ys, [v - 1.0 if v > 0 else 0.0 for v in values], left=1.0, color=colors,
            height=0.6)
    for y, r, v in zip(ys, items, values, strict=True):
        if r.target is not None:
            ax.plot([r.target.value] * 2, [y - 0.4, y + 0.4], color="black", lw=1.6,
                    linestyle="--")
        label = f"{v:.2f}" if v > 0 else "no ratio"
        right = v >= 1.0 or v == 0
        ax.text((v or 1.0) * (1.04 if right else 0.96), y, label, va="center", fontsize=8,
                ha="left" if right else "right",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ticks = [x for x in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if low <= x <= high]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([
        f"{r.variant.name}: {r.metric.label}"
        + ("" if r.metric.higher_is_better else " (lower is better)")
        + ("" if _default(r) else f" [{' / '.join(c.name for c in r.columns)}]")
        for r in items
    ], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("tubeserver / beanstalkd, or [first / second column] as named (log scale)\n"
                  "dashed: the issue's target; amber: generator-bound")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    return True


def _default(r: Row) -> bool:
    """The row compares tubeserver with beanstalkd, as the axis says."""
    return r.columns == (TUBESERVER, BEANSTALKD)
