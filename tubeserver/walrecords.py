"""The write-ahead log's bytes: segment prefix, checksummed frames, msgpack records.

A segment file is `MAGIC`, a little-endian u32 format version, then frames. A frame is one
write: `<u32 length><u32 crc32>` and `length` bytes of concatenated msgpack records, the crc
covering the length bytes and the payload, so a torn or flipped frame never parses as data.
The first frame of a segment holds only its header. Preallocated space after the last frame
is zeros, and a zero length reads as "end". Pure: bytes in, values out; files are elsewhere.

Records are msgpack arrays whose first item is a tag; the field order is the NamedTuple's.
Times are wall-clock seconds (UTC epoch) so that delays and pauses keep running while the
server is down; the engine's monotonic times are converted at the edge.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from .job import Job, JobState

MAGIC = b"TUBEWAL\n"
# 2 added job tracking's records (KeptRec, NoteRec); 3 flow control's (MetaRec, the waiting
# state, the parents note). Older logs read as they always did.
VERSION = 3
READABLE = (1, 2, 3)
PREFIX = MAGIC + struct.pack("<I", VERSION)
FRAME_HEAD = struct.Struct("<II")
# A frame this large is damage, not data: the biggest record is one 1 GiB job plus fields.
FRAME_MAX = (1 << 30) + (1 << 20)

# Record tags.
HEADER, JOB, UPDATE, DELETE, PAUSE, KEPT, NOTE, META = range(8)
# NoteRec kinds.
REASON, CHECKPOINT, PARENTS = 0, 1, 2
# MetaRec kinds.
META_KEY, META_LIMITS, META_SCHEDULE = 0, 1, 2
# Job states as logged. Reserved jobs are never logged: after a restart they are ready.
READY, DELAYED, BURIED, WAITING = 1, 3, 4, 5

# Upper bounds of encoded sizes, used to reserve log space before a change is made.
FIELDS_MAX = 128  # a job record without its tube name and body
UPDATE_MAX = 80
DELETE_MAX = 24
PAUSE_MAX = 40  # plus the tube name
NOTE_MAX = 32  # plus the data
KEPT_MAX = 160  # a kept record without its tube name, reason and result
META_MAX = 160  # a meta record without its name and the bytes in its value
# Kept free per job waiting on parents: its release (an update) or its burial with a reason
# when a parent is cancelled, so that the delete that triggers either never needs room.
WAIT_RESERVE = UPDATE_MAX + NOTE_MAX + 64


class Header(NamedTuple):
    """Opens every segment. `next_id` and `next_seq` keep ids and sequence numbers growing
    even when every record that used them has been compacted away."""

    segment: int
    next_id: int
    next_seq: int
    created: float


class JobRec(NamedTuple):
    """A whole job: written by put, and again when compaction carries a job forward."""

    id: int
    seq: int  # log order of the job's last change; orders the buried FIFO on replay
    tube: str
    state: int
    pri: int
    delay: int
    ttr: int
    deadline: float  # wall clock; meaningful when delayed
    created: float
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int
    body: bytes


class UpdateRec(NamedTuple):
    """A job's new state after release, bury, kick or kick-job."""

    id: int
    seq: int
    state: int
    pri: int
    delay: int
    deadline: float
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int


class DeleteRec(NamedTuple):
    id: int


class PauseRec(NamedTuple):
    """pause-tube; `until` 0 means not paused (pause-tube 0, or the tube went away)."""

    tube: str
    delay: int
    until: float


class KeptRec(NamedTuple):
    """The whole record of a finished job kept for `result` and `job-status` (job tracking):
    written when it finishes, and again when compaction carries it forward. Supersedes the
    job's JobRec; a DeleteRec ends it (evicted or expired)."""

    id: int
    seq: int
    tube: str
    pri: int
    delay: int
    ttr: int
    created: float  # wall clock, as all times here
    reserved: float  # when last reserved; -1: not known
    finished: float
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int
    reason: bytes | None
    result: bytes


