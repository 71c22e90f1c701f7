"""Start-up's per-record and per-job loops, pure, so that mypyc compiles them with the core.

`apply` folds one frame's records into the jobs read so far, building each job as its whole
record comes (no record tuple outlives its frame); `place` puts the jobs read into a fresh
engine. recovery.py does the reading, the damage rules and the files; these loops run a
million times on a large log, which is why they live apart.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from .engine import Engine
from .job import Job, JobState
from .restore import restore_job, restore_record
from .tube import Tube
from .walrecords import (
    BURIED,
    DELAYED,
    DELETE,
    JOB,
    KEPT,
    META,
    NOTE,
    PARENTS,
    PAUSE,
    REASON,
    UPDATE,
    WAITING,
    PauseRec,
)

_READY: Final = JobState.READY
_DELAYED: Final = JobState.DELAYED
_BURIED: Final = JobState.BURIED
_FINISHED: Final = JobState.FINISHED
_WAITING: Final = JobState.WAITING


def state_of(code: int) -> JobState:
    """A logged state: buried and delayed as such; anything else was last ready."""
    if code == BURIED:
        return _BURIED
    if code == DELAYED:
        return _DELAYED
    if code == WAITING:
        return _WAITING
    return _READY


def weight(job: Job) -> int:
    """What a job's whole record costs on disk, near enough for compaction's accounting.
    It must not change while the job is lodged in a segment: notes (reasons, checkpoints)
    are not counted, and a kept record's body is its result."""
    return 64 + len(job.tube.name) + len(job.body)


def kept_weight(job: Job, result: bytes) -> int:
    """weight() of `job` once it is the record of a finished job with `result`."""
    return 64 + len(job.tube.name) + len(result)


