"""Admin commands (admin.py): list-jobs, clear-tube, kick-tube. The model machine
(test_engine_state.py) checks them against the model at every step; these spell out what it
cannot reach: clears that take several ticks while other clients go on, the parser's rules,
and a clear through a real server with a write-ahead log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_flow_process import listing
from test_wal_process import tubeserver

from tubeserver import commands as c
from tubeserver.dispatch import Dispatcher, answer
from tubeserver.engine import Engine
from tubeserver.errors import BadFormat, NotFound
from tubeserver.invariants import check_invariants
from tubeserver.parser import Parser
from tubeserver.stats import ProcessInfo


def events(data: bytes) -> list[object]:
    p = Parser(65535)
    p.feed(data)
    out: list[object] = []
    while (ev := p.next_event()) is not None:
        out.append(ev)
    return out


def test_parser() -> None:
    assert events(b"list-jobs emails buried 10 100\r\n") == [
        c.ListJobs("emails", "buried", 10, 100)]
    assert events(b"clear-tube emails ready\r\nkick-tube emails 7\r\ntube-info x\r\n") == [
        c.ClearTube("emails", "ready"), c.KickTube("emails", 7), c.TubeInfo("x")]
    bad = [b"list-jobs emails buried 0 0", b"list-jobs emails buried 0 1001",
           b"list-jobs emails buried 10001 1", b"list-jobs emails deleted 0 1",
           b"list-jobs emails ready 0", b"list-jobs -x ready 0 1", b"clear-tube emails reserved",
           b"clear-tube emails", b"clear-tube emails ready ", b"kick-tube emails -1",
           b"kick-tube emails", b"tube-info -x"]
    for line in bad:
        got = events(line + b"\r\n")
        assert len(got) == 1 and isinstance(got[0], c.Rejected), line
        assert got[0].error == BadFormat(), line


def fill(e: Engine, n: int, tube: str = "default") -> list[int]:
    s = e.connect()
    e.use(s, tube)
    return [e.put(s, i % 7, 0, 60, b"x", 0.0).id for i in range(n)]


def test_a_clear_goes_on_in_slices_and_spares_what_came_or_went_meanwhile() -> None:
    e = Engine()
    e.admin.slice = 3
    ids = fill(e, 10)
    admin, worker = e.connect(), e.connect()
    assert e.admin.clear(admin, "default", "ready", 1.0) is None  # 3 deleted, 7 to go
    check_invariants(e)
    assert len(e.jobs) == 7 and e.next_deadline() == 1.0  # the next slice is due at once
    # Between slices: a worker takes one of the snapshot, a producer adds one.
    taken = e.reserve(worker, 0, 1.0)
    assert taken is not None and taken.id in ids
    new = e.put(worker, 0, 0, 60, b"new", 1.0)
    ticks = 0
    while e.admin.clearing:
        e.tick(1.0)
        check_invariants(e)
        ticks += 1
        assert ticks < 10
    assert ticks == 3  # a slice looks at 3 of the 7 left (the reserved one is passed over)
    [wakeup] = e.drain_wakeups()
    assert wakeup.session is admin and answer(wakeup) == b"CLEARED 9\r\n"
    assert sorted(e.jobs) == sorted([taken.id, new.id])
    assert e.admin.cleared == 9 and e.next_deadline() is not None  # the TTR of `taken`


def test_a_clear_whose_tube_goes_away_ends_and_the_clearer_may_hang_up() -> None:
    e = Engine()
    e.admin.slice = 2
    fill(e, 5, "gone")
    admin = e.connect()
    # The filler's session still uses "gone"; once it leaves, the last delete drops it.
    filler = next(s for s in e.sessions if s.used.name == "gone")
    e.disconnect(filler, 0.0)
    assert e.admin.clear(admin, "gone", "ready", 0.0) is None
    e.disconnect(admin, 0.0)  # as a client hanging up mid-clear: the clear still finishes
    for _ in range(5):
        e.tick(0.0)
        check_invariants(e)
    assert not e.admin.clearing and not e.jobs and "gone" not in e.tubes
    assert [answer(w) for w in e.drain_wakeups()] == [b"CLEARED 5\r\n"]


def test_clear_kick_and_list_of_a_missing_tube_are_not_found() -> None:
    d = Dispatcher(Engine(), ProcessInfo.gather(65535, 0.0))
    s = d.engine.connect()
    for cmd in (c.ListJobs("nope", "ready", 0, 1), c.ClearTube("nope", "ready"),
                c.KickTube("nope", 1)):
        assert d.handle(s, cmd, 0.0) == NotFound.reply
    assert d.handle(s, c.ClearTube("default", "buried"), 0.0) == b"CLEARED 0\r\n"
    assert d.handle(s, c.ListJobs("default", "ready", 0, 5), 0.0) == b"OK 7\r\n--- []\n\r\n"


def test_a_kick_of_many_buried_jobs_takes_them_in_fifo_order() -> None:
    e = Engine()
    s = e.connect()
    ids = [e.put(s, 0, 0, 60, b"x", 0.0).id for _ in range(300)]
    for _ in ids:
        job = e.reserve(s, 0, 0.0)
        assert job is not None
        e.bury(s, job.id, 0, 0.0)
    assert e.admin.kick("default", 120, 0.0) == 120
    check_invariants(e)
    assert [j.id for j in e.admin.list_jobs("default", "buried", 0, 1000)] == ids[120:]
    assert [j.id for j in e.admin.list_jobs("default", "ready", 0, 1000)] == ids[:120]


def test_listing_a_deep_heap_in_reserve_order() -> None:
    e = Engine()
    ids = fill(e, 3000)
    want = sorted(ids, key=lambda i: (e.jobs[i].pri, i))
    for offset, limit in ((0, 1000), (1500, 1000), (2990, 50)):
        got = [j.id for j in e.admin.list_jobs("default", "ready", offset, limit)]
        assert got == want[offset:offset + limit]


def test_a_big_clear_through_a_real_server_with_a_log(tmp_path: Path) -> None:
    """2,500 jobs: three slices, the clearing client waiting while another is served; the
    reply comes once the deletes are logged (-f 0): after a SIGKILL and a restart they stay
    deleted."""
    args = ("-b", str(tmp_path / "wal"), "-f", "0")
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as a, \
            server.conn() as b:
        a.cmd(b"use big")
        a.raw(b"".join(b"put 0 0 60 1\r\nx\r\n" for _ in range(2500)))
        for _ in range(2500):
            assert a.reply().startswith(b"INSERTED")
        a.cmd(b"use other")
        assert a.cmd(b"put 0 0 60 1\r\ny").startswith(b"INSERTED")
        a.send(b"clear-tube big ready")
        assert b.cmd(b"list-tube-used") == b"USING default\r\n"
        assert a.reply() == b"CLEARED 2500\r\n"
        stats = b.stats()  # the tube "big" went with its last job
        assert (stats["current-jobs-ready"], stats["current-tubes"]) == ("1", "2")
        assert (stats["cmd-clear-tube"], stats["jobs-cleared"]) == ("1", "2500")
        server.kill()
    deadline = time.monotonic() + 30
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        assert conn.yaml(b"stats")["current-jobs-ready"] == "1"
        assert listing(conn, b"list-jobs other ready 0 10")[0]["body-size"] == 1
        assert time.monotonic() < deadline


@pytest.mark.parametrize("state", ["reserved", "delayed"])
def test_list_jobs_on_the_wire(tmp_path: Path, state: str) -> None:
    with tubeserver(log_dir=tmp_path) as server, server.conn() as conn:
        conn.cmd(b"put 5 30 60 3\r\nabc")
        conn.cmd(b"put 7 0 60 2\r\nde")
        if state == "reserved":
            assert conn.cmd(b"reserve").startswith(b"RESERVED 2")
        [item] = listing(conn, b"list-jobs default %b 0 10" % state.encode())
        assert set(item) == {"id", "pri", "age", "time-left", "reserves", "body-size"}
        want = (2, 7, 1, 2) if state == "reserved" else (1, 5, 0, 3)
        assert (item["id"], item["pri"], item["reserves"], item["body-size"]) == want
        assert 0 < item["time-left"] <= (60 if state == "reserved" else 30)
        assert conn.cmd(b"list-jobs default waiting 0 10") == b"OK 7\r\n--- []\n\r\n"
        assert conn.cmd(b"kick-tube default 5") == b"KICKED 1\r\n"  # the delayed one
        info = conn.yaml(b"tube-info default")
        assert (info["current-jobs-ready"], info["total-kicks"], info["max-jobs"]) == (
            "1" if state == "reserved" else "2", "1", "0")
        assert conn.cmd(b"tube-info nope") == b"NOT_FOUND\r\n"


def test_a_big_clear_walks_ids_and_spares_later_puts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond SNAPSHOT_MAX jobs a clear copies nothing: it walks the ids made before it, a
    bounded number per tick, and deletes the tube's jobs found in the state."""
    e = Engine()
    other = fill(e, 50, "other")  # ids below the tube's: never looked at
    ids = fill(e, 12_500, "big")  # more than SNAPSHOT_MAX
    admin, worker = e.connect(), e.connect()
    assert e.tubes["big"].first_id == ids[0] > other[-1]
    assert e.admin.clear(admin, "big", "ready", 1.0) is None
    e.watch(worker, "big")
    e.ignore(worker, "default")
    taken = e.reserve(worker, 0, 1.0)  # a job still to be reached: spared
    assert taken is not None
    e.use(worker, "big")
    later = e.put(worker, 0, 0, 60, b"later", 1.0)  # put after the command: spared
    ticks = 0
    while e.admin.clearing:
        e.tick(1.0)
        ticks += 1
        assert ticks < 100
        if ticks % 5 == 0:
            check_invariants(e)
    [wakeup] = e.drain_wakeups()
    assert answer(wakeup) == b"CLEARED %d\r\n" % (len(ids) - 1)
    assert ticks == 12  # 1,000 deletes a tick; the first slice came with the command
    assert sorted(e.jobs) == sorted([*other, taken.id, later.id])
