"""The write-ahead log end to end: real `tubeserver -b DIR` processes, killed and restarted.

The crash tests run concurrent producers and consumers (raw sockets in threads) against a
server with a log, SIGKILL it at a random moment and restart it on the same directory: every
job whose INSERTED was received must be back (unless its DELETED was received), every job whose
DELETED was received must stay gone, ids must keep growing, and each job must be as its last
acknowledged change left it (state, priority, release/bury/kick counts), or as the one change
sent without a reply left it. Consumer i alone works tube crash-i, so each job's changes come
from one thread, in a known order. What the kill left unknown (puts and changes without a
reply) is resolved after each restart, so rounds can go on with the same log.

The random choices come from a seeded `random.Random`; the seed is printed and is in every
failure message, and TUBESERVER_CRASH_SEED=N runs the crash tests with that seed only. The kill
moment is wall-clock, so a seed reproduces the workload, not the exact interleaving.

The other tests cover what a user meets at the edges: disk full (RLIMIT_FSIZE makes making a
segment fail), the directory lock, damaged and torn logs, kills during start-up, compaction,
bad flags and variables, and the binlog-* statistics. Every wait is bounded: socket timeouts,
subprocess timeouts, loops with a deadline and a count; every process started here is ended by
the test that started it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import procs
import pytest

HOST = "127.0.0.1"
IO_TIMEOUT = 5.0  # seconds any socket operation may block
START_LIMIT = 15.0  # seconds a server may take to read its log and listen
EXIT_LIMIT = 10.0  # seconds a server may take to exit
SEGMENT = 65536  # small segments: they roll, and compaction runs, within a crash round
PREFIX_SIZE = 12  # b"TUBEWAL\n" + u32 version
FRAME_HEAD = struct.Struct("<II")  # length, crc32
WAL_FLAGS = ("-b", "--wal-dir", "-f", "--fsync-ms", "-F", "--no-fsync", "-s",
             "--wal-segment-size", "--wal-repair")
WAL_VARS = ("TUBESERVER_WAL_DIR", "TUBESERVER_FSYNC_MS", "TUBESERVER_NO_FSYNC",
            "TUBESERVER_WAL_SEGMENT_SIZE")


# --------------------------------------------------------------------------- processes


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TUBESERVER_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUBESERVER_")}
    env["COLUMNS"] = "100"
    env.update(extra)
    return env


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tubeserver", *args]


def run(*args: str, env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """A tubeserver that is expected to exit on its own."""
    return subprocess.run(argv(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=START_LIMIT, env=clean_env() if env is None else env,
                          preexec_fn=preexec)


@attrs.define
class Server:
    """A running tubeserver whose stderr goes to a file (it can never block on it)."""

    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def conn(self) -> Conn:
        return Conn(socket.create_connection((HOST, self.port), timeout=IO_TIMEOUT))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=EXIT_LIMIT)

    def stop(self) -> int:
        """SIGTERM: a clean shutdown; the exit status."""
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=EXIT_LIMIT)


@contextlib.contextmanager
def tubeserver(*args: str, log_dir: Path, env: dict[str, str] | None = None,
               preexec: Callable[[], None] | None = None) -> Iterator[Server]:
    """A tubeserver with `args` on a free loopback port, yielded once it serves `stats`.
    A port picked free can be taken before the server binds it: then try another."""
    for attempt in range(3):
        port = procs.free_port()
        log = log_dir / f"stderr-{time.monotonic_ns()}.txt"
        with log.open("wb") as err:
            popen = subprocess.Popen(argv("-l", HOST, "-p", str(port), *args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, env=clean_env() if env is None else env,
                                     preexec_fn=preexec)
        server = Server(popen, port, log)
        try:
            try:
                procs.wait_listening(HOST, port, popen, START_LIMIT)
            except RuntimeError as e:
                text = server.stderr()
                taken = isinstance(e, procs.PortTaken) or "already in use" in text
                if attempt < 2 and taken:
                    continue
                pytest.fail(f"{e}; stderr: {text}")
            yield server
            return
        finally:
            procs.stop(popen, EXIT_LIMIT)


class Conn(procs.Conn):
    """procs.Conn with the job helpers these tests use."""

    def __enter__(self) -> Conn:
        return self

    def put(self, body: bytes, pri: int = 0, delay: int = 0, ttr: int = 60) -> bytes:
        return self.cmd(b"put %d %d %d %d\r\n%b" % (pri, delay, ttr, len(body), body))

    def put_id(self, body: bytes, pri: int = 0, delay: int = 0, ttr: int = 60) -> int:
        reply = self.put(body, pri, delay, ttr)
        assert reply.startswith(b"INSERTED "), reply
        return int(reply.split()[1])

    def body(self, job_id: int) -> bytes | None:
        """The body `peek` finds, or None for NOT_FOUND."""
        return _peeked(self.cmd(b"peek %d" % job_id), job_id)


def _peeked(reply: bytes, job_id: int) -> bytes | None:
    if reply == b"NOT_FOUND\r\n":
        return None
    head, _, rest = reply.partition(b"\r\n")
    assert head.startswith(b"FOUND %d " % job_id), reply[:80]
    return rest[:-2]


def total_jobs(stats: dict[str, str]) -> int:
    return sum(int(stats[f"current-jobs-{s}"])
               for s in ("ready", "reserved", "delayed", "buried"))


def wal_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("wal-*.log"))}


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of each frame in a segment's bytes, up to the zero tail."""
    out = []
    offset = PREFIX_SIZE
    while offset + FRAME_HEAD.size <= len(data):
        length, _ = FRAME_HEAD.unpack_from(data, offset)
        if length == 0:
            break
        out.append((offset, length))
        offset += FRAME_HEAD.size + length
    return out


# --------------------------------------------------------------------------- crash test


