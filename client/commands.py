"""Command values: one frozen record per protocol verb, validated on construction.

Each command knows its bytes (`encode`), the reply word that means success (`ok`), the shape
of that reply (`shape`) and how to turn a `Reply` into its result (`unwrap`). Arguments are
checked here, so a tube name with a space or CRLF, or a negative priority, can never reach
the wire and desynchronise or inject into the stream: they raise ValueError/TypeError.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import attrs

from . import admin as ad
from . import flow as fl
from . import stats as s
from . import status as st
from .job import BATCH_MAX, NAME_CHARS, NAME_MAX, RESERVE_TIMEOUT_MAX, U32_MAX, U64_MAX

if TYPE_CHECKING:
    from .codec import RawJob, Reply

R = TypeVar("R", covariant=True)


class Shape(enum.Enum):
    """What follows the success word of a reply."""

    NONE = "NONE"  # DELETED
    ID = "ID"  # INSERTED <id>
    COUNT = "COUNT"  # WATCHING <n>, KICKED <n>
    NAME = "NAME"  # USING <tube>
    JOB = "JOB"  # RESERVED/FOUND <id> <bytes>\r\n<data>\r\n
    BATCH = "BATCH"  # RESERVED-BATCH <n>\r\n then n RESERVED frames
    UNIQUE = "UNIQUE"  # INSERTED <id> or DUPLICATE <id>, read into a flow.Unique
    MAPPING = "MAPPING"  # OK <bytes>\r\n<yaml mapping>\r\n
    LIST = "LIST"  # OK <bytes>\r\n<yaml sequence>\r\n
    PAYLOAD = "PAYLOAD"  # OK <bytes>\r\n<yaml>\r\n, read into a record by `Command.read`
    NO_REPLY = "NO_REPLY"  # quit


def _int(value: object, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be between 0 and {limit}, not {value}")
    return value


def check_name(name: object, what: str = "tube name") -> str:
    """`name` if it is a legal tube name (1-200 of A-Za-z0-9-+/;.$_(), not starting with
    '-'), else ValueError/TypeError. Unique keys and schedule names follow the same rules;
    `what` says which it is in the message."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= NAME_MAX or name[0] == "-" or not NAME_CHARS.issuperset(name):
        raise ValueError(
            f"invalid {what} {name!r}: 1-{NAME_MAX} characters from A-Z a-z 0-9 -+/;.$_() "
            "not starting with '-'"
        )
    return name


def check_tube(name: object) -> str:
    """`name` if it is a legal tube name, else ValueError/TypeError (see `check_name`)."""
    return check_name(name)


