"""tubeworker end to end: the real script, real child processes, real servers on loopback.

Every harness runs as a subprocess with short TTRs, small kill graces and backoffs, and
usually ``--burst`` so it exits on its own; every wait is bounded. Children record what they
saw (stdin, environment, argv, pids, timestamps) in files under tmp_path, and the job's fate
is read back with the blocking client (stats-job, peek, the record tubes).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procs
import pytest
import trio
from tubeclient import Client, Msgpack, NotFound
from tubeclient.harness import Config, Policy, Supervisor
from tubeclient.harness.child import Spawner
from tubeclient.harness.log import Logger
from tubeclient.harness.tracked import ChildPipes

TUBEWORKER = str(Path(sys.executable).parent / "tubeworker")
PY = sys.executable
FAST = ["--log-format", "json", "--kill-grace", "0.3", "--backoff-base", "1", "--no-jitter"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUBEWORKER_")}
    env.update(extra)
    return env


def server_args(*servers: procs.RunningServer) -> list[str]:
    return [a for s in servers for a in ("-s", f"{s.host}:{s.port}")]


def run(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> tuple[int, list[dict[str, Any]], str]:
    """Run tubeworker to completion: exit status, parsed JSON log lines, raw stderr."""
    p = subprocess.run([TUBEWORKER, *args], capture_output=True, timeout=timeout, cwd=cwd,
                       env=clean_env(), stdin=subprocess.DEVNULL)
    err = p.stderr.decode(errors="replace")
    return p.returncode, parse_log(err), err


def parse_log(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def jobs(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in log if r["event"] == "job"]


@pytest.fixture
def server() -> Iterator[procs.RunningServer]:
    with procs.tubeserver() as srv:
        yield srv


def put(srv: procs.RunningServer, *bodies: bytes, tube: str = "w", ttr: int = 3) -> list[int]:
    with Client(srv.addr, use=tube) as c:
        return [c.put(b, ttr=ttr) for b in bodies]


def stats_job(srv: procs.RunningServer, id: int) -> dict[str, Any]:
    with Client(srv.addr) as c:
        return dict(c.stats_job(id))


def gone(srv: procs.RunningServer, id: int) -> bool:
    with Client(srv.addr) as c:
        try:
            c.stats_job(id)
        except NotFound:
            return True
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is dead for our purposes
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def wait_for(predicate: Any, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --------------------------------------------------------------------------- outcomes


RECORD = """
import json, os, sys, time
now = time.time()
body = sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items() if k.startswith("TUBEWORKER_")}
with open(sys.argv[1], "w") as f:
    json.dump({"body": body.hex(), "env": env, "argv": sys.argv[2:], "now": now}, f)
