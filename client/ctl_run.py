"""tubectl's subcommands: what each asks every server, and what it prints.

Theory of operation. A subcommand is a function `(Context, args) -> exit status`. It runs
its action on the servers through `Servers.each` (one after the other, each on its own
connection), prints the values that came back (a table or `key: value` lines for people,
one JSON document with `--json`), prints one `tubectl: ...` line on stderr per server that
failed, and returns 0 or 1 (`Fanout.status`). Usage errors never get here: ctl.py refuses
them first with status 2. Against a server without tubeserver's admin commands (beanstalkd)
`tubes` and `top` fall back to `stats-tube` (no waiting jobs apart, no oldest age: shown
"-", null in JSON) and `kick TUBE` to `use` + `kick`; the other extension commands say the
server lacks them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Final

import attrs

from . import commands as cmd
from .admin import TubeInfo
from .ctl_servers import Failure, Fanout, Servers
from .ctl_view import (
    CLEAR_SCREEN,
    body_json,
    body_text,
    dumps,
    duration,
    pairs,
    record_json,
    record_keys,
    table,
)
from .errors import DeadlineSoon, ExtensionNotSupported, JobFailed, NotFound, TimedOut
from .job import Job
from .stats import StatsJob, StatsTube
from .sync import Client

# The figures `stats` shows people by default (--all: every key), where a server has them.
STATS_SUMMARY: Final = (
    "version", "uptime", "current-connections", "current-producers", "current-workers",
    "current-waiting", "current-tubes", "current-jobs-urgent", "current-jobs-ready",
    "current-jobs-reserved", "current-jobs-delayed", "current-jobs-buried", "total-jobs",
    "job-timeouts", "cmd-put", "cmd-reserve", "cmd-delete", "draining", "kept-records",
    "current-schedules", "jobs-cleared",
)
TUBE_KEYS: Final = record_keys(TubeInfo)


@attrs.define
class Context:
    """What every subcommand gets: the servers, the output mode and the standard streams."""

    servers: Servers
    json: bool
    stdout: IO[str]
    stderr: IO[str]
    stdin: IO[bytes]

    def show(self, document: object, text: str) -> None:
        """Print `document` as JSON with --json, else `text` (nothing if empty)."""
        out = dumps(document) if self.json else text
        if out:
            print(out, file=self.stdout, flush=True)

    def fail(self, failures: Sequence[Failure]) -> None:
        for f in failures:
            print(f"tubectl: {f.message}", file=self.stderr, flush=True)

    def finish(self, fanout: Fanout[Any]) -> int:
        """Print the failures of `fanout`; its exit status."""
        self.fail(fanout.failures)
        return fanout.status

    @property
    def several(self) -> bool:
        return len(self.servers.names) > 1

    def with_server(self, server: str, row: Sequence[object]) -> list[object]:
        """A table row, after its server's name when there are several servers."""
        return [server, *row] if self.several else list(row)

    def header(self, *titles: str) -> list[str]:
        return ["server", *titles] if self.several else list(titles)


Handler = Callable[[Context, argparse.Namespace], int]


# --------------------------------------------------------------------------- stats, tubes


def stats(ctx: Context, args: argparse.Namespace) -> int:
    """Server statistics: a column per server."""
    out = ctx.servers.each(lambda c: dict(c.stats()))
    if args.all:
        keys = list(dict.fromkeys(k for _, s in out.values for k in s))
    else:
        keys = [k for k in STATS_SUMMARY if any(k in s for _, s in out.values)]
    rows = [[key, *(s.get(key) for _, s in out.values)] for key in keys]
    header = ["stat", *(name for name, _ in out.values)]
    text = table(header, rows, left=header) if out.values else ""
    ctx.show([{"server": name, **s} for name, s in out.values], text)
    return ctx.finish(out)


Figures = TubeInfo | StatsTube


def tube_figures(c: Client[bytes], tube: str) -> Figures:
    """tube-info, or stats-tube from a server without admin commands (asked once: the
    client remembers that it lacks them)."""
    try:
        return c.tube_info(tube)
    except ExtensionNotSupported:
        return c.stats_tube(tube)