class Folded:
    """What the records read so far say: live jobs (wall-clock times, stand-in tubes from
    `tubes`; `job.file` is the segment of its whole record), pauses, the highest id and seq."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.kept: dict[int, Job] = {}  # records of finished jobs (job tracking)
        self.tubes: dict[str, Tube] = {}
        self.pauses: dict[str, tuple[PauseRec, int]] = {}  # tube -> (record, segment)
        # Flow control's (kind, name) -> (latest value, segment); removed ones are dropped.
        self.metas: dict[tuple[int, str], tuple[Any, int]] = {}
        self.max_id = 0
        self.max_seq = 0
        self.records = 0

    def apply(self, index: int, records: list[tuple[Any, ...]]) -> bool:
        """Fold one frame of segment `index`. False when a record cannot be in a segment's
        body (a segment header), which the caller reports as damage."""
        jobs, tubes = self.jobs, self.tubes
        for rec in records:
            tag: int = rec[0]
            if tag == JOB:
                job_id: int = rec[1]
                seq: int = rec[2]
                name: str = rec[3]
                tube = tubes.get(name)
                if tube is None:
                    tube = Tube(name)
                    tubes[name] = tube
                jobs[job_id] = Job(job_id, tube, rec[5], rec[6], rec[7], rec[15], rec[9],
                                   state_of(rec[4]), rec[8], -1, None, rec[10], rec[11],
                                   rec[12], rec[13], rec[14], index, seq)
                if job_id > self.max_id:
                    self.max_id = job_id
                if seq > self.max_seq:
                    self.max_seq = seq
            elif tag == DELETE:
                if jobs.pop(rec[1], None) is None:
                    self.kept.pop(rec[1], None)
            elif tag == UPDATE:
                seq = rec[2]
                job = jobs.get(rec[1])
                if job is not None:
                    job.seq = seq
                    job.state = state_of(rec[3])
                    if job.extra is not None and job.state is not _WAITING:
                        job.extra.parents = None  # kicked, reserved by id, or released
                    job.pri = rec[4]
                    job.delay = rec[5]
                    job.deadline = rec[6]
                    job.reserves = rec[7]
                    job.timeouts = rec[8]
                    job.releases = rec[9]
                    job.buries = rec[10]
                    job.kicks = rec[11]
                if seq > self.max_seq:
                    self.max_seq = seq
            elif tag == PAUSE:
                self.pauses[rec[1]] = (PauseRec._make(rec[1:]), index)
            elif tag == NOTE:
                job = jobs.get(rec[1])
                if job is not None:
                    if rec[2] == REASON:
                        job.more().reason = rec[3]
                    elif rec[2] == PARENTS:
                        job.more().parents = array("Q", rec[3]).tolist()
                    else:
                        job.more().checkpoint = rec[3]
            elif tag == KEPT:
                self._kept(index, rec)
            elif tag == META:
                if rec[3] is None:
                    self.metas.pop((rec[1], rec[2]), None)
                else:
                    self.metas[(rec[1], rec[2])] = (rec[3], index)
            else:
                return False
        self.records += len(records)
        return True

    def _kept(self, index: int, rec: tuple[Any, ...]) -> None:
        job_id: int = rec[1]
        seq: int = rec[2]
        name: str = rec[3]
        tube = self.tubes.get(name)
        if tube is None:
            tube = Tube(name)
            self.tubes[name] = tube
        # The fields of KeptRec, in order: id seq tube pri delay ttr created reserved
        # finished reserves timeouts releases buries kicks reason result.
        job = Job(job_id, tube, rec[4], rec[5], rec[6], rec[16], rec[7], _FINISHED, rec[9],
                  -1, None, rec[10], rec[11], rec[12], rec[13], rec[14], index, seq)
        job.reserved_at = rec[8]
        if rec[15] is not None:
            job.more().reason = rec[15]
        self.jobs.pop(job_id, None)
        self.kept.pop(job_id, None)  # re-inserted: the dict stays in finish order
        self.kept[job_id] = job
        if job_id > self.max_id:
            self.max_id = job_id
        if seq > self.max_seq:
            self.max_seq = seq

    def place(self, engine: Engine, shift: float, now: float
              ) -> dict[int, tuple[array[int], int]]:
        """Move the jobs into `engine` (times shifted from the wall clock by `shift`; the
        engine's clock reads `now`), buried ones last in the order of their burial, then the
        kept records of finished jobs that have not expired. Returns, per segment, the ids of
        the jobs whose whole record it holds (an array: 8 bytes an id, where a list of ints
        costs 40) and their weight."""
        tubes = {name: engine.tube(name) for name in self.tubes}
        # The engine takes over this dict (restore_job's own insert then finds each job
        # there): a second dict of a million jobs would cost 40 MB, and its freed first
        # copy would stay in the process.
        assert not engine.jobs, "place() needs a fresh engine"
        engine.jobs = self.jobs
        buried: list[Job] = []
        ids: dict[int, array[int]] = {}
        live: dict[int, int] = {}
        for job in self.jobs.values():
            job.tube = tubes[job.tube.name]
            job.created += shift
            if job.state is _DELAYED:
                job.deadline += shift
            else:
                job.deadline = 0.0
            _lodge(ids, live, job)
            if job.state is _BURIED:
                buried.append(job)
            else:
                restore_job(engine, job)
        # Buried jobs in log order of their burial: their FIFO order.
        buried.sort(key=_seq)
        for job in buried:
            restore_job(engine, job)
        self.jobs = {}
        # Kept records in finish order (the tracker's), unless expired meanwhile.
        records = engine.tracker.records
        for job in sorted(self.kept.values(), key=_finished):
            job.tube = tubes[job.tube.name]
            job.created += shift
            job.deadline += shift
            if job.reserved_at >= 0:
                job.reserved_at += shift
            restore_record(engine, job, now)
            if records.get(job.id) is job:
                _lodge(ids, live, job)
        self.kept = {}
        return {index: (held, live[index]) for index, held in ids.items()}


def _lodge(ids: dict[int, array[int]], live: dict[int, int], job: Job) -> None:
    """Count `job`'s whole record in its segment: its id, and its weight."""
    held = ids.get(job.file)
    if held is None:
        ids[job.file] = array("Q", [job.id])
        live[job.file] = weight(job)
    else:
        held.append(job.id)
        live[job.file] += weight(job)


def _seq(job: Job) -> int:
    return job.seq


def _finished(job: Job) -> tuple[float, int]:
    """Finish order: by time, then by log order (carrying forward keeps a record's seq)."""
    return job.deadline, job.seq