"""


def test_success_deletes_with_body_on_stdin_env_and_placeholders(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 255  # binary, NULs, larger than a pipe buffer (64 KiB)
    (id,) = put(server, body)
    out = tmp_path / "seen.json"
    before = time.time()
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--",
                       PY, "-c", RECORD, str(out), "{id}", "{tube}", "{server}", "{other}")
    assert code == 0
    seen = json.loads(out.read_text())
    name = f"127.0.0.1:{server.port}"
    assert bytes.fromhex(seen["body"]) == body
    assert seen["argv"] == [str(id), "w", name, "{other}"]
    env = seen["env"]
    assert env["TUBEWORKER_JOB_ID"] == str(id)
    assert env["TUBEWORKER_TUBE"] == "w" and env["TUBEWORKER_SERVER"] == name
    assert env["TUBEWORKER_TTR"] == "3" and env["TUBEWORKER_PRIORITY"] == str(2**16)
    assert env["TUBEWORKER_ATTEMPT"] == "1"
    # The kill deadline is 3 s TTR - 1 s - 0.3 s kill grace = 1.7 s after the touch that
    # came after this test's `before` and before the child started (to the ms it is shown).
    deadline = float(env["TUBEWORKER_DEADLINE"])
    assert before + 1.7 - 0.001 <= deadline <= seen["now"] + 1.7 + 0.001
    assert gone(server, id)
    (line,) = jobs(log)
    assert line["job"] == f"{name}/{id}" and line["action"] == "finish" and line["exit"] == 0
    assert line["tube"] == "w" and line["attempt"] == 1 and line["duration"] >= 0


FAIL_AND_COUNT = 'echo "$TUBEWORKER_ATTEMPT" >> "$1"; exit 1'


def test_failure_releases_with_backoff_then_buries_and_a_kick_gives_a_fresh_budget(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (id,) = put(server, b"x")
    attempts = tmp_path / "attempts"
    argv = [*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts", "3", "--",
            "sh", "-c", FAIL_AND_COUNT, "sh", str(attempts)]
    code, log, _ = run(*argv)
    assert code == 0
    assert [(j["attempt"], j["exit"], j["action"], j.get("delay")) for j in jobs(log)] == [
        (1, 1, "release", 1), (2, 1, "release", 2), (3, 1, "fail", None)]
    st = stats_job(server, id)
    assert (st["state"], st["releases"], st["buries"], st["timeouts"]) == ("buried", 2, 1, 0)
    assert st["delay"] == 2  # the server got the last release's delay (a bury keeps it)
    with Client(server.addr, use="w") as c:
        c.kick_job(id)
    code, log, _ = run(*argv)
    assert code == 0
    assert [(j["attempt"], j["action"], j.get("delay")) for j in jobs(log)] == [
        (4, "release", 1), (5, "release", 2), (6, "fail", None)]
    assert attempts.read_text().split() == ["1", "2", "3", "4", "5", "6"]


def test_permanent_exit_code_buries_at_once_with_a_failure_record(
    server: procs.RunningServer
) -> None:
    (id,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST,
                       "--bury-exit-codes", "3,4", "--failure-tube", "dead",
                       "--", "sh", "-c", "echo doomed >&2; exit 4")
    assert code == 0
    (line,) = jobs(log)
    assert line["action"] == "fail" and line["exit"] == 4
    assert "permanent" in line["reason"]
    st = stats_job(server, id)
    assert (st["state"], st["releases"], st["buries"]) == ("buried", 0, 1)
    with Client(server.addr, watch="dead") as c:
        record = Msgpack().loads(c.reserve(timeout=2).body)
    assert record["id"] == id and record["tube"] == "w" and record["exit"] == 4
    assert record["server"] == f"127.0.0.1:{server.port}"
    assert record["stderr_tail"] == "doomed\n" and record["action"] == "bury"


IGNORE_TERM = 'trap "" TERM; sleep 60 & echo $! > "$1"; echo $$ > "$2"; wait; wait; wait'


def test_child_ignoring_term_is_killed_with_its_group_before_the_ttr(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (id,) = put(server, b"x", ttr=3)
    gc, child = tmp_path / "grandchild.pid", tmp_path / "child.pid"
    # Not waiting for the grandchild's 60 s sleep: run's 30 s limit would stop the test.
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts",
                       "1", "--", "sh", "-c", IGNORE_TERM, "sh", str(gc), str(child))
    assert code == 0
    (line,) = jobs(log)
    assert line["killed"] == "deadline" and line["signal"] == "SIGKILL"
    assert line["action"] == "fail"
    # Not killed early: TTR 3 s - 1 s margin - 0.3 s grace = 1.7 s until the (ignored) TERM,
    # then KILL after the 0.3 s grace. A lower bound the harness guarantees; load only adds.
    assert line["duration"] >= 1.7 + 0.3
    assert not alive(int(gc.read_text())) and not alive(int(child.read_text()))
    st = stats_job(server, id)
    assert (st["state"], st["timeouts"]) == ("buried", 0)  # the harness still owned it


def test_touch_keeps_a_long_job_reserved(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x", ttr=2)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--touch",
                       "--timeout", "10", "--", "sleep", "2.6")
    assert code == 0
    (line,) = jobs(log)
    # The sleep ran to its end, past its 2 s TTR, and its job was still the harness's.
    assert line["action"] == "finish" and line["exit"] == 0 and "killed" not in line
    assert gone(server, id)
    with Client(server.addr) as c:
        assert c.stats()["job-timeouts"] == 0


def test_touch_stops_at_the_hard_timeout(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x", ttr=2)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--touch",
                       "--timeout", "2.2", "--max-attempts", "1", "--", "sleep", "30")
    assert code == 0
    (line,) = jobs(log)
    # Killed at --timeout (not after the 30 s sleep: run's 30 s limit would stop the test),
    # not before it (a lower bound the harness guarantees), touched past its 2 s TTR.
    assert line["killed"] == "deadline" and line["duration"] >= 2.2
    assert stats_job(server, id)["timeouts"] == 0


STAMP = 'echo "$(date +%s.%N) $(sleep 0.5; date +%s.%N)" > "$1/$TUBEWORKER_JOB_ID"'


def test_concurrency_n_runs_exactly_n_children_at_once(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    ids = put(server, *[b"x"] * 6)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "-c", "3",
                       "--", "sh", "-c", STAMP, "sh", str(tmp_path))
    assert code == 0
    assert sorted(j["job"].rpartition("/")[2] for j in jobs(log)) == sorted(map(str, ids))
    spans = [tuple(map(float, (tmp_path / str(i)).read_text().split())) for i in ids]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 3


def test_result_tube_gets_a_record_with_the_stdout_tail(server: procs.RunningServer) -> None:
    (id,) = put(server, b"payload")
    code, _, _ = run(*server_args(server), "-t", "w", "--burst", *FAST,
                     "--result-tube", "done", "--", "sh", "-c", "cat; echo ' ok'")
    assert code == 0
    with Client(server.addr, watch="done") as c:
        record = Msgpack().loads(c.reserve(timeout=2).body)
    assert record["id"] == id and record["exit"] == 0 and record["action"] == "delete"
    assert record["stdout_tail"] == "payload ok\n" and record["duration"] >= 0


def test_missing_command_is_a_failure_not_a_crash(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts",
                       "1", "--", "/nonexistent/program")
    assert code == 0
    (line,) = jobs(log)
    assert line["exit"] == 127 and line["action"] == "fail"
    assert stats_job(server, id)["state"] == "buried"


# --------------------------------------------------------------------------- modes


def test_burst_exits_when_the_tubes_are_empty(server: procs.RunningServer) -> None:
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--", "true")
    assert code == 0 and jobs(log) == []
    assert [r["event"] for r in log] == ["start", "drained", "exit"]


def test_burst_against_an_unreachable_server_exits_1(tmp_path: Path) -> None:
    code, log, _ = run("-s", f"127.0.0.1:{procs.free_port()}", "--burst", *FAST, "--", "true")
    assert code == 1
    assert any(r["event"] == "giving-up" for r in log)


def test_two_servers_drained_by_one_harness(tmp_path: Path) -> None:
    with procs.tubeserver() as a, procs.tubeserver() as b:
        ids_a, ids_b = put(a, b"1", b"2", b"3"), put(b, b"4", b"5")
        code, log, _ = run(*server_args(a, b), "-t", "w", "--burst", *FAST, "-c", "2",
                           "--", "sh", "-c", "cat > /dev/null")
        assert code == 0
        done = sorted(j["job"] for j in jobs(log) if j["action"] == "finish")
        expect = sorted([f"127.0.0.1:{a.port}/{i}" for i in ids_a]
                        + [f"127.0.0.1:{b.port}/{i}" for i in ids_b])
        assert done == expect
        assert all(gone(a, i) for i in ids_a) and all(gone(b, i) for i in ids_b)


TASKS = """
import json, pathlib

