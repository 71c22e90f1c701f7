"""Statistics snapshots and their YAML text, with beanstalkd's exact keys and key order.

String values are always double-quoted (as beanstalkd 1.13 does for most of them), so a name
like `1.5` or an `os` string containing `#` or `: ` still parses as the string it is.
"""

from __future__ import annotations

import datetime
import math
import os
import resource
import secrets
from collections.abc import Iterable

import attrs

from . import BUILD, __version__
from .engine import Engine
from .job import Job, JobState
from .schedules import Schedule
from .tracking import Tracker
from .tube import Tube

# Counted commands, in the order `stats` reports them.
COMMAND_KEYS = (
    "cmd-put", "cmd-peek", "cmd-peek-ready", "cmd-peek-delayed", "cmd-peek-buried",
    "cmd-reserve", "cmd-reserve-with-timeout", "cmd-delete", "cmd-release", "cmd-use",
    "cmd-watch", "cmd-ignore", "cmd-bury", "cmd-kick", "cmd-touch", "cmd-stats",
    "cmd-stats-job", "cmd-stats-tube", "cmd-list-tubes", "cmd-list-tube-used",
    "cmd-list-tubes-watched", "cmd-pause-tube",
)

# tubeserver's own command counters (job tracking), reported after all of beanstalkd's keys.
TRACKING_COMMAND_KEYS = (
    "cmd-finish", "cmd-fail", "cmd-result", "cmd-job-status", "cmd-checkpoint",
    "cmd-peek-checkpoint",
)

# ... and flow control's.
FLOW_COMMAND_KEYS = (
    "cmd-put-unique", "cmd-put-after", "cmd-schedule", "cmd-unschedule", "cmd-list-schedules",
    "cmd-tube-limits", "cmd-list-tube-limits",
)

# ... and the admin commands'.
ADMIN_COMMAND_KEYS = ("cmd-list-jobs", "cmd-clear-tube", "cmd-kick-tube", "cmd-tube-info")

Value = int | float | bool | str


@attrs.frozen
class ProcessInfo:
    """Facts about this server process that `stats` reports; gathered once at start-up."""

    pid: int
    version: str
    id: str
    hostname: str
    os: str
    platform: str
    max_job_size: int
    started: float  # on the engine's clock
    build: str = BUILD  # compiled (mypyc) or interpreted, and why

    @classmethod
    def gather(cls, max_job_size: int, started: float) -> ProcessInfo:
        u = os.uname()
        return cls(os.getpid(), f"tubeserver {__version__}", secrets.token_hex(8),
                   u.nodename, u.version, u.machine, max_job_size, started)


def to_yaml(pairs: list[tuple[str, Value]]) -> bytes:
    lines = ["---\n"]
    for key, value in pairs:
        lines.append(f"{key}: {_scalar(value)}\n")
    return "".join(lines).encode("utf-8")


def to_yaml_seq(items: list[list[tuple[str, Value]]]) -> bytes:
    """A YAML sequence of flat mappings (list-schedules, list-tube-limits)."""
    if not items:
        return b"--- []\n"
    lines = ["---\n"]
    for pairs in items:
        for i, (key, value) in enumerate(pairs):
            lines.append(f"{'- ' if i == 0 else '  '}{key}: {_scalar(value)}\n")
    return "".join(lines).encode("utf-8")


