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
from collections.abc import Callable
from pathlib import Path

import attrs

from .engine import Engine
from .job import JobState
from .wal import Segment, WalError, segment_name, weight
from .walrecords import (
    BURIED,
    DELAYED,
    Damage,
    DeleteRec,
    Header,
    JobRec,
    PauseRec,
    UpdateRec,
    check_prefix,
    decode,
    next_frame,
    scan,
)

log = logging.getLogger("tubeserver.wal")

_SEGMENT = re.compile(r"wal-(\d{8})\.log")
_STATES = {BURIED: JobState.BURIED, DELAYED: JobState.DELAYED}


@attrs.define
class Recovered:
    """Everything the log holds, before it is put into an engine."""

    jobs: dict[int, list[object]] = attrs.Factory(dict)  # id -> JobRec fields + [file]
    pauses: dict[str, tuple[PauseRec, int]] = attrs.Factory(dict)  # tube -> (record, file)
    segments: list[Segment] = attrs.Factory(list)
    next_id: int = 1
    next_seq: int = 1
    records: int = 0
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
            _damaged(repair, f"{missing} missing from {directory} (between "
                             f"{segment_name(previous)} and {path.name})")
        previous = index
        _read_segment(out, index, path, last=position == len(files) - 1, repair=repair)
    for path, size in out.trims:
        if size < 0:
            path.unlink()
        else:
            os.truncate(path, size)
    return out


def _damaged(repair: bool, what: str, skipped: str = "") -> None:
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
        _damaged(repair, f"{path}: {problem}", "file ignored")
        return
    segment = Segment(index, path, -1, 0, 0)
    apply = _applier(out, index, segment)
    result = scan(data)
    first = True
    while True:
        for offset, payload in result.frames:
            try:
                records = list(decode(payload))
            except ValueError as e:
                _damaged(repair, f"{path} at offset {offset}: {e}", "frame skipped")
                continue
            if first:
                first = False
                head = records[0] if records else None
                if not isinstance(head, Header) or head.segment != index:
                    _damaged(repair, f"{path}: bad segment header", "header ignored")
                else:
                    out.next_id = max(out.next_id, head.next_id)
                    out.next_seq = max(out.next_seq, head.next_seq)
                    records = records[1:]
            for record in records:
                apply(record)
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
            _damaged(repair, where, f"the rest of the file ({len(data) - result.damage.offset} "
                                    f"bytes) skipped")
            break
        _damaged(repair, where, f"bytes {result.damage.offset}-{resume} skipped")
        result = scan(data, resume)
    out.segments.append(segment)


def _cut(path: Path, damage: Damage, size: int) -> None:
    log.warning("log: cutting a torn write at the end of %s: %d bytes from offset %d (%s); "
                "it was never acknowledged", path.name, size - damage.offset, damage.offset,
                damage.reason)


def _applier(out: Recovered, index: int, segment: Segment) -> Callable[[object], None]:
    jobs = out.jobs
    pauses = out.pauses

    def apply(record: object) -> None:
        out.records += 1
        if isinstance(record, JobRec):
            jobs[record.id] = [*record, index]
            out.next_id = max(out.next_id, record.id + 1)
            out.next_seq = max(out.next_seq, record.seq + 1)
        elif isinstance(record, UpdateRec):
            job = jobs.get(record.id)
            if job is not None:
                # Fields 1, 3-7 and 9-13 of a JobRec, in UpdateRec's order.
                (_, job[1], job[3], job[4], job[5], job[7], job[9], job[10], job[11],
                 job[12], job[13]) = record
            out.next_seq = max(out.next_seq, record.seq + 1)
        elif isinstance(record, DeleteRec):
            jobs.pop(record.id, None)
        elif isinstance(record, PauseRec):
            pauses[record.tube] = (record, index)
        else:
            raise WalError(f"{segment.path}: a segment header inside the segment")

    return apply


def restore(out: Recovered, engine: Engine, now: float, wall: float) -> dict[str, int]:
    """Put what was read into a fresh `engine` whose clock reads `now` while the wall clock
    reads `wall`. Returns the segment of each still-paused tube's pause record."""
    by_index = {s.index: s for s in out.segments}
    shift = now - wall
    # In log order, so that buried jobs keep their FIFO order.
    for fields in sorted(out.jobs.values(), key=lambda f: f[1]):  # type: ignore[arg-type,return-value]
        rec = JobRec._make(fields[:15])
        file = fields[15]
        assert isinstance(file, int)
        state = _STATES.get(rec.state, JobState.READY)
        deadline = rec.deadline + shift if state is JobState.DELAYED else 0.0
        job = engine.restore_job(
            rec.id, rec.tube, state, rec.pri, rec.delay, rec.ttr, rec.body, rec.created + shift,
            deadline, (rec.reserves, rec.timeouts, rec.releases, rec.buries, rec.kicks))
        job.seq = rec.seq
        job.file = file
        segment = by_index[file]
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
