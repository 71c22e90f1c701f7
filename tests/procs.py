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
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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


class PortTaken(RuntimeError):
    """Another process answers on the port picked for the server."""


def _pid_on(host: str, port: int, tls: ssl.SSLContext | None = None,
            token: str | None = None) -> int | None:
    """The pid that the server listening on host:port reports in `stats` (asked over TLS
    with `tls`, after `auth` with `token`); None if nothing is listening yet."""
    try:
        with _open(host, port, tls) as s:
            if token is not None:
                s.sendall(b"auth %b\r\n" % token.encode())
                answer = b""
                while not answer.endswith(b"\r\n"):
                    chunk = s.recv(1)
                    if not chunk:
                        return -1
                    answer += chunk
                if answer != b"OK\r\n":
                    return -1
            s.sendall(b"stats\r\n")
            data = b""
            while b"\r\n" not in data or len(data) < _framed_length(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("pid: "):
            return int(line[5:])
    return -1


def _open(host: str, port: int, tls: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=2)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _framed_length(data: bytes) -> int:
    head = data.split(b"\r\n", 1)[0]
    return len(head) + 4 + int(head.split()[1]) if head.startswith(b"OK ") else len(head) + 2


def wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], limit: float = 10.0,
    tls: ssl.SSLContext | None = None, token: str | None = None,
) -> None:
    """Wait until `proc` itself serves host:port: its `stats` must report its own pid, so a
    stranger that took the port is never mistaken for it."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_stderr_of(proc)}")
        pid = _pid_on(host, port, tls, token)
        if pid == proc.pid:
            return
        if pid is not None:
            raise PortTaken(f"port {port} is served by another process (pid {pid})")
        time.sleep(0.02)
    raise RuntimeError(f"server on {host}:{port} did not start within {limit}s")


_STDERR: dict[int, IO[bytes]] = {}


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    """What the server wrote to stderr so far (its log)."""
    return _stderr_of(proc)


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    f = _STDERR.get(proc.pid)
    if f is None:
        return ""
    f.seek(0)
    return f.read().decode(errors="replace")



def stop(proc: subprocess.Popen[bytes], limit: float = 5.0) -> None:
    """End `proc` if it still runs: SIGTERM, then SIGKILL after `limit` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=limit)


@contextlib.contextmanager
def _running(make_argv: Callable[[int], list[str]], tls: ssl.SSLContext | None = None,
             token: str | None = None) -> Iterator[RunningServer]:
    """Start a server on a free port. A port picked free can be taken by the time the
    server binds it (tests start servers concurrently): then try again with another."""
    for attempt in range(3):
        port = free_port()
        # stderr goes to a file, not a pipe: a verbose server can never block on it.
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(make_argv(port), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _STDERR[proc.pid] = err
        try:
            try:
                wait_listening(HOST, port, proc, tls=tls, token=token)
            except RuntimeError as e:
                taken = isinstance(e, PortTaken) or "already in use" in _stderr_of(proc).lower()
                if attempt < 2 and taken:
                    continue
                raise
            yield RunningServer(HOST, port, proc)
            return
        finally:
            stop(proc)
            _STDERR.pop(proc.pid, None)
            err.close()


@contextlib.contextmanager
def tubeserver(*extra: str, tls: ssl.SSLContext | None = None,
               token: str | None = None) -> Iterator[RunningServer]:
    """A real `python -m tubeserver` process on a free loopback port; `tls`: the client
    context to reach it with, when `extra` makes it speak TLS; `token`: one its auth file
    (in `extra`) lets ask `stats`."""
    with _running(lambda port: [sys.executable, "-m", "tubeserver", "--listen", HOST,
                                "--port", str(port), *extra], tls, token) as srv:
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
    with _running(lambda port: [path, "-l", HOST, "-p", str(port), *extra]) as srv:
        yield srv


def server(kind: str, *extra: str) -> contextlib.AbstractContextManager[RunningServer]:
    """`tubeserver(*extra)` or `beanstalkd(*extra)`, by name: for tests run on both."""
    if kind == "tubeserver":
        return tubeserver(*extra)
    if kind == "beanstalkd":
        return beanstalkd(*extra)
    raise ValueError(f"unknown server kind {kind!r}")


IO_TIMEOUT = 5.0  # seconds any socket operation of a Conn may block


def yaml_of(frame: bytes) -> dict[str, str]:
    """The flat `key: value` map of an OK stats reply (string quotes stripped)."""
    assert frame.startswith(b"OK "), frame[:80]
    pairs = (ln.split(": ", 1) for ln in frame.decode().splitlines()[2:] if ln)
    return {k: v.strip('"') for k, v in pairs}


class Conn:
    """A blocking protocol client on a real socket: `send` commands (several may be
    pipelined), then `reply` reads exactly one framed reply each; every read has a timeout."""

    def __init__(self, sock: socket.socket, timeout: float = IO_TIMEOUT) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self._buf = bytearray()

    @classmethod
    def tcp(cls, port: int) -> Conn:
        return cls(socket.create_connection((HOST, port), timeout=IO_TIMEOUT))

    @classmethod
    def unix(cls, path: str) -> Conn:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(path)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def raw(self, data: bytes) -> None:
        """Send bytes as they are: several commands pipelined by hand, bodies included."""
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError(bytes(self._buf))
        self._buf += data

    def reply(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._fill()
        word, *args = bytes(self._buf[:end]).split(b" ")
        total = end + 2
        if word in (b"OK", b"RESERVED", b"FOUND", b"RESULT", b"FAILED") and args:  # `auth`: OK
            total += int(args[-1]) + 2
        while len(self._buf) < total:
            self._fill()
        frame = bytes(self._buf[:total])
        del self._buf[:total]
        return frame

    def cmd(self, line: bytes) -> bytes:
        self.send(line)
        return self.reply()

    def yaml(self, line: bytes) -> dict[str, str]:
        return yaml_of(self.cmd(line))

    def stats(self) -> dict[str, str]:
        return self.yaml(b"stats")

    def at_eof(self) -> bool:
        """True once the server has closed this connection (within IO_TIMEOUT)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True