def _u32(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        _int(value, name, U32_MAX)

    return check


def _range(name: str, low: int, high: int) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if _int(value, name, high) < low:
            raise ValueError(f"{name} must be between {low} and {high}, not {value}")

    return check


def _u64(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        _int(value, name, U64_MAX)

    return check


def _tube(_inst: Any, _attr: Any, value: Any) -> None:
    check_tube(value)


def _name(what: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        check_name(value, what)

    return check


def _reserve_timeout(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None:
        _int(value, "timeout", RESERVE_TIMEOUT_MAX)


def _wait_timeout(_inst: Any, _attr: Any, value: Any) -> None:
    _int(value, "timeout", RESERVE_TIMEOUT_MAX)


_data = attrs.validators.instance_of(bytes)


class Command(Generic[R]):
    """Base of all commands; `R` is the type `unwrap` returns."""

    __slots__ = ()
    ok: ClassVar[bytes] = b""
    shape: ClassVar[Shape] = Shape.NONE
    verb: ClassVar[str] = ""
    # The extension the command belongs to ("tracking", "flow"), "" for beanstalkd's own.
    extension: ClassVar[str] = ""

    def encode(self) -> bytes:
        """The command's bytes, CRLF included (and the body with its CRLF, for put)."""
        raise NotImplementedError

    def read(self, payload: bytes) -> R:
        """The record in the YAML payload of an OK reply (Shape.PAYLOAD); StatsFormatError
        if it is malformed."""
        raise NotImplementedError

    def unwrap(self, reply: Reply) -> R:
        """The command's result from its reply; a server error line is raised."""
        if reply.command is not self:
            raise RuntimeError(f"reply {reply!r} does not belong to {self!r}")
        if reply.error is not None:
            raise reply.error
        return cast(R, reply.value)


class Bare(Command[R]):
    """A command without arguments: its bytes are just its verb."""

    __slots__ = ()

    def encode(self) -> bytes:
        return self.verb.encode("ascii") + b"\r\n"


@attrs.frozen
class Put(Command[int]):
    """`put <pri> <delay> <ttr> <bytes>` + body -> INSERTED <id>: the new job's id."""

    priority: int = attrs.field(validator=_u32("priority"))
    delay: int = attrs.field(validator=_u32("delay"))
    ttr: int = attrs.field(validator=_u32("ttr"))
    body: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    ok = b"INSERTED"
    shape = Shape.ID
    verb = "put"

    def encode(self) -> bytes:
        return b"put %d %d %d %d\r\n%b\r\n" % (
            self.priority, self.delay, self.ttr, len(self.body), self.body
        )


@attrs.frozen
class Use(Command[str]):
    """`use <tube>` -> USING <tube>."""

    tube: str = attrs.field(validator=_tube)
    ok = b"USING"
    shape = Shape.NAME
    verb = "use"

    def encode(self) -> bytes:
        return b"use %b\r\n" % self.tube.encode("ascii")


@attrs.frozen
class Reserve(Command["RawJob"]):
    """`reserve` when timeout is None, else `reserve-with-timeout <timeout>`."""

    timeout: int | None = attrs.field(default=None, validator=_reserve_timeout)
    ok = b"RESERVED"
    shape = Shape.JOB
    verb = "reserve"

    def encode(self) -> bytes:
        if self.timeout is None:
            return b"reserve\r\n"
        return b"reserve-with-timeout %d\r\n" % self.timeout


@attrs.frozen
class ReserveJob(Command["RawJob"]):
    """`reserve-job <id>` -> RESERVED <id> <bytes> + body."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"RESERVED"
    shape = Shape.JOB
    verb = "reserve-job"

    def encode(self) -> bytes:
        return b"reserve-job %d\r\n" % self.id


@attrs.frozen
class ReserveBatch(Command["list[RawJob]"]):
    """Extension: `reserve-batch <count> <timeout>`; TIMED_OUT unwraps to an empty list."""

    count: int = attrs.field(validator=_u32("count"))
    timeout: int = attrs.field(validator=_reserve_timeout)
    ok = b"RESERVED-BATCH"
    shape = Shape.BATCH
    verb = "reserve-batch"

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.count <= BATCH_MAX:
            raise ValueError(f"count must be between 1 and {BATCH_MAX}, not {self.count}")

    def encode(self) -> bytes:
        return b"reserve-batch %d %d\r\n" % (self.count, self.timeout)

    def unwrap(self, reply: Reply) -> list[RawJob]:
        from .errors import TimedOut

        if isinstance(reply.error, TimedOut) and reply.command is self:
            return []
        return super().unwrap(reply)


@attrs.frozen
class Delete(Command[None]):
    """`delete <id>` -> DELETED."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"DELETED"
    verb = "delete"

    def encode(self) -> bytes:
        return b"delete %d\r\n" % self.id


@attrs.frozen
class Release(Command[None]):
    """`release <id> <pri> <delay>` -> RELEASED (BURIED if the server ran out of memory)."""

    id: int = attrs.field(validator=_u64("job id"))
    priority: int = attrs.field(validator=_u32("priority"))
    delay: int = attrs.field(validator=_u32("delay"))
    ok = b"RELEASED"
    verb = "release"

    def encode(self) -> bytes:
        return b"release %d %d %d\r\n" % (self.id, self.priority, self.delay)


@attrs.frozen
class Bury(Command[None]):
    """`bury <id> <pri>` -> BURIED."""

    id: int = attrs.field(validator=_u64("job id"))
    priority: int = attrs.field(validator=_u32("priority"))
    ok = b"BURIED"
    verb = "bury"

    def encode(self) -> bytes:
        return b"bury %d %d\r\n" % (self.id, self.priority)


@attrs.frozen
class Touch(Command[None]):
    """`touch <id>` -> TOUCHED."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"TOUCHED"
    verb = "touch"

    def encode(self) -> bytes:
        return b"touch %d\r\n" % self.id


@attrs.frozen
class Watch(Command[int]):
    """`watch <tube>` -> WATCHING <count>."""

    tube: str = attrs.field(validator=_tube)
    ok = b"WATCHING"
    shape = Shape.COUNT
    verb = "watch"

    def encode(self) -> bytes:
        return b"watch %b\r\n" % self.tube.encode("ascii")


@attrs.frozen
class Ignore(Command[int]):
    """`ignore <tube>` -> WATCHING <count> (NOT_IGNORED for the last tube)."""

    tube: str = attrs.field(validator=_tube)
    ok = b"WATCHING"
    shape = Shape.COUNT
    verb = "ignore"

    def encode(self) -> bytes:
        return b"ignore %b\r\n" % self.tube.encode("ascii")


@attrs.frozen
class Peek(Command["RawJob"]):
    """`peek <id>` -> FOUND <id> <bytes> + body."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"FOUND"
    shape = Shape.JOB
    verb = "peek"

    def encode(self) -> bytes:
        return b"peek %d\r\n" % self.id


@attrs.frozen
class PeekReady(Bare["RawJob"]):
    """`peek-ready` -> FOUND: the next ready job of the used tube."""

    ok = b"FOUND"
    shape = Shape.JOB
    verb = "peek-ready"


@attrs.frozen
class PeekDelayed(Bare["RawJob"]):
    """`peek-delayed` -> FOUND: the delayed job of the used tube due first."""

    ok = b"FOUND"
    shape = Shape.JOB
    verb = "peek-delayed"


@attrs.frozen
class PeekBuried(Bare["RawJob"]):
    """`peek-buried` -> FOUND: the oldest buried job of the used tube."""

    ok = b"FOUND"
    shape = Shape.JOB
    verb = "peek-buried"


@attrs.frozen
class Kick(Command[int]):
    """`kick <bound>` -> KICKED <count>."""

    bound: int = attrs.field(validator=_u64("bound"))
    ok = b"KICKED"
    shape = Shape.COUNT
    verb = "kick"

    def encode(self) -> bytes:
        return b"kick %d\r\n" % self.bound


@attrs.frozen
class KickJob(Command[None]):
    """`kick-job <id>` -> KICKED."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"KICKED"
    verb = "kick-job"

    def encode(self) -> bytes:
        return b"kick-job %d\r\n" % self.id


@attrs.frozen
class StatsJob(Command[s.StatsJob]):
    """`stats-job <id>` -> OK <bytes> + YAML mapping."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"OK"
    shape = Shape.MAPPING
    verb = "stats-job"

    def encode(self) -> bytes:
        return b"stats-job %d\r\n" % self.id


@attrs.frozen
class StatsTube(Command[s.StatsTube]):
    """`stats-tube <tube>` -> OK <bytes> + YAML mapping."""

    tube: str = attrs.field(validator=_tube)
    ok = b"OK"
    shape = Shape.MAPPING
    verb = "stats-tube"

    def encode(self) -> bytes:
        return b"stats-tube %b\r\n" % self.tube.encode("ascii")


@attrs.frozen
class Stats(Bare[s.Stats]):
    """`stats` -> OK <bytes> + YAML mapping."""

    ok = b"OK"
    shape = Shape.MAPPING
    verb = "stats"


@attrs.frozen
class ListTubes(Bare["list[str]"]):
    """`list-tubes` -> OK <bytes> + YAML sequence."""

    ok = b"OK"
    shape = Shape.LIST
    verb = "list-tubes"


@attrs.frozen
class ListTubeUsed(Bare[str]):
    """`list-tube-used` -> USING <tube>."""

    ok = b"USING"
    shape = Shape.NAME
    verb = "list-tube-used"


@attrs.frozen
class ListTubesWatched(Bare["list[str]"]):
    """`list-tubes-watched` -> OK <bytes> + YAML sequence."""

    ok = b"OK"
    shape = Shape.LIST
    verb = "list-tubes-watched"


@attrs.frozen
class PauseTube(Command[None]):
    """`pause-tube <tube> <delay>` -> PAUSED."""

    tube: str = attrs.field(validator=_tube)
    delay: int = attrs.field(validator=_u32("delay"))
    ok = b"PAUSED"
    verb = "pause-tube"

    def encode(self) -> bytes:
        return b"pause-tube %b %d\r\n" % (self.tube.encode("ascii"), self.delay)


@attrs.frozen
class Quit(Bare[None]):
    """`quit`: the server closes the connection and sends no reply."""

    shape = Shape.NO_REPLY
    verb = "quit"


# --------------------------------------------------------------------------- authentication
# Extension (tubeserver --auth-file): see protocol.md. The token is never shown: not in a
# repr, not in an error message.

# protocol.md: a token is 1-200 printable ASCII characters without spaces.
TOKEN_MAX = 200
_TOKEN_CHARS = frozenset(map(chr, range(0x21, 0x7F)))


def check_token(token: object) -> str:
    """`token` if it can be sent in an `auth` line (1-200 printable ASCII characters, no
    space), else ValueError/TypeError; the message never quotes the token."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if not 1 <= len(token) <= TOKEN_MAX or not _TOKEN_CHARS.issuperset(token):
        raise ValueError(f"a token is 1-{TOKEN_MAX} printable ASCII characters without spaces "
                         f"(this one has {len(token)} characters, not shown)")
    return token


def _token(_inst: Any, _attr: Any, value: Any) -> None:
    check_token(value)


@attrs.frozen
class Auth(Command[None]):
    """Extension: `auth <token>` -> OK; UNAUTHORIZED for a token the server does not know
    (it then closes the connection), UNKNOWN_COMMAND from a server without authentication
    (tubeserver without --auth-file, beanstalkd). The repr hides the token."""

    token: str = attrs.field(validator=_token, repr=False)
    ok = b"OK"
    verb = "auth"

    def encode(self) -> bytes:
        return b"auth %b\r\n" % self.token.encode("ascii")


# --------------------------------------------------------------------------- job tracking
# Extension (tubeserver): results, failure reasons and checkpoints; see protocol.md.


@attrs.frozen
class Finish(Command[None]):
    """Extension: `finish <id> <bytes>` + result -> FINISHED: delete, keeping the result."""

    id: int = attrs.field(validator=_u64("job id"))
    result: bytes = attrs.field(validator=_data)
    ok = b"FINISHED"
    verb = "finish"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"finish %d %d\r\n%b\r\n" % (self.id, len(self.result), self.result)


@attrs.frozen
class Fail(Command[None]):
    """Extension: `fail <id> <pri> <bytes>` + reason -> BURIED: bury, keeping the reason."""

    id: int = attrs.field(validator=_u64("job id"))
    priority: int = attrs.field(validator=_u32("priority"))
    reason: bytes = attrs.field(validator=_data)
    ok = b"BURIED"
    verb = "fail"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"fail %d %d %d\r\n%b\r\n" % (
            self.id, self.priority, len(self.reason), self.reason
        )


@attrs.frozen
class Result(Command["RawJob"]):
    """Extension: `result <id> <timeout>` -> RESULT <id> <bytes> + result. The codec turns
    FAILED <id> <bytes> + reason into a JobFailed error (TIMED_OUT and NOT_FOUND as usual)."""

    id: int = attrs.field(validator=_u64("job id"))
    timeout: int = attrs.field(validator=_wait_timeout)
    ok = b"RESULT"
    shape = Shape.JOB
    verb = "result"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"result %d %d\r\n" % (self.id, self.timeout)


@attrs.frozen
class JobStatus(Command[st.JobStatus]):
    """Extension: `job-status <id>` -> OK <bytes> + YAML mapping, live or finished job."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"OK"
    shape = Shape.PAYLOAD
    verb = "job-status"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"job-status %d\r\n" % self.id

    def read(self, payload: bytes) -> st.JobStatus:
        return st.parse_job_status(payload)


@attrs.frozen
class Checkpoint(Command[None]):
    """Extension: `checkpoint <id> <bytes>` + data -> CHECKPOINTED (and the TTR restarts)."""

    id: int = attrs.field(validator=_u64("job id"))
    data: bytes = attrs.field(validator=_data)
    ok = b"CHECKPOINTED"
    verb = "checkpoint"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"checkpoint %d %d\r\n%b\r\n" % (self.id, len(self.data), self.data)


@attrs.frozen
class PeekCheckpoint(Command["RawJob"]):
    """Extension: `peek-checkpoint <id>` -> FOUND <id> <bytes> + checkpoint."""

    id: int = attrs.field(validator=_u64("job id"))
    ok = b"FOUND"
    shape = Shape.JOB
    verb = "peek-checkpoint"
    extension = "tracking"

    def encode(self) -> bytes:
        return b"peek-checkpoint %d\r\n" % self.id



# --------------------------------------------------------------------------- flow control
# Extension (tubeserver): unique jobs, dependencies, tube limits, schedules; see protocol.md.
# What tubeserver would answer BAD_FORMAT to is refused here (flow.py's checks).


def _parents(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"parents must be a tuple of job ids, not {type(value).__name__}")
    for id in value:
        _int(id, "parent job id", U64_MAX)
    if fl.parent_ids(list(value)) != value:
        raise ValueError(f"parents must be distinct, not {value!r}")


def _rate(_inst: Any, _attr: Any, value: Any) -> None:
    fl.rate_text(value)


def _spec(_inst: Any, _attr: Any, value: Any) -> None:
    fl.check_spec(value)


@attrs.frozen
class PutUnique(Command[fl.Unique]):
    """Extension: `put-unique <key> <window> <pri> <delay> <ttr> <bytes>` + body ->
    INSERTED <id> (a new job) or DUPLICATE <id> (the job holding the key; nothing stored)."""

    key: str = attrs.field(validator=_name("unique key"))
    window: int = attrs.field(validator=_u32("window"))
    priority: int = attrs.field(validator=_u32("priority"))
    delay: int = attrs.field(validator=_u32("delay"))
    ttr: int = attrs.field(validator=_u32("ttr"))
    body: bytes = attrs.field(validator=_data)
    ok = b"INSERTED"
    shape = Shape.UNIQUE
    verb = "put-unique"
    extension = "flow"

    def encode(self) -> bytes:
        return b"put-unique %b %d %d %d %d %d\r\n%b\r\n" % (
            self.key.encode("ascii"), self.window, self.priority, self.delay, self.ttr,
            len(self.body), self.body,
        )


@attrs.frozen
class PutAfter(Command[int]):
    """Extension: `put-after <id>,<id>... <pri> <delay> <ttr> <bytes>` + body -> INSERTED
    <id>: a job that waits until every parent has finished (NOT_FOUND: a parent unknown)."""

    parents: tuple[int, ...] = attrs.field(validator=_parents)
    priority: int = attrs.field(validator=_u32("priority"))
    delay: int = attrs.field(validator=_u32("delay"))
    ttr: int = attrs.field(validator=_u32("ttr"))
    body: bytes = attrs.field(validator=_data)
    ok = b"INSERTED"
    shape = Shape.ID
    verb = "put-after"
    extension = "flow"

    def encode(self) -> bytes:
        ids = b",".join(b"%d" % id for id in self.parents)
        return b"put-after %b %d %d %d %d\r\n%b\r\n" % (
            ids, self.priority, self.delay, self.ttr, len(self.body), self.body
        )


@attrs.frozen
class Schedule(Command[None]):
    """Extension: `schedule <name> <tube> <pri> <ttr> <bytes> <spec>` + body -> SCHEDULED
    (BAD_FORMAT: a spec the server cannot read, or one that never fires)."""

    name: str = attrs.field(validator=_name("schedule name"))
    tube: str = attrs.field(validator=_tube)
    priority: int = attrs.field(validator=_u32("priority"))
    ttr: int = attrs.field(validator=_u32("ttr"))
    spec: str = attrs.field(validator=_spec)
    body: bytes = attrs.field(validator=_data)
    ok = b"SCHEDULED"
    verb = "schedule"
    extension = "flow"

    def __attrs_post_init__(self) -> None:
        fl.check_line(self.encode(), fl.LONG_LINE_MAX)

    def encode(self) -> bytes:
        return b"schedule %b %b %d %d %d %b\r\n%b\r\n" % (
            self.name.encode("ascii"), self.tube.encode("ascii"), self.priority, self.ttr,
            len(self.body), self.spec.encode("ascii"), self.body,
        )


@attrs.frozen
class Unschedule(Command[None]):
    """Extension: `unschedule <name>` -> UNSCHEDULED (NOT_FOUND: no such schedule)."""

    name: str = attrs.field(validator=_name("schedule name"))
    ok = b"UNSCHEDULED"
    verb = "unschedule"
    extension = "flow"

    def encode(self) -> bytes:
        return b"unschedule %b\r\n" % self.name.encode("ascii")


class _Listing(Bare[R]):
    """A flow-control listing: `<verb>` -> OK <bytes> + YAML sequence of mappings."""

    __slots__ = ()
    ok = b"OK"
    shape = Shape.PAYLOAD
    extension = "flow"


@attrs.frozen
class ListSchedules(_Listing["list[fl.Schedule]"]):
    """Extension: `list-schedules` -> every schedule, by name."""

    verb = "list-schedules"

    def read(self, payload: bytes) -> list[fl.Schedule]:
        return fl.parse_schedules(payload)


@attrs.frozen
class TubeLimits(Command[None]):
    """Extension: `tube-limits <tube> <max-reserved> <max-jobs> <rate>` -> LIMITED (0: no
    limit; all three 0 removes them). The rate is written as a plain decimal."""

    tube: str = attrs.field(validator=_tube)
    max_reserved: int = attrs.field(validator=_u32("max_reserved"))
    max_jobs: int = attrs.field(validator=_u32("max_jobs"))
    rate: float = attrs.field(validator=_rate)
    ok = b"LIMITED"
    verb = "tube-limits"
    extension = "flow"

    def __attrs_post_init__(self) -> None:
        fl.check_line(self.encode(), fl.LINE_MAX)

    def encode(self) -> bytes:
        return b"tube-limits %b %d %d %b\r\n" % (
            self.tube.encode("ascii"), self.max_reserved, self.max_jobs,
            fl.rate_text(self.rate),
        )


@attrs.frozen
class ListTubeLimits(_Listing["list[fl.TubeLimits]"]):
    """Extension: `list-tube-limits` -> the limits of every tube that has some, by tube."""

    verb = "list-tube-limits"

    def read(self, payload: bytes) -> list[fl.TubeLimits]:
        return fl.parse_tube_limits(payload)


# --------------------------------------------------------------------------- admin
# Extension (tubeserver): operators' commands, none of which carries data; see protocol.md,
# "Admin commands". What tubeserver would answer BAD_FORMAT to is refused here, lines over
# beanstalkd's 224 bytes included.


def _state(states: tuple[str, ...], verb: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        ad.check_state(value, states, verb)

    return check


@attrs.frozen
class ListJobs(Command["list[ad.JobSummary]"]):
    """Extension: `list-jobs <tube> <state> <offset> <limit>` -> OK <bytes> + YAML sequence:
    up to `limit` (1-1000) jobs of `state` from the `offset`-th (0-10000) on, in the order
    the server acts on them (NOT_FOUND: no such tube)."""

    tube: str = attrs.field(validator=_tube)
    state: str = attrs.field(validator=_state(ad.LIST_STATES, "list-jobs"))
    offset: int = attrs.field(validator=_range("offset", 0, ad.OFFSET_MAX))
    limit: int = attrs.field(validator=_range("limit", 1, ad.LIST_MAX))
    ok = b"OK"
    shape = Shape.PAYLOAD
    verb = "list-jobs"
    extension = "admin"

    def __attrs_post_init__(self) -> None:
        fl.check_line(self.encode(), fl.LINE_MAX)  # a long name with a long offset

    def encode(self) -> bytes:
        return b"list-jobs %b %b %d %d\r\n" % (
            self.tube.encode("ascii"), self.state.encode("ascii"), self.offset, self.limit
        )

    def read(self, payload: bytes) -> list[ad.JobSummary]:
        return ad.parse_job_list(payload)


@attrs.frozen
class ClearTube(Command[int]):
    """Extension: `clear-tube <tube> <state>` -> CLEARED <count>: every job of the tube in
    `state` (ready, delayed, buried or waiting) deleted (NOT_FOUND: no such tube)."""

    tube: str = attrs.field(validator=_tube)
    state: str = attrs.field(validator=_state(ad.CLEAR_STATES, "clear-tube"))
    ok = b"CLEARED"
    shape = Shape.COUNT
    verb = "clear-tube"
    extension = "admin"

    def encode(self) -> bytes:
        return b"clear-tube %b %b\r\n" % (self.tube.encode("ascii"), self.state.encode("ascii"))


@attrs.frozen
class KickTube(Command[int]):
    """Extension: `kick-tube <tube> <bound>` -> KICKED <count>: `kick` in the named tube
    rather than the used one (NOT_FOUND: no such tube)."""

    tube: str = attrs.field(validator=_tube)
    bound: int = attrs.field(validator=_u64("bound"))
    ok = b"KICKED"
    shape = Shape.COUNT
    verb = "kick-tube"
    extension = "admin"

    def __attrs_post_init__(self) -> None:
        fl.check_line(self.encode(), fl.LINE_MAX)  # a long name with a long bound

    def encode(self) -> bytes:
        return b"kick-tube %b %d\r\n" % (self.tube.encode("ascii"), self.bound)


@attrs.frozen
class TubeInfo(Command[ad.TubeInfo]):
    """Extension: `tube-info <tube>` -> OK <bytes> + YAML mapping: what stats-tube cannot
    show (waiting jobs apart, the oldest ready job's age, counters, limits)."""

    tube: str = attrs.field(validator=_tube)
    ok = b"OK"
    shape = Shape.PAYLOAD
    verb = "tube-info"
    extension = "admin"

    def encode(self) -> bytes:
        return b"tube-info %b\r\n" % self.tube.encode("ascii")

    def read(self, payload: bytes) -> ad.TubeInfo:
        return ad.parse_tube_info(payload)