CONSUMERS = 3
# Consumer i alone works tube crash-i, so each job's changes come from one thread, in order.
CRASH_TUBES = tuple(b"crash-%d" % i for i in range(CONSUMERS))
PRODUCERS = 4
PRODUCER_PAUSE = 0.01  # seconds, at most, between a producer's puts: consumers keep up
THREAD_LIMIT = 6.0  # seconds a load thread may run, whatever happens
THREAD_OPS = 20000  # commands a load thread may send, whatever happens
READY, DELAYED, BURIED = "ready", "delayed", "buried"


class Unexpected(Exception):
    """A reply the load threads never expect: a test failure, reported after the round."""


@attrs.frozen
class Op:
    """A logged change to a job after its put (delete is kept apart)."""

    job: int
    kind: str  # "release", "bury" or "kick"
    pri: int = 0
    delay: int = 0


def _after_delay(delay: int) -> frozenset[str]:
    # A delay may have run out by the time the job is looked at.
    return frozenset({READY, DELAYED}) if delay else frozenset({READY})


@attrs.frozen
class Outcome:
    """What `stats-job` may say of a job after a restart, given its last logged change."""

    states: frozenset[str]
    pri: int
    counts: tuple[int, int, int]  # releases, buries, kicks

    def after(self, op: Op) -> Outcome:
        releases, buries, kicks = self.counts
        if op.kind == "release":
            return Outcome(_after_delay(op.delay), op.pri, (releases + 1, buries, kicks))
        if op.kind == "bury":
            return Outcome(frozenset({BURIED}), op.pri, (releases, buries + 1, kicks))
        return Outcome(frozenset({READY}), self.pri, (releases, buries, kicks + 1))

    def matches(self, js: dict[str, str]) -> bool:
        counts = (int(js["releases"]), int(js["buries"]), int(js["kicks"]))
        return js["state"] in self.states and int(js["pri"]) == self.pri and (
            counts == self.counts)

    @classmethod
    def observed(cls, js: dict[str, str]) -> Outcome:
        state = js["state"]
        return cls(frozenset({READY, DELAYED}) if state == DELAYED else frozenset({state}),
                   int(js["pri"]), (int(js["releases"]), int(js["buries"]), int(js["kicks"])))


@attrs.define
class Ledger:
    """What clients were told, merged from every thread and every round."""

    bodies: dict[int, bytes] = attrs.Factory(dict)  # jobs known to exist (INSERTED or found)
    tubes: dict[int, bytes] = attrs.Factory(dict)
    base: dict[int, Outcome] = attrs.Factory(dict)  # as put, or as found after the last kill
    ops: dict[int, list[Op]] = attrs.Factory(dict)  # acknowledged changes since `base`
    absent: set[int] = attrs.Factory(set)  # DELETED received, or found gone after a restart
    max_seen: int = 0  # highest id any reply named
    # This round only: sent without a reply before the kill.
    unknown_puts: dict[bytes, tuple[bytes, Outcome]] = attrs.Factory(dict)  # body -> ...
    unknown_deletes: set[int] = attrs.Factory(set)
    unknown_ops: dict[int, Op] = attrs.Factory(dict)
    seen: dict[int, bytes] = attrs.Factory(dict)  # bodies consumers reserved this round
    errors: list[str] = attrs.Factory(list)

    def present(self) -> set[int]:
        return set(self.bodies) - self.absent

    def allowed(self, job_id: int) -> list[Outcome]:
        """The job after its last acknowledged change, or after the unanswered one."""
        outcome = self.base[job_id]
        for op in self.ops.get(job_id, ()):
            outcome = outcome.after(op)
        pending = self.unknown_ops.get(job_id)
        return [outcome] if pending is None else [outcome, outcome.after(pending)]


@attrs.define
class ThreadLog:
    """One load thread's view; merged into the Ledger once the thread has ended."""

    inserted: list[tuple[int, bytes, bytes, Outcome]] = attrs.Factory(list)  # id, body, tube
    deleted: list[int] = attrs.Factory(list)
    ops: list[Op] = attrs.Factory(list)  # acknowledged, in order
    seen: list[tuple[int, bytes]] = attrs.Factory(list)
    unknown_put: tuple[bytes, bytes, Outcome] | None = None  # body, tube
    unknown_delete: int | None = None
    unknown_op: Op | None = None
    error: str | None = None
    ops_sent: int = 0


def _bounded(tlog: ThreadLog, started: float) -> bool:
    tlog.ops_sent += 1
    return tlog.ops_sent < THREAD_OPS and time.monotonic() - started < THREAD_LIMIT


def _expect(reply: bytes, *words: bytes) -> bytes:
    if not any(reply.startswith(w) for w in words):
        raise Unexpected(f"expected {words}, got {reply[:100]!r}")
    return reply


def produce(port: int, rng: random.Random, tag: str, tlog: ThreadLog) -> None:
    started = time.monotonic()
    try:
        with Conn(socket.create_connection((HOST, port), timeout=IO_TIMEOUT)) as conn:
            tube = rng.choice(CRASH_TUBES)
            _expect(conn.cmd(b"use " + tube), b"USING ")
            n = 0
            while _bounded(tlog, started):
                n += 1
                if rng.random() < 0.1:
                    tube = rng.choice(CRASH_TUBES)
                    _expect(conn.cmd(b"use " + tube), b"USING ")
                body = f"{tag}-{n}-".encode() + bytes([97 + n % 26]) * rng.choice(
                    (0, 10, 100, 1000, 3000))
                pri = rng.randrange(0, 2000)
                delay = 0 if rng.random() < 0.8 else rng.randint(1, 3)
                outcome = Outcome(_after_delay(delay), pri, (0, 0, 0))
                tlog.unknown_put = (body, tube, outcome)
                reply = _expect(conn.put(body, pri, delay), b"INSERTED ")
                tlog.inserted.append((int(reply.split()[1]), body, tube, outcome))
                tlog.unknown_put = None
                time.sleep(rng.uniform(0, PRODUCER_PAUSE))
    except (OSError, EOFError):
        return  # the server was killed
    except Unexpected as e:
        tlog.error = str(e)


