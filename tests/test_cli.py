"""Command-line tests: real `tubeserver` processes, their flags, environment, signals and exits.

Each test starts `python -m tubeserver` (or the installed console script) as a subprocess on a
free loopback port or a UNIX socket under /tmp, talks to it with a plain socket, and checks
exit codes and stderr. Every wait is bounded: subprocess timeouts, socket timeouts, and
polling loops with a deadline; a process still running at the end of a test is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import procs
import pytest
from procs import Conn

from tubeserver import BUILD, __version__

HOST = "127.0.0.1"
EXIT_LIMIT = 5.0  # seconds a server may take to exit after a signal
START_LIMIT = 10.0  # seconds a server may take to start listening
IO_TIMEOUT = 5.0  # seconds any socket operation may block
GIB = 1 << 30
CONSOLE_SCRIPT = Path(sys.executable).parent / "tubeserver"
FLAGS = ("-l", "--listen", "-p", "--port", "-z", "--max-job-size", "-V", "--verbose",
         "-v", "--version", "-h", "--help", "--timezone")
ENV_VARS = ("TUBESERVER_LISTEN", "TUBESERVER_PORT", "TUBESERVER_MAX_JOB_SIZE",
            "TUBESERVER_VERBOSE", "TUBESERVER_TIMEZONE")


# --------------------------------------------------------------------------- helpers


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TUBESERVER_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUBESERVER_")}
    env["COLUMNS"] = "100"  # argparse wraps help to the terminal width
    env.update(extra)
    return env


def module_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tubeserver", *args]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tubeserver that is expected to exit on its own."""
    return subprocess.run(module_argv(*args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=START_LIMIT, env=clean_env() if env is None
                          else env)


@attrs.define
class Proc:
    """A running server process whose stderr goes to a file (it can never block on it)."""

    popen: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, limit: float = START_LIMIT) -> re.Match[str]:
        """The first match of `pattern` in stderr, polling until `limit` seconds pass."""
        deadline = time.monotonic() + limit
        while True:
            found = re.search(pattern, self.stderr())
            if found:
                return found
            if self.popen.poll() is not None:
                pytest.fail(f"server exited ({self.popen.returncode}): {self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} in stderr within {limit}s: {self.stderr()}")
            time.sleep(0.02)

    def signal_and_wait(self, signum: int) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(timeout=EXIT_LIMIT)


@contextlib.contextmanager
def server(*args: str, env: dict[str, str] | None = None, exe: list[str] | None = None,
           log_dir: Path) -> Iterator[Proc]:
    """A server started with `args`, yielded once it logs that it is listening."""
    log = log_dir / f"stderr-{time.monotonic_ns()}.txt"
    with log.open("wb") as err:
        popen = subprocess.Popen([*(exe or module_argv()), *args], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err,
                                 env=clean_env() if env is None else env)
    proc = Proc(popen, log)
    try:
        proc.wait_for_log(r"listening on ")
        yield proc
    finally:
        procs.stop(popen, EXIT_LIMIT)


def round_trip(conn: Conn, body: bytes = b"hello") -> None:
    """put, reserve and delete one job on `conn`."""
    inserted = conn.cmd(b"put 0 0 60 %d\r\n%b" % (len(body), body))
    assert inserted.startswith(b"INSERTED "), inserted
    job_id = int(inserted.split()[1])
    assert conn.cmd(b"reserve-with-timeout 0") == b"RESERVED %d %d\r\n%b\r\n" % (
        job_id, len(body), body)
    assert conn.cmd(b"delete %d" % job_id) == b"DELETED\r\n"


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=IO_TIMEOUT).close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory under /tmp with a short path: UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tsv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- help, version, usage


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_flag_and_its_variable(flag: str) -> None:
    result = run(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tubeserver")
    words = set(re.findall(r"[-\w]+", result.stdout))
    assert set(FLAGS) <= words, set(FLAGS) - words
    assert set(ENV_VARS) <= words, set(ENV_VARS) - words
    assert result.stderr == ""


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version(flag: str) -> None:
    result = run(flag)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"tubeserver {__version__}, {BUILD}\n", "")


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["-p", "abc"], "abc"),
        (["-p", "70000"], "70000"),
        (["-p"], "-p"),
        (["-z", "-1"], "-1"),
        (["-z", "big"], "big"),
        (["-l", ""], "listen"),
        (["--nope"], "--nope"),
        (["stray"], "stray"),
        (["-V", "-p", "11300", "extra", "args"], "extra args"),
        (["--timezone", "Mars/Olympus"], "Mars/Olympus"),
        (["--timezone", "../etc/passwd"], "../etc/passwd"),
    ],
)
def test_bad_arguments_print_usage_and_exit_2(args: list[str], mentions: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("usage: tubeserver"), result.stderr
    assert mentions in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TUBESERVER_PORT", "x"),
        ("TUBESERVER_PORT", "65536"),
        ("TUBESERVER_MAX_JOB_SIZE", "-5"),
        ("TUBESERVER_MAX_JOB_SIZE", "1k"),
        ("TUBESERVER_VERBOSE", "loud"),
        ("TUBESERVER_TIMEZONE", "Nowhere/Town"),
    ],
)
def test_bad_environment_exits_2_naming_the_variable(var: str, value: str) -> None:
    result = run(env=clean_env(**{var: value}))
    assert result.returncode == 2, result
    last = result.stderr.splitlines()[-1]
    assert var in last and value in last, result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- configuration