class NoteRec(NamedTuple):
    """A live job's failure reason (`fail`) or checkpoint, replacing the previous one of its
    kind. Compaction writes the notes of a job it carries forward right after its JobRec."""

    id: int
    kind: int  # REASON, CHECKPOINT or PARENTS (the open parents' ids, u64 little-endian)
    data: bytes


class MetaRec(NamedTuple):
    """Flow control's state that is not a job: a unique key's hold, a tube's limits, a
    schedule. The latest record of a (kind, name) wins; a None value removes it. Compaction
    carries forward the ones still in effect."""

    kind: int  # META_KEY, META_LIMITS or META_SCHEDULE
    name: str
    value: Any  # a msgpack array, its shape the kind's (flow.py); times on the wall clock


Record = Header | JobRec | UpdateRec | DeleteRec | PauseRec | KeptRec | NoteRec | MetaRec
_TAGS: dict[type, int] = {Header: HEADER, JobRec: JOB, UpdateRec: UPDATE, DeleteRec: DELETE,
                          PauseRec: PAUSE, KeptRec: KEPT, NoteRec: NOTE, MetaRec: META}
_MAKE: dict[int, Callable[[Iterable[Any]], Record]] = {
    HEADER: Header._make, JOB: JobRec._make, UPDATE: UpdateRec._make,
    DELETE: DeleteRec._make, PAUSE: PauseRec._make, KEPT: KeptRec._make, NOTE: NoteRec._make,
    META: MetaRec._make,
}

# Record arrays as tuples, for readers that skip building NamedTuples (start-up speed): the
# position of each field in a record's array, the tag being at 0.
JOB_AT = {name: i + 1 for i, name in enumerate(JobRec._fields)}
UPDATE_AT = {name: i + 1 for i, name in enumerate(UpdateRec._fields)}
PAUSE_AT = {name: i + 1 for i, name in enumerate(PauseRec._fields)}
_LENGTHS = {HEADER: len(Header._fields) + 1, JOB: len(JobRec._fields) + 1,
            UPDATE: len(UpdateRec._fields) + 1, DELETE: len(DeleteRec._fields) + 1,
            PAUSE: len(PauseRec._fields) + 1, KEPT: len(KeptRec._fields) + 1,
            NOTE: len(NoteRec._fields) + 1, META: len(MetaRec._fields) + 1}

_packb = msgpack.Packer(use_bin_type=True).pack


def encode(record: Record) -> bytes:
    data: bytes = _packb((_TAGS[type(record)], *record))
    return data


# A live job's state as its records log it (a reserved job is restored ready).
LOGGED_STATE: dict[JobState, int] = {
    JobState.READY: READY, JobState.RESERVED: READY, JobState.DELAYED: DELAYED,
    JobState.BURIED: BURIED, JobState.WAITING: WAITING}


def encode_job(job: Job, offset: float) -> bytes:
    """`encode` of the JobRec of a live job, in one step and compiled: every put logs one.
    Times go on the wall clock (`offset` added); the deadline only of a delayed job."""
    state = job.state
    deadline = job.deadline + offset if state is JobState.DELAYED else 0.0
    data: bytes = _packb((JOB, job.id, job.seq, job.tube.name, LOGGED_STATE[state], job.pri,
                          job.delay, job.ttr, deadline, job.created + offset, job.reserves,
                          job.timeouts, job.releases, job.buries, job.kicks, job.body))
    return data


