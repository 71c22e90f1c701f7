"""Command values: one frozen record per protocol verb, produced by the parser.

`Rejected` stands for input the parser refused; it keeps the verb (when one was recognised)
so that the `cmd-*` counters still count it, as beanstalkd does for a put that fails.
"""

from __future__ import annotations

import attrs

from .errors import ProtocolError


@attrs.frozen(slots=True)
class Put:
    pri: int
    delay: int
    ttr: int
    body: bytes


@attrs.frozen(slots=True)
class Use:
    tube: str


@attrs.frozen(slots=True)
class Reserve:
    """`reserve` (timeout None) and `reserve-with-timeout <seconds>`."""

    timeout: int | None


@attrs.frozen(slots=True)
class ReserveBatch:
    """`reserve-batch <count> <timeout>`: a tubeserver extension."""

    count: int
    timeout: int


@attrs.frozen(slots=True)
class ReserveJob:
    id: int


@attrs.frozen(slots=True)
class Delete:
    id: int


@attrs.frozen(slots=True)
class Release:
    id: int
    pri: int
    delay: int


@attrs.frozen(slots=True)
class Bury:
    id: int
    pri: int


@attrs.frozen(slots=True)
class Touch:
    id: int


@attrs.frozen(slots=True)
class Watch:
    tube: str


@attrs.frozen(slots=True)
class Ignore:
    tube: str


@attrs.frozen(slots=True)
class Peek:
    id: int


@attrs.frozen(slots=True)
class PeekReady:
    pass


@attrs.frozen(slots=True)
class PeekDelayed:
    pass


@attrs.frozen(slots=True)
class PeekBuried:
    pass


@attrs.frozen(slots=True)
class Kick:
    bound: int


@attrs.frozen(slots=True)
class KickJob:
    id: int


@attrs.frozen(slots=True)
class StatsJob:
    id: int


@attrs.frozen(slots=True)
class StatsTube:
    tube: str


@attrs.frozen(slots=True)
class Stats:
    pass


@attrs.frozen(slots=True)
class ListTubes:
    pass


@attrs.frozen(slots=True)
class ListTubeUsed:
    pass


@attrs.frozen(slots=True)
class ListTubesWatched:
    pass


@attrs.frozen(slots=True)
class PauseTube:
    tube: str
    delay: int


@attrs.frozen(slots=True)
class Quit:
    pass


@attrs.frozen(slots=True)
class Rejected:
    """Input that is not a valid command; `verb` is set when the verb itself was recognised."""

    error: ProtocolError
    verb: str | None = None


Command = (
    Put | Use | Reserve | ReserveBatch | ReserveJob | Delete | Release | Bury | Touch | Watch
    | Ignore | Peek | PeekReady | PeekDelayed | PeekBuried | Kick | KickJob | StatsJob
    | StatsTube | Stats | ListTubes | ListTubeUsed | ListTubesWatched | PauseTube | Quit
)
Event = Command | Rejected