def consume(port: int, index: int, rng: random.Random, tlog: ThreadLog) -> None:
    started = time.monotonic()
    tube = CRASH_TUBES[index]
    try:
        with Conn(socket.create_connection((HOST, port), timeout=IO_TIMEOUT)) as conn:
            for line in (b"watch " + tube, b"ignore default", b"use " + tube):
                _expect(conn.cmd(line), b"WATCHING ", b"USING ")
            while _bounded(tlog, started):
                roll = rng.random()
                if roll < 0.13:
                    # Jobs not reserved: delete or kick a buried one, kick a delayed one.
                    peek = b"peek-delayed" if roll < 0.03 else b"peek-buried"
                    reply = _expect(conn.cmd(peek), b"FOUND ", b"NOT_FOUND")
                    if reply.startswith(b"FOUND "):
                        job_id = int(reply.split()[1])
                        if roll < 0.08:
                            # Only this thread changes this tube's jobs: the kick must work,
                            # unless a delay ran out meanwhile.
                            ok = (b"KICKED", b"NOT_FOUND") if roll < 0.03 else (b"KICKED",)
                            _change(conn, tlog, Op(job_id, "kick"), b"kick-job %d" % job_id,
                                    *ok)
                        else:
                            _delete(conn, job_id, tlog)
                reply = _expect(conn.cmd(b"reserve-with-timeout 1"), b"RESERVED ",
                                b"TIMED_OUT")
                if not reply.startswith(b"RESERVED "):
                    continue
                head, _, rest = reply.partition(b"\r\n")
                job_id = int(head.split()[1])
                tlog.seen.append((job_id, rest[:-2]))
                roll = rng.random()
                if roll < 0.75:
                    _delete(conn, job_id, tlog)
                elif roll < 0.9:
                    pri, delay = rng.randrange(0, 2000), rng.choice((0, 0, 1, 2))
                    _change(conn, tlog, Op(job_id, "release", pri, delay),
                            b"release %d %d %d" % (job_id, pri, delay), b"RELEASED")
                else:
                    pri = rng.randrange(0, 2000)
                    _change(conn, tlog, Op(job_id, "bury", pri), b"bury %d %d" % (job_id, pri),
                            b"BURIED")
    except (OSError, EOFError):
        return
    except Unexpected as e:
        tlog.error = str(e)


def _change(conn: Conn, tlog: ThreadLog, op: Op, line: bytes, *ok: bytes) -> None:
    tlog.unknown_op = op
    reply = _expect(conn.cmd(line), *ok)
    tlog.unknown_op = None
    if reply.startswith(ok[0]):
        tlog.ops.append(op)


def _delete(conn: Conn, job_id: int, tlog: ThreadLog) -> None:
    tlog.unknown_delete = job_id
    _expect(conn.cmd(b"delete %d" % job_id), b"DELETED")
    tlog.unknown_delete = None
    tlog.deleted.append(job_id)


def merge(ledger: Ledger, logs: list[ThreadLog]) -> None:
    for tlog in logs:
        if tlog.error is not None:
            ledger.errors.append(tlog.error)
        for job_id, body, tube, outcome in tlog.inserted:
            ledger.bodies[job_id], ledger.tubes[job_id] = body, tube
            ledger.base[job_id] = outcome
            ledger.max_seen = max(ledger.max_seen, job_id)
        for op in tlog.ops:
            ledger.ops.setdefault(op.job, []).append(op)
        for job_id, body in tlog.seen:
            ledger.seen[job_id] = body
            ledger.max_seen = max(ledger.max_seen, job_id)
        ledger.absent.update(tlog.deleted)
        if tlog.unknown_put is not None:
            body, tube, outcome = tlog.unknown_put
            ledger.unknown_puts[body] = (tube, outcome)
        if tlog.unknown_delete is not None:
            ledger.unknown_deletes.add(tlog.unknown_delete)
        if tlog.unknown_op is not None:
            ledger.unknown_ops[tlog.unknown_op.job] = tlog.unknown_op
    ledger.unknown_deletes -= ledger.absent


def load_and_kill(server: Server, rng: random.Random, tag: str, ledger: Ledger) -> float:
    """Producers and consumers against `server` until it is SIGKILLed after a random delay;
    what they were told goes into `ledger`. Returns the delay."""
    logs = [ThreadLog() for _ in range(PRODUCERS + CONSUMERS)]
    threads = [threading.Thread(target=produce, daemon=True,
                                args=(server.port, random.Random(rng.random()), f"{tag}p{i}",
                                      logs[i]))
               for i in range(PRODUCERS)]
    threads += [threading.Thread(target=consume, daemon=True,
                                 args=(server.port, i, random.Random(rng.random()),
                                       logs[PRODUCERS + i]))
                for i in range(CONSUMERS)]
    delay = rng.uniform(0.2, 1.0)
    for t in threads:
        t.start()
    time.sleep(delay)
    server.kill()
    for t in threads:
        t.join(timeout=THREAD_LIMIT + IO_TIMEOUT)
        assert not t.is_alive(), "a load thread did not stop after the kill"
    merge(ledger, logs)
    return delay