def frame(payload: bytes) -> bytes:
    """One frame around `payload` (one or more encoded records)."""
    head = struct.pack("<I", len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def decode(payload: bytes) -> Iterator[Record]:
    """The records of one frame's payload. Raises ValueError on anything malformed."""
    for item in Reader().read(payload):
        yield _MAKE[item[0]](item[1:])


class Reader:
    """Records of successive frames as raw tuples `(tag, field, ...)`, checked for a known tag
    and field count; one msgpack unpacker for a whole segment, which is what makes start-up
    fast. Raises ValueError on anything malformed, naming no offset (the caller knows it)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, use_list=False,
                                          max_buffer_size=FRAME_MAX)
        self._fed = 0

    def read(self, payload: bytes) -> list[tuple[Any, ...]]:
        unpacker = self._unpacker
        unpacker.feed(payload)
        self._fed += len(payload)
        lengths = _LENGTHS
        try:
            items = list(unpacker)
        except (msgpack.UnpackException, ValueError) as e:
            self._reset()  # the next frame starts afresh
            raise ValueError(f"undecodable record: {e}") from None
        if unpacker.tell() != self._fed:
            self._reset()
            raise ValueError("frame ends inside a record")
        for item in items:
            if (type(item) is not tuple or not item or type(item[0]) is not int
                    or lengths.get(item[0]) != len(item)):
                raise ValueError(f"not a record: {item!r:.80}")
        return items


class Damage(NamedTuple):
    offset: int
    reason: str


def check_prefix(data: bytes) -> str | None:
    """Why `data` does not start like a segment of this version, or None if it does."""
    if len(data) < len(PREFIX) or data[: len(MAGIC)] != MAGIC:
        return "not a tubeserver log segment (bad magic)"
    (version,) = struct.unpack_from("<I", data, len(MAGIC))
    if version not in READABLE:
        return (f"log format version {version} is not supported (this server reads "
                f"{' and '.join(map(str, READABLE))})")
    return None


class Scan(NamedTuple):
    """What one segment holds: its frames' payloads with their offsets, where the data ends
    (the first zero or missing byte, or the damaged frame), and the damage if any."""

    frames: list[tuple[int, bytes]]
    end: int
    damage: Damage | None


def scan(data: bytes, start: int = len(PREFIX)) -> Scan:
    """Read frames from `start` until the zero tail, the end of `data`, or damage."""
    frames: list[tuple[int, bytes]] = []
    offset = start
    size = len(data)
    unpack_from = FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    while offset < size:
        if offset + FRAME_HEAD.size > size:
            if data[offset:].strip(b"\0"):
                return Scan(frames, offset, Damage(offset, "truncated frame header"))
            return Scan(frames, offset, None)
        length, crc = unpack_from(data, offset)
        if length == 0:
            if data[offset:].strip(b"\0"):
                return Scan(frames, offset, Damage(offset, "data after the end marker"))
            return Scan(frames, offset, None)
        body = offset + FRAME_HEAD.size
        if length > FRAME_MAX or body + length > size:
            return Scan(frames, offset, Damage(offset, f"frame of {length} bytes runs past "
                                                       f"the end of the file"))
        payload = data[body: body + length]
        if crc32(payload, crc32(data[offset: offset + 4])) != crc:
            return Scan(frames, offset, Damage(offset, "checksum mismatch"))
        frames.append((offset, payload))
        offset = body + length
    return Scan(frames, offset, None)


def next_frame(data: bytes, after: int) -> int | None:
    """The offset of the first intact frame that starts after `after`, if any. Used to tell
    a torn tail (nothing intact follows) from damage in the middle, and by repair."""
    size = len(data)
    offset = after + 1
    crc32 = zlib.crc32
    while offset + FRAME_HEAD.size < size:
        # Every payload starts with a msgpack array of 2-16 items (fixarray or array16):
        # a cheap filter before the checksum.
        nxt = offset + FRAME_HEAD.size
        if 0x92 <= data[nxt] <= 0x9F or data[nxt] == 0xDC:
            length, crc = FRAME_HEAD.unpack_from(data, offset)
            if 0 < length <= size - nxt and crc32(
                    data[nxt: nxt + length], crc32(data[offset: offset + 4])) == crc:
                return offset
        offset += 1
    return None
