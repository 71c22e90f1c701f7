"""From samples to a report: one row per (variant, metric), the terminal table, the JSON file.

`Results` collects every round's sample (or the error that ended a server's rounds); `rows()`
turns them into medians, ratios and pass/miss marks; `table()` and `to_json()` present them.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .summary import Spread, Target, human, near_ceiling, ratio, spread, status
from .workloads import Metric, Sample, Variant

KINDS = ("tubeserver", "beanstalkd")
NULL = "null"


@attrs.define
class Results:
    variants: list[Variant]
    samples: dict[tuple[str, str], list[Sample]] = attrs.field(factory=dict)
    errors: dict[tuple[str, str], str] = attrs.field(factory=dict)
    walls: dict[tuple[str, str], list[float]] = attrs.field(factory=dict)  # seconds per run

    def add(self, variant: Variant, kind: str, sample: Sample) -> None:
        self.samples.setdefault((variant.name, kind), []).append(sample)

    def took(self, variant: Variant, kind: str, seconds: float) -> None:
        self.walls.setdefault((variant.name, kind), []).append(round(seconds, 2))

    def fail(self, variant: Variant, kind: str, message: str) -> None:
        self.errors[(variant.name, kind)] = message

    def failed(self, variant: Variant, kind: str) -> bool:
        return (variant.name, kind) in self.errors

    def values(self, name: str, kind: str, key: str) -> list[float]:
        return [s.values[key] for s in self.samples.get((name, kind), []) if key in s.values]

    def gen_cpu(self, name: str, kind: str) -> float | None:
        """The median of the generator's CPU use (cores) over a cell's rounds."""
        got = [s.info["generator_cpu_cores"] for s in self.samples.get((name, kind), [])]
        cores = [float(c) for c in got if isinstance(c, int | float)]
        s = spread(cores)
        return None if s is None else s.median


@attrs.frozen
class Cell:
    samples: tuple[float, ...]
    spread: Spread | None
    error: str | None = None
    generator_bound: bool = False
    note: str = ""
    gen_cpu: float | None = None  # the generator's CPU use in cores (median over rounds)

    def text(self) -> str:
        if self.error is not None and self.spread is None:
            return "error"
        if self.spread is None:
            return "-"
        s = self.spread
        body = human(s.median)
        if s.n > 1:
            body += f" [{human(s.low)}-{human(s.high)}]"
        return body + ("*" if self.generator_bound else "")

    def to_json(self) -> dict[str, Any]:
        s = self.spread
        return {
            "samples": list(self.samples),
            "median": None if s is None else s.median,
            "min": None if s is None else s.low,
            "max": None if s is None else s.high,
            "error": self.error,
            "generator_bound": self.generator_bound,
            "generator_cpu_cores": self.gen_cpu,
            "note": self.note,
        }


@attrs.frozen
class Row:
    variant: Variant
    metric: Metric
    tubeserver: Cell
    beanstalkd: Cell | None  # None: not run (--no-beanstalkd)
    ceiling: Cell | None  # the generator against the null responder, for rates
    ratio: float | None
    status: str

    @property
    def target(self) -> Target | None:
        return self.metric.target


def _cell(results: Results, name: str, kind: str, metric: Metric,
          ceiling: Spread | None = None, note: str = "") -> Cell:
    values = results.values(name, kind, metric.key)
    s = spread(values)
    rate = metric.key == "rate"
    bound = rate and near_ceiling(s, ceiling)
    cpu = results.gen_cpu(name, kind) if rate else None
    return Cell(tuple(values), s, results.errors.get((name, kind)), bound, note, cpu)


def rows(results: Results, with_beanstalkd: bool = True) -> list[Row]:
    out: list[Row] = []
    for v in results.variants:
        for m in v.metrics:
            ceiling = None
            if v.ceiling is not None and m.key == "rate":
                ceiling = _cell(results, v.name, NULL, m)
            cs = ceiling.spread if ceiling is not None else None
            ours = _cell(results, v.name, "tubeserver", m, cs)
            theirs: Cell | None = None
            if with_beanstalkd and v.reference is not None:
                theirs = _best(results, v.reference, m)
            elif with_beanstalkd:
                theirs = _cell(results, v.name, "beanstalkd", m, cs)
            r = ratio(ours.spread, theirs.spread if theirs is not None else None)
            out.append(Row(v, m, ours, theirs, ceiling, r, status(m.target, r)))
    return out


def _best(results: Results, workload: str, metric: Metric) -> Cell:
    """beanstalkd's best median for `metric` among the variants of `workload`."""
    best: Cell | None = None
    for v in results.variants:
        if v.workload != workload:
            continue
        ceiling = spread(results.values(v.name, NULL, metric.key))
        c = _cell(results, v.name, "beanstalkd", metric, ceiling, note=f"best: {v.name}")
        if c.spread is not None and (best is None or best.spread is None
                                     or c.spread.median > best.spread.median):
            best = c
    if best is None:
        return Cell((), None, f"no beanstalkd {workload} rows to compare with")
    return best


