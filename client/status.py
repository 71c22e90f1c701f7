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
    finished yet). `checkpoint_bytes` is None when the job has no checkpoint. `key` is None
    when the job holds no unique key.
    """

    id: int
    tube: str
    # "ready", "delayed", "reserved", "buried", "finished" or (flow control) "waiting" for
    # parents; a str, not a Literal, so that a state added by a later extension reads as
    # itself rather than as a protocol error.
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
    # Flow control: the unique key the job holds (put_unique), and while it is "waiting" the
    # ids of the parents it still waits for (put_after). None and () from a server that
    # predates flow control.
    key: str | None = None
    parents: tuple[int, ...] = ()


class Fields:
    """Typed access to the keys of one parsed YAML mapping of reply `kind`: a missing key or
    a value of the wrong type is a StatsFormatError naming the key (shared by job-status and
    the flow-control listings)."""

    def __init__(self, fields: dict[str, StatValue], kind: str) -> None:
        self.fields = fields
        self.kind = kind

    def get(self, key: str) -> StatValue:
        try:
            return self.fields[key]
        except KeyError:
            raise StatsFormatError(f"{self.kind} without {key!r}") from None

    def number(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StatsFormatError(f"{self.kind} {key!r} is not a number: {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise StatsFormatError(f"{self.kind} {key!r} is not a string: {value!r}")
        return value

    def time(self, key: str) -> dt.datetime | None:
        """An ISO 8601 UTC time ending in Z, as a timezone-aware datetime; "" is None."""
        text = self.text(key)
        if not text:
            return None
        # fromisoformat alone would also take dates without a time and naive times.
        if "T" not in text or not text.endswith("Z"):
            raise StatsFormatError(
                f"{self.kind} {key!r} is not an ISO 8601 UTC time: {text!r}"
            )
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise StatsFormatError(f"{self.kind} {key!r} is not a time: {text!r}") from None

    def ids(self, key: str) -> tuple[int, ...]:
        """A comma-separated list of job ids ("" is none)."""
        text = self.text(key)
        if not text:
            return ()
        tokens = text.split(",")
        if not all(t.isascii() and t.isdigit() for t in tokens):
            raise StatsFormatError(f"{self.kind} {key!r} is not a list of ids: {text!r}")
        return tuple(int(t) for t in tokens)


def parse_job_status(payload: bytes) -> JobStatus:
    """The JobStatus in a job-status YAML payload; StatsFormatError if it is malformed."""
    f = Fields(parse_mapping(payload, "job-status"), "job-status")
    created = f.time("created")
    if created is None:
        raise StatsFormatError("job-status with an empty 'created'")
    # -1 is "no checkpoint"; the YAML reader leaves a negative number as a string.
    checkpoint_bytes = None if f.get("checkpoint-bytes") == "-1" else f.number("checkpoint-bytes")
    # A server that predates flow control sends neither key: no key, no parents.
    flow = "key" in f.fields or "parents" in f.fields
    return JobStatus(
        id=f.number("id"),
        tube=f.text("tube"),
        state=f.text("state"),
        priority=f.number("pri"),
        delay=f.number("delay"),
        ttr=f.number("ttr"),
        reserves=f.number("reserves"),
        timeouts=f.number("timeouts"),
        releases=f.number("releases"),
        buries=f.number("buries"),
        kicks=f.number("kicks"),
        created=created,
        reserved=f.time("reserved"),
        finished=f.time("finished"),
        result_bytes=f.number("result-bytes"),
        reason_bytes=f.number("reason-bytes"),
        checkpoint_bytes=checkpoint_bytes,
        expires=f.time("expires"),
        key=(f.text("key") or None) if flow else None,
        parents=f.ids("parents") if flow else (),
    )