def verify(conn: Conn, ledger: Ledger, what: str) -> None:
    """Check the restarted server against `ledger`, resolve what the kill left unknown,
    and leave the ledger exact for the next round."""
    assert not ledger.errors, f"{what}: {ledger.errors}"
    for job_id, reserved in ledger.seen.items():
        if job_id in ledger.bodies:
            assert ledger.bodies[job_id] == reserved, f"{what}: job {job_id} reserved changed"
    stats = conn.stats()
    assert stats["current-jobs-reserved"] == "0", what
    before = total_jobs(stats)
    # A probe job: its id is above every id seen before the kill.
    assert conn.cmd(b"use probe") == b"USING probe\r\n"
    probe_body = b"probe " + what.encode()
    probe = conn.put_id(probe_body, pri=7)
    assert probe > ledger.max_seen, f"{what}: id {probe} after restart, {ledger.max_seen} seen"
    ledger.bodies[probe], ledger.tubes[probe] = probe_body, b"probe"
    ledger.base[probe] = Outcome(frozenset({READY}), 7, (0, 0, 0))
    # Unknown ids below the probe: puts sent without a reply (or never made). Each is there
    # with one of the unanswered bodies, or gone for good.
    known = set(ledger.bodies) | ledger.absent
    candidates = [i for i in range(1, probe) if i not in known]
    unanswered = len(ledger.unknown_puts)
    for job_id in candidates:
        found = conn.body(job_id)
        if found is None:
            ledger.absent.add(job_id)
            continue
        assert found in ledger.unknown_puts, (
            f"{what}: job {job_id} exists with a body no put sent: {found[:60]!r}")
        tube, outcome = ledger.unknown_puts.pop(found)
        ledger.bodies[job_id], ledger.tubes[job_id], ledger.base[job_id] = found, tube, outcome
    # Deletes sent without a reply: the job is there or not.
    for job_id in sorted(ledger.unknown_deletes):
        if conn.body(job_id) is None:
            ledger.absent.add(job_id)
    # Every acknowledged job is there, as it was put and last changed; every deleted one
    # is gone.
    present = sorted(ledger.present())
    for job_id in present:
        conn.send(b"peek %d" % job_id)
        conn.send(b"stats-job %d" % job_id)
    for job_id in present:
        assert _peeked(conn.reply(), job_id) == ledger.bodies[job_id], (
            f"{what}: job {job_id} (INSERTED, never DELETED) lost or changed after restart")
        js = procs.yaml_of(conn.reply())
        assert js["tube"] == ledger.tubes[job_id].decode(), (what, job_id, js)
        assert int(js["file"]) >= 1, (what, job_id, js)
        allowed = ledger.allowed(job_id)
        assert any(o.matches(js) for o in allowed), (
            f"{what}: job {job_id} after restart: {js}; expected one of {allowed}; "
            f"changes since put or restart: {ledger.ops.get(job_id)}")
        ledger.base[job_id] = Outcome.observed(js)
    gone = sorted(ledger.absent)
    for job_id in gone:
        conn.send(b"peek %d" % job_id)
    for job_id in gone:
        assert conn.reply() == b"NOT_FOUND\r\n", f"{what}: deleted job {job_id} came back"
    # Nothing else: the jobs found are exactly the ones accounted for.
    assert before + 1 == len(present), (
        f"{what}: {before} jobs after restart, {len(present) - 1} accounted for "
        f"({unanswered} puts were unanswered)")
    ledger.max_seen = max(ledger.max_seen, probe)
    ledger.ops.clear()
    ledger.unknown_ops.clear()
    ledger.unknown_deletes.clear()
    ledger.unknown_puts.clear()
    ledger.seen.clear()


def crash_seeds() -> list[int]:
    seed = os.environ.get("TUBESERVER_CRASH_SEED")
    return [int(seed)] if seed else [1, 2]


def crash_rounds(tmp_path: Path, seed: int, rounds: int, *flags: str) -> None:
    print(f"crash test seed {seed} (TUBESERVER_CRASH_SEED={seed} to repeat), flags {flags}")
    rng = random.Random(seed)
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-s", str(SEGMENT), *flags)
    ledger = Ledger()
    for r in range(rounds):
        with tubeserver(*args, log_dir=tmp_path) as server:
            if r:
                with server.conn() as conn:
                    verify(conn, ledger, f"seed {seed} round {r}")
            delay = load_and_kill(server, rng, f"s{seed}r{r}", ledger)
            print(f"round {r}: killed after {delay:.2f}s; {len(ledger.present())} jobs live, "
                  f"{len(ledger.absent)} gone")
    with tubeserver(*args, log_dir=tmp_path) as server:
        with server.conn() as conn:
            verify(conn, ledger, f"seed {seed} after round {rounds - 1}")
            stats = conn.stats()
        assert "Traceback" not in server.stderr()
    print({k: v for k, v in stats.items() if k.startswith("binlog")})
    assert int(stats["binlog-current-index"]) > rounds
    assert len(ledger.absent) > 0 and len(ledger.bodies) > 10 * rounds  # the load did run


@pytest.mark.parametrize("seed", crash_seeds())
def test_sigkill_loses_no_acknowledged_change_with_fsync_per_change(
    tmp_path: Path, seed: int
) -> None:
    crash_rounds(tmp_path, seed, 3, "-f", "0")


@pytest.mark.parametrize("flags", [("-f", "50"), ("-F",)], ids=["fsync-50ms", "no-fsync"])
def test_sigkill_loses_nothing_written_with_lazy_or_no_fsync(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    # A process crash keeps the page cache: what was written is there, fsync or not.
    crash_rounds(tmp_path, crash_seeds()[0] + 100, 1, *flags)


# --------------------------------------------------------------------------- disk full


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: no file the server writes may grow beyond `limit` bytes. CPython ignores
    SIGXFSZ, so growing a file past it fails with EFBIG, as a full disk fails with ENOSPC."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_no_room_for_the_first_segment_stops_start_up_clearly(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    result = run("-p", str(procs.free_port()), "-b", str(wal), "-s", str(1 << 20),
                 preexec=file_size_limit(512 * 1024))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert str(wal / "wal-00000001.log") in last and "File too large" in last, result.stderr
    assert list(wal.glob("wal-*")) == []  # the half-made segment was removed


