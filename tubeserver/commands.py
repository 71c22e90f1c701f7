"""Command values: one record per protocol verb, produced by the parser.

They are plain slotted classes rather than attrs records because the parser builds one per
command on the hot path, where mypyc turns them into native classes (attrs ones crash there).
Treat them as immutable; equality and repr come from their slots, for tests and traces.
`Rejected` stands for input the parser refused; it keeps the verb (when one was recognised)
so that the `cmd-*` counters still count it, as beanstalkd does for a put that fails.
"""

from __future__ import annotations

# ruff: noqa: RUF023 -- each __slots__ lists the fields in order: repr and astuple follow it
from typing import Any

from .errors import ProtocolError


class _Record:
    """Value semantics over `__slots__`: equal when of one class with equal fields."""

    __slots__ = ()

    def astuple(self) -> tuple[Any, ...]:
        """The fields in declaration order (as attrs.astuple gives them)."""
        return tuple(getattr(self, name) for name in _fields(type(self)))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Record)
        return self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash((type(self), self.astuple()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in _fields(type(self)))
        return f"{type(self).__name__}({fields})"


def _fields(cls: type) -> tuple[str, ...]:
    # Interpreted, the class has its __slots__; compiled by mypyc, its __mypyc_attrs__.
    names: tuple[str, ...] = cls.__dict__.get("__slots__") or cls.__dict__.get(
        "__mypyc_attrs__", ())
    return names


class Put(_Record):
    __slots__ = ("pri", "delay", "ttr", "body")

    def __init__(self, pri: int, delay: int, ttr: int, body: bytes) -> None:
        self.pri = pri
        self.delay = delay
        self.ttr = ttr
        self.body = body


class Use(_Record):
    __slots__ = ("tube",)

    def __init__(self, tube: str) -> None:
        self.tube = tube


class Reserve(_Record):
    """`reserve` (timeout None) and `reserve-with-timeout <seconds>`."""

    __slots__ = ("timeout",)

    def __init__(self, timeout: int | None) -> None:
        self.timeout = timeout


class ReserveBatch(_Record):
    """`reserve-batch <count> <timeout>`: a tubeserver extension."""

    __slots__ = ("count", "timeout")

    def __init__(self, count: int, timeout: int) -> None:
        self.count = count
        self.timeout = timeout


class ReserveJob(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class Delete(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class Release(_Record):
    __slots__ = ("id", "pri", "delay")

    def __init__(self, id: int, pri: int, delay: int) -> None:
        self.id = id
        self.pri = pri
        self.delay = delay


class Bury(_Record):
    __slots__ = ("id", "pri")

    def __init__(self, id: int, pri: int) -> None:
        self.id = id
        self.pri = pri


class Touch(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class Watch(_Record):
    __slots__ = ("tube",)

    def __init__(self, tube: str) -> None:
        self.tube = tube


class Ignore(_Record):
    __slots__ = ("tube",)

    def __init__(self, tube: str) -> None:
        self.tube = tube


class Peek(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class PeekReady(_Record):
    __slots__ = ()


class PeekDelayed(_Record):
    __slots__ = ()


class PeekBuried(_Record):
    __slots__ = ()


class Kick(_Record):
    __slots__ = ("bound",)

    def __init__(self, bound: int) -> None:
        self.bound = bound


class KickJob(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class StatsJob(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class StatsTube(_Record):
    __slots__ = ("tube",)

    def __init__(self, tube: str) -> None:
        self.tube = tube


class Stats(_Record):
    __slots__ = ()


class ListTubes(_Record):
    __slots__ = ()


class ListTubeUsed(_Record):
    __slots__ = ()


class ListTubesWatched(_Record):
    __slots__ = ()


class PauseTube(_Record):
    __slots__ = ("tube", "delay")

    def __init__(self, tube: str, delay: int) -> None:
        self.tube = tube
        self.delay = delay


class Quit(_Record):
    __slots__ = ()


# Job tracking (tubeserver extensions, protocol.md "Job tracking").

class Finish(_Record):
    __slots__ = ("id", "result")

    def __init__(self, id: int, result: bytes) -> None:
        self.id = id
        self.result = result


class Fail(_Record):
    __slots__ = ("id", "pri", "reason")

    def __init__(self, id: int, pri: int, reason: bytes) -> None:
        self.id = id
        self.pri = pri
        self.reason = reason


class Result(_Record):
    __slots__ = ("id", "timeout")

    def __init__(self, id: int, timeout: int) -> None:
        self.id = id
        self.timeout = timeout


class JobStatus(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class Checkpoint(_Record):
    __slots__ = ("id", "data")

    def __init__(self, id: int, data: bytes) -> None:
        self.id = id
        self.data = data


class PeekCheckpoint(_Record):
    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


class Rejected(_Record):
    """Input that is not a valid command; `verb` is set when the verb itself was recognised."""

    __slots__ = ("error", "verb")

    def __init__(self, error: ProtocolError, verb: str | None = None) -> None:
        self.error = error
        self.verb = verb


class PutStarted(_Record):
    """Not a command: a `put` header that beanstalkd counts as soon as it is read (in
    `cmd-put`, and when the header is accepted, `producer`, in `current-producers`), whose
    data has not all arrived yet. The put's own event, with its reply, follows the data; if
    the client goes away first, the counts stay, as in beanstalkd."""

    __slots__ = ("producer",)

    def __init__(self, producer: bool) -> None:
        self.producer = producer


# Flow control (flow.py). The framed ones get their body from the parser once it is read.


class PutUnique(_Record):
    __slots__ = ("key", "window", "pri", "delay", "ttr", "body")

    def __init__(self, key: str, window: int, pri: int, delay: int, ttr: int,
                 body: bytes = b"") -> None:
        self.key = key
        self.window = window
        self.pri = pri
        self.delay = delay
        self.ttr = ttr
        self.body = body


class PutAfter(_Record):
    __slots__ = ("parents", "pri", "delay", "ttr", "body")

    def __init__(self, parents: tuple[int, ...], pri: int, delay: int, ttr: int,
                 body: bytes = b"") -> None:
        self.parents = parents
        self.pri = pri
        self.delay = delay
        self.ttr = ttr
        self.body = body


class Schedule(_Record):
    __slots__ = ("name", "tube", "pri", "ttr", "spec", "body")

    def __init__(self, name: str, tube: str, pri: int, ttr: int, spec: str,
                 body: bytes = b"") -> None:
        self.name = name
        self.tube = tube
        self.pri = pri
        self.ttr = ttr
        self.spec = spec  # checked by dispatch (schedules.parse_spec): BAD_FORMAT there
        self.body = body


class Unschedule(_Record):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class ListSchedules(_Record):
    __slots__ = ()


class TubeLimits(_Record):
    __slots__ = ("tube", "max_reserved", "max_jobs", "rate")

    def __init__(self, tube: str, max_reserved: int, max_jobs: int, rate: float) -> None:
        self.tube = tube
        self.max_reserved = max_reserved
        self.max_jobs = max_jobs
        self.rate = rate


class ListTubeLimits(_Record):
    __slots__ = ()


# Admin commands (tubeserver extensions, protocol.md "Admin commands"; admin.py).

class ListJobs(_Record):
    __slots__ = ("tube", "state", "offset", "limit")

    def __init__(self, tube: str, state: str, offset: int, limit: int) -> None:
        self.tube = tube
        self.state = state
        self.offset = offset
        self.limit = limit


class ClearTube(_Record):
    __slots__ = ("tube", "state")

    def __init__(self, tube: str, state: str) -> None:
        self.tube = tube
        self.state = state


class TubeInfo(_Record):
    __slots__ = ("tube",)

    def __init__(self, tube: str) -> None:
        self.tube = tube


class KickTube(_Record):
    __slots__ = ("tube", "bound")

    def __init__(self, tube: str, bound: int) -> None:
        self.tube = tube
        self.bound = bound


class Auth(_Record):
    """`auth <token>`: the token is a secret, so its repr (the -VV trace) hides it."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "Auth(<token>)"


Framed = PutUnique | PutAfter | Schedule

Command = (
    Put | Use | Reserve | ReserveBatch | ReserveJob | Delete | Release | Bury | Touch | Watch
    | Ignore | Peek | PeekReady | PeekDelayed | PeekBuried | Kick | KickJob | StatsJob
    | StatsTube | Stats | ListTubes | ListTubeUsed | ListTubesWatched | PauseTube | Quit
    | Finish | Fail | Result | JobStatus | Checkpoint | PeekCheckpoint | PutUnique | PutAfter
    | Schedule | Unschedule | ListSchedules | TubeLimits | ListTubeLimits | ListJobs | ClearTube
    | KickTube | TubeInfo | Auth
)
Event = Command | Rejected | PutStarted
