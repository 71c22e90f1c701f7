"""Flow control (extension): the records its replies become, and the client-side checks.

`Unique` is what `put_unique` returns; `Schedule` and `TubeLimits` are the items of
`list-schedules` and `list-tube-limits`, read from their YAML sequences of mappings key by
key, as `status.JobStatus` is (a malformed payload is StatsFormatError, which the codec turns
into UnexpectedReply; unknown keys are ignored). The checks refuse here, with a ValueError,
what tubeserver would answer BAD_FORMAT, so that BAD_FORMAT keeps meaning "not supported"
or "a spec the server rejects".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Final, TypeVar

import attrs

from .stats import StatsFormatError, parse_records
from .status import Fields

R = TypeVar("R")
PARENTS_MAX: Final = 100
RATE_MAX: Final = 1_000_000
# The lines of put-unique, put-after and schedule may be this long (CRLF included); every
# other command keeps beanstalkd's 224.
LINE_MAX: Final = 224
LONG_LINE_MAX: Final = 2560


@attrs.frozen
class Unique:
    """The answer to `put_unique`: `id` is the new job (`new` True, INSERTED) or the job
    that holds the key already (`new` False, DUPLICATE: nothing was stored)."""

    id: int
    new: bool


@attrs.frozen
class Schedule:
    """One schedule from `schedules()`. `spec` is as the server normalised it (single
    spaces). `next` is the next firing and `last` the last one that made a job, as
    timezone-aware UTC datetimes (None: none); `last_job` is that job's id (None: none yet).
    `jobs` counts the jobs it made, `skipped` the firings that made none (a single-instance
    schedule whose previous job was still live, a full tube, a draining server)."""

    name: str
    tube: str
    spec: str
    priority: int
    ttr: int
    body_bytes: int
    next: dt.datetime | None
    last: dt.datetime | None
    last_job: int | None
    jobs: int
    skipped: int


@attrs.frozen
class TubeLimits:
    """One tube's limits from `list_tube_limits()` (0: no limit), with the tube's reserved
    and total jobs now. `rate` is jobs per second (the server shows six decimals)."""

    tube: str
    max_reserved: int
    max_jobs: int
    rate: float
    current_jobs_reserved: int
    current_jobs: int


def _rate(f: Fields) -> float:
    value = f.get("rate")
    if not isinstance(value, float):
        raise StatsFormatError(f"{f.kind} 'rate' is not a number: {value!r}")
    return value


def _items(payload: bytes, kind: str, build: Callable[[Fields], R]) -> list[R]:
    return [build(Fields(fields, kind)) for fields in parse_records(payload, kind)]


def _schedule(f: Fields) -> Schedule:
    return Schedule(
        name=f.text("name"), tube=f.text("tube"), spec=f.text("spec"), priority=f.number("pri"),
        ttr=f.number("ttr"), body_bytes=f.number("body-bytes"), next=f.time("next"),
        last=f.time("last"), last_job=f.number("last-job") or None, jobs=f.number("jobs"),
        skipped=f.number("skipped"),
    )


def _tube_limits(f: Fields) -> TubeLimits:
    return TubeLimits(
        tube=f.text("tube"), max_reserved=f.number("max-reserved"),
        max_jobs=f.number("max-jobs"), rate=_rate(f),
        current_jobs_reserved=f.number("current-jobs-reserved"),
        current_jobs=f.number("current-jobs"),
    )


def parse_schedules(payload: bytes) -> list[Schedule]:
    """The schedules of a list-schedules payload; StatsFormatError if it is malformed."""
    return _items(payload, "list-schedules", _schedule)


def parse_tube_limits(payload: bytes) -> list[TubeLimits]:
    """The limits of a list-tube-limits payload; StatsFormatError if it is malformed."""
    return _items(payload, "list-tube-limits", _tube_limits)


# --------------------------------------------------------------------------- checks


RATE_DECIMALS = 6  # tube-limits' rate: at most this many digits after the point


def rate_text(rate: object) -> bytes:
    """A rate (jobs per second, int or float, 0 to 1,000,000) as the plain decimal the
    server reads: digits, optionally a point and up to six digits (``0.5``, never
    ``5e-07``); finer rates are rounded to six decimals."""
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"rate must be a number of jobs per second, not {type(rate).__name__}")
    if not (math.isfinite(rate) and 0 <= rate <= RATE_MAX):
        raise ValueError(f"rate must be between 0 and {RATE_MAX} jobs per second, not {rate!r}")
    if rate == 0:
        return b"0"  # also for -0.0, which would print its sign
    # Rounded to the server's six decimals (it lists rates so, and reads no more).
    value = Decimal(repr(rate)).quantize(Decimal(1).scaleb(-RATE_DECIMALS))
    if value == 0:
        raise ValueError(f"rate must be 0 or at least 0.000001 jobs per second, not {rate!r}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.encode("ascii")


def parent_ids(parents: list[int]) -> tuple[int, ...]:
    """The distinct parent ids of a put_after, in order: 1 to 100 of them."""
    distinct = tuple(dict.fromkeys(parents))
    if not 1 <= len(distinct) <= PARENTS_MAX:
        raise ValueError(
            f"put_after needs 1 to {PARENTS_MAX} distinct parents, not {len(distinct)}"
        )
    return distinct


def check_spec(spec: object) -> str:
    """A schedule spec, checked only so far as it is one line of printable ASCII: whether it
    is a cron expression that fires, or `every N`, is the server's to say (BAD_FORMAT)."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, not {type(spec).__name__}")
    if not spec.strip() or not spec.isascii() or not spec.isprintable():
        raise ValueError(
            f"invalid schedule spec {spec!r}: 5 cron fields or 'every <seconds>' (optionally "
            "after 'single'), in printable ASCII"
        )
    return spec


def check_line(data: bytes, limit: int) -> bytes:
    """`data`, a command line with its CRLF, if it fits the server's `limit`."""
    line = data[: data.index(b"\r\n") + 2]
    if len(line) > limit:
        raise ValueError(f"command line of {len(line)} bytes is longer than {limit}")
    return data