def test_environment_configures_the_server(tmp_path: Path) -> None:
    port = procs.free_port()
    env = clean_env(TUBESERVER_LISTEN=HOST, TUBESERVER_PORT=str(port),
                    TUBESERVER_MAX_JOB_SIZE="12345", TUBESERVER_VERBOSE="1")
    with server(env=env, log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        round_trip(conn)
        assert conn.stats()["max-job-size"] == "12345"
        proc.wait_for_log(r"accept 127\.0\.0\.1:\d+")  # verbosity 1 from the environment
        conn.close()


def test_command_line_beats_environment(tmp_path: Path) -> None:
    env_port, cli_port = procs.free_port(), procs.free_port()
    env = clean_env(TUBESERVER_PORT=str(env_port), TUBESERVER_MAX_JOB_SIZE="100",
                    TUBESERVER_LISTEN="unix:/nonexistent/never.sock")
    with server("-l", HOST, "-p", str(cli_port), "-z", "200", env=env, log_dir=tmp_path):
        conn = Conn.tcp(cli_port)
        assert conn.stats()["max-job-size"] == "200"
        round_trip(conn, bytes(200))
        conn.close()
        assert_refused(env_port)


def test_max_job_size_above_one_gib_is_clamped(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-z", str(5 * GIB), log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        assert conn.stats()["max-job-size"] == str(GIB)
        conn.close()
        warning = proc.stderr().splitlines()[0]
        assert str(5 * GIB) in warning and str(GIB) in warning


def test_small_max_job_size_refuses_bigger_bodies(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-z", "10", log_dir=tmp_path):
        conn = Conn.tcp(port)
        round_trip(conn, b"0123456789")
        assert conn.cmd(b"put 0 0 60 11\r\n0123456789a") == b"JOB_TOO_BIG\r\n"
        assert conn.cmd(b"list-tube-used") == b"USING default\r\n"  # still in step
        conn.close()


# --------------------------------------------------------------------------- listen failures


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("-p", str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{HOST}:{port}" in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("address", ["192.0.2.1", "unix:", "unix:/nonexistent-dir/ts.sock"])
def test_unusable_listen_address_is_one_clear_line(address: str) -> None:
    result = run("-l", address, "-p", str(procs.free_port()))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and address in lines[0], result.stderr


def test_unix_path_holding_a_regular_file_is_not_replaced(short_dir: Path) -> None:
    path = short_dir / "not-a-socket"
    path.write_text("precious")
    result = run("-l", f"unix:{path}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and str(path) in result.stderr
    assert path.read_text() == "precious"


# --------------------------------------------------------------------------- UNIX sockets


def test_unix_socket_replaces_a_stale_one_and_is_removed_on_exit(short_dir: Path) -> None:
    path = str(short_dir / "ts.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # left behind, as by a crashed server: nobody listens on it
    with server("-l", f"unix:{path}", "-p", "1", log_dir=short_dir) as proc:
        assert f"unix:{path}" in proc.stderr()
        producer, worker = Conn.unix(path), Conn.unix(path)
        assert producer.cmd(b"put 0 0 60 3\r\nabc") == b"INSERTED 1\r\n"
        assert worker.cmd(b"reserve-with-timeout 0") == b"RESERVED 1 3\r\nabc\r\n"
        assert worker.cmd(b"delete 1") == b"DELETED\r\n"
        assert proc.signal_and_wait(signal.SIGTERM) == 0
        producer.close()
        worker.close()
    assert not os.path.exists(path)


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_cleanly_with_clients_connected(
    signum: signal.Signals, tmp_path: Path
) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-z", str(2 << 20), log_dir=tmp_path) as proc:
        waiter, idle, partial, stuck = (Conn.tcp(port) for _ in range(4))
        waiter.sock.sendall(b"reserve\r\n")
        # The idle client holds a job from a tube the waiter does not watch.
        assert idle.cmd(b"use held") == b"USING held\r\n"
        assert idle.cmd(b"watch held") == b"WATCHING 2\r\n"
        assert idle.cmd(b"put 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert idle.cmd(b"reserve-with-timeout 0") == b"RESERVED 1 1\r\nx\r\n"
        partial.sock.sendall(b"put 0 0 60 10\r\nabc")  # a body cut short
        # The stuck client asks for far more than the socket buffers hold and never reads,
        # so the server is blocked writing to it.
        assert stuck.cmd(b"use held") == b"USING held\r\n"
        assert stuck.cmd(b"put 0 0 60 %d\r\n%b" % (1 << 20, bytes(1 << 20))) == (
            b"INSERTED 2\r\n")
        stuck.sock.sendall(b"peek 2\r\n" * 64)
        assert idle.stats()["current-waiting"] == "1"

        assert proc.signal_and_wait(signum) == 0
        for conn in (waiter, idle, partial):
            assert conn.at_eof()
            conn.close()
        stuck.close()
        err = proc.stderr()
        assert f"{signum.name}: shutting down" in err
        assert "Traceback" not in err
    assert_refused(port)


def test_sigusr1_turns_on_drain_mode(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        assert conn.cmd(b"put 0 0 60 6\r\nbefore") == b"INSERTED 1\r\n"
        assert conn.stats()["draining"] == "false"
        proc.popen.send_signal(signal.SIGUSR1)
        proc.wait_for_log(r"SIGUSR1")  # logged once the server has acted on it
        assert conn.stats()["draining"] == "true"
        assert conn.cmd(b"put 0 0 60 5\r\nafter") == b"DRAINING\r\n"
        # Everything but put keeps working, and the server keeps running.
        assert conn.cmd(b"reserve-with-timeout 0") == b"RESERVED 1 6\r\nbefore\r\n"
        assert conn.cmd(b"delete 1") == b"DELETED\r\n"
        assert proc.popen.poll() is None
        conn.close()
        assert proc.signal_and_wait(signal.SIGTERM) == 0


# --------------------------------------------------------------------------- entry points, logs


def test_console_script_serves(tmp_path: Path) -> None:
    assert CONSOLE_SCRIPT.exists(), "the tubeserver console script is not installed"
    version = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True,
                             text=True, timeout=START_LIMIT, env=clean_env())
    assert (version.returncode, version.stdout) == (0, f"tubeserver {__version__}, {BUILD}\n")
    port = procs.free_port()
    with server("-p", str(port), exe=[str(CONSOLE_SCRIPT)], log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        round_trip(conn)
        conn.close()
        assert proc.signal_and_wait(signal.SIGTERM) == 0


def test_verbose_logs_connections_but_not_commands(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-V", log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        assert conn.cmd(b"list-tube-used") == b"USING default\r\n"
        local = conn.sock.getsockname()[1]
        conn.close()
        proc.wait_for_log(rf"close 127\.0\.0\.1:{local}\b")
        assert re.search(rf"accept 127\.0\.0\.1:{local}\b", proc.stderr())
        assert "ListTubeUsed" not in proc.stderr() and "<-" not in proc.stderr()


def test_verbose_flag_replaces_the_environment_level(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-V", env=clean_env(TUBESERVER_VERBOSE="1"),
                log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        assert conn.cmd(b"list-tube-used") == b"USING default\r\n"
        local = conn.sock.getsockname()[1]
        conn.close()
        proc.wait_for_log(rf"close 127\.0\.0\.1:{local}\b")
        assert "<-" not in proc.stderr(), "-V (level 1) logged commands"


def test_very_verbose_logs_commands(tmp_path: Path) -> None:
    port = procs.free_port()
    with server("-p", str(port), "-VV", log_dir=tmp_path) as proc:
        conn = Conn.tcp(port)
        assert conn.cmd(b"list-tube-used") == b"USING default\r\n"
        local = conn.sock.getsockname()[1]
        conn.close()
        proc.wait_for_log(rf"close 127\.0\.0\.1:{local}\b")
        assert re.search(rf"127\.0\.0\.1:{local} <- ListTubeUsed\(\)", proc.stderr())


def test_a_bad_variable_does_not_block_help_version_or_an_overriding_flag(
    tmp_path: Path,
) -> None:
    env = clean_env(TUBESERVER_PORT="x")
    for flag in ("--help", "--version"):
        done = run(flag, env=env)
        assert done.returncode == 0, done.stderr
    port = procs.free_port()
    with server("-p", str(port), env=env, log_dir=tmp_path):
        conn = Conn.tcp(port)
        conn.sock.sendall(b"list-tube-used\r\n")
        conn.close()
