"""Start real server processes (tubeserver, beanstalkd) on loopback for end-to-end tests.

Each helper picks a free port, starts the process, waits until it accepts connections
(bounded), and always terminates it on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import attrs
import pytest

HOST = "127.0.0.1"


@attrs.frozen
class RunningServer:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], limit: float = 10.0
) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_stderr_of(proc)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on {host}:{port} did not start within {limit}s")


_STDERR: dict[int, IO[bytes]] = {}


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    f = _STDERR.get(proc.pid)
    if f is None:
        return ""
    f.seek(0)
    return f.read().decode(errors="replace")


@contextlib.contextmanager
def _running(argv: list[str], port: int) -> Iterator[RunningServer]:
    # stderr goes to a file, not a pipe: a verbose server can never block on it.
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    _STDERR[proc.pid] = err
    try:
        wait_listening(HOST, port, proc)
        yield RunningServer(HOST, port, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        _STDERR.pop(proc.pid, None)
        err.close()


@contextlib.contextmanager
def tubeserver(*extra: str) -> Iterator[RunningServer]:
    """A real `python -m tubeserver` process on a free loopback port."""
    port = free_port()
    argv = [sys.executable, "-m", "tubeserver", "--listen", HOST, "--port", str(port), *extra]
    with _running(argv, port) as srv:
        yield srv


def beanstalkd_path() -> str | None:
    return shutil.which("beanstalkd") or (
        "/usr/bin/beanstalkd" if os.path.exists("/usr/bin/beanstalkd") else None
    )


def require_beanstalkd() -> str:
    """The beanstalkd binary; under CI=true its absence fails the test, locally it skips."""
    path = beanstalkd_path()
    if path is None:
        msg = "beanstalkd is not installed (apt-get install beanstalkd)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    return path


@contextlib.contextmanager
def beanstalkd(*extra: str) -> Iterator[RunningServer]:
    """A real beanstalkd (the Debian package) on a free loopback port."""
    path = require_beanstalkd()
    port = free_port()
    with _running([path, "-l", HOST, "-p", str(port), *extra], port) as srv:
        yield srv
