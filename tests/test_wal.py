"""The write-ahead log against the engine: an engine rebuilt from the log equals the live one.

The state machine drives a live engine with a log in a temporary directory (tiny segments, so
segments roll and compaction runs all the time) and, whenever hypothesis likes, rebuilds a
second engine from the files and compares every job's state, priority, tube, body, delay
deadline and counters, the buried FIFO order, tube pauses and the next id. It also restarts
(cleanly or as a crash) and carries on from the rebuilt engine, so chains of restarts are
covered. The other tests damage files on purpose, fill the disk, break writes and fsyncs.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from test_server import Client

from tubeserver import recovery
from tubeserver.engine import Engine
from tubeserver.errors import InternalError, OutOfMemory, ProtocolError
from tubeserver.invariants import check_invariants
from tubeserver.job import JobState
from tubeserver.replay import weight
from tubeserver.schedules import parse_spec
from tubeserver.server import Config, Server
from tubeserver.session import Session
from tubeserver.tracking import DEFAULT_TTL, Tracker
from tubeserver.wal import SLACK, DirLock, Wal, WalError
from tubeserver.walrecords import DELETE_MAX, WAIT_RESERVE

OFFSET = 1_000_000.0  # wall clock minus engine clock, in every test
TUBES = ("default", "a", "b")


def open_log(directory: Path, now: float, *, segment_size: int = 4096,
             fsync_ms: int | None = None, repair: bool = False,
             result_ttl: float = DEFAULT_TTL) -> tuple[Engine, Wal]:
    """What the server does at start-up: read, rebuild, start a new segment. With
    `result_ttl` 0 finished jobs leave nothing behind, as in beanstalkd."""
    engine = Engine(Tracker(result_ttl))
    found = recovery.read(directory, repair)
    pauses = recovery.restore(found, engine, now, now + OFFSET)
    wal = Wal(directory, engine, segment_size=segment_size, fsync_ms=fsync_ms, offset=OFFSET,
              segments=found.segments, next_seq=found.next_seq, pauses=pauses,
              metas=found.meta_file)
    engine.journal = wal
    return engine, wal


def disk_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for _, path in recovery.list_segments(directory))


def rebuild(directory: Path, now: float, repair: bool = False) -> Engine:
    engine = Engine()
    recovery.restore(recovery.read(directory, repair), engine, now, now + OFFSET)
    return engine


def crash(wal: Wal) -> None:
    """The process dies: what was written stays (the page cache survives), fds close."""
    for segment in [*wal.segments, *wal._retired]:
        if segment.fd >= 0:
            os.close(segment.fd)
            segment.fd = -1
    os.close(wal._dir_fd)


def picture(engine: Engine, now: float) -> dict[str, Any]:
    """What a restart must keep. Reserved jobs read as ready (reserves are not logged), and
    only tubes with jobs count (a tube without jobs and clients does not outlive a restart).
    Times are compared on the wall clock, as the log keeps them."""
    engine.tick(now)
    jobs = {}
    for job in engine.jobs.values():
        state = JobState.READY if job.state is JobState.RESERVED else job.state
        deadline = job.deadline + OFFSET if state is JobState.DELAYED else None
        extra = job.extra
        notes = (None, None, None, None) if extra is None else (
            extra.reason, extra.checkpoint, extra.key, extra.parents)
        jobs[job.id] = (state, job.pri, job.tube.name, job.body, job.ttr, job.delay, deadline,
                        job.created + OFFSET, job.releases, job.buries, job.kicks, notes)
    # Kept records of finished jobs, in their order (oldest first), times on the wall clock.
    kept = [(job.id, job.tube.name, job.body, job.pri, job.created + OFFSET,
             job.deadline + OFFSET, job.reserved_at + OFFSET, job.reserves, job.buries,
             None if job.extra is None else job.extra.reason)
            for job in engine.tracker.order]
    tubes = {
        t.name: (t.paused_until + OFFSET if t.paused else None,
                 t.pause if t.paused else 0, list(t.buried))
        for t in engine.tube_list if t.job_count
    }
    # Flow control: key holds still in effect, limits, schedules (wall clock throughout).
    flow = engine.flow
    keys = {name: (h.job_id, h.until + OFFSET, h.live) for name, h in flow.keys.holds.items()
            if h.live or h.until > now}
    limits = {name: (x.max_reserved, x.max_jobs, x.rate) for name, x in flow.limits.items()}
    schedules = {name: sched.record() for name, sched in flow.schedules.table.items()}
    return {"jobs": jobs, "tubes": tubes, "next_id": engine.next_id, "kept": kept,
            "keys": keys, "limits": limits, "schedules": schedules}


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tubewal-"))
        self.now = 100.0
        self.engine, self.wal = open_log(self.dir, self.now)
        self.sessions: list[Session] = []
        self.max_id = 0

    def teardown(self) -> None:
        try:
            self.wal.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @initialize()
    def start(self) -> None:
        self.sessions = [self._worker(), self._worker()]

    def _worker(self, watch_all: bool = True) -> Session:
        """A client watching every tube (so that its reserves usually find a job), or only
        the default one (so that unused tubes go away, pauses and all)."""
        s = self.engine.connect()
        if watch_all:
            for tube in TUBES:
                self.engine.watch(s, tube)
        return s

    def _do(self, action: Any) -> Any:
        try:
            return action()
        except ProtocolError:
            return None

    def _session(self, i: int) -> Session:
        return self.sessions[i % len(self.sessions)]

    @rule(i=st.integers(0, 1), tube=st.sampled_from(TUBES))
    def use(self, i: int, tube: str) -> None:
        self.engine.use(self._session(i), tube)

    @rule(i=st.integers(0, 1), tube=st.sampled_from(TUBES), ignore=st.booleans())
    def watch(self, i: int, tube: str, ignore: bool) -> None:
        s = self._session(i)
        self._do(lambda: self.engine.ignore(s, tube) if ignore else self.engine.watch(s, tube))

    @rule(i=st.integers(0, 1), pri=st.integers(0, 3), delay=st.sampled_from([0, 0, 0, 2, 9]),
          ttr=st.integers(1, 5), size=st.sampled_from([0, 3, 40, 900, 2500]),
          byte=st.binary(min_size=1, max_size=1), count=st.integers(1, 3))
    def put(self, i: int, pri: int, delay: int, ttr: int, size: int, byte: bytes,
            count: int) -> None:
        for _ in range(count):
            job = self._do(lambda: self.engine.put(self._session(i), pri, delay, ttr,
                                                   byte * size, self.now))
            if job is not None:  # else TUBE_FULL, with tube limits
                assert job.id > self.max_id, "an id was used twice"
                self.max_id = job.id

    # Flow control: keys, dependencies, limits and schedules must come back as they were.

    @rule(i=st.integers(0, 1), key=st.sampled_from(["k1", "k2", "k3"]),
          window=st.sampled_from([0, 3, 60]), delay=st.sampled_from([0, 0, 2]))
    def put_unique(self, i: int, key: str, window: int, delay: int) -> None:
        self._do(lambda: self.engine.flow.put_unique(self._session(i), key, window, 1, delay, 3,
                                                     b"u", self.now))

    @rule(i=st.integers(0, 1), picks=st.lists(st.integers(0, 50), min_size=1, max_size=3),
          delay=st.sampled_from([0, 0, 2]))
    def put_after(self, i: int, picks: list[int], delay: int) -> None:
        ids = sorted(self.engine.jobs)
        if ids:
            parents = list(dict.fromkeys(ids[p % len(ids)] for p in picks))
            self._do(lambda: self.engine.flow.put_after(self._session(i), parents, 1, delay, 3,
                                                        b"after", self.now))

    @rule(tube=st.sampled_from(TUBES), max_reserved=st.sampled_from([0, 0, 1, 2]),
          max_jobs=st.sampled_from([0, 0, 4, 30]), rate=st.sampled_from([0, 0, 0.5, 5]))
    def tube_limits(self, tube: str, max_reserved: int, max_jobs: int, rate: float) -> None:
        self._do(lambda: self.engine.flow.set_limits(tube, max_reserved, max_jobs, rate,
                                                     self.now))

    @rule(name=st.sampled_from(["s1", "s2"]), tube=st.sampled_from(TUBES),
          spec=st.sampled_from(["every 1", "every 3", "single every 2", "* * * * *"]),
          drop=st.booleans())
    def schedule(self, name: str, tube: str, spec: str, drop: bool) -> None:
        flow = self.engine.flow
        if drop:
            self._do(lambda: flow.unschedule(name))
        else:
            self._do(lambda: flow.schedule(name, tube, 2, 3, b"tick", parse_spec(spec),
                                           self.now))

    @rule(i=st.integers(0, 1), then=st.sampled_from(["keep", "release", "bury", "delete",
                                                     "finish", "fail", "checkpoint"]),
          pri=st.integers(0, 3), delay=st.sampled_from([0, 3]))
    def reserve(self, i: int, then: str, pri: int, delay: int) -> None:
        """Reserve, and (most of the time) do with the job what workers do."""
        s = self._session(i)
        if s.waiter is not None:
            return
        job = self._do(lambda: self.engine.reserve(s, 0, self.now))
        if job is None or then == "keep":
            return
        if then == "release":
            self.engine.release(s, job.id, pri, delay, self.now)
        elif then == "bury":
            self.engine.bury(s, job.id, pri, self.now)
        elif then == "fail":
            self.engine.bury(s, job.id, pri, self.now, b"why %d" % job.id)
        elif then == "checkpoint":
            # Then leave the job held: a restart brings it back ready, checkpoint and all.
            self.engine.results.checkpoint(s, job.id, b"at step %d" % pri, self.now)
        elif then == "finish":
            self.engine.delete(s, job.id, self.now, b"result" * pri)
        else:
            self.engine.delete(s, job.id, self.now)

    def _held(self, i: int, pick: int) -> int | None:
        held = sorted(self._session(i).reserved)
        return held[pick % len(held)] if held else None

    @rule(i=st.integers(0, 1), pick=st.integers(0, 9), pri=st.integers(0, 3),
          delay=st.sampled_from([0, 0, 3]))
    def release(self, i: int, pick: int, pri: int, delay: int) -> None:
        job_id = self._held(i, pick)
        if job_id is not None:
            self.engine.release(self._session(i), job_id, pri, delay, self.now)

    @rule(i=st.integers(0, 1), pick=st.integers(0, 9), pri=st.integers(0, 3))
    def bury(self, i: int, pick: int, pri: int) -> None:
        job_id = self._held(i, pick)
        if job_id is not None:
            self.engine.bury(self._session(i), job_id, pri, self.now)

    @rule(i=st.integers(0, 1), pick=st.integers(0, 9))
    def touch(self, i: int, pick: int) -> None:
        job_id = self._held(i, pick)
        if job_id is not None:
            self.engine.touch(self._session(i), job_id, self.now)

    @rule(i=st.integers(0, 1), pick=st.integers(0, 50))
    def delete(self, i: int, pick: int) -> None:
        ids = sorted(self.engine.jobs)
        if ids:
            job_id = ids[pick % len(ids)]
            self._do(lambda: self.engine.delete(self._session(i), job_id, self.now))

    @rule(i=st.integers(0, 1), bound=st.integers(1, 4))
    def kick(self, i: int, bound: int) -> None:
        self.engine.kick(self._session(i), bound, self.now)

    @rule(pick=st.integers(0, 50))
    def kick_job(self, pick: int) -> None:
        ids = sorted(self.engine.jobs)
        if ids:
            self._do(lambda: self.engine.kick_job(ids[pick % len(ids)], self.now))

    @rule(tube=st.sampled_from(TUBES), delay=st.sampled_from([0, 0, 2, 6, 60]))
    def pause(self, tube: str, delay: int) -> None:
        self._do(lambda: self.engine.pause_tube(tube, delay, self.now))

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5]))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.engine.tick(self.now)

    @rule(i=st.integers(0, 1), watch_all=st.booleans())
    def reconnect(self, i: int, watch_all: bool) -> None:
        """A client goes away (its jobs go back to ready, its tubes may go) and another
        comes."""
        self.engine.disconnect(self.sessions.pop(i % len(self.sessions)), self.now)
        self.sessions.append(self._worker(watch_all))

    @rule()
    def replay_equals_live(self) -> None:
        assert self.wal.write()
        rebuilt = rebuild(self.dir, self.now)
        check_invariants(rebuilt)
        assert picture(rebuilt, self.now) == picture(self.engine, self.now)

    @rule(clean=st.booleans(), later=st.sampled_from([0, 1, 4]))
    def restart(self, clean: bool, later: float) -> None:
        """Stop (cleanly or by crashing) and start again `later` seconds on: jobs held by
        clients come back ready, delays kept running meanwhile."""
        for s in self.sessions:
            self.engine.disconnect(s, self.now)
        self.wal.write()
        expected = picture(self.engine, self.now + later)
        if clean:
            self.wal.close()
        else:
            crash(self.wal)
        self.now += later
        self.engine, self.wal = open_log(self.dir, self.now)
        assert picture(self.engine, self.now) == expected
        self.sessions = [self._worker(), self._worker()]

    @invariant()
    def engine_and_log_agree(self) -> None:
        check_invariants(self.engine)
        wal = self.wal
        lodged = [*self.engine.jobs.values(), *self.engine.tracker.order]
        assert wal.live_bytes == sum(weight(j) for j in lodged)
        files = {s.index for s in wal.segments}
        assert all(j.file in files for j in lodged)
        current = wal.segments[-1]
        # Room for a delete record of every live job and kept record, and for the release of
        # every job waiting on parents, always.
        assert current.allocated - current.used >= (
            len(lodged) * DELETE_MAX + self.engine.flow.deps.waiting * WAIT_RESERVE + SLACK)

    @precondition(lambda self: len(self.wal.segments) > 6)
    @invariant()
    def log_stays_bounded(self) -> None:
        assert self.wal.total_bytes() <= 2 * self.wal.live_bytes + 4 * 4096 + 8192


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(max_examples=200, stateful_step_count=80, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("seed", range(8))
def test_long_random_walks_replay_to_the_live_engine(seed: int) -> None:
    """The machine's rules, weighted towards a busy server, for thousands of steps: long
    histories (many segments, compactions, restarts) that hypothesis rarely builds."""
    rng = random.Random(seed)
    m = LogMachine()
    m.start()

    def i() -> int:
        return rng.randrange(2)

    steps: list[tuple[int, Any]] = [
        (20, lambda: m.put(i(), rng.randrange(4), rng.choice([0, 0, 0, 2, 9]), rng.randint(1, 5),
                           rng.choice([0, 3, 40, 900, 2500]), b"x", rng.randint(1, 3))),
        (40, lambda: m.reserve(i(), rng.choice(["keep", "release", "bury"] + ["delete"] * 5),
                               rng.randrange(4), rng.choice([0, 3]))),
        (5, lambda: m.release(i(), rng.randrange(9), rng.randrange(4), rng.choice([0, 3]))),
        (5, lambda: m.bury(i(), rng.randrange(9), rng.randrange(4))),
        (10, lambda: m.delete(i(), rng.randrange(50))),
        (5, lambda: m.kick(i(), rng.randint(1, 4))),
        (3, lambda: m.kick_job(rng.randrange(50))),
        (3, lambda: m.pause(rng.choice(TUBES), rng.choice([0, 2, 6, 60]))),
        (5, lambda: m.use(i(), rng.choice(TUBES))),
        (5, lambda: m.watch(i(), rng.choice(TUBES), rng.random() < 0.6)),
        (10, lambda: m.wait(rng.choice([0.5, 1, 2, 5]))),
        (2, lambda: m.touch(i(), rng.randrange(9))),
        (2, lambda: m.reconnect(i(), rng.random() < 0.7)),
        (1, lambda: m.restart(rng.random() < 0.5, rng.choice([0, 1, 4]))),
        (1, lambda: [m.delete(i(), rng.randrange(50)) for _ in range(40)]),  # a clear-out
        (3, lambda: m.put_unique(i(), rng.choice(["k1", "k2", "k3"]), rng.choice([0, 3, 60]),
                                 rng.choice([0, 0, 2]))),
        (3, lambda: m.put_after(i(), [rng.randrange(50) for _ in range(rng.randint(1, 3))],
                                rng.choice([0, 0, 2]))),
        (1, lambda: m.tube_limits(rng.choice(TUBES), rng.choice([0, 0, 1, 2]),
                                  rng.choice([0, 0, 4, 30]), rng.choice([0, 0, 0.5, 5]))),
        (1, lambda: m.schedule(rng.choice(["s1", "s2"]), rng.choice(TUBES),
                               rng.choice(["every 1", "every 3", "single every 2"]),
                               rng.random() < 0.3)),
    ]
    weights = [w for w, _ in steps]
    try:
        for n in range(2000):
            rng.choices(steps, weights)[0][1]()
            m.engine_and_log_agree()
            if n % 200 == 199:
                m.replay_equals_live()
        m.replay_equals_live()
        assert m.max_id > 500
    finally:
        m.teardown()


# --------------------------------------------------------------------------- files


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "log"


def fill(directory: Path, count: int = 30, size: int = 50) -> list[int]:
    """A log of `count` jobs over several small segments, closed cleanly; their ids."""
    directory.mkdir(exist_ok=True)
    engine, wal = open_log(directory, 0.0)
    s = engine.connect()
    ids = []
    for i in range(count):
        ids.append(engine.put(s, 5, 0, 60, bytes([65 + i % 26]) * size, 0.0).id)
        wal.write()  # a frame each
    wal.close()
    return ids


def frames_of(path: Path) -> list[tuple[int, int]]:
    from tubeserver.walrecords import scan

    data = path.read_bytes()
    return [(offset, offset + 8 + len(payload)) for offset, payload in scan(data).frames]


def test_torn_tail_cut_at_every_byte_loses_only_the_torn_write(logdir: Path) -> None:
    ids = fill(logdir, count=3)
    segments = recovery.list_segments(logdir)
    _, last = segments[-1]
    original = last.read_bytes()
    start, end = frames_of(last)[-1]
    for cut in range(start + 1, end):
        for tail in (b"", b"\0" * 300):
            last.write_bytes(original[:cut] + tail)
            engine = rebuild(logdir, 0.0)
            assert sorted(engine.jobs) == ids[:-1], (cut, len(tail))
            assert len(last.read_bytes()) == start  # cut off, for good
    last.write_bytes(original)
    assert sorted(rebuild(logdir, 0.0).jobs) == ids


def test_a_torn_tail_is_logged(logdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(logdir, count=3)
    _, last = recovery.list_segments(logdir)[-1]
    last.write_bytes(last.read_bytes()[:-5])
    rebuild(logdir, 0.0)
    assert "cutting a torn write at the end of " + last.name in caplog.text


def test_corruption_in_the_middle_stops_start_up_unless_repaired(logdir: Path) -> None:
    ids = fill(logdir, count=80, size=100)
    segments = recovery.list_segments(logdir)
    assert len(segments) > 1
    _, first = segments[0]
    start, end = frames_of(first)[2]
    data = bytearray(first.read_bytes())
    data[(start + end) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for _, p in recovery.list_segments(logdir)}
    with pytest.raises(WalError) as e:
        rebuild(logdir, 0.0)
    assert f"{first} at offset {start}" in str(e.value)
    assert "--wal-repair" in str(e.value)
    assert {p.name: p.read_bytes() for _, p in recovery.list_segments(logdir)} == before
    repaired = rebuild(logdir, 0.0, repair=True)
    lost = set(ids) - set(repaired.jobs)
    assert len(lost) == 1  # the one job in the damaged frame
    assert repaired.next_id == ids[-1] + 1
    # What the server does after a repair: the log is rewritten, the damage gone for good.
    found = recovery.read(logdir, repair=True)
    assert found.repaired
    _, wal = open_log(logdir, 0.0, repair=True)
    wal.rebase()
    wal.close()
    assert min(index for index, _ in recovery.list_segments(logdir)) == len(segments) + 1
    assert sorted(rebuild(logdir, 0.0).jobs) == sorted(set(ids) - lost)


def test_damage_in_the_newest_segment_with_data_after_it_is_not_a_torn_tail(
        logdir: Path) -> None:
    fill(logdir, count=5)
    _, last = recovery.list_segments(logdir)[-1]
    start, _ = frames_of(last)[1]
    data = bytearray(last.read_bytes())
    data[start + 9] ^= 0xFF
    last.write_bytes(bytes(data))
    with pytest.raises(WalError, match="checksum mismatch"):
        rebuild(logdir, 0.0)


def test_a_missing_segment_stops_start_up_unless_repaired(logdir: Path) -> None:
    fill(logdir, count=80, size=100)
    segments = recovery.list_segments(logdir)
    assert len(segments) >= 3
    index, middle = segments[1]
    middle.unlink()
    with pytest.raises(WalError, match=f"wal-{index:08d}.log missing"):
        rebuild(logdir, 0.0)
    assert rebuild(logdir, 0.0, repair=True).jobs


def test_a_foreign_file_in_place_of_a_segment_stops_start_up(logdir: Path) -> None:
    fill(logdir, count=3)
    _, first = recovery.list_segments(logdir)[0]
    first.write_bytes(b"not a log at all")
    with pytest.raises(WalError, match="bad magic"):
        rebuild(logdir, 0.0)


def test_ids_are_never_reused_even_when_every_record_is_compacted_away(logdir: Path) -> None:
    logdir.mkdir()
    engine, wal = open_log(logdir, 0.0, result_ttl=0)
    s = engine.connect()
    for _ in range(400):
        engine.delete(s, engine.put(s, 0, 0, 60, b"x" * 200, 0.0).id, 0.0)
    last = engine.next_id - 1
    wal.write()
    assert len(recovery.list_segments(logdir)) <= 4
    crash(wal)
    engine, wal = open_log(logdir, 0.0, result_ttl=0)
    assert engine.put(engine.connect(), 0, 0, 60, b"y", 0.0).id == last + 1
    wal.close()


def test_one_old_job_does_not_pin_the_log_under_churn(logdir: Path) -> None:
    logdir.mkdir()
    size = 8192
    engine, wal = open_log(logdir, 0.0, segment_size=size, result_ttl=0)
    s = engine.connect()
    old = engine.put(s, 0, 0, 60, b"the one that stays", 0.0)
    engine.bury(s, engine.reserve(s, 0, 0.0).id, 1, 0.0)  # type: ignore[union-attr]
    peak = 0
    for i in range(5000):
        job = engine.put(s, 0, 0, 60, b"%d" % i * 30, 0.0)
        engine.delete(s, job.id, 0.0)
        if i % 50 == 0:
            wal.write()
            peak = max(peak, disk_bytes(logdir))
    wal.write()
    live = sum(weight(j) for j in engine.jobs.values())
    # Within twice the live data plus a few segments, however long the old job lives.
    assert peak <= 2 * live + 4 * size, peak
    assert wal.records_migrated > 0
    assert old.file == wal.segments[-1].index or old.file >= wal.segments[0].index
    crash(wal)
    rebuilt = rebuild(logdir, 0.0)
    assert list(rebuilt.jobs) == [old.id]
    assert rebuilt.jobs[old.id].state is JobState.BURIED


def test_jobs_released_with_a_delay_over_and_over_do_not_grow_the_log(logdir: Path) -> None:
    """beanstalkd #622: a fixed set of jobs released with delays made its log grow."""
    logdir.mkdir()
    engine, wal = open_log(logdir, 0.0, segment_size=4096)
    s = engine.connect()
    for _ in range(5):
        engine.put(s, 0, 0, 60, b"x" * 100, 0.0)
    now = 0.0
    for _ in range(3000):
        job = engine.reserve(s, 0, now)
        assert job is not None
        engine.release(s, job.id, 0, 1, now)
        now += 1.0
        engine.tick(now)
        wal.write()
    assert disk_bytes(logdir) <= 2 * wal.live_bytes + 4 * 4096
    wal.close()


