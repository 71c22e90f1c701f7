"""Schedules (`schedule`): named recurring puts, by a cron expression or every N seconds.

A schedule keeps its next firing on the wall clock (UTC epoch seconds), since a calendar is
what cron means; the engine converts to its own clock for its timer and checks the wall clock
again when the timer fires. Firings missed while the server was down (or while its clock
jumped) coalesce: a firing computes the next one after *now*, so however many were missed,
one job is made. Cron expressions are read by cronsim (Debian cron's rules, including its DST
handling: a time skipped by a spring-forward runs once, right after the jump); times are UTC
unless the server was given a time zone. Pure: wall time comes in; nothing reads a clock.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from cronsim import CronSim, CronSimError

EVERY_MAX: Final = (1 << 32) - 1  # seconds, as a delay
SCHEDULES_MAX: Final = 10_000
SINGLE: Final = "single"
EVERY: Final = "every"


class BadSpec(ValueError):
    """A spec that is neither a 5-field cron expression nor `every <seconds>`."""


class Spec:
    """A parsed `<spec>`: `[single] <5 cron fields>` or `[single] every <seconds>`."""

    __slots__ = ("cron", "every", "single", "text")

    def __init__(self, text: str, single: bool, every: int, cron: str) -> None:
        self.text = text  # normalised: single spaces, as listed
        self.single = single  # skip a firing while the previous firing's job is live
        self.every = every  # seconds; 0 for a cron expression
        self.cron = cron


def parse_spec(text: str) -> Spec:
    words = text.split()
    single = bool(words) and words[0] == SINGLE
    if single:
        words = words[1:]
    if len(words) == 2 and words[0] == EVERY:
        if not words[1].isdigit() or not 0 < int(words[1]) <= EVERY_MAX:
            raise BadSpec(f"every: seconds must be 1 to {EVERY_MAX}")
        return Spec(" ".join(([SINGLE] if single else []) + words), single, int(words[1]), "")
    if len(words) != 5:
        raise BadSpec("a spec is 5 cron fields or `every <seconds>`, optionally after `single`")
    cron = " ".join(words)
    try:
        next(CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as e:
        raise BadSpec(f"{cron}: {e or 'never fires'}") from None
    return Spec(" ".join(([SINGLE] if single else []) + words), single, 0, cron)


class Schedule:
    __slots__ = ("body", "last_at", "last_job", "made", "name", "next_at", "pri", "skipped",
                 "spec", "ttr", "tube")

    def __init__(self, name: str, tube: str, pri: int, ttr: int, body: bytes, spec: Spec,
                 next_at: float) -> None:
        self.name = name
        self.tube = tube
        self.pri = pri
        self.ttr = ttr
        self.body = body
        self.spec = spec
        self.next_at = next_at  # wall clock
        self.last_at = 0.0  # wall clock of the last firing that made a job; 0: none yet
        self.last_job = 0  # the id of that job
        self.made = 0  # jobs made
        self.skipped = 0  # firings that made no job (single-instance, tube full, draining)

    def same(self, tube: str, pri: int, ttr: int, body: bytes, spec: Spec) -> bool:
        return (self.tube, self.pri, self.ttr, self.body, self.spec.text) == (
            tube, pri, ttr, body, spec.text)

    def record(self) -> list[Any]:
        """Its MetaRec value (walrecords.META_SCHEDULE)."""
        return [self.tube, self.pri, self.ttr, self.body, self.spec.text, self.next_at,
                self.last_at, self.last_job, self.made, self.skipped]


class Schedules:
    __slots__ = ("table", "timer_at", "tz")

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.table: dict[str, Schedule] = {}
        self.tz = tz  # None: UTC
        self.timer_at: float | None = None  # the engine's timer (engine clock)

    def next_after(self, spec: Spec, wall: float, previous: float) -> float:
        """The firing after `wall`: for `every`, on the grid of `previous` (the firing just
        due), so a schedule does not drift by the ticker's lag."""
        if spec.every:
            if previous <= 0.0 or previous > wall:
                return wall + spec.every
            steps = math.floor((wall - previous) / spec.every) + 1
            return previous + steps * spec.every
        start = datetime.fromtimestamp(wall, self.tz or UTC)
        try:
            return next(CronSim(spec.cron, start)).timestamp()
        except StopIteration:  # no match within 50 years: in effect never
            return math.inf

    def put(self, name: str, tube: str, pri: int, ttr: int, body: bytes, spec: Spec,
            wall: float) -> Schedule:
        """Create or replace. An unchanged definition keeps its next firing and counts, so
        an application may declare its schedules at every start."""
        old = self.table.get(name)
        if old is not None and old.same(tube, pri, ttr, body, spec):
            return old
        sched = Schedule(name, tube, pri, ttr, body, spec, self.next_after(spec, wall, 0.0))
        if old is not None:
            sched.last_at, sched.last_job = old.last_at, old.last_job
            sched.made, sched.skipped = old.made, old.skipped
        self.table[name] = sched
        return sched

    def due(self, wall: float) -> list[Schedule]:
        """The schedules whose next firing is at or before `wall`, soonest first."""
        due = [s for s in self.table.values() if s.next_at <= wall]
        due.sort(key=_next_at)
        return due

    def soonest(self) -> float | None:
        """The wall-clock time of the next firing of any schedule."""
        soonest = min((s.next_at for s in self.table.values()), default=math.inf)
        return None if soonest == math.inf else soonest

    def restore(self, name: str, value: tuple[Any, ...]) -> None:
        tube, pri, ttr, body, text, next_at, last_at, last_job, made, skipped = value
        sched = Schedule(name, tube, pri, ttr, body, parse_spec(text), next_at)
        sched.last_at, sched.last_job, sched.made, sched.skipped = (
            last_at, last_job, made, skipped)
        self.table[name] = sched


def _next_at(s: Schedule) -> float:
    return s.next_at
