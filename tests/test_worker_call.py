"""tubeworker --call end to end: the forkserver, one forked child per job, real servers.

The job functions live in a module written to tmp_path (the harness's working directory);
they record what they saw in files there. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import procs
from test_worker import (
    FAST,
    TUBEWORKER,
    Harness,
    alive,
    clean_env,
    gone,
    harnesses,
    jobs,
    parse_log,
    put,
    run,
    server,
    server_args,
    stats_job,
    wait_for,
)
from tubeclient import Client, Msgpack

__all__ = ["harnesses", "server"]  # the fixtures, imported for these tests

TASKS = '''
import os, signal, sys, time

STATE = []

def job(body):
    kind = body.decode()
    with open("pids", "a") as f:
        f.write(f"{os.getpid()} {kind}\\n")
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "mutate":
        STATE.append(1)
        sys.modules["json"] = None
    elif kind == "check" and (STATE or "json" in sys.modules and sys.modules["json"] is None):
        sys.exit(9)
    elif kind.startswith("exit"):
        sys.exit(int(kind[4:]))
    elif kind == "raise":
        raise ValueError("bad body")
    elif kind == "none":
        sys.exit()
    elif kind == "text":
        sys.exit("leaving with a message")
    print("ran", kind, "as job", os.environ["TUBEWORKER_JOB_ID"], flush=True)

def values(body):
    with open("seen", "w") as f:
        f.write(repr(body))

def stubborn(body):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open("pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)

def version(body):
    import versioned
    with open("versions", "a") as f:
        f.write(versioned.VERSION + "\\n")
'''


def tasks(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def run_out(*args: str, cwd: Path) -> tuple[int, str, str]:
    p = subprocess.run([TUBEWORKER, *args], capture_output=True, timeout=60, cwd=cwd,
                       env=clean_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_return_and_exit_semantics(server: procs.RunningServer, tmp_path: Path) -> None:
    bodies = [b"ok", b"exit0", b"none", b"exit4", b"exit7", b"raise", b"text"]
    ids = put(server, *bodies)
    code, out, err = run_out(*server_args(server), "-t", "w", "--burst", *FAST,
                             "--call", "tasks:job", "--max-attempts", "1",
                             "--bury-exit-codes", "4", "--failure-tube", "dead",
                             cwd=tasks(tmp_path))
    assert code == 0
    # The function's stdout reaches the harness's, with the job's variables set.
    assert f"ran ok as job {ids[0]}\n" in out
    lines = {int(j["job"].rpartition("/")[2]): j for j in jobs(parse_log(err))}
    got = [(lines[i].get("exit"), lines[i]["action"]) for i in ids]
    assert got == [(0, "finish"), (0, "finish"), (0, "finish"), (4, "fail"), (7, "fail"),
                   (1, "fail"), (1, "fail")]
    assert "permanent" in lines[ids[3]]["reason"] and "budget" in lines[ids[4]]["reason"]
    assert all(gone(server, i) for i in ids[:3])
    with Client(server.addr, watch="dead") as c:
        records = [Msgpack().loads(c.reserve(timeout=2).body) for _ in range(4)]
    tails = {r["id"]: r["stderr_tail"] for r in records}
    assert "ValueError: bad body" in tails[ids[5]] and "Traceback" in tails[ids[5]]
    assert tails[ids[6]] == "leaving with a message\n"


def test_msgpack_body(server: procs.RunningServer, tmp_path: Path) -> None:
    (id,) = put(server, Msgpack().dumps({"n": 1, "s": "é", "b": b"\x00"}))
    code, _, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                     "tasks:values", "--msgpack", cwd=tasks(tmp_path))
    assert code == 0
    assert (tmp_path / "seen").read_text() == repr({"n": 1, "s": "é", "b": b"\x00"})
    assert gone(server, id)


def test_a_crash_in_one_job_does_not_touch_the_next(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    kinds = [b"segv", b"mutate", b"check", b"exit3", b"check", b"raise", b"ok"]
    ids = put(server, *kinds)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:job", "--max-attempts", "1", cwd=tasks(tmp_path))
    assert code == 0
    lines = {int(j["job"].rpartition("/")[2]): j for j in jobs(log)}
    got = [(lines[i].get("exit"), lines[i].get("signal"), lines[i]["action"]) for i in ids]
    assert got == [(None, "SIGSEGV", "fail"), (0, None, "finish"), (0, None, "finish"),
                   (3, None, "fail"), (0, None, "finish"), (1, None, "fail"),
                   (0, None, "finish")]
    pids = [line.split()[0] for line in (tmp_path / "pids").read_text().splitlines()]
    assert len(pids) == len(kinds) == len(set(pids))  # one fresh process per job


def test_preload_is_imported_once_in_the_forkserver(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "heavy.py").write_text(
        'import os\nopen("imports", "a").write(f"{os.getpid()}\\n")\n')
    ids = put(server, b"ok", b"ok", b"ok")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:job", "--preload", "heavy", cwd=tasks(tmp_path))
    assert code == 0 and all(gone(server, i) for i in ids)
    (forkserver,) = [r for r in log if r["event"] == "forkserver"]
    assert forkserver["preload"] == "heavy"
    assert (tmp_path / "imports").read_text() == f"{forkserver['pid']}\n"
    job_pids = {line.split()[0] for line in (tmp_path / "pids").read_text().splitlines()}
    assert len(job_pids) == 3 and str(forkserver["pid"]) not in job_pids


def test_a_target_that_cannot_be_imported_exits_2_without_a_traceback(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    for target in ("nosuchmodule:job", "tasks:nosuchfunction"):
        code, log, err = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                             target, cwd=tasks(tmp_path))
        assert code == 2
        (line,) = [r for r in log if r["event"] == "forkserver"]
        assert line["level"] == "error" and "cannot load" in line["error"]
        assert "Traceback" not in err
    code, _, err = run(*server_args(server), "-t", "w", "--preload", "no-such", "--call",
                       "tasks:job", cwd=tmp_path)
    assert code == 2 and "not a module name" in err and "Traceback" not in err


def test_a_forked_child_ignoring_term_is_killed_at_the_deadline(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (id,) = put(server, b"x", ttr=3)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:stubborn", "--max-attempts", "1", cwd=tasks(tmp_path))
    assert code == 0
    (line,) = jobs(log)
    assert line["killed"] == "deadline" and line["signal"] == "SIGKILL"
    assert line["action"] == "fail"
    assert not alive(int((tmp_path / "pid").read_text()))
    st = stats_job(server, id)
    assert (st["state"], st["timeouts"]) == ("buried", 0)  # answered before the TTR ran out


def test_the_forkserver_and_its_children_die_with_the_harness(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    put(server, b"x", ttr=60)
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--call",
                "tasks:stubborn", cwd=tasks(tmp_path))
    harnesses.append(h)
    pidfile = tmp_path / "pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), limit=30)
    (forkserver,) = [r["pid"] for r in h.log() if r["event"] == "forkserver"]
    child = int(pidfile.read_text())
    assert alive(forkserver) and alive(child)
    h.proc.kill()  # no chance to clean up: the forkserver sees its socket close
    h.proc.wait(timeout=10)
    wait_for(lambda: not alive(forkserver) and not alive(child))


def test_sighup_restarts_the_forkserver_with_changed_code(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    versioned = tasks(tmp_path) / "versioned.py"
    versioned.write_text('VERSION = "v1"\n')
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--call", "tasks:version",
                "--preload", "versioned", cwd=tmp_path)
    harnesses.append(h)
    versions = tmp_path / "versions"
    put(server, b"x")
    wait_for(lambda: versions.exists() and versions.read_text() == "v1\n", limit=30)
    versioned.write_text('VERSION = "v2"\n')
    os.utime(versioned, (time.time() + 5, time.time() + 5))  # a fresh mtime for the pyc check
    h.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len([r for r in h.log() if r["event"] == "forkserver"]) == 2, limit=30)
    put(server, b"x")
    wait_for(lambda: versions.read_text() == "v1\nv2\n", limit=30)
    first, second = [r["pid"] for r in h.log() if r["event"] == "forkserver"]
    wait_for(lambda: not alive(first))  # the old one had no children left: it is gone
    assert alive(second)
    h.proc.send_signal(signal.SIGTERM)
    assert h.wait() == 0
    wait_for(lambda: not alive(second))
