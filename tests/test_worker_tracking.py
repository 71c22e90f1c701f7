"""tubeworker with job tracking: results with finish, reasons with fail, checkpoints that a
retried job resumes from; and against beanstalkd, delete and bury as before.

Real harnesses, real children, real servers on loopback; the job's fate is read back with
wait_result, peek_checkpoint and stats. Every wait is bounded.
"""

from __future__ import annotations

from pathlib import Path

import procs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_worker import FAST, gone, jobs, put, run, server, server_args, stats_job
from tubeclient import Client, JobFailed, Msgpack, NotFound
from tubeclient.harness.callee import frame
from tubeclient.harness.channels import MAX_RECORD, ChannelError, Records

__all__ = ["server"]  # the fixture, imported for these tests

TASKS = '''
import os, sys

def add(body):
    return {"sum": sum(body)}

def nothing(body):
    return None

def explode(body):
    raise ValueError("no good: " + repr(body))

def opaque(body):
    return object()

def resume(body, job):
    with open("seen", "a") as f:
        f.write(f"{job.attempt} {job.last_checkpoint!r}\\n")
    start = (job.last_checkpoint or {}).get("step", 0)
    for step in range(start, 4):
        job.checkpoint({"step": step + 1})
        if step == 1 and job.attempt == 1:
            os._exit(3)  # dies mid-way, after its second checkpoint
    return {"done": 4, "from": start}
'''


def tasks(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def result_of(srv: procs.RunningServer, id: int, msgpack: bool = False) -> object:
    """The job's result (decoded as a --call value with `msgpack`), at once."""
    with Client(srv.addr) as c:
        raw = c.wait_result(id, timeout=0)
    return Msgpack().loads(raw) if msgpack and raw else raw


def finishes(c: Client[bytes]) -> object:
    """tubeserver's cmd-finish (a key tubeclient's Stats does not name)."""
    return dict(c.stats())["cmd-finish"]


def reason_of(srv: procs.RunningServer, id: int, msgpack: bool = False) -> object:
    """The failed job's reason (decoded as a --call traceback with `msgpack`)."""
    with pytest.raises(JobFailed) as failed, Client(srv.addr) as c:
        c.wait_result(id, timeout=0)
    raw = failed.value.reason
    assert isinstance(raw, bytes)
    return Msgpack().loads(raw) if msgpack else raw


# --------------------------------------------------------------------------- --call


def test_a_functions_return_value_is_the_result_and_its_traceback_the_reason(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    tasks(tmp_path)
    (ok,) = put(server, Msgpack().dumps([1, 2, 3]))
    code, _, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call", "tasks:add",
                     "--msgpack", cwd=tmp_path)
    assert code == 0
    assert result_of(server, ok, msgpack=True) == {"sum": 6}
    (none,) = put(server, b"x")
    code, _, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                     "tasks:nothing", cwd=tmp_path)
    assert code == 0 and result_of(server, none) is None  # None is an empty result
    with Client(server.addr) as c:
        assert finishes(c) == 2
    (bad,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:explode", "--max-attempts", "1", cwd=tmp_path)
    assert code == 0
    reason = reason_of(server, bad, msgpack=True)
    assert isinstance(reason, str) and reason.startswith("Traceback (most recent call last)")
    assert "ValueError: no good: b'x'" in reason and "callee.py" not in reason
    # A value msgpack cannot encode is a failure with its traceback, not a lost result.
    (odd,) = put(server, b"y")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--call",
                       "tasks:opaque", "--max-attempts", "1", cwd=tmp_path)
    assert code == 0 and [j["action"] for j in jobs(log)] == ["fail"]
    assert "can not serialize" in str(reason_of(server, odd, msgpack=True))