def server_tubes(c: Client[bytes]) -> list[Figures]:
    """Every tube of one server, by name, with its figures: the first tube asked alone
    (whether the server has tube-info), then all of them in one pipelined round trip."""
    names = sorted(c.list_tubes())
    if not names:
        return []
    ask: type[cmd.TubeInfo] | type[cmd.StatsTube] = cmd.TubeInfo
    try:
        c.tube_info(names[0])
    except ExtensionNotSupported:
        ask = cmd.StatsTube
    except NotFound:
        pass  # an answer all the same: the server has tube-info
    asked = [ask(name) for name in names]
    out: list[Figures] = []
    for command, reply in zip(asked, c.pipeline(asked), strict=True):
        try:
            out.append(command.unwrap(reply))
        except NotFound:
            continue  # gone since list-tubes
    return out


def tube_json(server: str, f: Figures) -> dict[str, Any]:
    """tube-info's keys; from stats-tube, null for what it does not show."""
    if isinstance(f, TubeInfo):
        return {"server": server, **record_json(f)}
    item: dict[str, Any] = {"server": server, **dict.fromkeys(TUBE_KEYS)}
    item.update({
        "name": f["name"], "current-jobs-ready": f["current-jobs-ready"],
        "current-jobs-reserved": f["current-jobs-reserved"],
        "current-jobs-delayed": f["current-jobs-delayed"],
        "current-jobs-buried": f["current-jobs-buried"], "total-jobs": f["total-jobs"],
        "total-deletes": f["cmd-delete"], "current-waiting": f["current-waiting"],
        "paused": f["pause"] > 0, "pause-time-left": f["pause-time-left"],
    })
    return item


TUBE_COLUMNS: Final = ("tube", "ready", "reserved", "delayed", "buried", "waiting",
                       "oldest ready")


def tube_row(item: dict[str, Any]) -> list[object]:
    return [item["name"], item["current-jobs-ready"], item["current-jobs-reserved"],
            item["current-jobs-delayed"], item["current-jobs-buried"],
            item["current-jobs-waiting"], duration(item["oldest-ready-age"])]


def tubes_view(ctx: Context) -> tuple[list[dict[str, Any]], str, Fanout[list[Figures]]]:
    """Every tube of every server: the JSON items, the table, and the outcome."""
    out = ctx.servers.each(server_tubes)
    items = [tube_json(name, f) for name, figures in out.values for f in figures]
    rows = [ctx.with_server(item["server"], tube_row(item)) for item in items]
    text = table(ctx.header(*TUBE_COLUMNS), rows, left=("server", "tube")) if out.values else ""
    return items, text, out


def tubes(ctx: Context, args: argparse.Namespace) -> int:
    """A table of every tube: jobs by state and the oldest ready job's age."""
    items, text, out = tubes_view(ctx)
    ctx.show(items, text)
    return ctx.finish(out)


def top(ctx: Context, args: argparse.Namespace) -> int:
    """`tubes` again every --interval seconds, redrawn in place, until Ctrl-C (or
    --iterations frames). With --json, one line of JSON per frame."""
    status = 0
    try:
        frame = 0
        while args.iterations is None or frame < args.iterations:
            if frame:
                time.sleep(args.interval)
            frame += 1
            items, text, out = tubes_view(ctx)
            status = out.status
            if ctx.json:
                print(dumps(items, compact=True), file=ctx.stdout, flush=True)
                ctx.fail(out.failures)
                continue
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            lines = [f"tubectl top: {', '.join(ctx.servers.names)}, every {args.interval:g}s"
                     f" ({now}; Ctrl-C quits)", "", text]
            lines += [f"tubectl: {f.message}" for f in out.failures]
            print(CLEAR_SCREEN + "\n".join(lines), file=ctx.stdout, flush=True)
    except KeyboardInterrupt:
        return 0
    return status


# --------------------------------------------------------------------------- jobs