def test_put_without_log_space_is_refused_and_nothing_acknowledged_is_lost(
    tmp_path: Path
) -> None:
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-s", str(SEGMENT), "-f", "0", "-z", "200000")
    # Segments of 64 KiB can be made; one big enough for a 120 000-byte job cannot.
    with tubeserver(*args, log_dir=tmp_path, preexec=file_size_limit(100_000)) as server:
        with server.conn() as conn:
            kept = [conn.put_id(b"kept %d" % i, pri=i) for i in range(20)]
            doomed = [conn.put_id(b"doomed %d" % i) for i in range(5)]
            before = conn.stats()
            assert conn.put(bytes(120_000)) == b"OUT_OF_MEMORY\r\n"
            after = conn.stats()
            assert total_jobs(after) == total_jobs(before) == 25  # nothing changed
            assert after["binlog-current-index"] == before["binlog-current-index"]
            assert "cannot make log segment" in server.stderr()
            # The server goes on: deletes work, and so do puts that fit.
            for job_id in doomed:
                assert conn.cmd(b"delete %d" % job_id) == b"DELETED\r\n"
            assert conn.put(bytes(120_000)) == b"OUT_OF_MEMORY\r\n"  # still no room
            kept.append(conn.put_id(b"after the refusal"))
            # Enough small jobs to need new 64 KiB segments, which can be made.
            for _ in range(60):
                job_id = conn.put_id(bytes(2000))
                assert conn.cmd(b"delete %d" % job_id) == b"DELETED\r\n"
            assert int(conn.stats()["binlog-current-index"]) > int(
                before["binlog-current-index"])
            assert "log segments can be made again" in server.stderr()
        server.kill()
    # Restarted without the limit: what was acknowledged is there, the refused job is not.
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert total_jobs(conn.stats()) == len(kept)
        for i, job_id in enumerate(kept[:20]):
            assert conn.body(job_id) == b"kept %d" % i
            assert conn.yaml(b"stats-job %d" % job_id)["pri"] == str(i)
        assert conn.body(kept[20]) == b"after the refusal"
        for job_id in doomed:
            assert conn.body(job_id) is None
        assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------- the lock


def test_second_server_on_the_same_directory_exits_until_the_first_dies(
    tmp_path: Path
) -> None:
    wal = tmp_path / "wal"
    with tubeserver("-b", str(wal), log_dir=tmp_path) as first:
        with first.conn() as conn:
            job_id = conn.put_id(b"locked in")
        second = run("-p", str(procs.free_port()), "-b", str(wal))
        assert second.returncode == 1, second
        assert "Traceback" not in second.stderr
        assert f"in use by another tubeserver (pid {first.popen.pid})" in second.stderr
        assert first.popen.poll() is None
        with first.conn() as conn:  # the first one is unharmed
            assert conn.body(job_id) == b"locked in"
        first.kill()
    # The lock dies with its process, even one killed without a chance to clean up.
    with tubeserver("-b", str(wal), log_dir=tmp_path) as third, third.conn() as conn:
        assert conn.body(job_id) == b"locked in"


def test_deletes_always_fit_when_the_log_is_full(tmp_path: Path) -> None:
    """Every job reserves room for its delete record, and a new segment must hold that
    reserve. Once enough jobs live, a segment with room for it is bigger than a file may
    grow: the log is full for puts. Each delete must still be logged, however the room it
    frees is reused."""
    wal = tmp_path / "wal"
    size = 16384
    args = ("-b", str(wal), "-s", str(size), "-F")
    inserted: list[int] = []
    with tubeserver(*args, log_dir=tmp_path, preexec=file_size_limit(2 * size)) as server:
        with server.conn() as conn:
            refused = 0
            for _ in range(40):  # batches of pipelined puts until the log is full
                for _ in range(100):
                    conn.send(b"put 0 0 60 1\r\nx")
                for _ in range(100):
                    reply = conn.reply()
                    if reply == b"OUT_OF_MEMORY\r\n":
                        refused += 1
                    else:
                        assert reply.startswith(b"INSERTED "), reply
                        inserted.append(int(reply.split()[1]))
                if refused:
                    break
            assert refused and len(inserted) > 100, (refused, len(inserted))
            assert total_jobs(conn.stats()) == len(inserted)
            # A change refused for room changes nothing.
            reply = conn.cmd(b"reserve-with-timeout 0")
            held = int(reply.split()[1])
            reply = conn.cmd(b"bury %d 9" % held)
            assert reply in (b"BURIED\r\n", b"OUT_OF_MEMORY\r\n"), reply
            state = conn.yaml(b"stats-job %d" % held)["state"]
            assert state == ("buried" if reply == b"BURIED\r\n" else "reserved"), (reply, state)
            # Delete the jobs one at a time, each in its own frame, while puts after each
            # delete take whatever room it left: the log stays at its edge.
            deleted: set[int] = set()
            queue = list(inserted)
            refused_at_edge = 0
            for job_id in inserted:
                assert conn.cmd(b"delete %d" % job_id) == b"DELETED\r\n", job_id
                deleted.add(job_id)
                for _ in range(5):
                    reply = conn.cmd(b"put 0 0 60 1\r\ny")
                    if reply == b"OUT_OF_MEMORY\r\n":
                        refused_at_edge += 1
                        break
                    assert reply.startswith(b"INSERTED "), reply
                    queue.append(int(reply.split()[1]))
            print(f"{len(inserted)} jobs filled the log; then {len(deleted)} deletes, "
                  f"{len(queue) - len(inserted)} puts accepted, "
                  f"{refused_at_edge} puts refused between them")
            assert refused_at_edge > 0
            inserted = queue
            live = total_jobs(conn.stats())
        assert "WRITE-AHEAD LOG FAILED" not in server.stderr()
        server.kill()
    # Restarted without the limit, the log says exactly what the clients were told.
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert total_jobs(conn.stats()) == live
        for job_id in inserted:
            conn.send(b"peek %d" % job_id)
        for job_id in inserted:
            body = _peeked(conn.reply(), job_id)
            assert (body is None) == (job_id in deleted), job_id


# --------------------------------------------------------------------------- damage


