"""Server processes under test: start on a free loopback port, wait until they answer, read
their RSS and stats, and always stop them (each in its own process group).

Every started server is remembered until stopped, so `stop_all()` in the runner's `finally`
leaves nothing behind on Ctrl-C or an exception.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO

import attrs

HOST = "127.0.0.1"
START_LIMIT = 20.0


class ServerError(RuntimeError):
    """A server did not start, died, or answered something unexpected."""


@attrs.frozen
class ServerKind:
    """How to start one server: `argv` then `-l HOST -p PORT` then per-workload flags."""

    name: str
    argv: tuple[str, ...]

    def command(self, port: int, extra: Sequence[str] = ()) -> list[str]:
        return [*self.argv, "-l", HOST, "-p", str(port), *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@attrs.define(eq=False)
class Server:
    kind: ServerKind
    port: int
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    started_ns: int
    pid: int = 0  # the pid the server reports in `stats` (proc.pid unless wrapped)
    tls: ssl.SSLContext | None = None  # how to reach it when it speaks TLS

    def stderr_tail(self, limit: int = 400) -> str:
        try:
            self.stderr.seek(0)
            text = self.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return text[-limit:]

    def check_alive(self) -> None:
        rc = self.proc.poll()
        if rc is not None:
            tail = self.stderr_tail()
            raise ServerError(f"{self.kind.name} exited with {rc}" + (f": {tail}" if tail else ""))

    def stats(self, command: bytes = b"stats", timeout: float = 10.0) -> dict[str, str]:
        return query_stats(self.port, command, timeout, self.tls)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid or self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        """Signal the server's process group and wait; SIGKILL when it lingers."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
        finally:
            _LIVE.discard(self)
            self.stderr.close()


_LIVE: set[Server] = set()


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop(signal.SIGKILL, wait=5)


def spawn(kind: ServerKind, extra: Sequence[str] = (), port: int | None = None,
          tls: ssl.SSLContext | None = None) -> Server:
    """Start the process and return at once (see `wait_ready`); `tls`: the client context
    to reach it with, when `extra` makes it speak TLS."""
    port = free_port() if port is None else port
    err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
    started = time.monotonic_ns()
    try:
        proc = subprocess.Popen(kind.command(port, extra), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    except OSError as e:
        err.close()
        raise ServerError(f"cannot run {kind.name}: {e}") from None
    server = Server(kind, port, proc, err, started, tls=tls)
    _LIVE.add(server)
    return server


def wait_ready(server: Server, limit: float = START_LIMIT) -> None:
    """Wait until the server answers `stats`; remember the pid it reports."""
    end = time.monotonic() + limit
    while True:
        server.check_alive()
        try:
            stats = server.stats(timeout=max(end - time.monotonic(), 0.1))
        except OSError:
            if time.monotonic() > end:
                raise ServerError(f"{server.kind.name} did not answer within {limit:.0f}s"
                                  ) from None
            time.sleep(0.01)
            continue
        pid = int(stats.get("pid", "0"))
        if pid and pid != server.proc.pid and not _descends(pid, server.proc.pid):
            raise ServerError(f"port {server.port} is served by another process (pid {pid})")
        server.pid = pid or server.proc.pid
        return


def start(kind: ServerKind, extra: Sequence[str] = (), tls: ssl.SSLContext | None = None
          ) -> Server:
    """Start and wait until ready. A port picked free can be taken before the server binds
    it: then try another."""
    for attempt in range(3):
        server = spawn(kind, extra, tls=tls)
        try:
            wait_ready(server)
            return server
        except ServerError as e:
            server.stop(signal.SIGKILL, wait=5)
            if attempt == 2 or not ("in use" in str(e).lower() or "another process" in str(e)):
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running(kind: ServerKind, extra: Sequence[str] = (), tls: ssl.SSLContext | None = None
            ) -> Iterator[Server]:
    server = start(kind, extra, tls)
    try:
        yield server
    finally:
        server.stop()


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
    return False


def rss_bytes(pid: int) -> int:
    """VmRSS from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ServerError(f"no VmRSS for pid {pid}")


def query_stats(port: int, command: bytes = b"stats", timeout: float = 10.0,
                tls: ssl.SSLContext | None = None) -> dict[str, str]:
    """Send one stats-like command on a fresh connection (TLS with `tls`); the YAML body
    as a flat dict."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=HOST)
        except BaseException:
            sock.close()
            raise
    with sock as s:
        s.sendall(command + b"\r\n")
        data = b""
        need = -1
        while need < 0 or len(data) < need:
            chunk = s.recv(65536)
            if not chunk:
                raise ServerError(f"connection closed during {command!r}")
            data += chunk
            if need < 0 and b"\r\n" in data:
                head = data[: data.index(b"\r\n")]
                if not head.startswith(b"OK "):
                    raise ServerError(f"{command!r} answered {head!r}")
                need = len(head) + 2 + int(head[3:]) + 2
    out: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines()[1:]:
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def version(kind: ServerKind) -> str:
    """What `CMD -v` prints (both servers take beanstalkd's -v)."""
    try:
        done = subprocess.run([*kind.argv, "-v"], capture_output=True, timeout=30, text=True,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if (
        done.stdout.strip() or done.stderr.strip()) else "unknown"