def jobs(ctx: Context, args: argparse.Namespace) -> int:
    """The jobs of one tube in one state, a page at a time."""
    out = ctx.servers.each(
        lambda c: c.list_jobs(args.tube, args.state, args.offset, args.limit),
        missing=f"no tube {args.tube!r}")
    items = [{"server": name, "tube": args.tube, "state": args.state, **record_json(j)}
             for name, found in out.values for j in found]
    rows = [ctx.with_server(name, [j.id, j.priority, duration(j.age), duration(j.time_left),
                                   j.reserves, j.body_size])
            for name, found in out.values for j in found]
    text = table(ctx.header("id", "pri", "age", "time-left", "reserves", "size"), rows,
                 left=("server",)) if rows else ""
    if out.values and not rows:
        text = f"no {args.state} jobs in tube {args.tube!r}" + (
            f" from #{args.offset} on" if args.offset else "")
    ctx.show(items, text)
    return ctx.finish(out)


@attrs.frozen
class Peeked:
    """A peeked job, with its stats-job when it still exists."""

    job: Job[bytes]
    stats: StatsJob | None


def _peeked(c: Client[bytes], job: Job[bytes]) -> Peeked:
    try:
        return Peeked(job, c.stats_job(job.id))
    except NotFound:  # deleted since the peek
        return Peeked(job, None)


def peek(ctx: Context, args: argparse.Namespace) -> int:
    """One job by id, or the next ready / next delayed / oldest buried job of a tube."""
    if args.id is not None:
        out = ctx.servers.each(lambda c: _peeked(c, c.peek(args.id)),
                               missing=f"no job {args.id}")
    else:
        state = args.which

        def action(c: Client[bytes]) -> Peeked:
            c.use(args.tube)
            job = {"ready": c.peek_ready, "delayed": c.peek_delayed,
                   "buried": c.peek_buried}[state]()
            return _peeked(c, job)

        out = ctx.servers.each(action, missing=f"no {state} job in tube {args.tube!r}")
    items: list[dict[str, Any]] = []
    texts: list[str] = []
    for name, p in out.values:
        s = p.stats
        item: dict[str, Any] = {"server": name, "id": p.job.id}
        item.update(dict.fromkeys(("tube", "state", "pri", "age")) if s is None else
                    {"tube": s["tube"], "state": s["state"], "pri": s["pri"], "age": s["age"]})
        item["body"] = body_json(p.job.body)
        items.append(item)
        about = ("" if s is None else
                 f"tube {s['tube']!r}, {s['state']}, pri {s['pri']}, age {duration(s['age'])}, ")
        texts.append(f"job {p.job.id} on {name}: {about}{len(p.job.body)} bytes\n"
                     + body_text(p.job.body))
    ctx.show(items, "\n\n".join(texts))
    return ctx.finish(out)


def status(ctx: Context, args: argparse.Namespace) -> int:
    """A job's state, counters and times (job-status): live, or finished and kept."""
    out = ctx.servers.each(lambda c: c.status(args.id),
                           missing=f"no job {args.id} (never made, or finished and not kept)")
    for name, st in out.values:
        item = {"server": name, **record_json(st)}
        ctx.show(item, pairs([(k, v) for k, v in item.items() if k != "server"]))
    return ctx.finish(out)


# --------------------------------------------------------------------------- changes


def _kick_in(c: Client[bytes], tube: str, bound: int) -> int:
    try:
        return c.kick_tube(tube, bound)
    except ExtensionNotSupported:
        c.stats_tube(tube)  # NotFound for a tube that does not exist, as kick-tube says
        c.use(tube)
        return c.kick(bound)


def kick(ctx: Context, args: argparse.Namespace) -> int:
    """kick-tube (buried jobs, else delayed ones), or kick-job for one job."""
    if args.job is not None:
        one = ctx.servers.each(lambda c: c.kick_job(args.job),
                               missing=f"job {args.job} is not buried or delayed "
                                       "(or does not exist)")
        for name, _ in one.values:
            ctx.show({"server": name, "id": args.job, "kicked": True},
                     f"kicked job {args.job} on {name}")
        return ctx.finish(one)
    out = ctx.servers.each(lambda c: _kick_in(c, args.tube, args.bound),
                           missing=f"no tube {args.tube!r}")
    ctx.show([{"server": name, "tube": args.tube, "kicked": n} for name, n in out.values],
             "\n".join(f"{name}: kicked {n} job{'s' * (n != 1)} in tube {args.tube!r}"
                       for name, n in out.values))
    return ctx.finish(out)


def _deleting(id: int) -> Callable[[Client[bytes]], None]:
    return lambda c: c.delete(id)