def test_a_function_killed_mid_way_resumes_from_its_last_checkpoint(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    tasks(tmp_path)
    (id,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--backoff-base",
                       "0", "--call", "tasks:resume", cwd=tmp_path)
    assert code == 0
    assert [(j["attempt"], j.get("exit"), j["action"], j.get("resumed")) for j in jobs(log)] == [
        (1, 3, "release", None), (2, 0, "finish", True)]
    assert (tmp_path / "seen").read_text() == "1 None\n2 {'step': 2}\n"
    assert result_of(server, id, msgpack=True) == {"done": 4, "from": 2}


# --------------------------------------------------------------------------- commands


def test_a_commands_result_is_its_stdout_tail_and_its_reason_the_stderr_tail(
    server: procs.RunningServer
) -> None:
    ok, bad = put(server, b"ok", b"bad")
    script = 'if [ "$(cat)" = ok ]; then printf "noise,result"; else echo doomed >&2; exit 1; fi'
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts",
                       "1", "--result-bytes", "6", "--", "sh", "-c", script)
    assert code == 0
    assert sorted(j["action"] for j in jobs(log)) == ["fail", "finish"]
    assert result_of(server, ok) == b"result"
    assert reason_of(server, bad) == b"doomed\n"
    (quiet,) = put(server, b"ok")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--no-result",
                       "--", "sh", "-c", script)
    assert code == 0 and result_of(server, quiet) is None
    assert [j["action"] for j in jobs(log)] == ["delete"]  # the log names the command sent
    with Client(server.addr) as c:
        assert finishes(c) == 1  # --no-result deleted the last one


def test_a_reason_is_never_empty(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x")
    code, _, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts", "1",
                     "--", "sh", "-c", "kill -9 $$")
    assert code == 0
    assert reason_of(server, id) == b"killed by signal 9; attempt budget spent (1/1)"


def test_a_result_larger_than_the_server_takes_fails_the_job_saying_so() -> None:
    with procs.tubeserver("-z", "1000") as srv:
        (id,) = put(srv, b"x")
        code, log, _ = run(*server_args(srv), "-t", "w", "--burst", *FAST, "--result-bytes",
                           "5000", "--", "sh", "-c", "head -c 3000 /dev/zero")
        assert code == 0
        (line,) = jobs(log)
        assert line["action"] == "fail" and "larger than the server's max job size" in (
            line["reason"])
        assert reason_of(srv, id) == (b"the result (3000 bytes) is larger than the server's "
                                      b"max job size")


# A command that leaves a checkpoint per step through TUBEWORKER_CHECKPOINT_FD and resumes
# from TUBEWORKER_CHECKPOINT; on attempt 1 it is killed at its deadline after step 2.
STEPS = r'''
seen=none
[ -n "$TUBEWORKER_CHECKPOINT" ] && seen=$(cat "$TUBEWORKER_CHECKPOINT")
echo "$TUBEWORKER_ATTEMPT $seen" >> "$1"
step=${seen#step}; [ "$seen" = none ] && step=0
while [ "$step" -lt 4 ]; do
    step=$((step + 1))
    printf '%s\n%s' 5 "step$step" >>"/dev/fd/$TUBEWORKER_CHECKPOINT_FD"
    if [ "$step" = 2 ] && [ "$TUBEWORKER_ATTEMPT" = 1 ]; then exec sleep 60; fi
done
echo "finished from $seen"
'''


def test_a_command_killed_mid_way_resumes_from_its_last_checkpoint(
    server: procs.RunningServer, tmp_path: Path
) -> None:
    (id,) = put(server, b"x", ttr=3)
    seen = tmp_path / "seen"
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--backoff-base",
                       "0", "--", "sh", "-c", STEPS, "sh", str(seen))
    assert code == 0
    assert [(j["attempt"], j.get("killed"), j["action"]) for j in jobs(log)] == [
        (1, "deadline", "release"), (2, None, "finish")]
    assert seen.read_text() == "1 none\n2 step2\n"
    assert result_of(server, id) == b"finished from step2\n"
    assert stats_job_gone(server, id)


