"""tubectl end to end: the real command (`python -m tubeclient.ctl`, and the installed script
for --help) against real tubeserver and beanstalkd processes on loopback.

Every subcommand runs at least once and its effect is read back from the server with the
blocking client; --json output is parsed; two servers are given with -s twice, and through
TUBECTL_SERVERS. The error paths: an unreachable server, NOT_FOUND, bad arguments (status
2), `clear` without --yes on a non-terminal (2) and on a terminal (a pty) answered no and
yes. Against beanstalkd, tubes/stats/peek/kick work and the admin-only subcommands say the
server lacks the extension (status 1). No run may print a traceback; every run and wait is
bounded; nothing asserts timings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import procs
import pytest
from live import WAIT, connect
from tubeclient import Client, NotFound
from tubeclient.ctl_servers import parse_address
from tubeclient.ctl_view import body_text, duration, table

TUBECTL = str(Path(sys.executable).parent / "tubectl")
RUN_LIMIT = 60.0  # seconds any one run may take before the test fails
CLEAR = "\x1b[H\x1b[2J"
SUBCOMMANDS = ["stats", "tubes", "top", "jobs", "peek", "status", "kick", "delete", "clear",
               "pause", "put", "wait-result", "schedules", "tail"]


@attrs.frozen
class Run:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUBECTL_")}
    clean.update(extra)
    return clean


def address(srv: procs.RunningServer) -> str:
    return f"{srv.host}:{srv.port}"


def servers(*srvs: procs.RunningServer) -> list[str]:
    return [a for s in srvs for a in ("-s", address(s))]


def tubectl(*args: str, input: bytes = b"", environ: dict[str, str] | None = None,
            argv0: list[str] | None = None) -> Run:
    """Run tubectl to completion, stdin a pipe (not a terminal) holding `input`."""
    p = subprocess.run([*(argv0 or [sys.executable, "-m", "tubeclient.ctl"]), *args],
                       input=input, capture_output=True, timeout=RUN_LIMIT,
                       env=environ or env())
    run = Run(p.returncode, p.stdout.decode(), p.stderr.decode())
    assert "Traceback" not in run.err and "unexpected error" not in run.err, run.err
    return run


def on(srv: procs.RunningServer, *args: str, **kw: Any) -> Run:
    return tubectl(*servers(srv), *args, **kw)


@pytest.fixture(scope="module")
def second() -> Iterator[procs.RunningServer]:
    with procs.tubeserver() as srv:
        yield srv


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:11300", ("127.0.0.1", 11300)), ("queue.example", ("queue.example", 11300)),
     (" h:1 ", ("h", 1)), ("[::1]:11301", ("::1", 11301)), ("[::1]", ("::1", 11300)),
     ("unix:/run/tube.sock", "/run/tube.sock")],
)
def test_server_addresses(text: str, address: object) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", ":11300", "h:", "h:0", "h:65536", "h:x", "::1",
                                  "[::1", "[::1]x", "unix:"])
def test_bad_server_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="bad server"):
        parse_address(text)


def test_durations_tables_and_bodies_for_people() -> None:
    assert [duration(s) for s in (None, -1, 0, 59, 60, 3599, 3600, 86399, 86400 * 3 + 7200)
            ] == ["-", "-", "0s", "59s", "1m00s", "59m59s", "1h00m", "23h59m", "3d02h"]
    assert table(["tube", "ready"], [["a", 5], ["long-name", 12]], left=("tube",)) == (
        "TUBE       READY\na              5\nlong-name     12")
    assert body_text(b"line\n\x1b[2Jx\r") == "line\n\\x1b[2Jx\\r"  # no escape reaches a tty
    assert body_text(b"\xff\x00") == "(not UTF-8; hex) ff00"
    cut = body_text(("a" + "é" * 3000).encode())  # 6001 bytes; 4096 would split an é
    assert cut == "a" + "é" * 2047 + "\n... 1906 more bytes (--json shows all)"


# --------------------------------------------------------------------------- help


def test_help_names_every_subcommand_and_each_says_what_it_does() -> None:
    top = tubectl("--help", argv0=[TUBECTL])
    assert top.status == 0 and top.out.startswith("usage: tubectl")
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in top.out, name
    assert "TUBECTL_SERVERS" in top.out and "exit status" in top.out
    for name in ("jobs", "clear", "tail"):
        sub = tubectl(name, "--help")
        assert sub.status == 0 and sub.out.startswith(f"usage: tubectl {name}")
    assert "--yes" in tubectl("clear", "--help").out


# --------------------------------------------------------------------------- one server


def test_put_then_tubes_jobs_and_peek(tubeserver: procs.RunningServer, tube: str) -> None:
    first = on(tubeserver, "put", tube, "hello world", "--pri", "10", "--ttr", "30", "--json")
    assert first.status == 0, first.err
    item = first.json()
    assert item["server"] == address(tubeserver) and item["tube"] == tube
    a = item["id"]
    put = on(tubeserver, "put", tube, input=b"\x00\xffbinary").out  # the body from stdin
    assert put == f"inserted job {a + 1} into tube {tube!r} on {address(tubeserver)}\n"
    later = on(tubeserver, "put", tube, "later", "--delay", "600", "--json").json()["id"]
    with connect(tubeserver) as c:
        job = c.stats_job(a)
        assert (job["tube"], job["pri"], job["ttr"], job["state"]) == (tube, 10, 30, "ready")
        assert c.stats_job(later)["state"] == "delayed"
        binary = c.peek(a + 1)
        assert binary.body == b"\x00\xffbinary"

    table = on(tubeserver, "tubes")
    assert table.status == 0
    header, *rows = table.out.splitlines()
    assert header.split() == ["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "WAITING",
                              "OLDEST", "READY"]
    (row,) = [r.split() for r in rows if r.split()[0] == tube]
    assert row[1:6] == ["2", "0", "1", "0", "0"] and row[6].endswith("s")
    (info,) = [t for t in on(tubeserver, "tubes", "--json").json() if t["name"] == tube]
    assert (info["current-jobs-ready"], info["current-jobs-delayed"],
            info["server"]) == (2, 1, address(tubeserver))
    assert isinstance(info["oldest-ready-age"], int) and info["total-jobs"] == 3

    listed = on(tubeserver, "jobs", tube, "--json").json()
    assert [(j["id"], j["pri"], j["body-size"]) for j in listed] == [
        (a, 10, 11), (a + 1, 65536, 8)]
    assert set(listed[0]) == {"server", "tube", "state", "id", "pri", "age", "time-left",
                              "reserves", "body-size"}
    assert [j["id"] for j in on(tubeserver, "jobs", tube, "--offset", "1", "--json").json()
            ] == [a + 1]
    delayed = on(tubeserver, "jobs", tube, "--state", "delayed")
    assert delayed.out.splitlines()[1].split()[0] == str(later)

    peeked = on(tubeserver, "peek", str(a))
    assert peeked.out.splitlines() == [
        f"job {a} on {address(tubeserver)}: tube {tube!r}, ready, pri 10, "
        f"age {peeked.out.split('age ')[1].split(',')[0]}, 11 bytes", "hello world"]
    (ready,) = on(tubeserver, "peek", "--ready", "--tube", tube, "--json").json()
    assert (ready["id"], ready["body"]) == (a, {"encoding": "text", "data": "hello world",
                                                  "size": 11})
    (late,) = on(tubeserver, "peek", "--delayed", "--tube", tube, "--json").json()
    assert late["id"] == later and late["state"] == "delayed"
    hexed = on(tubeserver, "peek", str(a + 1), "--json").json()[0]["body"]
    assert hexed == {"encoding": "hex", "data": "00ff62696e617279", "size": 8}
    assert "(not UTF-8; hex) 00ff62696e617279" in on(tubeserver, "peek", str(a + 1)).out
    none = on(tubeserver, "peek", "--buried", "--tube", tube)
    assert none.status == 1 and none.err.strip() == (
        f"tubectl: {address(tubeserver)}: no buried job in tube {tube!r}")


def test_stats(tubeserver: procs.RunningServer) -> None:
    (stats,) = on(tubeserver, "stats", "--json").json()
    assert stats["server"] == address(tubeserver)
    assert stats["version"].startswith("tubeserver") and "cmd-tube-info" in stats
    text = on(tubeserver, "stats").out
    assert text.splitlines()[0].split() == ["STAT", address(tubeserver)]
    assert "current-jobs-ready" in text and "cmd-tube-info" not in text
    assert "cmd-tube-info" in on(tubeserver, "stats", "--all").out


def test_status_of_a_live_and_a_finished_job(tubeserver: procs.RunningServer,
                                             tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        id = c.put(b"work")
        live = on(tubeserver, "status", str(id), "--json").json()
        assert (live["id"], live["tube"], live["state"]) == (id, tube, "ready")
        assert list(live) == ["server", "id", "tube", "state", "pri", "delay", "ttr",
                              "reserves", "timeouts", "releases", "buries", "kicks",
                              "created", "reserved", "finished", "result-bytes",
                              "reason-bytes", "checkpoint-bytes", "expires", "key", "parents"]
        c.finish(c.reserve(timeout=WAIT), b"42")
    text = on(tubeserver, "status", str(id)).out
    assert "state: finished" in text and "result-bytes: 2" in text and "reserves: 1" in text
    missing = on(tubeserver, "status", "999999")
    assert missing.status == 1 and "no job 999999" in missing.err


def test_kick_kick_job_and_delete(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        ids = c.put_many([b"1", b"2", b"3", b"4"])
        for _ in ids:
            c.bury(c.reserve(timeout=WAIT))
        kicked = on(tubeserver, "kick", tube, "2")
        assert kicked.status == 0
        assert kicked.out.strip() == f"{address(tubeserver)}: kicked 2 jobs in tube {tube!r}"
        assert c.stats_tube(tube)["current-jobs-buried"] == 2
        assert on(tubeserver, "kick", tube, "--json").json() == [
            {"server": address(tubeserver), "tube": tube, "kicked": 1}]  # N defaults to 1
        assert on(tubeserver, "kick", "--job", str(ids[3])).status == 0
        assert c.stats_job(ids[3])["state"] == "ready"
        again = on(tubeserver, "kick", "--job", str(ids[3]))
        assert again.status == 1 and "is not buried or delayed" in again.err

        gone = on(tubeserver, "delete", str(ids[0]), str(ids[1]), "999999", "--json")
        assert gone.status == 1 and "no job 999999" in gone.err
        assert gone.json() == [{"server": address(tubeserver), "id": i, "deleted": d}
                               for i, d in ((ids[0], True), (ids[1], True), (999999, False))]
        for id in ids[:2]:
            with pytest.raises(NotFound):
                c.peek(id)
        assert on(tubeserver, "delete", str(ids[2])).out.strip() == (
            f"deleted job {ids[2]} on {address(tubeserver)}")
        missing = on(tubeserver, "kick", "no-such-tube")
        assert missing.status == 1 and missing.err.strip() == (
            f"tubectl: {address(tubeserver)}: no tube 'no-such-tube'")


def test_pause(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube) as c:
        c.put(b"x")
        assert on(tubeserver, "pause", tube, "100").status == 0
        assert 0 < c.stats_tube(tube)["pause-time-left"] <= 100
        (info,) = [t for t in on(tubeserver, "tubes", "--json").json() if t["name"] == tube]
        assert info["paused"] is True
        assert on(tubeserver, "pause", tube, "0", "--json").json() == [
            {"server": address(tubeserver), "tube": tube, "pause": 0}]
        assert c.stats_tube(tube)["pause-time-left"] == 0


def test_clear_with_yes(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        c.put_many([b"a", b"b", b"c"])
        c.bury(c.reserve(timeout=WAIT))
        cleared = on(tubeserver, "clear", tube, "--state", "ready", "--yes", "--json")
        assert cleared.json() == [{"server": address(tubeserver), "tube": tube,
                                   "state": "ready", "cleared": 2}]
        stats = c.stats_tube(tube)
        assert (stats["current-jobs-ready"], stats["current-jobs-buried"]) == (0, 1)
        text = on(tubeserver, "clear", tube, "--state", "buried", "-y").out.strip()
        assert text == f"{address(tubeserver)}: cleared 1 buried job from tube {tube!r}"
        assert c.stats_tube(tube)["current-jobs-buried"] == 0


def test_clear_without_yes_on_a_pipe_is_a_usage_error(tubeserver: procs.RunningServer,
                                                     tube: str) -> None:
    with connect(tubeserver, use=tube) as c:
        c.put(b"keep me")
        refused = on(tubeserver, "clear", tube, "--state", "ready", input=b"y\n")
        assert refused.status == 2 and "pass --yes" in refused.err
        assert c.stats_tube(tube)["current-jobs-ready"] == 1


def on_a_terminal(srv: procs.RunningServer, answer: bytes, *args: str) -> Run:
    """tubectl with a pty as stdin, `answer` typed on it."""
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tubeclient.ctl", *servers(srv), *args],
                                stdin=terminal, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env())
        os.close(terminal)
        terminal = -1
        os.write(controller, answer)
        out, err = proc.communicate(timeout=RUN_LIMIT)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    return Run(proc.returncode, out.decode(), err.decode())


def test_clear_asks_on_a_terminal(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube) as c:
        c.put_many([b"a", b"b"])
        declined = on_a_terminal(tubeserver, b"n\n", "clear", tube, "--state", "ready")
        assert declined.status == 0
        assert (f"Delete every ready job of tube {tube!r} (2 on {address(tubeserver)})? [y/N]"
                in declined.err)
        assert "nothing cleared" in declined.err
        assert c.stats_tube(tube)["current-jobs-ready"] == 2
        accepted = on_a_terminal(tubeserver, b"y\n", "clear", tube, "--state", "ready")
        assert accepted.status == 0 and "cleared 2 ready jobs" in accepted.out
        assert c.stats_tube(tube)["current-jobs-ready"] == 0


def test_wait_result(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        done, failing, pending = c.put_many([b"a", b"b", b"c"])
        waiter = subprocess.Popen(
            [sys.executable, "-m", "tubeclient.ctl", *servers(tubeserver), "wait-result",
             str(done), "--timeout", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env=env())
        try:
            deadline = time.monotonic() + RUN_LIMIT  # until the waiter is waiting
            while dict(c.stats())["current-result-waiters"] == 0:
                assert time.monotonic() < deadline and waiter.poll() is None
                time.sleep(0.05)
            c.finish(c.reserve(timeout=WAIT), b"the answer: 42")
            out, err = waiter.communicate(timeout=RUN_LIMIT)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        assert waiter.returncode == 0, err
        assert out.decode().splitlines() == [
            f"job {done} finished; result (14 bytes):", "the answer: 42"]
        c.fail(c.reserve(timeout=WAIT), b"no such user")
    failed = on(tubeserver, "wait-result", str(failing), "--timeout", "0", "--json")
    assert failed.status == 1
    assert failed.json() == {"server": address(tubeserver), "id": failing, "state": "failed",
                             "result": None, "reason": {"encoding": "text",
                                                        "data": "no such user", "size": 12}}
    live = on(tubeserver, "wait-result", str(pending), "--timeout", "0")
    assert live.status == 1 and live.out == ""
    assert f"job {pending} is still live after 0s" in live.err
    assert on(tubeserver, "wait-result", "999999", "--timeout", "0").status == 1


def test_schedules(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver) as c:
        c.schedule(tube, tube, b"report", "30 2 * * *", priority=5)
        try:
            (item,) = [s for s in on(tubeserver, "schedules", "--json").json()
                       if s["name"] == tube]
            assert (item["server"], item["tube"], item["spec"], item["pri"], item["jobs"],
                    item["last"]) == (address(tubeserver), tube, "30 2 * * *", 5, 0, None)
            assert item["next"].endswith(":30:00.000000Z")
            text = on(tubeserver, "schedules").out
            assert text.splitlines()[0].split() == ["NAME", "TUBE", "SPEC", "NEXT", "LAST",
                                                    "JOBS", "SKIPPED"]
            assert f"{tube}  {tube}  30 2 * * *" in text
        finally:
            c.unschedule(tube)


def test_tail_releases_deletes_or_buries(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        ids = [c.put(b"job %d" % i, priority=i) for i in range(5)]
        shown = on(tubeserver, "tail", tube, "--count", "2")
        assert shown.status == 0
        assert shown.out.splitlines() == [
            f"job {ids[0]} on {address(tubeserver)}: pri 0, 5 bytes, released", "job 0",
            f"job {ids[1]} on {address(tubeserver)}: pri 1, 5 bytes, released", "job 1"]
        assert [c.stats_job(i)["pri"] for i in ids[:2]] == [0, 1]  # given back as they were
        assert c.stats_tube(tube)["current-jobs-ready"] == 5
        deleted = on(tubeserver, "tail", tube, "--delete", "--count", "2", "--json").json()
        assert [(j["id"], j["action"], j["body"]["data"]) for j in deleted] == [
            (ids[0], "deleted", "job 0"), (ids[1], "deleted", "job 1")]
        buried = on(tubeserver, "tail", tube, "--bury", "--count", "10", "--json").json()
        assert [j["id"] for j in buried] == ids[2:]
        stats = c.stats_tube(tube)
        assert (stats["current-jobs-ready"], stats["current-jobs-buried"],
                stats["total-jobs"]) == (0, 3, 5)
        assert c.stats_job(ids[4])["pri"] == 4
        empty = on(tubeserver, "tail", tube)
        assert empty.status == 0 and empty.out == "" and "no job came" in empty.err


def test_top_redraws_for_each_iteration(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube) as c:
        c.put(b"x")
    run = on(tubeserver, "top", "--iterations", "2", "--interval", "0.1")
    assert run.status == 0
    frames = run.out.split(CLEAR)
    assert frames[0] == "" and len(frames) == 3
    for frame in frames[1:]:
        assert frame.startswith(f"tubectl top: {address(tubeserver)}, every 0.1s")
        assert any(line.split()[:2] == [tube, "1"] for line in frame.splitlines())
    lines = on(tubeserver, "top", "--iterations", "2", "--interval", "0.1", "--json"
               ).out.splitlines()
    assert len(lines) == 2 and all(tube in {t["name"] for t in json.loads(x)} for x in lines)


def test_top_ends_with_status_0_on_ctrl_c(tubeserver: procs.RunningServer) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tubeclient.ctl", *servers(tubeserver),
                             "top", "--interval", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(len(CLEAR)) == CLEAR.encode()  # the first frame is drawn
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=RUN_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


# --------------------------------------------------------------------------- two servers


def test_two_servers(tubeserver: procs.RunningServer, second: procs.RunningServer,
                     tube: str) -> None:
    for srv, n in ((tubeserver, 1), (second, 2)):
        with connect(srv, use=tube) as c:
            c.put_many([b"x"] * n)
    items = tubectl(*servers(tubeserver, second), "tubes", "--json").json()
    mine = [(t["server"], t["current-jobs-ready"]) for t in items if t["name"] == tube]
    assert mine == [(address(tubeserver), 1), (address(second), 2)]
    table = tubectl("tubes", environ=env(
        TUBECTL_SERVERS=f"{address(tubeserver)}, {address(second)}")).out.splitlines()
    assert table[0].split()[:2] == ["SERVER", "TUBE"]
    assert [r.split()[:3] for r in table if tube in r] == [
        [address(tubeserver), tube, "1"], [address(second), tube, "2"]]
    # -s before and after the subcommand's name both count; the variable is then unused.
    kicked = tubectl("-s", address(tubeserver), "pause", tube, "5", "-s", address(second),
                     "--json", environ=env(TUBECTL_SERVERS="127.0.0.1:1"))
    assert [p["server"] for p in kicked.json()] == [address(tubeserver), address(second)]
    with connect(second) as c:
        assert c.stats_tube(tube)["pause-time-left"] > 0
    ready = tubectl(*servers(tubeserver, second), "peek", "--ready", "--tube", tube, "--json")
    assert [p["server"] for p in ready.json()] == [address(tubeserver), address(second)]


def test_not_found_on_some_servers_only_is_no_error(tubeserver: procs.RunningServer,
                                                    second: procs.RunningServer,
                                                    tube: str) -> None:
    with connect(second, use=tube) as c:
        c.put(b"x")
    run = tubectl(*servers(tubeserver, second), "jobs", tube, "--json")
    assert run.status == 0
    assert [j["server"] for j in run.json()] == [address(second)]
    assert run.err.strip() == f"tubectl: {address(tubeserver)}: no tube {tube!r}"
    nowhere = tubectl(*servers(tubeserver, second), "jobs", tube + ".none")
    assert nowhere.status == 1 and nowhere.err.count("no tube") == 2


@pytest.mark.parametrize("args", [["status", "1"], ["delete", "1"], ["wait-result", "1"],
                                  ["peek", "1"], ["kick", "--job", "1"], ["put", "t", "x"]])
def test_ids_are_per_server_so_one_server_is_needed(
    tubeserver: procs.RunningServer, second: procs.RunningServer, args: list[str]
) -> None:
    run = tubectl(*servers(tubeserver, second), *args)
    assert run.status == 2 and "name exactly one server with -s (2 given)" in run.err


# --------------------------------------------------------------------------- errors


def test_an_unreachable_server_is_one_clear_line(tubeserver: procs.RunningServer) -> None:
    port = procs.free_port()
    alone = tubectl("-s", f"127.0.0.1:{port}", "tubes")
    assert alone.status == 1 and alone.out == ""
    assert alone.err == f"tubectl: cannot connect to 127.0.0.1:{port}: connection refused\n"
    both = tubectl("-s", f"127.0.0.1:{port}", *servers(tubeserver), "stats", "--json")
    assert both.status == 1 and [s["server"] for s in both.json()] == [address(tubeserver)]
    assert both.err == f"tubectl: cannot connect to 127.0.0.1:{port}: connection refused\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["jobs"], "TUBE"),
        (["jobs", "t", "--state", "finished"], "invalid choice"),
        (["jobs", "t", "--limit", "1001"], "between 1 and 1000"),
        (["jobs", "bad name"], "invalid tube name"),
        (["status", "x"], "must be a whole number"),
        (["status", "-1"], ""),
        (["peek"], "peek takes an ID or one of"),
        (["peek", "3", "--ready"], "peek takes an ID or one of"),
        (["peek", "3", "--tube", "t"], "--tube goes with --ready"),
        (["kick"], "kick takes a TUBE [N] or --job ID"),
        (["kick", "t", "--job", "3"], "kick takes a TUBE [N] or --job ID"),
        (["clear", "t"], "--state"),
        (["clear", "t", "--state", "reserved", "--yes"], "invalid choice"),
        (["pause", "t", "-5"], ""),
        (["put", "t", "x", "--pri", str(2**32)], "between 0 and 4294967295"),
        (["top", "--interval", "0"], "seconds must be positive"),
        (["tail", "t", "--delete", "--bury"], "not allowed with"),
        (["-s", "host:port", "stats"], "the port must be 1 to 65535"),
        (["-s", "::1", "stats"], "[ADDR]:PORT"),
        (["stats", "--io-timeout", "soon"], "not a number of seconds"),
    ],
)
def test_bad_usage_is_status_2(args: list[str], says: str) -> None:
    run = tubectl(*args)
    assert run.status == 2 and run.out == ""
    assert "usage: tubectl" in run.err and says in run.err


def test_a_bad_servers_variable_is_status_2() -> None:
    run = tubectl("stats", environ=env(TUBECTL_SERVERS="127.0.0.1:11300,nope:port"))
    assert run.status == 2 and "TUBECTL_SERVERS: bad server 'nope:port'" in run.err


# --------------------------------------------------------------------------- beanstalkd


def test_beanstalkd_tubes_stats_peek_and_kick(beanstalkd: procs.RunningServer,
                                              tube: str) -> None:
    with connect(beanstalkd, use=tube, watch=tube) as c:
        ids = c.put_many([b"one", b"two", b"three"])
        for _ in ids:
            c.bury(c.reserve(timeout=WAIT))
        c.put(b"ready")
        tubes = on(beanstalkd, "tubes")
        assert tubes.status == 0, tubes.err
        (row,) = [r.split() for r in tubes.out.splitlines() if r.startswith(tube)]
        assert row[1:] == ["1", "0", "0", "3", "-", "-"]  # no waiting, no oldest age
        (info,) = [t for t in on(beanstalkd, "tubes", "--json").json() if t["name"] == tube]
        assert (info["current-jobs-buried"], info["current-jobs-waiting"],
                info["oldest-ready-age"], info["total-jobs"]) == (3, None, None, 4)
        (stats,) = on(beanstalkd, "stats", "--json").json()
        assert stats["current-jobs-buried"] >= 3 and "cmd-tube-info" not in stats
        (peeked,) = on(beanstalkd, "peek", "--buried", "--tube", tube, "--json").json()
        assert (peeked["id"], peeked["body"]["data"]) == (ids[0], "one")
        assert on(beanstalkd, "peek", str(ids[1])).out.endswith("\ntwo\n")
        assert on(beanstalkd, "kick", tube, "2").out.strip() == (
            f"{address(beanstalkd)}: kicked 2 jobs in tube {tube!r}")
        assert c.stats_tube(tube)["current-jobs-buried"] == 1
        assert on(beanstalkd, "kick", "--job", str(ids[2])).status == 0
        assert c.stats_job(ids[2])["state"] == "ready"
        missing = on(beanstalkd, "kick", tube + ".none")
        assert missing.status == 1 and "no tube" in missing.err
        assert tube + ".none" not in c.list_tubes()


def test_beanstalkd_put_tail_pause_and_delete(beanstalkd: procs.RunningServer,
                                              tube: str) -> None:
    first = on(beanstalkd, "put", tube, "first", "--pri", "7", "--json").json()["id"]
    second = on(beanstalkd, "put", tube, input=b"second").out.split()[2]
    (taken,) = on(beanstalkd, "tail", tube, "--json").json()
    assert (taken["id"], taken["pri"], taken["action"]) == (first, 7, "released")
    with connect(beanstalkd) as c:
        assert c.stats_job(first)["state"] == "ready" and c.stats_job(first)["pri"] == 7
        assert on(beanstalkd, "pause", tube, "100").status == 0
        assert c.stats_tube(tube)["pause-time-left"] > 0
        assert on(beanstalkd, "delete", str(first), second).status == 0
        for id in (first, int(second)):
            with pytest.raises(NotFound):
                c.peek(id)


@pytest.mark.parametrize(
    ("args", "verb"),
    [
        (["jobs", "{tube}"], "list-jobs"),
        (["clear", "{tube}", "--state", "buried", "--yes"], "clear-tube"),
        (["status", "1"], "job-status"),
        (["wait-result", "1", "--timeout", "0"], "result"),
        (["schedules"], "list-schedules"),
    ],
)
def test_beanstalkd_lacks_the_extensions(beanstalkd: procs.RunningServer, tube: str,
                                         args: list[str], verb: str) -> None:
    with connect(beanstalkd, use=tube) as c:
        c.put(b"x")
        c.watch(tube)
        c.bury(c.reserve(timeout=WAIT))
        run = on(beanstalkd, *(a.format(tube=tube) for a in args))
        assert run.status == 1 and run.out == ""
        assert run.err == (f"tubectl: {address(beanstalkd)}: the server does not support "
                           f"{verb} (a tubeserver extension; beanstalkd lacks it)\n")
        assert c.stats_tube(tube)["current-jobs-buried"] == 1  # nothing cleared


def test_tubeserver_and_beanstalkd_together(tubeserver: procs.RunningServer,
                                            beanstalkd: procs.RunningServer,
                                            tube: str) -> None:
    for srv in (tubeserver, beanstalkd):
        with connect(srv, use=tube) as c:
            c.put(b"x")
    items = [t for t in tubectl(*servers(tubeserver, beanstalkd), "tubes", "--json").json()
             if t["name"] == tube]
    assert [(t["server"], t["current-jobs-ready"], t["current-jobs-waiting"])
            for t in items] == [(address(tubeserver), 1, 0), (address(beanstalkd), 1, None)]
    with Client(tubeserver.addr) as c:
        assert c.stats_tube(tube)["current-jobs-ready"] == 1
