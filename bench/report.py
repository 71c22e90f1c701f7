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

from .summary import Spread, Target, human, judge, near_ceiling, ratio, spread
from .workloads import Column, Metric, Sample, Variant

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

    def warnings(self, name: str, kind: str) -> tuple[str, ...]:
        """The distinct caveats the rounds of a cell reported (Sample.info["warning"])."""
        got = [s.info.get("warning") for s in self.samples.get((name, kind), [])]
        return tuple(dict.fromkeys(w for w in got if isinstance(w, str)))

    def gen_cpu(self, name: str, kind: str) -> float | None:
        """The median of the generator's CPU use (cores) over a cell's rounds."""
        got = [s.info.get("generator_cpu_cores") for s in self.samples.get((name, kind), [])]
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
    warnings: tuple[str, ...] = ()  # caveats from the rounds, shown under the table

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
            "warnings": list(self.warnings),
        }


@attrs.frozen
class Row:
    """One metric of one variant: its first column (`ours`: tubeserver, as a rule) over its
    second (`theirs`: beanstalkd, or tubeserver in another configuration)."""

    variant: Variant
    metric: Metric
    ours: Cell
    theirs: Cell | None  # None: not run (--no-beanstalkd), or a row of one column
    ceiling: Cell | None  # the generator against the null responder (its ceiling or floor)
    ratio: float | None
    status: str

    @property
    def target(self) -> Target | None:
        return self.metric.target

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.variant.columns

    @property
    def generator_bound(self) -> bool:
        """Either server got within 80% of the generator's own ceiling (or floor)."""
        return self.ours.generator_bound or bool(
            self.theirs is not None and self.theirs.generator_bound)


def _cell(results: Results, name: str, kind: str, metric: Metric,
          ceiling: Spread | None = None, note: str = "") -> Cell:
    values = results.values(name, kind, metric.key)
    s = spread(values)
    bound = near_ceiling(s, ceiling, metric.higher_is_better)
    cpu = results.gen_cpu(name, kind) if metric.key == "rate" else None
    return Cell(tuple(values), s, results.errors.get((name, kind)), bound, note, cpu,
                results.warnings(name, kind))


def _ceiling(results: Results, v: Variant, m: Metric) -> Cell | None:
    """The null responder's cell for this metric, when the variant measures one with it."""
    if v.ceiling is None:
        return None
    cell = _cell(results, v.name, NULL, m)
    return cell if cell.spread is not None or cell.error is not None else None


def rows(results: Results, with_beanstalkd: bool = True) -> list[Row]:
    out: list[Row] = []
    for v in results.variants:
        first, *rest = v.columns
        second = rest[0] if rest and (with_beanstalkd or rest[0].server != "beanstalkd") \
            else None
        for m in v.metrics:
            ceiling = _ceiling(results, v, m)
            cs = ceiling.spread if ceiling is not None else None
            if v.best_of:
                ours = _best(results, v.best_of, first.name, m)
            else:
                ours = _cell(results, v.name, first.name, m, cs)
            theirs: Cell | None = None
            if second is not None and v.reference is not None:
                refs = tuple(x.name for x in results.variants if x.workload == v.reference)
                theirs = _best(results, refs, second.name, m)
            elif second is not None:
                theirs = _cell(results, v.name, second.name, m, cs)
            r = ratio(ours.spread, theirs.spread if theirs is not None else None)
            st = judge(m.target, r, ours.generator_bound,
                       theirs is not None and theirs.generator_bound)
            out.append(Row(v, m, ours, theirs, ceiling, r, st))
    return out


def _best(results: Results, names: Sequence[str], kind: str, metric: Metric) -> Cell:
    """`kind`'s best median for `metric` among the named variants, each judged against its
    own ceiling; the note names the variant."""
    best: Cell | None = None
    by_name = {v.name: v for v in results.variants}
    for name in names:
        v = by_name.get(name)
        if v is None:
            continue
        c = _ceiling(results, v, metric)
        cell = _cell(results, name, kind, metric, c.spread if c is not None else None,
                     note=f"best: {name}")
        if cell.spread is not None and (best is None or best.spread is None
                                        or _better(cell.spread, best.spread, metric)):
            best = cell
    if best is None:
        return Cell((), None, f"no {kind} rows among {', '.join(names) or 'none'} to compare")
    return best


def _better(a: Spread, b: Spread, metric: Metric) -> bool:
    return a.median > b.median if metric.higher_is_better else a.median < b.median