def fill_two_segments(wal: Path, log_dir: Path, count: int) -> list[int]:
    """`count` jobs in wal-00000001.log, then a clean stop and an empty restart, so that the
    first segment is not the newest. Returns the job ids."""
    with tubeserver("-b", str(wal), "-f", "0", log_dir=log_dir) as server:
        with server.conn() as conn:
            ids = [conn.put_id(b"job %d" % i, pri=i) for i in range(count)]
        assert server.stop() == 0
    with tubeserver("-b", str(wal), log_dir=log_dir) as server:
        assert server.stop() == 0
    assert sorted(wal_files(wal)) == ["wal-00000001.log", "wal-00000002.log"]
    return ids


def test_damage_in_the_middle_stops_start_up_until_repair_is_asked_for(
    tmp_path: Path
) -> None:
    wal = tmp_path / "wal"
    ids = fill_two_segments(wal, tmp_path, 10)
    first = wal / "wal-00000001.log"
    data = bytearray(first.read_bytes())
    layout = frames(bytes(data))
    assert len(layout) == 1 + len(ids)  # the header frame, then one frame per put
    offset, length = layout[1]  # the first job's frame
    data[offset + FRAME_HEAD.size + length // 2] ^= 0x55
    first.write_bytes(bytes(data))
    before = wal_files(wal)

    result = run("-p", str(procs.free_port()), "-b", str(wal))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert str(first) in result.stderr and f"offset {offset}" in result.stderr, result.stderr
    assert "--wal-repair" in result.stderr
    assert wal_files(wal) == before  # nothing was changed, nor a segment added

    with tubeserver("-b", str(wal), "--wal-repair", log_dir=tmp_path) as server:
        with server.conn() as conn:
            assert conn.body(ids[0]) is None  # its only record was damaged
            for i, job_id in enumerate(ids[1:], 1):
                assert conn.body(job_id) == b"job %d" % i
                assert conn.yaml(b"stats-job %d" % job_id)["pri"] == str(i)
            assert total_jobs(conn.stats()) == len(ids) - 1
            assert conn.put_id(b"after repair") > ids[-1]
        repair = [ln for ln in server.stderr().splitlines() if "REPAIR" in ln]
        assert repair and str(first) in repair[0], server.stderr()
        assert "Traceback" not in server.stderr()


@pytest.mark.parametrize("garbage", ["torn-frame", "random-bytes"])
def test_torn_write_at_the_end_is_cut_off_with_a_warning(tmp_path: Path, garbage: str) -> None:
    wal = tmp_path / "wal"
    with tubeserver("-b", str(wal), "-f", "0", log_dir=tmp_path) as server:
        with server.conn() as conn:
            ids = [conn.put_id(b"job %d" % i, pri=i) for i in range(5)]
            assert conn.cmd(b"delete %d" % ids[0]) == b"DELETED\r\n"
        assert server.stop() == 0
    newest = wal / "wal-00000001.log"
    intact = newest.read_bytes()
    offset, length = frames(intact)[-2]  # a put's frame, as a crash mid-write leaves it
    tail = (intact[offset: offset + FRAME_HEAD.size + length // 2] if garbage == "torn-frame"
            else random.Random(7).randbytes(100))
    newest.write_bytes(intact + tail)

    with tubeserver("-b", str(wal), log_dir=tmp_path) as server:
        with server.conn() as conn:
            assert conn.body(ids[0]) is None
            for i, job_id in enumerate(ids[1:], 1):
                assert conn.body(job_id) == b"job %d" % i
            assert total_jobs(conn.stats()) == len(ids) - 1
        warning = [ln for ln in server.stderr().splitlines() if "cutting a torn write" in ln]
        assert len(warning) == 1 and newest.name in warning[0], server.stderr()
        assert f"offset {len(intact)}" in warning[0]
        assert "Traceback" not in server.stderr()
        assert server.stop() == 0
    assert newest.read_bytes() == intact  # the torn bytes were cut off
    assert sorted(wal_files(wal)) == ["wal-00000001.log", "wal-00000002.log"]


def test_a_repaired_log_starts_without_the_repair_flag_afterwards(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    ids = fill_two_segments(wal, tmp_path, 4)
    first = wal / "wal-00000001.log"
    data = bytearray(first.read_bytes())
    offset, length = frames(bytes(data))[1]
    data[offset + FRAME_HEAD.size + length // 2] ^= 0x55
    first.write_bytes(bytes(data))
    with tubeserver("-b", str(wal), "--wal-repair", log_dir=tmp_path) as server:
        with server.conn() as conn:
            new = conn.put_id(b"accepted after the repair")
        assert server.stop() == 0
    # The repair was made and acted on; an ordinary start (a reboot, a supervisor's
    # restart) must not stop on the damage that was already skipped.
    with tubeserver("-b", str(wal), log_dir=tmp_path) as server, server.conn() as conn:
        assert conn.body(new) == b"accepted after the repair"
        assert [conn.body(i) is not None for i in ids] == [False, True, True, True]


@pytest.mark.parametrize("damage", ["missing-segment", "bad-magic"])
def test_missing_segment_or_bad_header_stops_start_up(tmp_path: Path, damage: str) -> None:
    wal = tmp_path / "wal"
    ids = fill_two_segments(wal, tmp_path, 3)
    with tubeserver("-b", str(wal), log_dir=tmp_path) as server:  # a third segment
        with server.conn() as conn:
            later = conn.put_id(b"in the third segment")
        assert server.stop() == 0
    if damage == "missing-segment":
        (wal / "wal-00000002.log").unlink()
        named = "wal-00000002.log"
    else:
        first = wal / "wal-00000001.log"
        first.write_bytes(b"NOTAWAL\n" + first.read_bytes()[8:])
        named = str(first)
    before = wal_files(wal)
    result = run("-p", str(procs.free_port()), "-b", str(wal))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert named in result.stderr and "--wal-repair" in result.stderr, result.stderr
    assert wal_files(wal) == before
    with tubeserver("-b", str(wal), "--wal-repair", log_dir=tmp_path) as server:
        with server.conn() as conn:
            assert conn.body(later) == b"in the third segment"
            survivors = [conn.body(i) for i in ids]
        assert "REPAIR" in server.stderr()
    # A missing segment held no jobs here (it was empty); a bad header loses its file.
    expected = [b"job %d" % i for i in range(3)] if damage == "missing-segment" else [None] * 3
    assert survivors == expected


# --------------------------------------------------------------------------- command line


def test_help_mentions_every_log_flag_and_variable() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    words = set(re.findall(r"[-\w]+", result.stdout))
    assert set(WAL_FLAGS) <= words, set(WAL_FLAGS) - words
    assert set(WAL_VARS) <= words, set(WAL_VARS) - words


@pytest.mark.parametrize(
    ("args", "env", "mentions"),
    [
        (["-s", "100"], {}, "100"),
        (["-s", "x"], {}, "'x'"),
        (["-f", "-1"], {}, "-1"),
        (["-f", "x"], {}, "'x'"),
        (["-f", "5", "-F"], {}, "-F"),
        (["-b", ""], {}, "empty"),
        ([], {"TUBESERVER_NO_FSYNC": "maybe"}, "TUBESERVER_NO_FSYNC"),
        ([], {"TUBESERVER_WAL_SEGMENT_SIZE": "1"}, "TUBESERVER_WAL_SEGMENT_SIZE"),
        ([], {"TUBESERVER_FSYNC_MS": "soon"}, "TUBESERVER_FSYNC_MS"),
        ([], {"TUBESERVER_FSYNC_MS": "5", "TUBESERVER_NO_FSYNC": "1"}, "TUBESERVER_NO_FSYNC"),
    ],
)
def test_bad_log_settings_exit_2_with_a_message(
    tmp_path: Path, args: list[str], env: dict[str, str], mentions: str
) -> None:
    wal = tmp_path / "wal"
    result = run("-p", str(procs.free_port()), "-b", str(wal), *args, env=clean_env(**env))
    assert result.returncode == 2, result
    assert result.stderr.startswith("usage: tubeserver"), result.stderr
    assert mentions in result.stderr.splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not wal.exists()  # refused before touching the disk


def test_wal_dir_variable_enables_the_log(tmp_path: Path) -> None:
    wal = tmp_path / "from-env" / "nested"
    env = clean_env(TUBESERVER_WAL_DIR=str(wal), TUBESERVER_FSYNC_MS="0",
                    TUBESERVER_WAL_SEGMENT_SIZE="8192")
    with tubeserver(log_dir=tmp_path, env=env) as server:
        with server.conn() as conn:
            job_id = conn.put_id(b"from the environment", pri=3, delay=3600)
            assert conn.stats()["binlog-max-size"] == "8192"
        server.kill()
    assert (wal / "wal-00000001.log").is_file()
    with tubeserver(log_dir=tmp_path, env=env) as server, server.conn() as conn:
        assert conn.body(job_id) == b"from the environment"
        js = conn.yaml(b"stats-job %d" % job_id)
        assert (js["state"], js["pri"]) == ("delayed", "3")


def test_command_line_wal_dir_beats_the_variable(tmp_path: Path) -> None:
    env = clean_env(TUBESERVER_WAL_DIR=str(tmp_path / "env"))
    with tubeserver("-b", str(tmp_path / "cli"), log_dir=tmp_path, env=env):
        pass
    assert (tmp_path / "cli" / "lock").exists() and not (tmp_path / "env").exists()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_wal_dir_that_cannot_be_a_directory_exits_1(tmp_path: Path, where: str) -> None:
    plain = tmp_path / "plain"
    plain.write_text("precious")
    target = plain if where == "file" else plain / "wal"
    result = run("-p", str(procs.free_port()), "-b", str(target))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(target) in lines[0], result.stderr
    assert plain.read_text() == "precious"


# --------------------------------------------------------------------------- stats, state


def test_binlog_stats_and_job_file_across_restarts(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-s", str(SEGMENT))
    indexes = []
    job_ids: list[int] = []
    for restart in range(3):
        with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
            job_ids.append(conn.put_id(b"restart %d" % restart))
            stats = conn.stats()
            indexes.append(int(stats["binlog-current-index"]))
            assert int(stats["binlog-oldest-index"]) == 1
            assert int(stats["binlog-records-written"]) >= 1
            assert stats["binlog-max-size"] == str(SEGMENT)
            for job_id in job_ids:
                assert int(conn.yaml(b"stats-job %d" % job_id)["file"]) >= 1
            assert conn.yaml(b"stats-job %d" % job_ids[-1])["file"] == str(indexes[-1])
    assert indexes == [indexes[0], indexes[0] + 1, indexes[0] + 2]
    assert indexes[0] == 1
    # Without a log the keys are there, all zero, and jobs have no file.
    with tubeserver(log_dir=tmp_path) as server, server.conn() as conn:
        stats = conn.stats()
        assert all(stats[f"binlog-{k}"] == "0" for k in (
            "oldest-index", "current-index", "records-written", "records-migrated"))
        job_id = conn.put_id(b"memory")
        assert conn.yaml(b"stats-job %d" % job_id)["file"] == "0"


def test_every_state_priority_delay_and_pause_comes_back(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-f", "0")
    with tubeserver(*args, log_dir=tmp_path) as server:
        with server.conn() as conn, server.conn() as worker:
            assert conn.cmd(b"use jobs") == b"USING jobs\r\n"
            ready = conn.put_id(b"ready", pri=10)
            delayed = conn.put_id(b"delayed", pri=20, delay=3600)
            buried = conn.put_id(b"buried", pri=30)
            released = conn.put_id(b"released", pri=40)
            reserved = conn.put_id(b"reserved", pri=50)
            kicked = conn.put_id(b"kicked", pri=60)
            for job_id in (buried, released, reserved, kicked):
                assert worker.cmd(b"reserve-job %d" % job_id).startswith(b"RESERVED ")
            assert worker.cmd(b"bury %d 31" % buried) == b"BURIED\r\n"
            assert worker.cmd(b"release %d 41 1800" % released) == b"RELEASED\r\n"
            assert worker.cmd(b"bury %d 61" % kicked) == b"BURIED\r\n"
            assert conn.cmd(b"kick-job %d" % kicked) == b"KICKED\r\n"
            assert conn.cmd(b"pause-tube jobs 3600") == b"PAUSED\r\n"
            assert conn.cmd(b"use other") == b"USING other\r\n"
            other = conn.put_id(b"other tube", pri=70)
            killed_at = time.monotonic()
            server.kill()
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        expected = {
            ready: ("ready", "10", "jobs"), delayed: ("delayed", "20", "jobs"),
            buried: ("buried", "31", "jobs"), released: ("delayed", "41", "jobs"),
            reserved: ("ready", "50", "jobs"), kicked: ("ready", "61", "jobs"),
            other: ("ready", "70", "other"),
        }
        for job_id, want in expected.items():
            js = conn.yaml(b"stats-job %d" % job_id)
            assert (js["state"], js["pri"], js["tube"]) == want, (job_id, js)
        waited = time.monotonic() - killed_at
        for job_id, total in ((delayed, 3600), (released, 1800)):
            left = int(conn.yaml(b"stats-job %d" % job_id)["time-left"])
            assert total - waited - 2 <= left <= total, (job_id, left)
        tube = conn.yaml(b"stats-tube jobs")
        assert tube["pause"] == "3600"
        assert 3600 - waited - 2 <= int(tube["pause-time-left"]) <= 3600, tube
        assert conn.yaml(b"stats-tube other")["pause"] == "0"


def test_compaction_keeps_the_log_small_around_a_long_lived_job(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-s", str(SEGMENT), "-f", "0", "--result-ttl", "0")
    body = bytes(500)
    with tubeserver(*args, log_dir=tmp_path) as server:
        with server.conn() as conn:
            old = conn.put_id(b"lives for ever", pri=5)
            largest = 0
            for _ in range(60):  # 60 x 50 jobs of 500 bytes: ~30 segments' worth
                for _ in range(50):
                    conn.send(b"put 0 0 60 %d\r\n%b" % (len(body), body))
                ids = [int(_expect(conn.reply(), b"INSERTED ").split()[1]) for _ in range(50)]
                for job_id in ids:
                    conn.send(b"delete %d" % job_id)
                for _ in ids:
                    assert conn.reply() == b"DELETED\r\n"
                largest = max(largest, sum(p.stat().st_size for p in wal.glob("wal-*.log")))
            stats = conn.stats()
            file = int(conn.yaml(b"stats-job %d" % old)["file"])
        server.kill()
    print(f"log at most {largest} bytes", {k: v for k, v in stats.items() if "binlog" in k})
    assert int(stats["binlog-current-index"]) > 20  # segments rolled ...
    assert int(stats["binlog-oldest-index"]) > 10  # ... and old ones were dropped
    assert int(stats["binlog-records-migrated"]) > 0
    assert file > 1  # the long-lived job was carried forward
    assert largest <= 4 * SEGMENT, largest
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert conn.body(old) == b"lives for ever"
        assert conn.yaml(b"stats-job %d" % old)["pri"] == "5"
        assert total_jobs(conn.stats()) == 1


def test_kills_during_start_up_lose_nothing(tmp_path: Path) -> None:
    """A server killed while it reads the log, makes its segment or starts listening (a
    crash loop) leaves a log the next start reads whole."""
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-s", str(SEGMENT), "-f", "0")
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        for batch in range(10):
            for i in range(100):
                conn.send(b"put %d 0 60 300\r\n%b" % (i, bytes([batch]) * 300))
            ids = [int(_expect(conn.reply(), b"INSERTED ").split()[1]) for _ in range(100)]
        server.kill()
    rng = random.Random(3)
    for _ in range(6):
        with (tmp_path / "killed.txt").open("wb") as err:
            popen = subprocess.Popen(argv("-p", "0", *args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, env=clean_env())
        time.sleep(rng.uniform(0.05, 0.5))
        popen.kill()
        popen.wait(timeout=EXIT_LIMIT)
        text = (tmp_path / "killed.txt").read_text()
        assert "Traceback" not in text and "damaged" not in text, text
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert total_jobs(conn.stats()) == 1000
        assert conn.body(ids[-1]) == bytes([9]) * 300
        assert conn.yaml(b"stats-job %d" % ids[-1])["pri"] == "99"
        assert "damaged" not in server.stderr()


def test_buried_jobs_keep_their_order_across_a_crash(tmp_path: Path) -> None:
    """Buried jobs form a FIFO (peek-buried, kick): its order is the order of burial, not of
    ids, and a restart keeps it."""
    wal = tmp_path / "wal"
    args = ("-b", str(wal), "-f", "0")
    with tubeserver(*args, log_dir=tmp_path) as server:
        with server.conn() as conn:
            ids = [conn.put_id(b"job %d" % i, pri=5) for i in range(6)]
            order = [ids[i] for i in (3, 0, 5, 1, 4, 2)]
            for job_id in order:
                assert conn.cmd(b"reserve-job %d" % job_id).startswith(b"RESERVED ")
                assert conn.cmd(b"bury %d 5" % job_id) == b"BURIED\r\n"
            # A kicked and re-buried job goes to the back.
            assert conn.cmd(b"kick-job %d" % order[0]) == b"KICKED\r\n"
            assert conn.cmd(b"reserve-job %d" % order[0]).startswith(b"RESERVED ")
            assert conn.cmd(b"bury %d 5" % order[0]) == b"BURIED\r\n"
        server.kill()
    order = order[1:] + order[:1]
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        found = []
        for _ in order:
            reply = conn.cmd(b"peek-buried")
            assert reply.startswith(b"FOUND "), reply
            found.append(int(reply.split()[1]))
            assert conn.cmd(b"kick 1") == b"KICKED 1\r\n"
        assert found == order
