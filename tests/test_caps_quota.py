"""--max-jobs and --max-memory: every put variant past them answers OUT_OF_MEMORY and stores
nothing; deletes, reserves and reads go on; a refused schedule firing is counted and logged;
restoring from the log never refuses. The engine's accounting is quota.py's (the hypothesis
model in test_engine_state.py predicts it step by step as well)."""

from __future__ import annotations

import logging
from pathlib import Path

import procs
import pytest
import trio
from caps_harness import running
from test_stats import payload

from tubeserver import commands as c
from tubeserver.caps import Caps
from tubeserver.dispatch import Dispatcher
from tubeserver.engine import Engine
from tubeserver.invariants import check_invariants
from tubeserver.quota import JOB_OVERHEAD, Quota
from tubeserver.schedules import parse_spec
from tubeserver.stats import ProcessInfo

OOM = b"OUT_OF_MEMORY\r\n"


def dispatcher(max_jobs: int = 0, max_memory: int = 0) -> Dispatcher:
    engine = Engine()
    engine.quota.max_jobs = max_jobs
    engine.quota.max_memory = max_memory
    return Dispatcher(engine, ProcessInfo.gather(65535, 0.0))


def test_the_memory_rule() -> None:
    q = Quota(max_memory=2 * (JOB_OVERHEAD + 100))
    assert q.admits(0, 100) and q.admits(1, 100) is True
    q.body_bytes = 100
    assert q.admits(1, 100) and not q.admits(1, 101) and not q.admits(2, 0)
    assert q.memory(1) == 100 + JOB_OVERHEAD
    assert Quota().admits(10**9, 10**12), "no caps: everything fits"
    assert not Quota(max_jobs=3).admits(3, 0) and Quota(max_jobs=3).admits(2, 10**9)


def test_every_put_variant_is_refused_at_max_jobs_and_stores_nothing() -> None:
    d = dispatcher(max_jobs=2)
    s = d.engine.connect()
    assert d.handle(s, c.Put(0, 0, 60, b"a"), 0.0) == b"INSERTED 1\r\n"
    assert d.handle(s, c.Put(0, 0, 60, b"b"), 0.0) == b"INSERTED 2\r\n"
    assert d.handle(s, c.Put(0, 0, 60, b"c"), 0.0) == OOM
    assert d.handle(s, c.PutUnique("k", 60, 0, 0, 60, b"u"), 0.0) == OOM
    assert d.handle(s, c.PutAfter((1,), 0, 0, 60, b"after"), 0.0) == OOM
    assert d.handle(s, c.PutUnique("k", 60, 0, 0, 60, b"u"), 0.0) == OOM  # the key stayed free
    check_invariants(d.engine)
    stats = payload(d.handle(s, c.Stats(), 0.0))
    assert (stats["total-jobs"], stats["current-jobs-ready"], stats["puts-refused"],
            stats["max-jobs"]) == (2, 2, 4, 2)
    assert stats["cmd-put"] == 3 and stats["cmd-put-unique"] == 2
    # Reads, reserves and deletes go on at the cap; a delete makes room.
    assert d.handle(s, c.Peek(1), 0.0) == b"FOUND 1 1\r\na\r\n"
    assert d.handle(s, c.Reserve(None), 0.0) == b"RESERVED 1 1\r\na\r\n"
    assert d.handle(s, c.Release(1, 0, 0), 0.0) == b"RELEASED\r\n"
    assert d.handle(s, c.Delete(2), 0.0) == b"DELETED\r\n"
    assert d.handle(s, c.PutUnique("k", 60, 0, 0, 60, b"u"), 0.0) == b"INSERTED 3\r\n"
    assert d.handle(s, c.PutAfter((1,), 0, 0, 60, b"after"), 0.0) == OOM
    check_invariants(d.engine)


