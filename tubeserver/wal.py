"""The write-ahead log directory: lock, segments, appending, syncing and compaction.

The engine asks before each logged change (`admit_*`, which may refuse with OUT_OF_MEMORY or
INTERNAL_ERROR) and reports it after (`put`, `update`, `delete`, `pause`); records pile up in
memory and `write()` puts them in one frame, in one write, before the connection sends the
replies. Durability beyond the page cache is the syncer's: `sync_plan` / `run_sync` (in a
thread: only fsync calls) / `sync_done`, so many connections share one fsync (group commit).

Space: segments are preallocated, and the current one always keeps room for a delete record
of every live job, so a delete can be logged on a full disk. A change that needs a new segment
which cannot be made is refused before it happens. A failed write or fsync stops all logged
changes for the life of the process (they are answered INTERNAL_ERROR): after such a failure
nothing on disk can be trusted to match what clients were told.

Compaction: each job's whole record lives in one segment (`job.file`); segments are deleted
oldest first, after the live jobs in them were carried forward into the current segment, so a
long-lived job never pins the log, and no delete record is dropped while an older record of
its job survives.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from array import array
from pathlib import Path
from typing import Any

import attrs

from .engine import Engine
from .errors import InternalError, OutOfMemory
from .job import Job, JobExtra, JobState
from .replay import kept_weight, weight
from .stats import LogStats
from .tube import Tube
from .walrecords import (
    CHECKPOINT,
    DELETE_MAX,
    FIELDS_MAX,
    FRAME_HEAD,
    KEPT_MAX,
    LOGGED_STATE,
    META_MAX,
    NOTE_MAX,
    PARENTS,
    PAUSE_MAX,
    PREFIX,
    REASON,
    UPDATE_MAX,
    WAIT_RESERVE,
    DeleteRec,
    Header,
    KeptRec,
    MetaRec,
    NoteRec,
    PauseRec,
    UpdateRec,
    encode,
    encode_job,
    frame,
)

log = logging.getLogger("tubeserver.wal")

DEFAULT_SEGMENT_SIZE = 10 * 1024 * 1024
MIN_SEGMENT_SIZE = 4096
DEFAULT_FSYNC_MS = 50
# Kept free beyond the delete reserve, for the unpause records of tubes that go away.
SLACK = 1024
# Compaction deletes at most this many old segments per new one, to bound each pause.
COMPACT_PER_ROLL = 2
LOCK_NAME = "lock"


class WalError(Exception):
    """The log directory cannot be used (locked, unreadable, damaged); the message says why."""


def segment_name(index: int) -> str:
    return f"wal-{index:08d}.log"


@attrs.define(slots=True, eq=False)
class Segment:
    index: int
    path: Path
    fd: int  # -1 once closed
    used: int  # bytes written, plus records waiting to be written
    allocated: int  # preallocated size while it is the current segment
    live: int = 0  # weight of the whole records in it that are still their job's latest
    # ids with a whole record here (some stale); an array, 8 bytes an id (a list of ints: 40)
    jobs: array[int] = attrs.Factory(lambda: array("Q"))


@attrs.frozen
class SyncPlan:
    """One fsync round: what it covers and what it may close afterwards."""

    target: int  # every record up to this sequence number is durable when the round ends
    fds: tuple[int, ...]
    retired: tuple[Segment, ...]
    directory: bool


class DirLock:
    """An exclusive lock on `DIR/lock` for the life of the process."""

    def __init__(self, directory: Path) -> None:
        path = directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise WalError(f"log directory {directory} is in use by another tubeserver "
                               f"(pid {holder}); each server needs its own -b directory"
                               ) from None
            raise WalError(f"cannot lock {path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Wal:
    """The writer. Implements the engine's Journal protocol."""

    def __init__(self, directory: Path, engine: Engine, *, segment_size: int,
                 fsync_ms: int | None, offset: float, segments: list[Segment],
                 next_seq: int, pauses: dict[str, int],
                 metas: dict[tuple[int, str], int] | None = None) -> None:
        self.directory = directory
        self.engine = engine
        self.segment_size = segment_size
        self.fsync_ms = fsync_ms  # None: never fsync
        self.offset = offset  # wall clock minus the engine's clock
        self.segments = segments  # oldest first; the last one is written to
        self.seq = next_seq - 1  # sequence number of the last record appended
        self.written = self.seq  # ... of the last record written
        self.synced = self.seq  # ... of the last record known to be on disk
        self.failed: str | None = None
        self.records_written = 0
        self.records_migrated = 0
        self.live_bytes = sum(s.live for s in segments)
        self._pending: list[bytes] = []
        self._pause_file = pauses  # tube -> segment of its latest pause record
        # (kind, name) -> segment of its latest meta record (flow control's state)
        self._meta_file: dict[tuple[int, str], int] = {} if metas is None else metas
        self._retired: list[Segment] = []  # closed once a sync has covered them
        self._doomed: list[tuple[int, Segment]] = []  # deleted once `seq` is durable
        self._dir_dirty = False
        self._compacting = False
        self._compact_due = False
        self._create_error: str | None = None
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        first = (segments[-1].index + 1) if segments else 1
        problem = self._start_segment(first, 0)
        if problem is not None:  # fatal at start-up: said by WalError, not logged
            os.close(self._dir_fd)
            raise WalError(problem)
        # Every start begins a segment: check the ratio after the first write, or a server
        # that keeps crashing would gather small segments.
        self._compact_due = True

    # --- the Journal protocol ------------------------------------------------------------

    def admit_put(self, tube: str, size: int, parents: int = 0) -> None:
        """A job, with the note of its `parents` when it waits on some: then the room kept
        for the job grows by its release too."""
        if not parents:
            self._admit(FIELDS_MAX + len(tube) + size, DELETE_MAX)
        else:
            self._admit(FIELDS_MAX + len(tube) + size + NOTE_MAX + 8 * parents,
                        DELETE_MAX + WAIT_RESERVE)

    def admit_updates(self, count: int) -> None:
        if count:
            self._admit(UPDATE_MAX * count)

    def admit_delete(self) -> None:
        # Its room was reserved when the job was put.
        if self.failed is not None:
            raise InternalError()

    def admit_pause(self, tube: str) -> None:
        self._admit(PAUSE_MAX + len(tube))

    def admit_finish(self, job: Job, result: int, keep: bool) -> bool:
        if not keep:
            self.admit_delete()
            return False
        extra = job.extra
        reason = 0 if extra is None or extra.reason is None else len(extra.reason)
        try:
            self._admit(KEPT_MAX + len(job.tube.name) + reason + result)
        except OutOfMemory:
            if result:
                raise  # a result that cannot be made durable is refused
            return False  # a plain delete never is: it is logged, not kept
        return True

    def admit_note(self, size: int) -> None:
        self._admit(NOTE_MAX + size)

    def admit_meta(self, size: int) -> None:
        self._admit(META_MAX + size)

    def meta(self, kind: int, name: str, value: object) -> None:
        self.seq += 1
        self._append(encode(MetaRec(kind, name, value)))
        if value is None:
            self._meta_file.pop((kind, name), None)
        else:
            self._meta_file[(kind, name)] = self.segments[-1].index

    def put(self, job: Job) -> None:
        self.seq += 1
        job.seq = self.seq
        self._append(encode_job(job, self.offset))
        self._lodge(job)

    def finish(self, job: Job, result: bytes, finished: float, keep: bool) -> None:
        """`job` is deleted; with `keep` it becomes the record of a finished job, written
        whole (a KeptRec) so that its segment alone restores it. Told before the job
        becomes its record: its weight is still the live job's."""
        self.seq += 1
        self._unlodge(job)
        if not keep:
            self._append(encode(DeleteRec(job.id)))
            return
        job.seq = self.seq
        extra = job.extra
        off = self.offset
        self._append(encode(KeptRec(
            job.id, job.seq, job.tube.name, job.pri, job.delay, job.ttr, job.created + off,
            job.reserved_at + off if job.reserved_at >= 0 else -1.0, finished + off,
            job.reserves, job.timeouts, job.releases, job.buries, job.kicks,
            None if extra is None else extra.reason, result)))
        self._lodge(job, kept_weight(job, result))

    def note(self, job: Job, kind: int) -> None:
        extra = job.extra
        assert extra is not None
        self.seq += 1
        self._append(encode(NoteRec(job.id, kind, _note_data(extra, kind))))

    def forget(self, job: Job) -> None:
        """A kept record expired or was evicted: a delete record ends it, when there is room
        (without one a restart may bring it back until it expires again, which is harmless)."""
        self._unlodge(job)
        try:
            self._admit(DELETE_MAX)
        except (OutOfMemory, InternalError):
            return
        self.seq += 1
        self._append(encode(DeleteRec(job.id)))

    def update(self, job: Job) -> None:
        self.seq += 1
        job.seq = self.seq
        deadline = job.deadline + self.offset if job.state is JobState.DELAYED else 0.0
        self._append(encode(UpdateRec(
            job.id, job.seq, LOGGED_STATE[job.state], job.pri, job.delay, deadline,
            job.reserves, job.timeouts, job.releases, job.buries, job.kicks)))

    def pause(self, tube: Tube) -> None:
        self.seq += 1
        until = tube.paused_until + self.offset if tube.paused else 0.0
        self._append(encode(PauseRec(tube.name, tube.pause, until)))
        if tube.paused:
            self._pause_file[tube.name] = self.segments[-1].index
        else:
            self._pause_file.pop(tube.name, None)

    def stats(self) -> LogStats:
        return LogStats(self.segments[0].index, self.segments[-1].index, self.records_migrated,
                        self.records_written, self.segment_size)

    # --- writing ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Records were appended that are not written yet."""
        return bool(self._pending)

    @property
    def durable(self) -> int:
        """The last record that has reached what the fsync policy promises."""
        return self.written if self.fsync_ms is None else self.synced

    def write(self) -> bool:
        """Write the pending records as one frame. False if they cannot be (the log failed);
        the replies for those changes must then be errors."""
        if not self._pending:
            return self.failed is None
        if self.failed is not None:
            self._pending.clear()
            return False
        payload = b"".join(self._pending)
        count = len(self._pending)
        self._pending.clear()
        segment = self.segments[-1]
        try:
            self._write_all(segment.fd, frame(payload))
        except OSError as e:
            self._fail(f"writing {segment.path} failed: {e.strerror or e}")
            return False
        self.written = self.seq
        self.records_written += count
        if self.fsync_ms is None:
            self._release_doomed()
        if self._compact_due and not self._compacting:
            self._compact_due = False
            self._compact()
        return self.failed is None

    def acknowledged(self, seq: int) -> bool:
        """May the replies for changes up to `seq` be sent, under the fsync policy?"""
        return (self.synced if self.fsync_ms == 0 else self.written) >= seq

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    # --- syncing (fsync policy) ------------------------------------------------------------

    def sync_plan(self) -> SyncPlan | None:
        """What the next fsync round must do, or None when nothing needs syncing."""
        if self.fsync_ms is None or self.failed is not None:
            return None
        if self.synced >= self.written and not self._retired and not self._dir_dirty:
            return None
        retired = tuple(self._retired)
        self._retired.clear()
        fds = (*(s.fd for s in retired), self.segments[-1].fd)
        plan = SyncPlan(self.written, fds, retired, self._dir_dirty)
        self._dir_dirty = False
        return plan

    def run_sync(self, plan: SyncPlan) -> None:
        """The blocking part of a round, safe to run in a thread: fsync calls only."""
        for fd in plan.fds:
            os.fdatasync(fd)
        if plan.directory:
            os.fsync(self._dir_fd)

    def sync_done(self, plan: SyncPlan, error: OSError | None) -> None:
        for segment in plan.retired:
            _close(segment)
        if error is not None:
            self._fail(f"fsync failed: {error.strerror or error}")
            return
        self.synced = max(self.synced, plan.target)
        self._release_doomed()

    def sync_now(self) -> None:
        """Write and fsync everything, blocking (start-up and clean shutdown)."""
        self.write()
        plan = self.sync_plan()
        if plan is not None:
            try:
                self.run_sync(plan)
            except OSError as e:
                self.sync_done(plan, e)
            else:
                self.sync_done(plan, None)

    def close(self) -> None:
        """Clean shutdown: everything written and synced, the current segment trimmed."""
        if self.failed is None:
            self.write()
            if self.fsync_ms is not None:
                self.sync_now()
        for segment in self._retired:
            _close(segment)
        self._retired.clear()
        current = self.segments[-1]
        if current.fd >= 0 and self.failed is None:
            try:
                os.ftruncate(current.fd, current.used)
            except OSError:
                pass
        _close(current)
        os.close(self._dir_fd)

    # --- space ---------------------------------------------------------------------------

    def _reserve(self) -> int:
        """Room always kept free in the current segment: a delete record per live job (and
        per kept record)."""
        engine = self.engine
        return ((len(engine.jobs) + len(engine.tracker.records)) * DELETE_MAX
                + engine.flow.deps.waiting * WAIT_RESERVE + SLACK)

    def _admit(self, need: int, extra_reserve: int = 0) -> None:
        if self.failed is not None:
            raise InternalError()
        current = self.segments[-1]
        need += FRAME_HEAD.size
        if current.used + need + self._reserve() + extra_reserve > current.allocated:
            self._roll(need + extra_reserve)

    def _roll(self, need: int) -> None:
        """Move on to a new segment with room for `need` bytes, or refuse the change."""
        if self._pending and not self.write():
            raise InternalError()
        old = self.segments[-1]
        problem = self._start_segment(old.index + 1, need)
        if problem is not None:
            if problem != self._create_error:
                # Said once per distinct cause, not once per refused command.
                log.error("%s; changes that need log space are refused (OUT_OF_MEMORY) "
                          "until there is room", problem)
                self._create_error = problem
            raise OutOfMemory()
        if self._create_error is not None:
            log.warning("log segments can be made again (%s)", self.segments[-1].path.name)
            self._create_error = None
        self._retire(old)
        # Not now: this change was promised the new segment's room. After the next write.
        self._compact_due = True

    def _start_segment(self, index: int, need: int) -> str | None:
        """Make segment `index` the current one: a segment's worth of records (at least
        `need` bytes) plus the delete reserve, which moves here from the old one. Returns
        why it could not be made, or None."""
        path = self.directory / segment_name(index)
        header = encode(Header(index, self.engine.next_id, self.seq + 1, time.time()))
        head = PREFIX + frame(header)
        size = max(self.segment_size, len(head) + need) + self._reserve()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            return _cannot_make(path, e)
        try:
            _preallocate(fd, size)
            self._write_all(fd, head)
        except OSError as e:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            return _cannot_make(path, e)
        self.segments.append(Segment(index, path, fd, len(head), size))
        self._dir_dirty = True
        return None

    def _retire(self, segment: Segment) -> None:
        """`segment` is no longer written to: trim its preallocated tail, close it."""
        try:
            os.ftruncate(segment.fd, segment.used)
        except OSError as e:
            log.warning("cannot trim %s: %s", segment.path, e.strerror)
        segment.allocated = segment.used
        if self.fsync_ms is None:
            _close(segment)
        else:
            self._retired.append(segment)

    # --- compaction ----------------------------------------------------------------------

    def total_bytes(self) -> int:
        return sum(s.used for s in self.segments)

    def _compact(self) -> None:
        """Drop old segments while the log is more than twice its live data plus a segment,
        carrying their live jobs and pauses into the current segment first."""
        self._compacting = True
        try:
            for _ in range(COMPACT_PER_ROLL):
                if len(self.segments) < 2:
                    return
                if self.total_bytes() <= 2 * self.live_bytes + self.segment_size:
                    return
                if not self._carry_forward(self.segments[0]):
                    return
                head = self.segments.pop(0)
                self._doomed.append((self.seq, head))
                if self.fsync_ms is None:
                    self._release_doomed()
        finally:
            self._compacting = False

    def rebase(self) -> None:
        """Carry every live job and pause into new segments and delete all the older ones:
        after a repair, so that the skipped damage is gone for good and a later start needs
        no repair flag."""
        newest = self.segments[-1].index
        self._compacting = True
        try:
            while self.segments[0].index < newest:
                if not self._carry_forward(self.segments[0]):
                    raise WalError(f"cannot rewrite the repaired log: "
                                   f"{self.failed or self._create_error or 'no room'}")
                self._doomed.append((self.seq, self.segments.pop(0)))
        finally:
            self._compacting = False
        self.sync_now()
        if self.fsync_ms is None:
            self._release_doomed()
        if self._doomed or self.failed is not None:
            raise WalError(f"cannot rewrite the repaired log: {self.failed or 'sync failed'}")

    def _carry_forward(self, head: Segment) -> bool:
        jobs = self.engine.jobs
        records = self.engine.tracker.records
        try:
            for job_id in head.jobs:
                job = jobs.get(job_id)
                kept = job is None
                if kept:
                    job = records.get(job_id)
                if job is None or job.file != head.index:
                    continue
                extra = job.extra
                notes = 0 if extra is None else (
                    len(extra.reason or b"") + len(extra.checkpoint or b"") + 3 * NOTE_MAX
                    + 8 * len(extra.parents or ()))
                self._admit(FIELDS_MAX + KEPT_MAX + len(job.tube.name) + len(job.body) + notes)
                self._unlodge(job)
                self.seq += 1  # the record keeps the job's own seq: its place in the FIFO
                if kept:
                    self._append(encode(self._kept(job)))
                    self._lodge(job)
                else:
                    self._append(encode_job(job, self.offset))
                    self._lodge(job)
                    if extra is not None:
                        # A job's notes go with its whole record: its segment restores it.
                        if extra.reason is not None:
                            self._append(encode(NoteRec(job.id, REASON, extra.reason)))
                        if extra.checkpoint is not None:
                            self._append(encode(NoteRec(job.id, CHECKPOINT, extra.checkpoint)))
                        if extra.parents is not None:
                            self._append(encode(NoteRec(job.id, PARENTS,
                                                        _note_data(extra, PARENTS))))
                self.records_migrated += 1
            for name, index in list(self._pause_file.items()):
                tube = self.engine.tubes.get(name)
                if index == head.index and tube is not None and tube.paused:
                    self._admit(PAUSE_MAX + len(name))
                    self.pause(tube)
            flow = self.engine.flow
            for (kind, name), index in list(self._meta_file.items()):
                if index != head.index:
                    continue
                value = flow.meta_value(kind, name)
                if value is None:
                    del self._meta_file[(kind, name)]
                    continue
                self._admit(META_MAX + len(name) + _meta_size(value))
                self.meta(kind, name, value)
        except (OutOfMemory, InternalError):
            return False
        return self.write()

    def _release_doomed(self) -> None:
        durable = self.durable
        while self._doomed and self._doomed[0][0] <= durable:
            _, segment = self._doomed.pop(0)
            _close(segment)
            try:
                os.unlink(segment.path)
            except OSError as e:
                log.warning("cannot delete compacted segment %s: %s", segment.path, e.strerror)
            self._dir_dirty = True

    # --- internals -----------------------------------------------------------------------

    def _kept(self, job: Job) -> KeptRec:
        """The whole record of a kept (finished) job: `body` its result, `deadline` when it
        finished."""
        extra = job.extra
        off = self.offset
        return KeptRec(job.id, job.seq, job.tube.name, job.pri, job.delay, job.ttr,
                       job.created + off,
                       job.reserved_at + off if job.reserved_at >= 0 else -1.0,
                       job.deadline + off, job.reserves, job.timeouts, job.releases,
                       job.buries, job.kicks, None if extra is None else extra.reason,
                       job.body)

    def _append(self, record: bytes) -> None:
        segment = self.segments[-1]
        if not self._pending:
            segment.used += FRAME_HEAD.size
        self._pending.append(record)
        segment.used += len(record)

    def _lodge(self, job: Job, w: int = -1) -> None:
        segment = self.segments[-1]
        job.file = segment.index
        segment.jobs.append(job.id)
        if w < 0:
            w = weight(job)
        segment.live += w
        self.live_bytes += w

    def _unlodge(self, job: Job) -> None:
        for segment in self.segments:
            if segment.index == job.file:
                w = weight(job)
                segment.live -= w
                self.live_bytes -= w
                return

    def _fail(self, why: str) -> None:
        if self.failed is None:
            log.critical("WRITE-AHEAD LOG FAILED: %s. Changes are refused from now on "
                         "(answered INTERNAL_ERROR); jobs already acknowledged are safe on "
                         "disk. Fix the disk and restart the server.", why)
        self.failed = why
        self._pending.clear()


def _note_data(extra: JobExtra, kind: int) -> bytes:
    if kind == PARENTS:
        assert extra.parents is not None
        return array("Q", extra.parents).tobytes()
    data = extra.reason if kind == REASON else extra.checkpoint
    assert data is not None
    return data


def _meta_size(value: list[Any]) -> int:
    """Bytes and strings in a meta value (its numbers are within META_MAX)."""
    return sum(len(v) for v in value if isinstance(v, bytes | str))


def _preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate: no space promise


def _cannot_make(path: Path, error: OSError) -> str:
    return f"cannot make log segment {path}: {error.strerror or error}"


def _close(segment: Segment) -> None:
    if segment.fd >= 0:
        os.close(segment.fd)
        segment.fd = -1
