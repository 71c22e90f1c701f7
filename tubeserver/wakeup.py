"""What the engine hands the network layer when a waiting session is answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import ProtocolError
    from .job import Job
    from .session import Session
    from .tracking import Outcome


class Wakeup:
    """A waiting session is answered: a reserve with `job`, with `error`, or (for
    reserve-batch) with the jobs in `batch`; a `result` with `outcome` or `error`; a
    clear-tube with the count it `cleared` (-1 for every other answer). Read-only once
    made."""

    __slots__ = ("batch", "cleared", "error", "job", "outcome", "session")

    def __init__(self, session: Session, job: Job | None, error: ProtocolError | None,
                 batch: tuple[Job, ...] | None = None, outcome: Outcome | None = None,
                 cleared: int = -1) -> None:
        self.session = session
        self.job = job
        self.error = error
        self.batch = batch
        self.outcome = outcome
        self.cleared = cleared

    def __repr__(self) -> str:
        return (f"Wakeup({self.session!r}, {self.job!r}, {self.error!r}, {self.batch!r}, "
                f"{self.outcome!r}, {self.cleared})")
