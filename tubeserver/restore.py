"""The engine's start-up half: putting back what the write-ahead log held, into a fresh
engine, before it serves anything.

Jobs go straight into their containers, heaps filled unordered and put in order once at the
end (`finish_restore`), where the engine's commands would make one change at a time, each
with its timer push and matching, a million times over. It reaches into the engine's
internals on purpose, as the engine's own code: replay.py, recovery.py and flow.py use it,
commands never do. Pure, and compiled with the core.
"""

from __future__ import annotations

from typing import Final

from .engine import Engine
from .job import Job, JobState
from .timers import DELAY, PAUSE

_READY: Final = JobState.READY
_DELAYED: Final = JobState.DELAYED
_BURIED: Final = JobState.BURIED
_WAITING: Final = JobState.WAITING


def restore_job(engine: Engine, job: Job) -> None:
    """Put back a job read from the log, ready, delayed, buried or waiting, in a tube from
    `engine.tube()`. Buried jobs must come in their FIFO order; `finish_restore` must come
    before anything else."""
    tube = job.tube
    state = job.state
    engine.jobs[job.id] = job
    if state is _READY:
        tube.add_ready(job)
    elif state is _DELAYED:
        tube.delayed.add(job)
        engine.timers.add_unordered(job.deadline, DELAY, job, job.deadline)
    elif state is _BURIED:
        tube.buried[job.id] = job
    elif state is _WAITING:
        if not engine.flow.restore_waiting(job):
            restore_job(engine, job)  # now ready
            return
    else:
        raise ValueError(f"job {job.id} cannot be restored as {state.value}")
    if job.id >= engine._next_id:
        engine._next_id = job.id + 1


def restore_record(engine: Engine, job: Job, now: float) -> None:
    """Keep a finished job read from the log (oldest first), unless it expired while the
    server was down or does not fit."""
    tracker = engine.tracker
    extra = job.extra
    if tracker.expires(job) <= now or not tracker.fits(
            job.body, None if extra is None else extra.reason):
        return
    tracker.keep(job)
    if tracker.timer_at is None:
        engine.results.set_expiry(tracker.expires(job))


def restore_pause(engine: Engine, name: str, delay: int, until: float | None) -> None:
    """A tube's pause: `delay` as last set, paused until `until` (None: not)."""
    tube = engine.tube(name)
    tube.pause = delay
    tube.pause_token += 1
    tube.paused_until = 0.0
    if until is not None:
        tube.paused_until = until
        engine.timers.push(until, PAUSE, tube, tube.pause_token)


def finish_restore(engine: Engine, next_id: int) -> None:
    """Ids below `next_id` were used before: never again. Heaps get their order, and tubes
    left empty go away."""
    engine._next_id = max(engine._next_id, next_id)
    engine.timers.reorder()
    for tube in engine.tube_list:
        tube.ready.reorder()
        tube.delayed.reorder()
        tube.first_id = 1  # its jobs came back in the log's order, not by id
    for tube in list(engine.tube_list):
        engine._maybe_drop(tube)