def delete(ctx: Context, args: argparse.Namespace) -> int:
    """Delete jobs by id (any state but reserved by another connection)."""
    items: list[dict[str, Any]] = []
    lines: list[str] = []
    failures: list[Failure] = []
    (server,) = ctx.servers.names
    for id in args.ids:
        out = ctx.servers.each(_deleting(id),
                               missing=f"no job {id} (or another connection reserved it)")
        failures += out.failures
        if out.values or any(f.not_found for f in out.failures):
            items.append({"server": server, "id": id, "deleted": bool(out.values)})
        if out.values:
            lines.append(f"deleted job {id} on {server}")
    ctx.show(items, "\n".join(lines))
    ctx.fail(failures)
    return 1 if failures else 0


def _clear_count(f: Figures, state: str) -> int | None:
    """How many jobs of `state` the tube has; None when stats-tube cannot tell (waiting)."""
    item = tube_json("", f)
    return item[f"current-jobs-{state}"]  # type: ignore[no-any-return]


def _confirm(ctx: Context, args: argparse.Namespace) -> bool | None:
    """Ask on the terminal, saying how many jobs each server would lose: yes, no, or None
    when no server has the tube."""
    counts = ctx.servers.each(lambda c: _clear_count(tube_figures(c, args.tube), args.state),
                              missing=f"no tube {args.tube!r}")
    ctx.fail(counts.failures)
    if not counts.values:
        return None
    where = ", ".join(f"{'?' if n is None else n} on {name}" for name, n in counts.values)
    ctx.stderr.write(f"Delete every {args.state} job of tube {args.tube!r} ({where})? [y/N] ")
    ctx.stderr.flush()
    answer = ctx.stdin.readline().decode("utf-8", "replace").strip().lower()
    return answer in ("y", "yes")


def clear(ctx: Context, args: argparse.Namespace) -> int:
    """Delete every job of a tube in one state (clear-tube), after confirmation."""
    if not args.yes:
        confirmed = _confirm(ctx, args)
        if not confirmed:
            print("tubectl: nothing cleared", file=ctx.stderr)
            return 1 if confirmed is None else 0
    out = ctx.servers.each(lambda c: c.clear_tube(args.tube, args.state),
                           missing=f"no tube {args.tube!r}")
    ctx.show([{"server": name, "tube": args.tube, "state": args.state, "cleared": n}
              for name, n in out.values],
             "\n".join(f"{name}: cleared {n} {args.state} job{'s' * (n != 1)} from tube "
                       f"{args.tube!r}" for name, n in out.values))
    return ctx.finish(out)


def pause(ctx: Context, args: argparse.Namespace) -> int:
    """Hold back reserves from a tube for SECONDS (0 ends a pause)."""
    out = ctx.servers.each(lambda c: c.pause_tube(args.tube, args.seconds),
                           missing=f"no tube {args.tube!r}")
    what = f"for {args.seconds}s" if args.seconds else "no longer (pause ended)"
    ctx.show([{"server": name, "tube": args.tube, "pause": args.seconds}
              for name, _ in out.values],
             "\n".join(f"{name}: tube {args.tube!r} paused {what}" for name, _ in out.values))
    return ctx.finish(out)


def put(ctx: Context, args: argparse.Namespace) -> int:
    """Put one job, its body from the argument or from stdin."""
    body = args.body.encode("utf-8") if args.body is not None else ctx.stdin.read()

    def action(c: Client[bytes]) -> int:
        c.use(args.tube)
        return c.put(body, args.pri, args.delay, args.ttr)

    out = ctx.servers.each(action)
    for name, id in out.values:
        ctx.show({"server": name, "tube": args.tube, "id": id},
                 f"inserted job {id} into tube {args.tube!r} on {name}")
    return ctx.finish(out)


@attrs.frozen
class Outcome:
    """What wait-result learned: "finished" with the result, "failed" with the reason (raw
    bytes; empty when there was none), or "live" when the time ran out."""

    state: str
    data: bytes


def _outcome(c: Client[bytes], id: int, timeout: int) -> Outcome:
    try:
        return Outcome("finished", c.wait_result(id, timeout) or b"")
    except JobFailed as e:
        return Outcome("failed", e.reason if isinstance(e.reason, bytes) else b"")
    except TimedOut:
        return Outcome("live", b"")


