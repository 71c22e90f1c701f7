"""tubebench's command line: pick the variants, run them A B A B over rounds, report.

Each (variant, round, server) is one fresh server process; the generator's ceiling is measured
in the same rotation against the null responder. A server's failure ends that server's rounds
of that variant and shows in its row; Ctrl-C or a crash still stops every process started.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from . import chart, instrument, native, report, servers, soak
from .servers import ServerKind
from .workloads import WORKLOADS, Settings, Variant, catalogue, select


class _Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object: ...
    def close(self) -> object: ...


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> _Bar:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    tqdm.monitor_interval = 0  # no monitor thread: the load generator forks
    bar: _Bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True,
                     desc="tubebench")
    return bar


def _only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(unknown) or text!r} (choose from "
            f"{', '.join(WORKLOADS)})")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tubebench",
        description="Run the same workloads against tubeserver and beanstalkd on 127.0.0.1, "
        "alternating rounds, and report medians, min-max and the ratio tubeserver/beanstalkd "
        "next to the targets of issue 10; the tracking workload sets tubeserver with job "
        "tracking on against itself with it off, and the flow workload its put-unique against "
        "its plain put, and reports a limited tube's delivered rate. The load comes from a C "
        "generator (bench/gen.c, built with $CC or cc on first use) held to a C null responder. "
        "The soak workload, run only when named (--only soak), keeps tubeserver under mixed "
        "traffic, hang-ups and a slow reader for ten minutes, and reports its RSS over time and "
        "the longest stall a well-behaved client saw. The tls workload, also run only when "
        "named (--only tls), sets tubeserver with --tls-cert against itself in plain TCP and "
        "against beanstalkd behind stunnel, all driven by the Python generator with ssl "
        "(gen.c has no TLS).",
    )
    p.add_argument("--quick", action="store_true",
                   help="fewer jobs and 3 rounds: about a minute in all")
    p.add_argument("--only", type=_only, default=[], metavar="WORKLOAD[,..]",
                   help=f"run only these workloads: {', '.join(WORKLOADS)}")
    p.add_argument("--rounds", type=_positive, metavar="N",
                   help="rounds per workload (default 5, --quick 3; memory, restart and "
                   "tracking memory at most 3, --quick 1)")
    p.add_argument("--out", type=Path, default=Path("tubebench-results"), metavar="DIR",
                   help="where the JSON and PNG go (default ./tubebench-results)")
    p.add_argument("--tubeserver", metavar="CMD",
                   help="command that starts tubeserver, before -l/-p (default: this Python "
                   "with -m tubeserver)")
    p.add_argument("--beanstalkd", metavar="PATH",
                   help="the beanstalkd binary (default: beanstalkd on PATH)")
    p.add_argument("--no-beanstalkd", action="store_true",
                   help="run tubeserver alone; ratios stay blank")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the generator-ceiling runs against the null responder")
    p.add_argument("--generator", choices=("auto", "c", "python"), default="auto",
                   help="the load generator: c (built on first use), python (the old one: "
                   "its ratios are not trustworthy), auto (default: c, python only when no C "
                   "compiler exists)")
    p.add_argument("--workers", type=_positive, default=2, metavar="N",
                   help="processes per group of the python generator (default 2)")
    p.add_argument("--jobs", type=_positive, metavar="N",
                   help="replace every workload's job count (smoke runs)")
    p.add_argument("--limit", type=_seconds, metavar="SECONDS",
                   help="wall-time bound of one measured run (default 60, --quick 20)")
    p.add_argument("--soak-seconds", type=_seconds, metavar="SECONDS",
                   help="how long the soak workload runs (default 600, --quick 60); it runs "
                   "only when named: --only soak")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _beanstalkd(path: str | None) -> str | None:
    if path is not None:
        return path if os.access(path, os.X_OK) else None
    found = shutil.which("beanstalkd")
    if found:
        return found
    return "/usr/bin/beanstalkd" if os.access("/usr/bin/beanstalkd", os.X_OK) else None


def _order(v: Variant, kinds: Collection[str], ceiling: bool) -> list[str]:
    """The columns of `v` to run in each round, first column first, then the null."""
    order = [c.name for c in v.columns if c.name in v.kinds and c.server in kinds]
    if ceiling and v.ceiling is not None:
        order.append(report.NULL)
    return order


def column_kind(v: Variant, name: str, kinds: Mapping[str, ServerKind]) -> ServerKind:
    """The server a column of `v` starts: its server's command with the column's flags, under
    the column's name (so errors and the workload's checks say which column)."""
    column = v.column(name)
    base = kinds[column.server]
    return ServerKind(column.name, (*base.argv, *column.flags))


def run_all(variants: Sequence[Variant], kinds: dict[str, ServerKind], rounds: int,
            settings: Settings, ceiling: bool, progress: bool) -> report.Results:
    results = report.Results(list(variants))
    plan = [(v, r, k) for v in variants if v.run is not None
            for r in range(min(rounds, v.max_rounds or rounds))
            for k in _order(v, kinds, ceiling)]
    bar = _progress(len(plan), progress)
    null_server = None
    try:
        if any(k == report.NULL for _, _, k in plan):
            null_server = instrument.NullServer(settings.generator)
        for v, r, k in plan:
            bar.set_postfix_str(f"{v.name}: {k} round {r + 1}")
            if not results.failed(v, k):
                began = time.monotonic()
                try:
                    if k == report.NULL:
                        assert v.ceiling is not None and null_server is not None
                        sample = v.ceiling(null_server.port, settings)
                    else:
                        assert v.run is not None
                        sample = v.run(column_kind(v, k, kinds), settings)
                    results.add(v, k, sample)
                except Exception as e:  # the row reports it; the other rows go on
                    message = str(e) or type(e).__name__
                    if not isinstance(e, RuntimeError | OSError):
                        message = f"{type(e).__name__}: {message}"
                    results.fail(v, k, message)
                results.took(v, k, time.monotonic() - began)
            bar.update(1)
    finally:
        bar.close()
        servers.stop_all()
        if null_server is not None:
            null_server.stop()
    return results


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bs_path = None
    if not args.no_beanstalkd:
        bs_path = _beanstalkd(args.beanstalkd)
        if bs_path is None:
            where = args.beanstalkd or "beanstalkd on PATH"
            print(f"tubebench: {where} not found: install it (apt-get install beanstalkd), "
                  "point --beanstalkd at it, or pass --no-beanstalkd to run tubeserver alone",
                  file=sys.stderr)
            return 2
    ts_argv = (shlex.split(args.tubeserver) if args.tubeserver
               else [sys.executable, "-m", "tubeserver"])
    kinds = {"tubeserver": ServerKind("tubeserver", tuple(ts_argv))}
    if bs_path is not None:
        kinds["beanstalkd"] = ServerKind("beanstalkd", (bs_path,))
    mode = "quick" if args.quick else "full"
    rounds = args.rounds or (3 if args.quick else 5)
    try:
        choice = instrument.choose(args.generator, args.workers)
    except (native.NoCompiler, native.BuildError) as e:
        print(f"tubebench: cannot build the C generator: {e}", file=sys.stderr)
        return 2
    if choice.warning:
        instrument.banner(choice.warning)
    settings = Settings(choice.generator, limit_s=args.limit or (20.0 if args.quick else 60.0),
                        soak_s=args.soak_seconds or (60.0 if args.quick else 600.0))
    variants = select(catalogue(args.quick, args.jobs), args.only)
    versions = {k: servers.version(kind) for k, kind in kinds.items()}
    meta: dict[str, Any] = {
        "tool": "tubebench",
        "mode": mode,
        "rounds": rounds,
        "generator": dict(choice.info),
        "settings": {"workers": args.workers, "limit_s": settings.limit_s,
                     "soak_s": settings.soak_s,
                     "jobs_override": args.jobs, "only": args.only,
                     "tubeserver_command": ts_argv, "beanstalkd": bs_path,
                     "ceiling": not args.no_ceiling},
        "machine": report.machine(versions),
    }
    started = time.monotonic()
    # SIGTERM and SIGHUP stop the run the way Ctrl-C does: through the `finally` that stops
    # every server (the forked generator processes put the default action back).
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        results = run_all(variants, kinds, rounds, settings, not args.no_ceiling,
                          not args.no_progress)
    except KeyboardInterrupt:
        print("tubebench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["machine"]["loadavg_at_end"] = list(os.getloadavg())
    rows = report.rows(results, with_beanstalkd=bs_path is not None)
    m = meta["machine"]
    print(f"tubebench {mode}: {rounds} rounds, {m['nproc']} cores, Python {m['python']}, "
          f"{versions.get('beanstalkd', 'no beanstalkd')}, {versions['tubeserver']}"
          + (f" (git {m['git_commit'][:10]}{'+dirty' if m.get('git_dirty') else ''})"
             if m.get("git_commit") else "")
          + f", {meta['duration_s']:.0f}s, generator: {choice.generator.name}")
    if choice.warning:
        print(f"!!! {choice.warning}")
    print(report.table(rows, choice.generator.name))
    timelines = soak.timelines(results.samples)
    if timelines:
        print("\n" + timelines)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"tubebench-{time.strftime('%Y%m%d-%H%M%S')}-{mode}"
    json_path = base.with_suffix(".json")
    png_path = base.with_suffix(".png")
    drew = chart.draw(rows, png_path, f"tubebench {mode}: ratios of medians, "
                      f"{m['nproc']} cores, {m['date']}")
    meta["chart"] = png_path.name if drew else None
    json_path.write_text(json.dumps(report.to_json(results, rows, meta), indent=2) + "\n")
    shutil.copyfile(json_path, args.out / f"latest-{mode}.json")
    if drew:
        shutil.copyfile(png_path, args.out / f"latest-{mode}.png")
    print(f"\nresults: {json_path}" + (f"\nchart:   {png_path}" if drew else
                                      "\nchart:   not drawn (pip install 'tubeserver[bench]')"))
    if choice.warning:
        instrument.banner(choice.warning)
    return 0