def test_max_memory_counts_bodies_and_a_cost_per_job() -> None:
    d = dispatcher(max_memory=2 * (JOB_OVERHEAD + 1000))
    s = d.engine.connect()
    body = bytes(1000)
    assert d.handle(s, c.Put(0, 0, 60, body), 0.0) == b"INSERTED 1\r\n"
    assert d.handle(s, c.Put(0, 0, 60, body), 0.0) == b"INSERTED 2\r\n"
    assert d.handle(s, c.Put(0, 0, 60, b""), 0.0) == OOM  # its cost alone does not fit
    stats = payload(d.handle(s, c.Stats(), 0.0))
    assert (stats["current-job-memory"], stats["max-memory"]) == (
        2 * (JOB_OVERHEAD + 1000), 2 * (JOB_OVERHEAD + 1000))
    assert d.handle(s, c.Reserve(None), 0.0) == b"RESERVED 1 1000\r\n" + body + b"\r\n"
    # A finished job's record is --result-memory's business, not this cap's.
    assert d.handle(s, c.Finish(1, b"done"), 0.0) == b"FINISHED\r\n"
    assert d.handle(s, c.Put(0, 0, 60, bytes(1001)), 0.0) == OOM
    assert d.handle(s, c.Put(0, 0, 60, bytes(1000)), 0.0) == b"INSERTED 3\r\n"
    check_invariants(d.engine)


def test_a_refused_schedule_firing_is_counted_and_skipped() -> None:
    e = Engine()
    e.quota.max_jobs = 1
    s = e.connect()
    e.put(s, 0, 0, 60, b"x", 0.0)
    e.flow.schedule("tick", "ticks", 0, 30, b"go", parse_spec("every 10"), 0.0)
    e.tick(10.0)
    sched = e.flow.schedules.table["tick"]
    assert (sched.made, sched.skipped, e.quota.firings_refused, e.quota.puts_refused) == (
        0, 1, 1, 0)
    e.delete(s, 1, 11.0)
    e.tick(20.0)
    assert (sched.made, sched.skipped, e.quota.firings_refused) == (1, 1, 1)
    check_invariants(e)


async def test_the_server_logs_refused_firings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tubeserver")
    async with running("hub", Caps(max_jobs=1)) as r:
        conn = await r.connect()
        assert await conn.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert await conn.cmd(b"schedule s ticks 0 30 2 every 1\r\ngo") == b"SCHEDULED\r\n"
        with trio.fail_after(10):
            while not any("schedule firing" in rec.getMessage() for rec in caplog.records):
                await trio.sleep(0.05)
        stats = await conn.stats()
        assert int(stats["schedule-firings-refused"]) >= 1
        assert stats["current-jobs-ready"] == "1"


def test_restoring_from_the_log_never_refuses(tmp_path: Path) -> None:
    """Jobs logged by a server without caps all come back under a tighter one; the cap
    then refuses puts until deletes bring the jobs under it."""
    wal = str(tmp_path / "wal")
    with procs.tubeserver("-b", wal) as srv, procs.Conn.tcp(srv.port) as conn:
        for i in range(5):
            assert conn.cmd(b"put 0 0 60 3\r\nj%02d" % i) == b"INSERTED %d\r\n" % (i + 1)
    with procs.tubeserver("-b", wal, "--max-jobs", "3", "--max-memory", "64K") as srv, \
            procs.Conn.tcp(srv.port) as conn:
        stats = conn.stats()
        assert (stats["current-jobs-ready"], stats["max-jobs"], stats["max-memory"]) == (
            "5", "3", str(64 << 10))
        assert stats["current-job-memory"] == str(5 * (JOB_OVERHEAD + 3))
        assert conn.cmd(b"put 0 0 60 1\r\nx") == OOM
        for job_id in (1, 2):
            assert conn.cmd(b"delete %d" % job_id) == b"DELETED\r\n"
        assert conn.cmd(b"put 0 0 60 1\r\nx") == OOM  # 3 live: still at the cap
        assert conn.cmd(b"delete 3") == b"DELETED\r\n"
        assert conn.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 6\r\n"
        assert conn.cmd(b"put 0 0 60 %d\r\n%b" % (60 << 10, bytes(60 << 10))) == OOM
        assert conn.stats()["puts-refused"] == "3"
