"""The Job record and its state machine.

`Job.move` is the only place a job's state changes, and it checks every change against the
transition table below, so an engine bug shows up as an assertion rather than a lost job.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .session import Session
    from .tube import Tube


class JobState(enum.Enum):
    READY = "ready"
    RESERVED = "reserved"
    DELAYED = "delayed"
    BURIED = "buried"
    DELETED = "deleted"
    FINISHED = "finished"  # deleted, and its record is kept (tracking.py)
    WAITING = "waiting"  # put-after: until its parents finish (deps.py); "delayed" to stats-job


_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # reserve / reserve-job, delete (finish: the same, with its record kept)
    _S.READY: frozenset({_S.RESERVED, _S.DELETED, _S.FINISHED}),
    # release (delay 0) / TTR expiry / disconnect, release with delay, bury, delete
    _S.RESERVED: frozenset({_S.READY, _S.DELAYED, _S.BURIED, _S.DELETED, _S.FINISHED}),
    # delay elapsed or kick, reserve-job, delete
    _S.DELAYED: frozenset({_S.READY, _S.RESERVED, _S.DELETED, _S.FINISHED}),
    # kick, reserve-job, delete
    _S.BURIED: frozenset({_S.READY, _S.RESERVED, _S.DELETED, _S.FINISHED}),
    # parents finished (then its own delay), a parent cancelled, reserve-job / kick-job, delete
    _S.WAITING: frozenset({_S.READY, _S.DELAYED, _S.BURIED, _S.RESERVED, _S.DELETED,
                           _S.FINISHED}),
    _S.DELETED: frozenset(),
    _S.FINISHED: frozenset(),
}
# The same table keyed by the members' ids, with tuples: `move` runs on every reserve and
# delete, and Enum's Python-level __hash__ cost about 5% of a drain; `in` on a tuple finds a
# member by identity without hashing it. Members are singletons, so their ids never change.
_NEXT: Final[dict[int, tuple[JobState, ...]]] = {id(s): tuple(TRANSITIONS[s]) for s in JobState}


class IllegalTransition(Exception):
    """An engine bug: a job was asked to make a move the table forbids."""


class JobExtra:
    """What most jobs never need: the counters of stats-job that stay zero for most, job
    tracking's data (tracking.py): the last failure reason and the checkpoint, and flow
    control's: the unique key (keys.py) and the parents still open (deps.py). Made on first
    need."""

    __slots__ = ("buries", "checkpoint", "key", "kicks", "parents", "reason", "releases",
                 "timeouts")

    def __init__(self, timeouts: int, releases: int, buries: int, kicks: int) -> None:
        self.timeouts = timeouts
        self.releases = releases
        self.buries = buries
        self.kicks = kicks
        self.reason: bytes | None = None  # from `fail`; kept through bury, kick, finish
        self.checkpoint: bytes | None = None  # from `checkpoint`; dropped when it finishes
        self.key: str | None = None  # from `put-unique`; kept in its record when finished
        self.parents: list[int] | None = None  # put-after: parents not finished yet


class Job:
    """One job. A plain slotted class: mypyc compiles it to a native class, and one is built
    per put and restored record."""

    __slots__ = (
        "body", "created", "deadline", "delay_ttr", "extra", "file", "id", "pos", "pri",
        "reserved_at", "reserver", "reserves", "seq", "state", "tube",
    )

    def __init__(self, id: int, tube: Tube, pri: int, delay: int, ttr: int, body: bytes,
                 created: float, state: JobState, deadline: float = 0.0, pos: int = -1,
                 reserver: Session | None = None, reserves: int = 0, timeouts: int = 0,
                 releases: int = 0, buries: int = 0, kicks: int = 0, file: int = 0,
                 seq: int = 0) -> None:
        self.id = id
        self.tube = tube
        self.pri = pri
        # delay (the seconds last set by put or release) and ttr (seconds, at least 1), both
        # 32-bit, in one field: a job is 16 bytes smaller for it (one field fewer keeps it in
        # the 160-byte step), which pays for `reserved_at`.
        self.delay_ttr = (delay << 32) | ttr
        self.body = body  # finished: its result
        self.created = created
        self.state = state
        # When the state's timer fires: delayed -> ready time, reserved -> TTR expiry.
        # Finished (a kept record, tracking.py): when it finished.
        self.deadline = deadline
        self.reserved_at = -1.0  # when last reserved (-1: never or not known), engine's clock
        # Its index in the tube's heap of its state (ready or delayed), else -1.
        self.pos = pos
        self.reserver = reserver
        self.reserves = reserves
        # timeouts, releases, buries, kicks and tracking's data: none for most jobs, so kept
        # apart until needed (a job is 32 bytes smaller for it: three fields fewer, in
        # 16-byte steps).
        self.extra: JobExtra | None = None
        if timeouts or releases or buries or kicks:
            self.extra = JobExtra(timeouts, releases, buries, kicks)
        # Write-ahead log bookkeeping, 0 without a log: the segment holding the job's whole
        # record (stats-job reports it as `file`) and the log order of its last logged change.
        self.file = file
        self.seq = seq

    @property
    def delay(self) -> int:
        return self.delay_ttr >> 32

    @delay.setter
    def delay(self, value: int) -> None:
        self.delay_ttr = (value << 32) | (self.delay_ttr & 0xFFFFFFFF)

    @property
    def ttr(self) -> int:
        return self.delay_ttr & 0xFFFFFFFF

    def more(self) -> JobExtra:
        """The job's JobExtra, made if it has none yet."""
        extra = self.extra
        if extra is None:
            extra = self.extra = JobExtra(0, 0, 0, 0)
        return extra

    @property
    def timeouts(self) -> int:
        return 0 if self.extra is None else self.extra.timeouts

    @timeouts.setter
    def timeouts(self, value: int) -> None:
        self.more().timeouts = value

    @property
    def releases(self) -> int:
        return 0 if self.extra is None else self.extra.releases

    @releases.setter
    def releases(self, value: int) -> None:
        self.more().releases = value

    @property
    def buries(self) -> int:
        return 0 if self.extra is None else self.extra.buries

    @buries.setter
    def buries(self, value: int) -> None:
        self.more().buries = value

    @property
    def kicks(self) -> int:
        return 0 if self.extra is None else self.extra.kicks

    @kicks.setter
    def kicks(self, value: int) -> None:
        self.more().kicks = value

    def __repr__(self) -> str:
        return f"Job(id={self.id}, tube={self.tube.name!r}, state={self.state.value})"

    def move(self, to: JobState) -> None:
        if to not in _NEXT[id(self.state)]:
            raise IllegalTransition(f"job {self.id}: {self.state.value} -> {to.value}")
        self.state = to