# ---------------------------------------------------------------- the terminal table

HEADER = ("workload", "metric", "tubeserver", "beanstalkd", "ratio", "target", "",
          "null", "gen cores")


def _heading(r: Row, current: tuple[str, str]) -> tuple[str, str]:
    """The two column names a row is printed under: its own, or, for a row of one column,
    the current heading when its first column is the same."""
    names = [c.name for c in r.columns]
    if len(names) == 1:
        return current if current[0] == names[0] else (names[0], "")
    return names[0], names[1]


def table(rs: Sequence[Row], generator: str = "c") -> str:
    """Medians [min-max] per server, the ratio, the issue's target and pass/MISS (or
    generator-bound), and the generator against the null responder; errors in footnotes.
    Rows that compare other columns than tubeserver and beanstalkd get a heading of their
    own naming them, and a legend says what each such column runs."""
    lines: list[list[str] | None] = []  # None: a rule under the heading above it
    notes: list[str] = []
    legend: dict[str, str] = {}
    heading: tuple[str, str] = (HEADER[2], HEADER[3])
    for i, r in enumerate(rs):
        names = _heading(r, heading)
        if i == 0 or names != heading:
            if i:
                lines.append([""] * len(HEADER))
            lines += [[*HEADER[:2], *names, *HEADER[4:]], None]
            heading = names
        for c in r.columns:
            if c.name != c.command:
                legend[c.name] = c.command
        better = "" if r.metric.higher_is_better else " (lower)"
        if r.theirs is not None:
            theirs = r.theirs.text()
            if r.theirs.note and r.theirs.spread is not None:
                theirs += f" ({r.theirs.note})"
        else:
            theirs = "(not run)" if len(r.columns) > 1 else "n/a"
        ours = r.ours.text()
        if r.ours.note and r.ours.spread is not None:
            ours += f" ({r.ours.note})"
        lines.append([
            r.variant.name, f"{r.metric.label}{better}", ours, theirs,
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target.text if r.target is not None else "",
            r.status,
            r.ceiling.text() if r.ceiling is not None else "",
            _cores(r),
        ])
        for kind, cell in ((r.columns[0].name, r.ours),
                           (r.columns[-1].name, r.theirs if len(r.columns) > 1 else None),
                           ("null", r.ceiling)):
            if cell is None:
                continue
            said = [("error", cell.error)] if cell.error is not None else []
            for head, message in said + [("note", w) for w in cell.warnings]:
                line = f"{head}: {r.variant.name}, {kind}: {message}"
                if line not in notes:
                    notes.append(line)
    if not lines:
        lines = [list(HEADER), None]
    widths = [max(len(row[i]) for row in lines if row is not None) for i in range(len(HEADER))]
    text = ["  ".join("-" * w for w in widths) if row is None else
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines]
    text.append("")
    text.append("median [min-max] over rounds; ratio = the first column's median / the "
                "second's (tubeserver / beanstalkd unless the heading names others).")
    if legend:
        text.append("columns: " + "; ".join(f"{k} = {v}" for k, v in legend.items())
                    + "; n/a: nothing to compare with.")
    if generator == "c":
        text.append("null: the same load against the null responder (C, canned replies, no "
                    "jobs): the generator's ceiling for rates;")
        text.append("for paced latency, put -> INSERTED at the same rate: the floor under a "
                    "put-to-reserve time.")
    else:
        text.append("null: the same load against a Python null responder, slower than "
                    "beanstalkd: NOT a ceiling.")
    text.append("* = within 80% of it: the number may be the generator's; such a row reads "
                "generator-bound, never pass.")
    text.append("gen cores: the generator's CPU use (first/second column's run), in cores of "
                f"the {os.cpu_count()} this machine has.")
    text.extend(notes)
    return "\n".join(text)


def _cores(r: Row) -> str:
    cells = [r.ours, r.theirs] if r.variant.reference is None else [r.ours]
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
            # Each column's cell under its name: "tubeserver" and "beanstalkd" as a rule.
            "columns": [{"name": c.name, "server": c.server, "flags": list(c.flags)}
                        for c in r.columns],
            **{c.name: None if cell is None else cell.to_json()
               for c, cell in zip(r.columns, (r.ours, r.theirs), strict=False)},
            "ceiling": None if r.ceiling is None else r.ceiling.to_json(),
            "ratio": r.ratio,
            "generator_bound": r.generator_bound,
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
