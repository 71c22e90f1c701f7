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
from .replay import Folded
from .restore import finish_restore, restore_pause
from .wal import Segment, WalError, segment_name
from .walrecords import (
    HEADER,
    Damage,
    Header,
    Reader,
    check_prefix,
    next_frame,
    scan,
)

log = logging.getLogger("tubeserver.wal")

_SEGMENT = re.compile(r"wal-(\d{8})\.log")


@attrs.define
class Recovered:
    """Everything the log holds, before it is put into an engine."""

    # The jobs as their latest whole record and later updates leave them, built as the
    # records are read (a record tuple per job kept until the end doubled start-up's memory,
    # and its freed blocks, interleaved with the jobs', stayed in the process for good).
    folded: Folded = attrs.Factory(Folded)
    segments: list[Segment] = attrs.Factory(list)
    next_id: int = 1
    next_seq: int = 1
    repaired: bool = False  # damage was skipped: the log must be rewritten without it
    # Tidying done only once the whole log has read well: (file, new size or -1 to delete).
    trims: list[tuple[Path, int]] = attrs.Factory(list)
    # After restore: the segment of each meta record still in effect (for the writer).
    meta_file: dict[tuple[int, str], int] = attrs.Factory(dict)

    @property
    def records(self) -> int:
        """Records read, headers not counted."""
        return self.folded.records


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


def _apply(out: Recovered, index: int, records: list[tuple[Any, ...]]) -> None:
    """Fold one frame's records into what is known so far."""
    folded = out.folded
    if not folded.apply(index, records):
        raise WalError(f"segment {index}: a segment header inside the segment")
    out.next_id = max(out.next_id, folded.max_id + 1)
    out.next_seq = max(out.next_seq, folded.max_seq + 1)


def restore(out: Recovered, engine: Engine, now: float, wall: float) -> dict[str, int]:
    """Put what was read into a fresh `engine` whose clock reads `now` while the wall clock
    reads `wall`. Returns the segment of each still-paused tube's pause record."""
    by_index = {s.index: s for s in out.segments}
    shift = now - wall
    for index, (ids, live) in out.folded.place(engine, shift, now).items():
        segment = by_index[index]
        segment.jobs.extend(ids)
        segment.live += live
    pause_file = {}
    for name, (pause, file) in out.folded.pauses.items():
        paused = pause.until > wall
        restore_pause(engine, name, pause.delay, pause.until + shift if paused else None)
        if paused:
            pause_file[name] = file
    # Flow control's state after the jobs, which key holds and waiting children refer to.
    flow = engine.flow
    flow.wall_offset = wall - now
    for (kind, name), (value, file) in out.folded.metas.items():
        flow.restore_meta(kind, name, value, now)
        if flow.meta_value(kind, name) is not None:
            out.meta_file[(kind, name)] = file
    finish_restore(engine, out.next_id)
    return {name: file for name, file in pause_file.items() if name in engine.tubes}
