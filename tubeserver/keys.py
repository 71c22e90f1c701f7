"""Unique keys (`put-unique`): at most one live job of a tube holds a key, and a key stays
taken for the window its put gave, even after its job is gone.

A key is held from its put until its job ends (finished, deleted) or until `put time + window`,
whichever is later; then it is free and the next `put-unique` with it inserts. Holds whose job
ended wait on a heap for their window to pass, so memory returns without a scan. The window is
the one given by the put that took the key. Pure: time comes in as `now`.
"""

from __future__ import annotations

import heapq


def key_name(tube: str, key: str) -> str:
    """One dict key for (tube, key): names never contain a space."""
    return f"{tube} {key}"


class KeyHold:
    __slots__ = ("job_id", "live", "until")

    def __init__(self, job_id: int, until: float, live: bool) -> None:
        self.job_id = job_id
        self.until = until  # put time + window, engine's clock
        self.live = live  # its job is live


class Keys:
    __slots__ = ("ended", "holds", "timer_at")

    def __init__(self) -> None:
        self.holds: dict[str, KeyHold] = {}
        self.ended: list[tuple[float, str, int]] = []  # (until, name, job id) of ended jobs
        self.timer_at: float | None = None  # the engine's timer for the first of `ended`

    def holder(self, name: str, now: float) -> int | None:
        """The id of the job holding `name` at `now`, or None when it is free."""
        hold = self.holds.get(name)
        if hold is None:
            return None
        if hold.live or now < hold.until:
            return hold.job_id
        del self.holds[name]
        return None

    def take(self, name: str, job_id: int, until: float) -> None:
        self.holds[name] = KeyHold(job_id, until, True)

    def release(self, name: str, job_id: int, now: float) -> None:
        """The job holding `name` ended: the key is free now, or once its window passes."""
        hold = self.holds.get(name)
        if hold is None or hold.job_id != job_id:
            return
        if now >= hold.until:
            del self.holds[name]
            return
        hold.live = False
        heapq.heappush(self.ended, (hold.until, name, job_id))

    def expire(self, now: float) -> None:
        """Drop the holds whose job ended and whose window has passed by `now`."""
        ended = self.ended
        while ended and ended[0][0] <= now:
            _, name, job_id = heapq.heappop(ended)
            hold = self.holds.get(name)
            if hold is not None and hold.job_id == job_id and not hold.live:
                del self.holds[name]

    def next_expiry(self) -> float | None:
        return self.ended[0][0] if self.ended else None

    def restore(self, name: str, job_id: int, until: float, live: bool) -> None:
        self.holds[name] = KeyHold(job_id, until, live)
        if not live:
            heapq.heappush(self.ended, (until, name, job_id))
