"""Job tracking through a real server process with a write-ahead log: results, reasons and
checkpoints acknowledged before a SIGKILL are all there after the restart, and kept records
expire on the wall clock across it.

Worker threads put a job each, reserve it and then finish it with a result, fail it with a
reason, or checkpoint and release it, noting each acknowledged outcome; the server is killed
at a random moment. After the restart, every acknowledged outcome must read back exactly;
the one change per thread that was sent without a reply may read either way.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import attrs
import pytest
from procs import Conn
from test_wal_process import SEGMENT, tubeserver

WORKERS = 3
THREAD_LIMIT = 6.0  # seconds a worker thread may run, whatever happens


@attrs.define
class Ledger:
    # job id -> what a reader must find: ("result", data) | ("failed", reason) |
    # ("checkpoint", data)
    acked: dict[int, tuple[str, bytes]] = attrs.Factory(dict)
    # job id -> the change sent without a reply when the server died (either may show)
    unknown: dict[int, tuple[str, bytes]] = attrs.Factory(dict)
    errors: list[str] = attrs.Factory(list)


def work(port: int, rng: random.Random, tag: str, ledger: Ledger, lock: threading.Lock) -> None:
    end = time.monotonic() + THREAD_LIMIT
    try:
        conn = Conn.tcp(port)
        conn.cmd(b"use " + tag.encode())
        conn.cmd(b"watch " + tag.encode())
        conn.cmd(b"ignore default")
    except OSError:
        return
    n = 0
    while time.monotonic() < end:
        n += 1
        try:
            reply = conn.cmd(b"put 0 0 60 4\r\nbody")
            job_id = int(reply.split()[1])
            assert conn.cmd(b"reserve-job %d" % job_id).startswith(b"RESERVED")
            how = rng.choice(["result", "failed", "checkpoint"])
            data = b"%s %s %d " % (tag.encode(), how.encode(), n) * rng.randint(0, 40)
            with lock:
                ledger.unknown[job_id] = (how, data)
            if how == "result":
                conn.raw(b"finish %d %d\r\n%b\r\n" % (job_id, len(data), data))
                want = b"FINISHED\r\n"
            elif how == "failed":
                conn.raw(b"fail %d 5 %d\r\n%b\r\n" % (job_id, len(data), data))
                want = b"BURIED\r\n"
            else:
                conn.raw(b"checkpoint %d %d\r\n%b\r\n" % (job_id, len(data), data))
                want = b"CHECKPOINTED\r\n"
            got = conn.reply()
            if got != want:
                ledger.errors.append(f"job {job_id}: {how} answered {got!r}")
                return
            with lock:
                del ledger.unknown[job_id]
                ledger.acked[job_id] = (how, data)
            if how == "checkpoint":
                assert conn.cmd(b"release %d 0 0" % job_id) == b"RELEASED\r\n"
        except (OSError, EOFError, ValueError, IndexError):
            return  # the server died


def read_back(conn: Conn, job_id: int, how: str) -> tuple[str, bytes] | None:
    """What the restarted server says of `job_id`, in the ledger's terms."""
    if how == "checkpoint":
        reply = conn.cmd(b"peek-checkpoint %d" % job_id)
        if reply == b"NOT_FOUND\r\n":
            return None
        return ("checkpoint", reply.split(b"\r\n", 1)[1][:-2])
    reply = conn.cmd(b"result %d 0" % job_id)
    if reply in (b"TIMED_OUT\r\n", b"NOT_FOUND\r\n"):
        return None
    word, rest = reply.split(b" ", 1)
    return ("result" if word == b"RESULT" else "failed", rest.split(b"\r\n", 1)[1][:-2])


@pytest.mark.parametrize("seed", [1, 2])
def test_acknowledged_results_reasons_and_checkpoints_survive_sigkill(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    args = ("-b", str(tmp_path / "wal"), "-s", str(SEGMENT), "-f", "0")
    ledger = Ledger()
    lock = threading.Lock()
    for round_ in range(2):
        with tubeserver(*args, log_dir=tmp_path) as server:
            threads = [threading.Thread(target=work, daemon=True, args=(
                server.port, random.Random(rng.random()), f"r{round_}w{i}", ledger, lock))
                for i in range(WORKERS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.0))
            server.kill()
            for t in threads:
                t.join(timeout=THREAD_LIMIT + 10)
                assert not t.is_alive()
    assert not ledger.errors, ledger.errors
    assert len(ledger.acked) > 20, "the load did not run"
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        for job_id, (how, data) in sorted(ledger.acked.items()):
            got = read_back(conn, job_id, how)
            assert got == (how, data), f"job {job_id}: acknowledged {how} {data[:40]!r}, " \
                f"read back {got!r}"
        for job_id, (how, data) in ledger.unknown.items():
            got = read_back(conn, job_id, how)
            assert got in (None, (how, data)), f"job {job_id}: unanswered {how}, read {got!r}"
        finished = next(i for i, (how, _) in ledger.acked.items() if how == "result")
        status = conn.yaml(b"job-status %d" % finished)
        assert status["state"] == "finished" and status["reserved"] and status["expires"]
        assert conn.cmd(b"stats-job %d" % finished) == b"NOT_FOUND\r\n"  # as beanstalkd


def test_kept_records_expire_on_the_wall_clock_across_a_restart(tmp_path: Path) -> None:
    ttl = 4.0
    args = ("-b", str(tmp_path / "wal"), "-f", "0", "--result-ttl", str(int(ttl)))
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        old = int(conn.cmd(b"put 0 0 60 1\r\nx").split()[1])
        assert conn.cmd(b"reserve").startswith(b"RESERVED")
        assert conn.cmd(b"finish %d 3\r\nold" % old) == b"FINISHED\r\n"
        finished = time.monotonic()
        server.kill()
    # Down for longer than the TTL: the record's time runs out while nobody is watching.
    time.sleep(max(0.0, finished + ttl + 0.5 - time.monotonic()))
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert conn.cmd(b"result %d 0" % old) == b"NOT_FOUND\r\n"
        young = int(conn.cmd(b"put 0 0 60 1\r\ny").split()[1])
        assert conn.cmd(b"reserve").startswith(b"RESERVED")
        assert conn.cmd(b"finish %d 5\r\nyoung" % young) == b"FINISHED\r\n"
        server.kill()
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        # Well within its TTL (a start-up takes about a second): kept across the restart.
        assert conn.cmd(b"result %d 0" % young) == b"RESULT %d 5\r\nyoung\r\n" % young