def stats_job_gone(srv: procs.RunningServer, id: int) -> bool:
    with Client(srv.addr) as c:
        try:
            c.peek_checkpoint(id)
        except NotFound:
            return gone(srv, id)
    return False


# Checkpoints every 0.4 s for about 3 s; the run limit without them is 3 - 1 - 0.3 = 1.7 s.
TICKING = r'''
i=0
while [ $i -lt 8 ]; do
    i=$((i + 1)); printf '1\n%s' "$i" >>"/dev/fd/$TUBEWORKER_CHECKPOINT_FD"; sleep 0.4
done
'''


def test_checkpoints_keep_a_long_job_alive_without_touch(server: procs.RunningServer) -> None:
    (id,) = put(server, b"x", ttr=3)
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--max-attempts",
                       "1", "--", "sh", "-c", TICKING)
    assert code == 0
    (line,) = jobs(log)
    assert line["action"] == "finish" and "killed" not in line and line["checkpoints"] >= 2
    assert gone(server, id)
    with Client(server.addr) as c:
        assert c.stats()["job-timeouts"] == 0


def test_garbage_on_the_checkpoint_pipe_is_logged_and_the_job_goes_on(
    server: procs.RunningServer
) -> None:
    (id,) = put(server, b"x")
    code, log, _ = run(*server_args(server), "-t", "w", "--burst", *FAST, "--", "sh", "-c",
                       'echo "not a record" >>"/dev/fd/$TUBEWORKER_CHECKPOINT_FD"; echo done')
    assert code == 0
    (warning,) = [r for r in log if r["event"] == "checkpoint"]
    assert "bad checkpoint header" in warning["error"]
    assert [j["action"] for j in jobs(log)] == ["finish"]
    assert result_of(server, id) == b"done\n"


# --------------------------------------------------------------------------- beanstalkd


def test_against_beanstalkd_jobs_are_deleted_and_buried_as_before(tmp_path: Path) -> None:
    tasks(tmp_path)
    with procs.beanstalkd() as bs:
        ok, bad = put(bs, b"x"), put(bs, b"y")
        code, log, _ = run(*server_args(bs), "-t", "w", "--burst", *FAST, "--max-attempts",
                           "1", "--call", "tasks:resume", cwd=tmp_path)
        assert code == 0
        # No checkpoint was kept: attempt 1 died, and was buried (the budget is 1).
        assert (tmp_path / "seen").read_text() == "1 None\n1 None\n"
        assert [j["action"] for j in jobs(log)] == ["bury", "bury"]
        assert stats_job(bs, ok[0])["state"] == "buried"
        with Client(bs.addr, use="w") as c:
            c.kick(2)
        code, log, _ = run(*server_args(bs), "-t", "w", "--burst", *FAST, "--", "sh", "-c",
                           '[ -z "$TUBEWORKER_CHECKPOINT_FD" ]')
        assert code == 0 and [j["action"] for j in jobs(log)] == ["delete", "delete"]
        assert gone(bs, ok[0]) and gone(bs, bad[0])


# --------------------------------------------------------------------------- framing


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 50))
def test_records_parse_the_same_fed_whole_or_in_pieces(items: list[bytes], step: int) -> None:
    stream = b"".join(frame(item) for item in items)
    whole = Records().feed(stream)
    pieces, records = [], Records()
    for i in range(0, len(stream), step):
        pieces += records.feed(stream[i:i + step])
    assert whole == pieces == items and not records.pending


@given(st.binary(max_size=64))
def test_records_garbage_parses_or_raises_the_channel_error(data: bytes) -> None:
    try:
        Records().feed(data)
    except ChannelError:
        pass


def test_records_refuse_a_header_that_is_not_a_length() -> None:
    for bad in (b"x\n", b"-1\n", b" 3\n", b"%d\n" % (MAX_RECORD + 1), b"9" * 12):
        with pytest.raises(ChannelError):
            Records().feed(bad)
