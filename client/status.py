"""The reply to `job-status` (extension): a job's state, counters and times as one record.

Read from the flat YAML mapping with `stats.parse_mapping`, then checked key by key: a
missing key, a value of the wrong type or a time that is not ISO 8601 UTC is a malformed
reply (the codec turns StatsFormatError into UnexpectedReply). Keys this client does not
know are ignored, so that later extensions can add keys without breaking older clients.
"""

from __future__ import annotations

import datetime as dt

import attrs

from .stats import StatsFormatError, StatValue, parse_mapping


@attrs.frozen
class JobStatus:
    """A job's status from `job-status`: live (ready, delayed, reserved, buried) or finished.

    Counters are those of `stats-job` (for a finished job, frozen when it finished). Times
    are timezone-aware UTC datetimes, None where the server sent "" (never reserved, not
    finished yet). `checkpoint_bytes` is None when the job has no checkpoint.
    """

    id: int
    tube: str
    # "ready", "delayed", "reserved", "buried" or "finished"; a str, not a Literal, so that
    # a state added by a later extension reads as itself rather than as a protocol error.
    state: str
    priority: int
    delay: int
    ttr: int
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int
    created: dt.datetime
    reserved: dt.datetime | None
    finished: dt.datetime | None
    result_bytes: int
    reason_bytes: int
    checkpoint_bytes: int | None
    expires: dt.datetime | None


def _get(fields: dict[str, StatValue], key: str) -> StatValue:
    try:
        return fields[key]
    except KeyError:
        raise StatsFormatError(f"job-status without {key!r}") from None


def _int(fields: dict[str, StatValue], key: str) -> int:
    value = _get(fields, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatsFormatError(f"job-status {key!r} is not a number: {value!r}")
    return value


def _str(fields: dict[str, StatValue], key: str) -> str:
    value = _get(fields, key)
    if not isinstance(value, str):
        raise StatsFormatError(f"job-status {key!r} is not a string: {value!r}")
    return value


def _time(fields: dict[str, StatValue], key: str) -> dt.datetime | None:
    text = _str(fields, key)
    if not text:
        return None
    # fromisoformat alone would also take dates without a time and naive times.
    if "T" not in text or not text.endswith("Z"):
        raise StatsFormatError(f"job-status {key!r} is not an ISO 8601 UTC time: {text!r}")
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise StatsFormatError(f"job-status {key!r} is not a time: {text!r}") from None


def parse_job_status(payload: bytes) -> JobStatus:
    """The JobStatus in a job-status YAML payload; StatsFormatError if it is malformed."""
    fields = parse_mapping(payload, "job-status")
    created = _time(fields, "created")
    if created is None:
        raise StatsFormatError("job-status with an empty 'created'")
    # -1 is "no checkpoint"; the YAML reader leaves a negative number as a string.
    checkpoint: StatValue = _get(fields, "checkpoint-bytes")
    if checkpoint == "-1":
        checkpoint_bytes = None
    else:
        checkpoint_bytes = _int(fields, "checkpoint-bytes")
    return JobStatus(
        id=_int(fields, "id"),
        tube=_str(fields, "tube"),
        state=_str(fields, "state"),
        priority=_int(fields, "pri"),
        delay=_int(fields, "delay"),
        ttr=_int(fields, "ttr"),
        reserves=_int(fields, "reserves"),
        timeouts=_int(fields, "timeouts"),
        releases=_int(fields, "releases"),
        buries=_int(fields, "buries"),
        kicks=_int(fields, "kicks"),
        created=created,
        reserved=_time(fields, "reserved"),
        finished=_time(fields, "finished"),
        result_bytes=_int(fields, "result-bytes"),
        reason_bytes=_int(fields, "reason-bytes"),
        checkpoint_bytes=checkpoint_bytes,
        expires=_time(fields, "expires"),
    )