def handle(body):
    pathlib.Path("called.json").write_text(json.dumps(body))

def explode(body):
    raise RuntimeError("boom " + repr(body))
"""


def test_call_mode_runs_a_python_function_per_job(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    (id,) = put(server, Msgpack().dumps({"n": 1, "s": "é"}))
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:handle", "--msgpack", cwd=tmp_path)
    assert code == 0
    assert json.loads((tmp_path / "called.json").read_text()) == {"n": 1, "s": "é"}
    assert gone(server, id)
    (id,) = put(server, b"raw")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:explode", "--max-attempts", "1", "--failure-tube", "dead",
                       cwd=tmp_path)
    assert code == 0
    (line,) = jobs(log)
    assert line["exit"] == 1 and line["action"] == "fail"
    with Client(server.addr, watch="dead") as c:
        record = Msgpack().loads(c.reserve(timeout=2).body)
    assert "RuntimeError: boom b'raw'" in record["stderr_tail"]


def test_against_a_real_beanstalkd(tmp_path: Path) -> None:
    with procs.beanstalkd() as bs:
        ok, bad = put(bs, b"ok"), put(bs, b"bad")
        code, log, _ = run(*server_args(bs), "-t", "w", "--burst", *FAST, "-c", "2",
                           "--max-attempts", "2", "--",
                           "sh", "-c", '[ "$(cat)" = ok ]')
        assert code == 0
        assert gone(bs, ok[0])
        st = stats_job(bs, bad[0])
        assert (st["state"], st["releases"], st["buries"]) == ("buried", 1, 1)
        assert [j["action"] for j in jobs(log) if j["job"].endswith(f"/{bad[0]}")] == [
            "release", "bury"]


def test_text_log_format(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x")
    code, _, err = run(*server_args(server), "-t", "w", "--burst", "--log-format", "text",
                       "--", "true")
    assert code == 0
    (line,) = [line for line in err.splitlines() if "event=job" in line]
    assert f"job=127.0.0.1:{server.port}/{id} tube=w attempt=1 exit=0" in line
    assert "action=finish reason=success" in line  # tubeserver keeps the (empty) result


@pytest.mark.parametrize("argv", [["--bogus", "--", "true"], ["-c", "0", "--", "true"], []])
def test_bad_input_exits_2_with_usage_and_no_traceback(argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert err.startswith("usage: tubeworker")
    assert "Traceback" not in err


def test_bad_environment_variable_exits_2() -> None:
    p = subprocess.run([TUBEWORKER, "--", "true"], capture_output=True, timeout=30,
                       env=clean_env(TUBEWORKER_MAX_ATTEMPTS="lots"))
    assert p.returncode == 2
    assert b"TUBEWORKER_MAX_ATTEMPTS" in p.stderr and b"Traceback" not in p.stderr


# --------------------------------------------------------------------------- signals


class Harness:
    """A tubeworker running in the background, its stderr in a file."""

    def __init__(self, tmp_path: Path, *args: str, stdout: int = subprocess.DEVNULL,
                 cwd: Path | None = None) -> None:
        self.errfile = (tmp_path / "harness.err").open("wb+")
        self.proc = subprocess.Popen([TUBEWORKER, *args], stdin=subprocess.DEVNULL,
                                     stdout=stdout, stderr=self.errfile, env=clean_env(),
                                     cwd=cwd)

    def log(self) -> list[dict[str, Any]]:
        self.errfile.seek(0)
        return parse_log(self.errfile.read().decode(errors="replace"))

    def wait(self, limit: float = 10) -> int:
        return self.proc.wait(timeout=limit)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errfile.close()


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    started: list[Harness] = []
    yield started
    for h in started:
        h.close()


LONG = 'echo $$ > "$1"; sleep 30'


def test_sigterm_mid_job_gives_it_back_without_using_an_attempt(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    (id,) = put(server, b"x", ttr=30)
    pidfile = tmp_path / "child.pid"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--shutdown-grace", "0.5",
                "--max-attempts", "1", "--", "sh", "-c", LONG, "sh", str(pidfile))
    harnesses.append(h)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    h.proc.send_signal(signal.SIGTERM)
    assert h.wait() == 0
    assert not alive(int(pidfile.read_text()))
    st = stats_job(server, id)
    # Given back by closing the connection: ready at once, and no failure on its record.
    assert (st["state"], st["delay"], st["reserves"]) == ("ready", 0, 1)
    assert (st["releases"], st["timeouts"], st["buries"]) == (0, 0, 0)
    (line,) = jobs(h.log())
    assert line["killed"] == "shutdown" and line["action"] == "release" and line["delay"] == 0
    # So the next harness runs attempt 1 of 1 rather than burying the job unrun.
    seen = tmp_path / "attempt"
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts",
                       "1", "--", "sh", "-c", 'echo "$TUBEWORKER_ATTEMPT" > "$1"', "sh",
                       str(seen))
    assert code == 0 and seen.read_text() == "1\n"
    assert [j["action"] for j in jobs(log)] == ["finish"]


def test_second_sigterm_skips_the_shutdown_grace(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    (id,) = put(server, b"x", ttr=30)
    pidfile = tmp_path / "child.pid"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--shutdown-grace", "60",
                "--", "sh", "-c", LONG, "sh", str(pidfile))
    harnesses.append(h)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    h.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(r["event"] == "stopping" for r in h.log()))
    assert h.proc.poll() is None  # waiting for the child within the grace
    h.proc.send_signal(signal.SIGINT)
    assert h.wait(5) == 0
    assert stats_job(server, id)["state"] == "ready"


def test_sigterm_lets_a_child_finish_within_the_grace(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    (id,) = put(server, b"x", ttr=30)
    pidfile = tmp_path / "child.pid"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--shutdown-grace", "10",
                "--", "sh", "-c", 'echo $$ > "$1"; sleep 1', "sh", str(pidfile))
    harnesses.append(h)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    h.proc.send_signal(signal.SIGTERM)
    assert h.wait() == 0
    assert gone(server, id)
    assert [j["action"] for j in jobs(h.log())] == ["finish"]


# The child waits (bounded: 10 s) for a file the test creates, then exits 0.
WAIT_GO = ('echo $$ > "$1"; i=0; '
           'while [ ! -e "$2" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done')
RACE_RUNS = 20


def test_sigterm_keeps_the_connection_until_a_finished_job_is_answered(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """Issue 15's race, forced and run 20 times: the child ends within the shutdown grace
    while the keeper's once-a-second stats-job is waiting for its reply. Cancelling that
    request closed the connection the job's delete needed, and the server re-queued the
    finished job. The server is stopped (SIGSTOP) for longer than the keeper's interval, so
    every keeper has a request in flight when the children end; 20 harnesses at once."""
    go = tmp_path / "go"
    runs = []
    for i in range(RACE_RUNS):
        tube = f"race{i}"
        (id,) = put(server, b"x", tube=tube, ttr=60)
        work = tmp_path / tube
        work.mkdir()
        pidfile = work / "child.pid"
        h = Harness(work, *server_args(server), "-t", tube, *FAST, "--shutdown-grace", "60",
                    "--", "sh", "-c", WAIT_GO, "sh", str(pidfile), str(go))
        harnesses.append(h)
        runs.append((id, pidfile, h))
    for _, pidfile, _ in runs:
        wait_for(lambda p=pidfile: p.exists() and p.read_text().strip(), limit=60)
    for _, _, h in runs:
        h.proc.send_signal(signal.SIGTERM)
    for _, _, h in runs:
        wait_for(lambda h=h: any(r["event"] == "stopping" for r in h.log()), limit=30)
    server.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2.5)  # > the keeper's 1 s interval: each has a stats-job in flight
        go.touch()
        for _, pidfile, _ in runs:
            wait_for(lambda p=pidfile: not alive(int(p.read_text())), limit=30)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    for id, _, h in runs:
        assert h.wait(30) == 0
        assert [(r["event"], r.get("action")) for r in h.log() if r["level"] != "info"] == []
        assert [j["action"] for j in jobs(h.log())] == ["finish"]
        assert gone(server, id)


def test_usr1_kills_running_children_as_failures(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    (id,) = put(server, b"x", ttr=30)
    pidfile = tmp_path / "child.pid"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--backoff-base", "60",
                "--", "sh", "-c", LONG, "sh", str(pidfile))
    harnesses.append(h)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    h.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: jobs(h.log()))
    (line,) = jobs(h.log())
    assert line["killed"] == "aborted" and line["action"] == "release" and line["delay"] == 60
    assert not alive(int(pidfile.read_text()))
    st = stats_job(server, id)
    assert (st["state"], st["releases"]) == ("delayed", 1)
    h.proc.send_signal(signal.SIGTERM)  # the harness kept working until told to stop
    assert h.wait() == 0


def test_usr2_pauses_and_cont_resumes(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--", "true")
    harnesses.append(h)
    wait_for(lambda: any(r["event"] == "start" for r in h.log()))
    h.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: any(r["event"] == "paused" for r in h.log()))
    (id,) = put(server, b"x")
    time.sleep(1.5)
    assert not gone(server, id) and stats_job(server, id)["state"] == "ready"
    h.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: gone(server, id))
    h.proc.send_signal(signal.SIGTERM)
    assert h.wait() == 0


def test_quit_waits_for_running_jobs_however_long(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    (id,) = put(server, b"x", ttr=30)
    pidfile = tmp_path / "child.pid"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--shutdown-grace", "0",
                "--", "sh", "-c", 'echo $$ > "$1"; sleep 1', "sh", str(pidfile))
    harnesses.append(h)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    h.proc.send_signal(signal.SIGQUIT)  # TERM would kill at once with a grace of 0
    assert h.wait() == 0
    assert gone(server, id)
    assert [j["action"] for j in jobs(h.log())] == ["finish"]


def test_max_jobs_stops_after_that_many_runs(server: procs.RunningServer) -> None:
    ids = put(server, b"1", b"2", b"3")
    code, log, _ = run(*server_args(server), "-t", "w", *FAST, "--max-jobs", "2", "--", "true")
    assert code == 0
    assert [j["action"] for j in jobs(log)] == ["finish", "finish"]
    assert [gone(server, i) for i in ids] == [True, True, False]


def test_shell_mode_quotes_placeholders(server: procs.RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    put(server, b"x", tube="w$(id);x")
    code, log, _ = run(*server_args(server), "-t", "w$(id);x", "--burst", *FAST, "--shell",
                       "--", f"echo {{tube}} {{id}} > {out}")
    assert code == 0
    assert [j["action"] for j in jobs(log)] == ["finish"]
    assert out.read_text() == "w$(id);x 1\n"


def test_reserve_batch_is_used_where_offered_and_not_on_beanstalkd(tmp_path: Path) -> None:
    argv = ["-t", "w", "--burst", *FAST, "-c", "4", "--", "true"]
    with procs.tubeserver() as ts, procs.beanstalkd() as bs:
        for srv, answer in ((ts, "finish"), (bs, "delete")):
            ids = put(srv, *[b"x"] * 12)
            code, log, _ = run(*server_args(srv), *argv)
            assert code == 0
            assert [j["action"] for j in jobs(log)] == [answer] * 12
            assert all(gone(srv, i) for i in ids)
        with Client(ts.addr) as c:  # reserve-batch is counted in no cmd-* key
            assert c.stats()["cmd-reserve-with-timeout"] == 0
        with Client(bs.addr) as c:
            assert c.stats()["cmd-reserve-with-timeout"] >= 12


def test_lost_connection_kills_the_child_and_logs_an_error(
    tmp_path: Path, harnesses: list[Harness]
) -> None:
    pidfile = tmp_path / "child.pid"
    with procs.tubeserver() as srv:
        put(srv, b"x", ttr=30)
        h = Harness(tmp_path, *server_args(srv), "-t", "w", *FAST, "--", "sh", "-c", LONG,
                    "sh", str(pidfile))
        harnesses.append(h)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        srv.proc.kill()
        srv.proc.wait(timeout=5)
        wait_for(lambda: jobs(h.log()), limit=5)
        (line,) = jobs(h.log())
        assert line["level"] == "error" and line["action"] == "none"
        assert line["killed"] == "lost" and "may run again" in line["reason"]
        assert not alive(int(pidfile.read_text()))
        wait_for(lambda: any(r["event"] == "connection" for r in h.log()))  # reconnecting
        h.proc.send_signal(signal.SIGTERM)
        assert h.wait() == 0


# --------------------------------------------------------------------------- robustness


FLOOD = 'if [ "$(cat)" = flood ]; then head -c 50000000 /dev/zero; fi'


def test_a_child_flooding_stdout_does_not_stall_the_other_jobs(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """The harness's stdout is a pipe nobody reads: it fills after 64 KiB. Writing to it
    from the event loop stalled every job; now the overflow is dropped and counted."""
    ids = put(server, b"flood", b"a", b"b", b"c")
    h = Harness(tmp_path, *server_args(server), "-t", "w", "--burst", *FAST, "-c", "2",
                "--", "sh", "-c", FLOOD, stdout=subprocess.PIPE)
    harnesses.append(h)
    assert h.wait(60) == 0
    assert all(gone(server, i) for i in ids)
    lines = jobs(h.log())
    assert [j["action"] for j in lines] == ["finish"] * 4
    (flooded,) = [j for j in lines if j["job"].endswith(f"/{ids[0]}")]
    assert flooded["dropped"] > 0
    assert next(r for r in h.log() if r["event"] == "exit")["dropped"] >= flooded["dropped"]


def test_grandchildren_die_with_the_group_when_the_leader_exits(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (_id,) = put(server, b"x")
    gc = tmp_path / "grandchild.pid"
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--", "sh", "-c",
                       'sleep 60 >/dev/null 2>&1 & echo $! > "$1"', "sh", str(gc))
    assert code == 0
    assert [j["action"] for j in jobs(log)] == ["finish"]
    wait_for(lambda: not alive(int(gc.read_text())))


def test_max_idle_time_exits_after_so_long_without_a_job(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", *FAST, "--max-idle-time", "1",
                       "--", "true")
    assert code == 0
    assert gone(server, id)
    events = [r["event"] for r in log]
    assert events[-3:] == ["idle", "stopping", "exit"]
    assert events.index("job") < events.index("idle")


async def test_a_bug_in_one_job_task_is_logged_counted_and_the_job_given_back(
    server: procs.RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, so that a bug can be planted: the job with body "bug" raises inside its
    task. It is released as a failed attempt (then buried once they are spent, so it cannot
    spin) while the harness goes on with the others."""
    ids = put(server, b"ok1", b"bug", b"ok2")
    stream = io.StringIO()
    config = Config(command=("true",), servers=(server.addr,), tubes=("w",), burst=True,
                    passthrough=False, kill_grace=0.3,
                    policy=Policy(max_attempts=2, backoff_base=0, jitter=False))
    sup = Supervisor(config, Logger("json", stream))
    plain = sup._spawner

    def planted(values: dict[str, str], meta: dict[str, str],
                pipes: ChildPipes | None = None) -> Spawner:
        if values["id"] == str(ids[1]):
            raise RuntimeError("planted bug")
        return plain(values, meta, pipes)

    monkeypatch.setattr(sup, "_spawner", planted)
    with trio.fail_after(30):
        assert await sup.run(handle_signals=False) == 0
    log = parse_log(stream.getvalue())
    bugs = [r for r in log if r["event"] == "bug"]
    assert [b["action"] for b in bugs] == ["release", "fail"] and sup.bugs == 2
    assert "RuntimeError: planted bug" in bugs[0]["traceback"]
    assert "Traceback (most recent call last)" in bugs[0]["traceback"]
    assert gone(server, ids[0]) and gone(server, ids[2])
    st = stats_job(server, ids[1])
    assert (st["state"], st["releases"], st["buries"]) == ("buried", 1, 1)
    assert next(r for r in log if r["event"] == "exit")["bugs"] == 2
