"""Start-up from the log: read every segment in order, judge damage, rebuild the engine.

Records apply in file order: a whole job record creates or replaces a job, an update changes
it, a delete forgets it (an update or delete for an unknown id refers to a job whose records
were compacted away and is skipped), a pause record sets or clears a tube's pause. Jobs that
were reserved were last logged ready, so they come back ready.

Damage: a bad frame in the newest segment with nothing intact after it is a write torn by a
crash; it was never acknowledged, so it is cut off and logged. Anything else (a bad frame with
intact data after it, a bad header, a missing segment) stops the start-up with the file and
offset, unless `repair` is set, in which case the damaged bytes are skipped, loudly.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import attrs

from .engine import Engine
from .job import Job, JobState
from .tube import Tube
from .wal import Segment, WalError, segment_name, weight
from .walrecords import (
    BURIED,
    DELAYED,
    DELETE,
    HEADER,
    JOB,
    JOB_AT,
    PAUSE,
    UPDATE,
    UPDATE_AT,
    Damage,
    Header,
    PauseRec,
    Reader,
    check_prefix,
    next_frame,
    scan,
)

log = logging.getLogger("tubeserver.wal")

_SEGMENT = re.compile(r"wal-(\d{8})\.log")
_STATES = {BURIED: JobState.BURIED, DELAYED: JobState.DELAYED}


@attrs.define
class Recovered:
    """Everything the log holds, before it is put into an engine."""

    # id -> the job's latest whole record as a raw tuple (JobRec fields after the tag), with
    # later updates merged in; and the segment holding that whole record.
    jobs: dict[int, tuple[Any, ...]] = attrs.Factory(dict)
    files: dict[int, int] = attrs.Factory(dict)
    pauses: dict[str, tuple[PauseRec, int]] = attrs.Factory(dict)  # tube -> (record, file)
    segments: list[Segment] = attrs.Factory(list)
    next_id: int = 1
    next_seq: int = 1
    records: int = 0
    repaired: bool = False  # damage was skipped: the log must be rewritten without it
    # Tidying done only once the whole log has read well: (file, new size or -1 to delete).
    trims: list[tuple[Path, int]] = attrs.Factory(list)


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in os.listdir(directory):
        m = _SEGMENT.fullmatch(entry)
        if m:
            found.append((int(m.group(1)), directory / entry))
    return sorted(found)


def read(directory: Path, repair: bool = False) -> Recovered:
    """Read the log in `directory`. Raises WalError for damage that needs `repair`."""
    out = Recovered()
    files = list_segments(directory)
    previous: int | None = None
    for position, (index, path) in enumerate(files):
        if previous is not None and index != previous + 1:
            missing = (segment_name(previous + 1) if index == previous + 2
                       else f"{segment_name(previous + 1)} to {segment_name(index - 1)}")
            _damaged(out, repair, f"{missing} missing from {directory} (between "
                                  f"{segment_name(previous)} and {path.name})")
        previous = index
        _read_segment(out, index, path, last=position == len(files) - 1, repair=repair)
    for path, size in out.trims:
        if size < 0:
            path.unlink()
        else:
            os.truncate(path, size)
    return out


def _damaged(out: Recovered, repair: bool, what: str, skipped: str = "") -> None:
    out.repaired = True
    if not repair:
        raise WalError(f"the log is damaged: {what}. Nothing was changed. Start with "
                       f"--wal-repair to skip the damaged part and keep every intact record "
                       f"(jobs in the damaged part are lost, and deleted ones may come back)")
    log.error("REPAIR: the log is damaged: %s; %s", what, skipped or "skipped")


def _read_segment(out: Recovered, index: int, path: Path, last: bool, repair: bool) -> None:
    data = path.read_bytes()
    problem = check_prefix(data)
    if problem is not None:
        if last and not data.strip(b"\0"):
            # Made but never written to before a crash.
            log.warning("log: %s is empty (a crash as it was made); removed", path.name)
            out.trims.append((path, -1))
            return
        _damaged(out, repair, f"{path}: {problem}", "file ignored")
        return
    segment = Segment(index, path, -1, 0, 0)
    reader = Reader()
    result = scan(data)
    first = True
    while True:
        for offset, payload in result.frames:
            try:
                records = reader.read(payload)
            except ValueError as e:
                _damaged(out, repair, f"{path} at offset {offset}: {e}", "frame skipped")
                continue
            if first:
                first = False
                if not records or records[0][0] != HEADER or records[0][1] != index:
                    _damaged(out, repair, f"{path}: bad segment header", "header ignored")
                else:
                    head = Header._make(records[0][1:])
                    out.next_id = max(out.next_id, head.next_id)
                    out.next_seq = max(out.next_seq, head.next_seq)
                    records = records[1:]
            _apply(out, index, records)
        segment.used = result.end
        if result.damage is None:
            if result.end < len(data):
                out.trims.append((path, result.end))  # a crash left its preallocated tail
            break
        resume = next_frame(data, result.damage.offset)
        if resume is None and last:
            _cut(path, result.damage, len(data))
            out.trims.append((path, result.damage.offset))
            break
        where = f"{path} at offset {result.damage.offset}: {result.damage.reason}"
        if resume is None:
            rest = len(data) - result.damage.offset
            _damaged(out, repair, where, f"the rest of the file ({rest} bytes) skipped")
            break
        _damaged(out, repair, where, f"bytes {result.damage.offset}-{resume} skipped")
        result = scan(data, resume)
    out.segments.append(segment)


def _cut(path: Path, damage: Damage, size: int) -> None:
    log.warning("log: cutting a torn write at the end of %s: %d bytes from offset %d (%s); "
                "it was never acknowledged", path.name, size - damage.offset, damage.offset,
                damage.reason)


_ID, _SEQ, _STATE = JOB_AT["id"], JOB_AT["seq"], JOB_AT["state"]
# Where each field of an update goes in a job record.
_MERGE = [(JOB_AT[name], at) for name, at in UPDATE_AT.items() if name != "id"]


def _apply(out: Recovered, index: int, records: list[tuple[Any, ...]]) -> None:
    """Fold one frame's records into what is known so far. Hot: one call per frame."""
    jobs, files = out.jobs, out.files
    max_id = out.next_id - 1
    max_seq = out.next_seq - 1
    for rec in records:
        tag = rec[0]
        if tag == JOB:
            job_id = rec[1]
            jobs[job_id] = rec
            files[job_id] = index
            if job_id > max_id:
                max_id = job_id
            if rec[2] > max_seq:
                max_seq = rec[2]
        elif tag == DELETE:
            if jobs.pop(rec[1], None) is not None:
                del files[rec[1]]
        elif tag == UPDATE:
            old = jobs.get(rec[1])
            if old is not None:
                merged = list(old)
                for to, at in _MERGE:
                    merged[to] = rec[at]
                jobs[rec[1]] = tuple(merged)
            if rec[2] > max_seq:
                max_seq = rec[2]
        elif tag == PAUSE:
            out.pauses[rec[1]] = (PauseRec._make(rec[1:]), index)
        else:
            raise WalError(f"segment {index}: a segment header inside the segment")
    out.records += len(records)
    out.next_id = max_id + 1
    out.next_seq = max_seq + 1