def wait_result(ctx: Context, args: argparse.Namespace) -> int:
    """Wait for a job's result (or its failure reason) and print it; status 1 unless the
    job finished."""
    out = ctx.servers.each(lambda c: _outcome(c, args.id, args.timeout),
                           missing=f"no job {args.id} (never made, or its record expired)")
    status = ctx.finish(out)
    for name, o in out.values:
        if o.state == "live":
            ctx.fail([Failure(name, f"{name}: job {args.id} is still live after "
                                    f"{args.timeout}s: no result yet")])
            status = 1
            continue
        failed = o.state == "failed"
        item = {"server": name, "id": args.id, "state": o.state,
                "result": None if failed else body_json(o.data),
                "reason": body_json(o.data) if failed else None}
        what = "reason" if failed else "result"
        text = f"job {args.id} {o.state}" + (
            f"; {what} ({len(o.data)} bytes):\n{body_text(o.data)}" if o.data
            else f"; no {what}")
        ctx.show(item, text)
        if failed:
            status = 1
    return status


def schedules(ctx: Context, args: argparse.Namespace) -> int:
    """Every schedule: its spec, next and last firing, and the jobs it made."""
    out = ctx.servers.each(lambda c: c.schedules())
    items = [{"server": name, **record_json(s)} for name, found in out.values for s in found]
    rows = [ctx.with_server(name, [s.name, s.tube, s.spec, s.next, s.last, s.jobs, s.skipped])
            for name, found in out.values for s in found]
    text = table(ctx.header("name", "tube", "spec", "next", "last", "jobs", "skipped"), rows,
                 left=("server", "name", "tube", "spec", "next", "last")) if rows else ""
    if out.values and not rows:
        text = "no schedules"
    ctx.show(items, text)
    return ctx.finish(out)


# --------------------------------------------------------------------------- tail


@attrs.frozen
class Taken:
    """A job tail reserved, with the priority it had (release and bury keep it)."""

    job: Job[bytes]
    priority: int


DONE: Final = {"release": "released", "delete": "deleted", "bury": "buried"}


def _take(ctx: Context, c: Client[bytes], args: argparse.Namespace) -> list[Taken]:
    """Reserve up to --count jobs of the tube on one server, printing each as it comes;
    delete or bury each at once, release them all at the end (released at once, a job
    would be reserved again)."""
    c.watch(args.tube)
    if args.tube != "default":
        c.ignore("default")
    taken: list[Taken] = []
    try:
        while len(taken) < args.count:
            try:
                job = c.reserve(timeout=args.wait)
            except (TimedOut, DeadlineSoon):
                break
            t = Taken(job, c.stats_job(job.id)["pri"])
            taken.append(t)
            if not ctx.json:
                print(f"job {job.id} on {c.server}: pri {t.priority}, {len(job.body)} bytes, "
                      f"{DONE[args.action]}\n{body_text(job.body)}", file=ctx.stdout,
                      flush=True)
            if args.action == "delete":
                c.delete(job)
            elif args.action == "bury":
                c.bury(job, t.priority)
    finally:
        if args.action == "release" and not c.closed:
            for t in taken:
                c.release(t.job, t.priority)
    return taken


def tail(ctx: Context, args: argparse.Namespace) -> int:
    """Reserve jobs of a tube, print them, then release, delete or bury each."""
    out = ctx.servers.each(lambda c: _take(ctx, c, args))
    if ctx.json:
        ctx.show([{"server": name, "tube": args.tube, "id": t.job.id, "pri": t.priority,
                   "action": DONE[args.action], "body": body_json(t.job.body)}
                  for name, found in out.values for t in found], "")
    for name, found in out.values:
        if not found:
            print(f"tubectl: {name}: no job came from tube {args.tube!r}", file=ctx.stderr)
    return ctx.finish(out)


HANDLERS: Final[dict[str, Handler]] = {
    "stats": stats, "tubes": tubes, "top": top, "jobs": jobs, "peek": peek, "status": status,
    "kick": kick, "delete": delete, "clear": clear, "pause": pause, "put": put,
    "wait-result": wait_result, "schedules": schedules, "tail": tail,
}
