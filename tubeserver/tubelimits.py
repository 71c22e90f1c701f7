"""Tube limits (`tube-limits`): how many of a tube's jobs may be reserved at once, how many it
may hold, and how fast its jobs are handed out.

One TubeLimits per limited tube name, kept by the engine whether or not the tube exists right
now (a tube comes and goes with its jobs and clients; its limits are configuration). The rate
is a token bucket that holds up to one second's worth of jobs (at least one) and starts full:
a burst of `rate` jobs, then `rate` a second. Pure: time comes in as `now`.
"""

from __future__ import annotations

from typing import Final

UNLIMITED: Final = 1 << 62  # room() when no limit applies
_EPSILON: Final = 1e-9


class TubeLimits:
    __slots__ = ("max_jobs", "max_reserved", "name", "rate", "refilled", "timer_at", "tokens")

    def __init__(self, name: str, max_reserved: int, max_jobs: int, rate: float,
                 now: float) -> None:
        self.name = name  # the tube's
        self.max_reserved = max_reserved  # 0: no limit
        self.max_jobs = max_jobs  # 0: no limit
        self.rate = rate  # jobs per second; 0: no limit
        self.tokens = self.capacity()
        self.refilled = now
        self.timer_at: float | None = None  # the engine's wake-up for the next token

    def capacity(self) -> float:
        return max(self.rate, 1.0)

    def set(self, max_reserved: int, max_jobs: int, rate: float, now: float) -> None:
        """New limits; the bucket starts full again."""
        self.max_reserved = max_reserved
        self.max_jobs = max_jobs
        self.rate = rate
        self.tokens = self.capacity()
        self.refilled = now
        self.timer_at = None

    def none(self) -> bool:
        return not (self.max_reserved or self.max_jobs or self.rate)

    def full(self, jobs: int) -> bool:
        """Whether a tube holding `jobs` jobs takes no more."""
        return self.max_jobs > 0 and jobs >= self.max_jobs

    def room(self, reserved: int, now: float) -> int:
        """How many more jobs may be handed out now, with `reserved` of the tube's jobs
        reserved."""
        room = UNLIMITED
        if self.max_reserved:
            room = max(self.max_reserved - reserved, 0)
        if self.rate and room:
            self._refill(now)
            room = min(room, int(self.tokens + _EPSILON))  # float error at a token's time
        return room

    def rate_bound(self, reserved: int) -> bool:
        """Whether only the rate holds the tube back (so a timer can reopen it)."""
        return self.rate > 0 and (not self.max_reserved or reserved < self.max_reserved)

    def take(self, now: float) -> None:
        """One job is handed out (room() was positive)."""
        if self.rate:
            self._refill(now)
            self.tokens -= 1.0

    def next_token(self, now: float) -> float:
        """When the bucket next holds a whole token."""
        self._refill(now)
        if self.tokens + _EPSILON >= 1.0:
            return now
        return now + (1.0 - self.tokens) / self.rate

    def _refill(self, now: float) -> None:
        if now > self.refilled:
            self.tokens = min(self.capacity(), self.tokens + (now - self.refilled) * self.rate)
            self.refilled = now
