"""Admin commands (extension): the records their replies become, and the client-side checks.

`JobSummary` is one item of `list-jobs`, `TubeInfo` the reply to `tube-info`; both are read
key by key from the server's YAML, as `status.JobStatus` is (a malformed payload is
StatsFormatError, which the codec turns into UnexpectedReply; unknown keys are ignored).
The checks refuse here, with a ValueError, what tubeserver would answer BAD_FORMAT (a state
it does not list or clear, an offset or limit out of range), so that BAD_FORMAT keeps
meaning "not supported" (protocol.md, "Admin commands").
"""

from __future__ import annotations

from typing import Final

import attrs

from .stats import StatsFormatError, parse_mapping, parse_records
from .status import Fields

# list-jobs' states, and the ones clear-tube deletes: a reserved job belongs to its worker.
LIST_STATES: Final = ("ready", "reserved", "delayed", "buried", "waiting")
CLEAR_STATES: Final = ("ready", "delayed", "buried", "waiting")
OFFSET_MAX: Final = 10_000
LIST_MAX: Final = 1000


@attrs.frozen
class JobSummary:
    """One job of `list_jobs`: its id, priority, seconds since it was put, seconds left (to
    a delayed job's end or a reserved job's TTR, as `stats-job`'s time-left), how often it
    was reserved, and its body's size in bytes."""

    id: int
    priority: int
    age: int
    time_left: int
    reserves: int
    body_size: int


@attrs.frozen
class TubeInfo:
    """One tube from `tube_info`: its jobs by state (`waiting`, jobs waiting for parents,
    apart here, where `stats-tube` counts them as delayed), the age in seconds of its oldest
    ready job by put time (None when none is ready), counters since the tube was made, the
    reservers waiting on it, its pause and its limits (0: none)."""

    name: str
    current_jobs_ready: int
    current_jobs_reserved: int
    current_jobs_delayed: int
    current_jobs_buried: int
    current_jobs_waiting: int
    oldest_ready_age: int | None
    total_jobs: int
    total_reserves: int
    total_deletes: int
    total_releases: int
    total_buries: int
    total_kicks: int
    total_timeouts: int
    current_waiting: int
    paused: bool
    pause_time_left: int
    max_reserved: int
    max_jobs: int
    rate: float


def _job_summary(f: Fields) -> JobSummary:
    return JobSummary(
        id=f.number("id"), priority=f.number("pri"), age=f.number("age"),
        time_left=f.number("time-left"), reserves=f.number("reserves"),
        body_size=f.number("body-size"),
    )


def parse_job_list(payload: bytes) -> list[JobSummary]:
    """The jobs of a list-jobs payload; StatsFormatError if it is malformed."""
    return [_job_summary(Fields(fields, "list-jobs"))
            for fields in parse_records(payload, "list-jobs")]


def parse_tube_info(payload: bytes) -> TubeInfo:
    """The TubeInfo in a tube-info payload; StatsFormatError if it is malformed."""
    f = Fields(parse_mapping(payload, "tube-info"), "tube-info")
    paused = f.get("paused")
    if not isinstance(paused, bool):
        raise StatsFormatError(f"tube-info 'paused' is not true or false: {paused!r}")
    rate = f.get("rate")
    if not isinstance(rate, float):
        raise StatsFormatError(f"tube-info 'rate' is not a number: {rate!r}")
    # -1 is "no job is ready"; the YAML reader leaves a negative number as a string.
    oldest = None if f.get("oldest-ready-age") == "-1" else f.number("oldest-ready-age")
    return TubeInfo(
        name=f.text("name"),
        current_jobs_ready=f.number("current-jobs-ready"),
        current_jobs_reserved=f.number("current-jobs-reserved"),
        current_jobs_delayed=f.number("current-jobs-delayed"),
        current_jobs_buried=f.number("current-jobs-buried"),
        current_jobs_waiting=f.number("current-jobs-waiting"),
        oldest_ready_age=oldest,
        total_jobs=f.number("total-jobs"),
        total_reserves=f.number("total-reserves"),
        total_deletes=f.number("total-deletes"),
        total_releases=f.number("total-releases"),
        total_buries=f.number("total-buries"),
        total_kicks=f.number("total-kicks"),
        total_timeouts=f.number("total-timeouts"),
        current_waiting=f.number("current-waiting"),
        paused=paused,
        pause_time_left=f.number("pause-time-left"),
        max_reserved=f.number("max-reserved"),
        max_jobs=f.number("max-jobs"),
        rate=rate,
    )


def check_state(state: object, states: tuple[str, ...], verb: str) -> str:
    """`state` if `verb` takes it (LIST_STATES for list-jobs, CLEAR_STATES for
    clear-tube), else ValueError/TypeError."""
    if not isinstance(state, str):
        raise TypeError(f"state must be a str, not {type(state).__name__}")
    if state not in states:
        raise ValueError(f"{verb} takes a state of {', '.join(states)}, not {state!r}")
    return state
