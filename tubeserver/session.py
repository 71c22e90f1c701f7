"""Per-connection state the engine keeps: used tube, watch list, reserved jobs, waiting.

The network layer holds a Session as an opaque handle; only the engine changes it (and the
dispatcher its flag `put_counted` and, on `auth`, `rights`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .access import Rights
    from .job import Job
    from .tracking import ResultWait
    from .tube import Tube


class Waiter:
    """A blocked reserve: `seq` orders waiters (oldest first) and tags its timers."""

    __slots__ = ("count", "seq", "timeout_at")

    def __init__(self, seq: int, timeout_at: float | None, count: int | None = None) -> None:
        self.seq = seq
        self.timeout_at = timeout_at  # None: wait forever
        self.count = count  # reserve-batch: jobs wanted; None for a plain reserve


class Session:
    """One connection's state; hashed by identity (the engine keys dicts by sessions)."""

    __slots__ = ("closed", "id", "producer", "put_counted", "reserved", "result_wait",
                 "rights", "used", "waiter", "watched", "worker")

    def __init__(self, id: int, used: Tube, watched: list[Tube]) -> None:
        self.id = id
        self.used = used
        # Ordered as beanstalkd reports list-tubes-watched: appended, removed by swapping in
        # the last entry.
        self.watched = watched
        self.reserved: dict[int, Job] = {}
        self.producer = False  # ever sent a put header that was accepted (current-producers)
        self.worker = False  # ever issued a reserve (current-workers)
        # The dispatcher's: the put whose data is arriving was counted at its header.
        self.put_counted = False
        self.waiter: Waiter | None = None
        self.result_wait: ResultWait | None = None  # blocked in `result`
        self.closed = False
        # What its token allows, once `auth` succeeded; looked at only with an auth file.
        self.rights: Rights | None = None

    def __repr__(self) -> str:
        return f"Session(id={self.id})"
