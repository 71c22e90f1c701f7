"""Per-connection state the engine keeps: used tube, watch list, reserved jobs, waiting.

The network layer holds a Session as an opaque handle; only the engine changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .job import Job
    from .tube import Tube


@attrs.define(slots=True, eq=False)
class Waiter:
    """A blocked reserve: `seq` orders waiters (oldest first) and tags its timers."""

    seq: int
    timeout_at: float | None  # None: wait forever
    count: int | None = None  # reserve-batch: jobs wanted; None for a plain reserve


@attrs.define(slots=True, eq=False)
class Session:
    id: int
    used: Tube
    # Ordered as beanstalkd reports list-tubes-watched: appended, removed by swapping in the
    # last entry.
    watched: list[Tube]
    reserved: dict[int, Job] = attrs.Factory(dict)
    producer: bool = False  # ever issued a put
    worker: bool = False  # ever issued a reserve
    waiter: Waiter | None = None
    closed: bool = False