def restore(out: Recovered, engine: Engine, now: float, wall: float) -> dict[str, int]:
    """Put what was read into a fresh `engine` whose clock reads `now` while the wall clock
    reads `wall`. Returns the segment of each still-paused tube's pause record."""
    by_index = {s.index: s for s in out.segments}
    shift = now - wall
    files = out.files
    buried = []
    tubes: dict[str, Tube] = {}
    for rec in out.jobs.values():
        if rec[_STATE] == BURIED:
            buried.append(rec)
            continue
        _restore(engine, tubes, rec, files[rec[_ID]], shift)
    # Buried jobs in log order of their burial: their FIFO order.
    buried.sort(key=lambda rec: rec[_SEQ])
    for rec in buried:
        _restore(engine, tubes, rec, files[rec[_ID]], shift)
    for job in engine.jobs.values():
        segment = by_index[job.file]
        segment.jobs.append(job.id)
        segment.live += weight(job)
    pause_file = {}
    for name, (pause, file) in out.pauses.items():
        paused = pause.until > wall
        engine.restore_pause(name, pause.delay, pause.until + shift if paused else None)
        if paused:
            pause_file[name] = file
    engine.finish_restore(out.next_id)
    return {name: file for name, file in pause_file.items() if name in engine.tubes}


def _restore(engine: Engine, tubes: dict[str, Tube], rec: tuple[Any, ...], file: int,
             shift: float) -> None:
    (_, job_id, seq, name, state, pri, delay, ttr, deadline, created, reserves, timeouts,
     releases, buries, kicks, body) = rec
    tube = tubes.get(name)
    if tube is None:
        tube = tubes[name] = engine.tube(name)
    st = _STATES.get(state, JobState.READY)
    engine.restore_job(Job(
        job_id, tube, pri, delay, ttr, body, created + shift, st,
        deadline + shift if st is JobState.DELAYED else 0.0, -1, None,
        reserves, timeouts, releases, buries, kicks, file, seq))