def _scalar(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


@attrs.frozen
class LogStats:
    """The write-ahead log's figures, reported under beanstalkd's binlog-* keys."""

    oldest_index: int = 0
    current_index: int = 0
    records_migrated: int = 0
    records_written: int = 0
    max_size: int = 0


@attrs.frozen
class NetStats:
    """The network layer's figures for `stats`: connections refused at accept past
    --max-connections, and closed for stalling mid-command past --stall-timeout."""

    refused: int = 0
    stalled: int = 0


def server_stats(engine: Engine, counts: dict[str, int], info: ProcessInfo,
                 now: float, log: LogStats = LogStats(), net: NetStats = NetStats()
                 ) -> list[tuple[str, Value]]:
    tubes = engine.tube_list
    sessions = engine.sessions
    tracker = engine.tracker
    flow = engine.flow
    quota = engine.quota
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [
        ("current-jobs-urgent", sum(t.urgent_count for t in tubes)),
        ("current-jobs-ready", sum(t.ready_count for t in tubes)),
        ("current-jobs-reserved", sum(t.reserved_count for t in tubes)),
        # Jobs waiting on parents count as delayed for beanstalkd's keys (protocol.md).
        ("current-jobs-delayed", sum(t.delayed_count + len(t.waiting) for t in tubes)),
        ("current-jobs-buried", sum(len(t.buried) for t in tubes)),
        *((key, counts[key]) for key in COMMAND_KEYS),
        ("job-timeouts", engine.job_timeouts),
        ("total-jobs", engine.total_jobs),
        ("max-job-size", info.max_job_size),
        ("current-tubes", len(tubes)),
        ("current-connections", len(sessions)),
        ("current-producers", sum(1 for s in sessions if s.producer)),
        ("current-workers", sum(1 for s in sessions if s.worker)),
        ("current-waiting", sum(1 for s in sessions if s.waiter is not None)),
        ("total-connections", engine.total_connections),
        ("pid", info.pid),
        ("version", info.version),
        ("rusage-utime", usage.ru_utime),
        ("rusage-stime", usage.ru_stime),
        ("uptime", int(now - info.started)),
        ("binlog-oldest-index", log.oldest_index),
        ("binlog-current-index", log.current_index),
        ("binlog-records-migrated", log.records_migrated),
        ("binlog-records-written", log.records_written),
        ("binlog-max-size", log.max_size),
        ("draining", engine.draining),
        ("id", info.id),
        ("hostname", info.hostname),
        ("os", info.os),
        ("platform", info.platform),
        # tubeserver's own keys, after all of beanstalkd's.
        *((key, counts[key]) for key in TRACKING_COMMAND_KEYS),
        ("current-result-waiters", tracker.waiting),
        ("kept-records", len(tracker.records)),
        ("kept-record-bytes", tracker.bytes),
        ("kept-records-expired", tracker.expired),
        ("kept-records-evicted", tracker.evicted),
        *((key, counts[key]) for key in FLOW_COMMAND_KEYS),
        ("current-dependent-jobs", flow.deps.waiting),
        ("current-unique-keys", len(flow.keys.holds)),
        ("unique-duplicates", flow.duplicates),
        ("current-schedules", len(flow.schedules.table)),
        ("schedule-firings", flow.fired),
        ("current-tube-limits", len(flow.limits)),
        *((key, counts[key]) for key in ADMIN_COMMAND_KEYS),
        ("jobs-cleared", engine.admin.cleared),
        ("max-jobs", quota.max_jobs),
        ("max-memory", quota.max_memory),
        ("current-job-memory", quota.memory(len(engine.jobs))),
        ("puts-refused", quota.puts_refused),
        ("schedule-firings-refused", quota.firings_refused),
        ("connections-refused", net.refused),
        ("connections-stalled", net.stalled),
        ("build", info.build),
    ]


def tube_stats(tube: Tube, now: float) -> list[tuple[str, Value]]:
    left = max(0, int(tube.paused_until - now)) if tube.paused else 0
    return [
        ("name", tube.name),
        ("current-jobs-urgent", tube.urgent_count),
        ("current-jobs-ready", tube.ready_count),
        ("current-jobs-reserved", tube.reserved_count),
        ("current-jobs-delayed", tube.delayed_count + len(tube.waiting)),
        ("current-jobs-buried", len(tube.buried)),
        ("total-jobs", tube.total_jobs),
        ("current-using", tube.using),
        ("current-watching", tube.watching),
        ("current-waiting", len(tube.waiters)),
        ("cmd-delete", tube.cmd_delete),
        ("cmd-pause-tube", tube.cmd_pause),
        ("pause", tube.pause if tube.paused else 0),
        ("pause-time-left", left),
    ]


def job_stats(job: Job, now: float) -> list[tuple[str, Value]]:
    timed = job.state is JobState.RESERVED or job.state is JobState.DELAYED
    waiting = job.state is JobState.WAITING  # "delayed", its delay still to come
    return [
        ("id", job.id),
        ("tube", job.tube.name),
        ("state", "delayed" if waiting else job.state.value),
        ("pri", job.pri),
        ("age", int(now - job.created)),
        ("delay", job.delay),
        ("ttr", job.ttr),
        ("time-left", int(job.deadline - now) if timed else job.delay if waiting else 0),
        ("file", job.file),
        ("reserves", job.reserves),
        ("timeouts", job.timeouts),
        ("releases", job.releases),
        ("buries", job.buries),
        ("kicks", job.kicks),
    ]




def wall_time(t: float) -> str:
    """A wall-clock time as job-status shows it: UTC, ISO 8601, microseconds, `Z`."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def job_status(job: Job, tracker: Tracker, wall: float) -> list[tuple[str, Value]]:
    """job-status of a live job or a kept record; `wall` turns the engine's clock into the
    wall clock (seconds to add)."""
    finished = job.state is JobState.FINISHED
    extra = job.extra
    reason = None if extra is None else extra.reason
    checkpoint = None if extra is None or finished else extra.checkpoint
    return [
        ("id", job.id),
        ("tube", job.tube.name),
        ("state", job.state.value),
        ("pri", job.pri),
        ("delay", job.delay),
        ("ttr", job.ttr),
        ("reserves", job.reserves),
        ("timeouts", job.timeouts),
        ("releases", job.releases),
        ("buries", job.buries),
        ("kicks", job.kicks),
        ("created", wall_time(job.created + wall)),
        ("reserved", wall_time(job.reserved_at + wall) if job.reserved_at >= 0 else ""),
        ("finished", wall_time(job.deadline + wall) if finished else ""),
        ("result-bytes", len(job.body) if finished else 0),
        ("reason-bytes", 0 if reason is None else len(reason)),
        ("checkpoint-bytes", -1 if checkpoint is None else len(checkpoint)),
        ("expires", wall_time(tracker.expires(job) + wall) if finished else ""),
        ("key", "" if extra is None or extra.key is None else extra.key),
        ("parents", "" if extra is None or extra.parents is None
         else ",".join(map(str, extra.parents))),
    ]


def schedules_list(schedules: Iterable[Schedule]) -> list[list[tuple[str, Value]]]:
    """list-schedules: by name; times on the wall clock, UTC."""
    return [[
        ("name", s.name),
        ("tube", s.tube),
        ("spec", s.spec.text),
        ("pri", s.pri),
        ("ttr", s.ttr),
        ("body-bytes", len(s.body)),
        ("next", wall_time(s.next_at) if s.next_at != math.inf else ""),
        ("last", wall_time(s.last_at) if s.last_at > 0 else ""),
        ("last-job", s.last_job),
        ("jobs", s.made),
        ("skipped", s.skipped),
    ] for s in sorted(schedules, key=_name)]


def limits_list(engine: Engine) -> list[list[tuple[str, Value]]]:
    """list-tube-limits: by tube name, with the figures the limits apply to."""
    items: list[list[tuple[str, Value]]] = []
    for name in sorted(engine.flow.limits):
        limits = engine.flow.limits[name]
        tube = engine.tubes.get(name)
        items.append([
            ("tube", name),
            ("max-reserved", limits.max_reserved),
            ("max-jobs", limits.max_jobs),
            ("rate", limits.rate),
            ("current-jobs-reserved", 0 if tube is None else tube.reserved_count),
            ("current-jobs", 0 if tube is None else tube.job_count),
        ])
    return items


def tube_info(tube: Tube, now: float) -> list[tuple[str, Value]]:
    """tube-info: what stats-tube cannot show without changing beanstalkd's keys."""
    second = tube.ages.oldest()
    limits = tube.limits
    return [
        ("name", tube.name),
        ("current-jobs-ready", tube.ready_count),
        ("current-jobs-reserved", tube.reserved_count),
        ("current-jobs-delayed", tube.delayed_count),
        ("current-jobs-buried", len(tube.buried)),
        ("current-jobs-waiting", len(tube.waiting)),
        ("oldest-ready-age", -1 if second is None else max(0, int(now - second))),
        ("total-jobs", tube.total_jobs),
        ("total-reserves", tube.reserves),
        ("total-deletes", tube.cmd_delete),
        ("total-releases", tube.releases),
        ("total-buries", tube.buries),
        ("total-kicks", tube.kicks),
        ("total-timeouts", tube.timeouts),
        ("current-waiting", len(tube.waiters)),
        ("paused", tube.paused),
        ("pause-time-left", max(0, int(tube.paused_until - now)) if tube.paused else 0),
        ("max-reserved", 0 if limits is None else limits.max_reserved),
        ("max-jobs", 0 if limits is None else limits.max_jobs),
        ("rate", 0.0 if limits is None else limits.rate),
    ]


def jobs_list(jobs: list[Job], now: float) -> list[list[tuple[str, Value]]]:
    """list-jobs: the figures an operator scans a queue by (stats-job has the rest)."""
    return [[
        ("id", job.id),
        ("pri", job.pri),
        ("age", int(now - job.created)),
        ("time-left", _time_left(job, now)),
        ("reserves", job.reserves),
        ("body-size", len(job.body)),
    ] for job in jobs]


def _time_left(job: Job, now: float) -> int:
    """As stats-job's: to a delayed job's end or a reserved job's TTR; a waiting job's delay
    still to come."""
    state = job.state
    if state is JobState.RESERVED or state is JobState.DELAYED:
        return max(0, int(job.deadline - now))
    return job.delay if state is JobState.WAITING else 0


def _name(s: Schedule) -> str:
    return s.name