# --------------------------------------------------------------------------- failures


def test_no_room_for_a_new_segment_refuses_changes_but_never_deletes(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logdir.mkdir()
    engine, wal = open_log(logdir, 0.0)
    s = engine.connect()
    ids = [engine.put(s, 0, 0, 60, b"x" * 100, 0.0).id for _ in range(10)]
    wal.write()

    def full(fd: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tubeserver.wal._preallocate", full)
    with pytest.raises(OutOfMemory):
        for _ in range(100):
            ids.append(engine.put(s, 0, 0, 60, b"x" * 100, 0.0).id)
    assert sorted(engine.jobs) == ids  # the refused put changed nothing
    check_invariants(engine)
    for job_id in ids:  # every delete still fits: its room was kept when the job was put
        engine.delete(s, job_id, 0.0)
    wal.write()
    assert wal.failed is None
    crash(wal)
    assert rebuild(logdir, 0.0).jobs == {}


def test_a_failed_write_refuses_every_later_change(logdir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    logdir.mkdir()
    engine, wal = open_log(logdir, 0.0)
    s = engine.connect()
    kept = engine.put(s, 0, 0, 60, b"acknowledged", 0.0).id
    assert wal.write()
    engine.put(s, 0, 0, 60, b"lost", 0.0)

    def broken(fd: int, data: bytes) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(wal, "_write_all", broken)
    assert not wal.write()
    assert wal.failed is not None
    for change in (lambda: engine.put(s, 0, 0, 60, b"no", 0.0),
                   lambda: engine.delete(s, kept, 0.0),
                   lambda: engine.pause_tube("default", 5, 0.0)):
        with pytest.raises(InternalError):
            change()
    crash(wal)
    assert [j.body for j in rebuild(logdir, 0.0).jobs.values()] == [b"acknowledged"]


def test_the_directory_lock_keeps_a_second_server_out(logdir: Path) -> None:
    logdir.mkdir()
    first = DirLock(logdir)
    with pytest.raises(WalError, match=f"in use by another tubeserver \\(pid {os.getpid()}\\)"):
        DirLock(logdir)
    first.release()
    DirLock(logdir).release()


# --------------------------------------------------------------------------- the server


async def serve_log(nursery: trio.Nursery, directory: Path, fsync_ms: int | None) -> Server:
    server = Server(65535)
    server.open_wal(Config("127.0.0.1", 0, 65535, wal_dir=str(directory), fsync_ms=fsync_ms))
    nursery.start_soon(server.run_ticker)
    if fsync_ms is not None:
        nursery.start_soon(server.run_syncer)
    return server


async def connect(nursery: trio.Nursery, server: Server) -> Client:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(server.handle, server_end)
    return Client(client_end)


async def test_a_failed_write_answers_internal_error_not_inserted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio.open_nursery() as nursery:
        server = await serve_log(nursery, tmp_path, None)
        client = await connect(nursery, server)
        assert (await client.cmd("put 0 0 60 2\r\nok")).startswith(b"INSERTED")
        assert server.wal is not None

        def broken(fd: int, data: bytes) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(server.wal, "_write_all", broken)
        # Two pipelined puts and a peek: both put replies become errors, the peek is not.
        await client.send(b"put 0 0 60 1\r\na\r\nput 0 0 60 1\r\nb\r\npeek 1\r\n")
        assert await client.reply() == b"INTERNAL_ERROR\r\n"
        assert await client.reply() == b"INTERNAL_ERROR\r\n"
        assert (await client.reply()).startswith(b"FOUND 1")
        assert await client.cmd("delete 1") == b"INTERNAL_ERROR\r\n"
        nursery.cancel_scope.cancel()
    server.close_wal()
    assert list(rebuild(tmp_path, 0.0).jobs) == [1]


async def test_a_failed_fsync_with_f0_answers_internal_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio.open_nursery() as nursery:
        server = await serve_log(nursery, tmp_path, 0)
        client = await connect(nursery, server)
        assert (await client.cmd("put 0 0 60 2\r\nok")).startswith(b"INSERTED 1")
        assert server.wal is not None

        def broken(plan: object) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(server.wal, "run_sync", broken)
        assert await client.cmd("put 0 0 60 2\r\nno") == b"INTERNAL_ERROR\r\n"
        assert await client.cmd("delete 1") == b"INTERNAL_ERROR\r\n"
        nursery.cancel_scope.cancel()


async def test_f0_replies_wait_for_a_shared_fsync(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: ten connections putting at once share fsync rounds, however fast the
    disk (a connection task never runs a round on its own, even when inline rounds are on)."""
    monkeypatch.setattr("tubeserver.server.INLINE_SYNC", 10.0)
    rounds: list[int] = []
    async with trio.open_nursery() as nursery:
        server = await serve_log(nursery, tmp_path, 0)
        wal = server.wal
        assert wal is not None
        real = wal.run_sync

        def counted(plan: Any) -> None:
            rounds.append(plan.target)
            real(plan)

        monkeypatch.setattr(wal, "run_sync", counted)
        clients = [await connect(nursery, server) for _ in range(10)]
        replies: list[bytes] = []

        async def produce(client: Client) -> None:
            for _ in range(20):
                reply = await client.cmd("put 0 0 60 3\r\nabc")
                # The reply comes only once its record is on disk.
                assert wal.synced >= server.engine.jobs[int(reply.split()[1])].seq
                replies.append(reply)

        async with trio.open_nursery() as producers:
            for client in clients:
                producers.start_soon(produce, client)
        nursery.cancel_scope.cancel()
    assert len(replies) == 200 and all(r.startswith(b"INSERTED") for r in replies)
    assert 0 < len(rounds) < 100, len(rounds)
    server.close_wal()
    assert len(rebuild(tmp_path, 0.0).jobs) == 200