# ---------------------------------------------------------------- the terminal table

HEADER = ("workload", "metric", "tubeserver", "beanstalkd", "ratio", "target", "",
          "null ceiling", "gen cores")


def table(rs: Sequence[Row]) -> str:
    """Medians [min-max] per server, the ratio, the issue's target and pass/MISS, and the
    generator's ceiling (null responder) where it applies; errors and marks in footnotes."""
    lines: list[list[str]] = [list(HEADER)]
    notes: list[str] = []
    for r in rs:
        better = "" if r.metric.higher_is_better else " (lower)"
        theirs = r.beanstalkd.text() if r.beanstalkd is not None else "(not run)"
        if r.beanstalkd is not None and r.beanstalkd.note and r.beanstalkd.spread is not None:
            theirs += f" ({r.beanstalkd.note})"
        lines.append([
            r.variant.name, f"{r.metric.label}{better}", r.tubeserver.text(), theirs,
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target.text if r.target is not None else "",
            r.status,
            r.ceiling.text() if r.ceiling is not None else "",
            _cores(r),
        ])
        for kind, cell in (("tubeserver", r.tubeserver), ("beanstalkd", r.beanstalkd)):
            if cell is not None and cell.error is not None:
                note = f"{r.variant.name}, {kind}: {cell.error}"
                if note not in notes:
                    notes.append(note)
    widths = [max(len(row[i]) for row in lines) for i in range(len(HEADER))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append("")
    text.append("median [min-max] over rounds; ratio = tubeserver / beanstalkd medians.")
    text.append("null ceiling: the same load against a null responder (a minimal Python "
                "server), a lower bound of the generator's ceiling;")
    text.append("* = within 80% of it: that number may be the generator's, not the server's. "
                "gen cores: the generator's CPU")
    text.append("use (tubeserver/beanstalkd run), in cores of the "
                f"{os.cpu_count()} this machine has.")
    for note in notes:
        text.append("error: " + note)
    return "\n".join(text)


def _cores(r: Row) -> str:
    cells = [r.tubeserver, r.beanstalkd] if r.variant.reference is None else [r.tubeserver]
    got = [c.gen_cpu for c in cells if c is not None]
    if not any(g is not None for g in got):
        return ""
    return "/".join("-" if g is None else f"{g:.2f}" for g in got)


# ---------------------------------------------------------------- JSON

def to_json(results: Results, rs: Sequence[Row], meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **meta,
        "rows": [{
            "variant": r.variant.name,
            "workload": r.variant.workload,
            "params": dict(r.variant.params),
            "metric": r.metric.key,
            "label": r.metric.label,
            "better": "higher" if r.metric.higher_is_better else "lower",
            "tubeserver": r.tubeserver.to_json(),
            "beanstalkd": None if r.beanstalkd is None else r.beanstalkd.to_json(),
            "ceiling": None if r.ceiling is None else r.ceiling.to_json(),
            "ratio": r.ratio,
            "target": None if r.target is None else r.target.text,
            "status": r.status or None,
        } for r in rs],
        "runs": [{
            "variant": name,
            "server": kind,
            "samples": [{"values": dict(s.values), "info": dict(s.info)} for s in samples],
            "wall_s": results.walls.get((name, kind), []),
            "error": results.errors.get((name, kind)),
        } for (name, kind), samples in sorted(results.samples.items())] + [{
            "variant": name, "server": kind, "samples": [], "error": message,
        } for (name, kind), message in sorted(results.errors.items())
            if (name, kind) not in results.samples],
    }


def machine(versions: Mapping[str, str]) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **{f"{k}_version": v for k, v in versions.items()},
    }
    info.update(_git())
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None}
    if commit.returncode != 0:
        return {"git_commit": None}
    return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
