"""Rights: which commands a token may send, on which tubes; checked before a command runs.

With an auth file (tokens.py loads it) every session starts with no rights: it may send only
`auth` and `quit`. A good `auth` gives the session its token's `Rights`, a list of grants
(role bits, glob pattern over tube names). Roles: PRODUCE (use, put and its variants),
CONSUME (watch, reserve*, and delete/release/bury/touch/finish/fail/checkpoint of a job in
the tube), INSPECT (peek*, stats*, list-*, tube-info, job-status, result), ADMIN (kick*,
pause-tube, clear-tube, tube-limits, schedule*; it implies the other three).

`check` names the tube a command acts on and the roles that admit it: the tube it names, the
session's used tube (put, peek-ready, kick), every watched tube (reserve: a reserve may hand
out a job from any of them, so each must be allowed, the default tube included), or the tube
of the job it names. A job that does not exist is left to the engine to answer NOT_FOUND.
Commands about the server as a whole (stats, list-tubes, list-schedules, list-tube-limits)
need INSPECT on some tube. A refused command is answered UNAUTHORIZED before anything
changes (dispatch.py).

A tube's role mask is computed once per Rights and kept in a bounded cache, so a session's
commands after the first on a tube cost one dict lookup. Pure: no clock, no I/O.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Final

from . import commands as c
from .engine import Engine
from .session import Session

PRODUCE: Final = 1
CONSUME: Final = 2
INSPECT: Final = 4
ADMIN: Final = 8
ROLES: Final = {"produce": PRODUCE, "consume": CONSUME, "inspect": INSPECT, "admin": ADMIN}
ALL: Final = PRODUCE | CONSUME | INSPECT | ADMIN
# Tube names a Rights remembers before it starts over (names are the clients' to make up).
CACHE_MAX: Final = 4096


class Rights:
    """A token's grants, read-only once made; `name` is the token's name, for logs."""

    __slots__ = ("_cache", "grants", "name", "some")

    def __init__(self, name: str, grants: list[tuple[int, str]]) -> None:
        self.name = name
        # Admin implies every role: expanded here so a lookup is one mask test.
        self.grants = [(ALL if mask & ADMIN else mask, pattern) for mask, pattern in grants]
        self.some = 0  # every role granted on some tube
        for mask, _ in self.grants:
            self.some |= mask
        self._cache: dict[str, int] = {}

    def mask(self, tube: str) -> int:
        cached = self._cache.get(tube)
        if cached is not None:
            return cached
        mask = 0
        for granted, pattern in self.grants:
            if fnmatchcase(tube, pattern):
                mask |= granted
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[tube] = mask
        return mask

    def allows(self, roles: int, tube: str) -> bool:
        """Whether any of `roles` is granted on `tube`."""
        return bool(self.mask(tube) & roles)

    def __repr__(self) -> str:
        return f"Rights({self.name!r})"


# Commands that anyone who passed `auth` may send: they concern only the session itself.
_FREE: Final = (c.Quit, c.Ignore, c.ListTubeUsed, c.ListTubesWatched)
# Commands on the job they name: the roles that admit them on the job's tube.
_BY_JOB: Final[dict[type, int]] = {
    c.ReserveJob: CONSUME, c.Delete: CONSUME, c.Release: CONSUME, c.Bury: CONSUME,
    c.Touch: CONSUME, c.Finish: CONSUME, c.Fail: CONSUME, c.Checkpoint: CONSUME,
    c.Peek: INSPECT, c.PeekCheckpoint: INSPECT,
    # Its producer and its worker may follow a job without being inspectors (tubeworker
    # reads stats-job's counts to decide a retry's backoff).
    c.JobStatus: INSPECT | PRODUCE | CONSUME, c.Result: INSPECT | PRODUCE | CONSUME,
    c.StatsJob: INSPECT | CONSUME,
    c.KickJob: ADMIN,
}
# Commands on the tube they name.
_BY_NAME: Final[dict[type, int]] = {
    # `use` serves producers and inspectors (peek-ready looks at the used tube).
    c.Use: PRODUCE | INSPECT, c.Watch: CONSUME,
    # A tube's counts: for whoever works with it (a producer's back-pressure, a worker's
    # "is it empty yet", as tubeworker --burst asks).
    c.StatsTube: PRODUCE | CONSUME | INSPECT, c.TubeInfo: PRODUCE | CONSUME | INSPECT,
    c.ListJobs: INSPECT,
    c.PauseTube: ADMIN, c.ClearTube: ADMIN, c.KickTube: ADMIN, c.TubeLimits: ADMIN,
    c.Schedule: ADMIN,
}
# Commands on the used tube.
_BY_USED: Final[dict[type, int]] = {
    c.Put: PRODUCE, c.PutStarted: PRODUCE, c.PutUnique: PRODUCE, c.PutAfter: PRODUCE,
    c.PeekReady: INSPECT, c.PeekDelayed: INSPECT, c.PeekBuried: INSPECT, c.Kick: ADMIN,
}
# Commands about the whole server.
_SERVER: Final = (c.Stats, c.ListTubes, c.ListSchedules, c.ListTubeLimits)


def check(engine: Engine, s: Session, rights: Rights, event: c.Event) -> bool:
    """Whether `rights` admit `event` from `s`."""
    kind = type(event)
    roles = _BY_USED.get(kind)
    if roles is not None:
        return rights.allows(roles, s.used.name)
    roles = _BY_JOB.get(kind)
    if roles is not None:
        job_id: int = getattr(event, "id")  # noqa: B009 (every _BY_JOB command has one)
        job = engine.jobs.get(job_id)
        if job is None:
            job = engine.tracker.record(job_id)
        return job is None or rights.allows(roles, job.tube.name)
    roles = _BY_NAME.get(kind)
    if roles is not None:
        tube: str = getattr(event, "tube")  # noqa: B009 (every _BY_NAME command has one)
        return rights.allows(roles, tube)
    if isinstance(event, c.Reserve | c.ReserveBatch):
        return all(rights.allows(CONSUME, t.name) for t in s.watched)
    if isinstance(event, c.Unschedule):
        entry = engine.flow.schedules.table.get(event.name)
        return entry is None or rights.allows(ADMIN, entry.tube)
    if isinstance(event, _SERVER):
        return bool(rights.some & INSPECT)
    if isinstance(event, c.Rejected):
        # A malformed put still counts as one (and makes a producer): only for producers.
        return event.verb != "put" or rights.allows(PRODUCE, s.used.name)
    # Commands that concern only the session itself; one this table does not know is
    # refused, not let through.
    return isinstance(event, _FREE)
