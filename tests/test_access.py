"""Rights at the dispatcher (access.py): hypothesis drives a Dispatcher with sessions holding
random tokens through random commands, beside a small model of protocol.md's rules written
out independently (role words per command, `fnmatch` per tube). After each command: a command
the model refuses is answered UNAUTHORIZED and leaves the engine, the session and the counters
exactly as they were; one it allows is never answered UNAUTHORIZED; the engine's invariants
hold throughout."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from tubeserver import commands as c
from tubeserver.access import ROLES, Rights
from tubeserver.dispatch import Action, Dispatcher
from tubeserver.engine import Engine
from tubeserver.invariants import check_invariants
from tubeserver.session import Session
from tubeserver.stats import ProcessInfo

TUBES = ["default", "a", "b1", "b2", "cc"]
PATTERNS = st.sampled_from(["default", "a", "b*", "*", "c?", "b1", "zz"])
GRANTS = st.lists(st.tuples(st.sampled_from(sorted(ROLES)), PATTERNS), max_size=4)
NAMES = st.sampled_from(TUBES)
IDS = st.integers(1, 12)
UNAUTHORIZED = b"UNAUTHORIZED\r\n"

# protocol.md's table: command -> (what names the tube, roles any one of which admits it).
RULES: dict[type, tuple[str, set[str]]] = {
    c.Put: ("used", {"produce"}), c.PutUnique: ("used", {"produce"}),
    c.PutAfter: ("used", {"produce"}),
    c.Use: ("name", {"produce", "inspect"}),
    c.Watch: ("name", {"consume"}), c.Ignore: ("free", set()),
    c.Reserve: ("watched", {"consume"}), c.ReserveBatch: ("watched", {"consume"}),
    c.ReserveJob: ("job", {"consume"}), c.Delete: ("job", {"consume"}),
    c.Release: ("job", {"consume"}), c.Bury: ("job", {"consume"}),
    c.Touch: ("job", {"consume"}), c.Finish: ("job", {"consume"}),
    c.Fail: ("job", {"consume"}), c.Checkpoint: ("job", {"consume"}),
    c.Peek: ("job", {"inspect"}), c.StatsJob: ("job", {"inspect", "consume"}),
    c.PeekCheckpoint: ("job", {"inspect"}),
    c.JobStatus: ("job", {"inspect", "produce", "consume"}),
    c.Result: ("job", {"inspect", "produce", "consume"}),
    c.KickJob: ("job", {"admin"}),
    c.PeekReady: ("used", {"inspect"}), c.PeekDelayed: ("used", {"inspect"}),
    c.PeekBuried: ("used", {"inspect"}), c.Kick: ("used", {"admin"}),
    c.StatsTube: ("name", {"inspect", "produce", "consume"}),
    c.TubeInfo: ("name", {"inspect", "produce", "consume"}),
    c.ListJobs: ("name", {"inspect"}),
    c.PauseTube: ("name", {"admin"}), c.ClearTube: ("name", {"admin"}),
    c.KickTube: ("name", {"admin"}), c.TubeLimits: ("name", {"admin"}),
    c.Stats: ("server", {"inspect"}), c.ListTubes: ("server", {"inspect"}),
    c.ListSchedules: ("server", {"inspect"}), c.ListTubeLimits: ("server", {"inspect"}),
    c.ListTubeUsed: ("free", set()), c.ListTubesWatched: ("free", set()),
}

COMMANDS = st.one_of(
    st.builds(c.Put, st.just(0), st.just(0), st.just(60), st.just(b"x")),
    st.builds(c.Use, NAMES), st.builds(c.Watch, NAMES), st.builds(c.Ignore, NAMES),
    st.builds(c.Reserve, st.just(0)), st.builds(c.ReserveBatch, st.just(3), st.just(0)),
    st.builds(c.ReserveJob, IDS), st.builds(c.Delete, IDS),
    st.builds(c.Release, IDS, st.just(0), st.just(0)), st.builds(c.Bury, IDS, st.just(0)),
    st.builds(c.Touch, IDS), st.builds(c.Finish, IDS, st.just(b"r")),
    st.builds(c.Fail, IDS, st.just(0), st.just(b"why")),
    st.builds(c.Checkpoint, IDS, st.just(b"cp")),
    st.builds(c.Peek, IDS), st.builds(c.StatsJob, IDS), st.builds(c.PeekCheckpoint, IDS),
    st.builds(c.JobStatus, IDS), st.builds(c.Result, IDS, st.just(0)),
    st.builds(c.KickJob, IDS),
    st.just(c.PeekReady()), st.just(c.PeekDelayed()), st.just(c.PeekBuried()),
    st.builds(c.Kick, st.just(5)),
    st.builds(c.StatsTube, NAMES), st.builds(c.TubeInfo, NAMES),
    st.builds(c.ListJobs, NAMES, st.just("ready"), st.just(0), st.just(10)),
    st.builds(c.PauseTube, NAMES, st.just(0)),
    st.builds(c.ClearTube, NAMES, st.just("buried")),
    st.builds(c.KickTube, NAMES, st.just(5)),
    st.builds(c.TubeLimits, NAMES, st.just(0), st.just(0), st.just(0.0)),
    st.just(c.Stats()), st.just(c.ListTubes()), st.just(c.ListSchedules()),
    st.just(c.ListTubeLimits()), st.just(c.ListTubeUsed()), st.just(c.ListTubesWatched()),
)


def allowed(grants: list[tuple[str, str]], s: Session, engine: Engine, cmd: c.Event) -> bool:
    where, roles = RULES[type(cmd)]
    if "admin" not in roles:
        roles = roles | {"admin"}  # admin implies every role

    def may(tube: str) -> bool:
        return any(role in roles and fnmatchcase(tube, pattern) for role, pattern in grants)

    if where == "free":
        return True
    if where == "server":
        return any(role in ("inspect", "admin") for role, _ in grants)
    if where == "used":
        return may(s.used.name)
    if where == "name":
        return may(cmd.tube)  # type: ignore[union-attr]
    if where == "watched":
        return all(may(t.name) for t in s.watched)
    job = engine.jobs.get(cmd.id) or engine.tracker.record(cmd.id)  # type: ignore[union-attr]
    return job is None or may(job.tube.name)


def snapshot(d: Dispatcher, s: Session) -> Any:
    e = d.engine
    jobs = sorted((j.id, j.state.name, j.tube.name, j.pri, j.deadline) for j in e.jobs.values())
    tubes = sorted((t.name, t.paused, t.using, t.watching) for t in e.tube_list)
    return (jobs, tubes, s.used.name, [t.name for t in s.watched], sorted(s.reserved),
            dict(d.counts), len(e.tracker.records), s.waiter is not None, s.producer,
            s.worker)


@settings(max_examples=300, deadline=None)
@given(grants=GRANTS, setup=st.lists(st.tuples(NAMES, st.sampled_from(["ready", "reserved",
                                                                          "buried"])),
                                     max_size=8),
       commands=st.lists(COMMANDS, max_size=25))
def test_refused_commands_change_nothing(grants: list[tuple[str, str]],
                                         setup: list[tuple[str, str]],
                                         commands: list[c.Event]) -> None:
    rights = Rights("t", [(ROLES[role], pattern) for role, pattern in grants])
    d = Dispatcher(Engine(), ProcessInfo.gather(65535, 0.0))
    d.authenticate = lambda token: rights if token == "good" else None
    engine = d.engine
    now = 0.0
    # Jobs in several tubes and states, made by another session that may do anything.
    root = engine.connect()
    assert d.handle(root, c.Auth("good"), now) == b"OK\r\n"
    root.rights = Rights("root", [(ROLES["admin"], "*")])
    for tube, state in setup:
        d.handle(root, c.Use(tube), now)
        reply = d.handle(root, c.Put(0, 0, 60, b"job"), now)
        assert isinstance(reply, bytes) and reply.startswith(b"INSERTED")
        job_id = int(reply.split()[1])
        if state != "ready":
            engine.reserve_job(root, job_id, now)
            if state == "buried":
                engine.bury(root, job_id, 0, now)
    s = engine.connect()
    assert d.handle(s, c.Stats(), now) == UNAUTHORIZED  # before auth
    assert d.handle(s, c.Auth("bad"), now) is Action.REFUSE and s.rights is None
    assert d.handle(s, c.Auth("good"), now) == b"OK\r\n" and s.rights is rights
    for cmd in commands:
        expected = allowed(grants, s, engine, cmd)
        before = snapshot(d, s)
        result = d.handle(s, cmd, now)
        if expected:
            assert result != UNAUTHORIZED, cmd
        else:
            assert result == UNAUTHORIZED, cmd
            assert snapshot(d, s) == before, cmd
        if result is Action.WAIT:
            engine.cancel_wait(s)
        check_invariants(engine)
        now += 0.25


def test_a_refused_put_header_says_nothing() -> None:
    d = Dispatcher(Engine(), ProcessInfo.gather(65535, 0.0))
    d.authenticate = lambda token: None
    s = d.engine.connect()
    # Before auth: the header is silent and counts nothing; the put is answered once.
    assert d.handle(s, c.PutStarted(True), 0.0) == b""
    assert d.handle(s, c.Put(0, 0, 60, b"x"), 0.0) == UNAUTHORIZED
    assert d.counts["cmd-put"] == 0 and not s.producer
    s.rights = Rights("consumer", [(ROLES["consume"], "*")])
    assert d.handle(s, c.PutStarted(True), 0.0) == b""
    assert d.handle(s, c.Put(0, 0, 60, b"x"), 0.0) == UNAUTHORIZED
    assert d.counts["cmd-put"] == 0 and not s.producer and not d.engine.jobs
