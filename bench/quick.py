"""Quick informational rates: put and reserve+delete, tubeserver next to beanstalkd.

Not a benchmark suite (that is tubebench, a later issue) and not a test: it starts both
servers on 127.0.0.1, drives each with the same blocking-socket client, and prints medians of
repeated runs and the ratio tubeserver/beanstalkd. Usage: python bench/quick.py [N] [REPEATS]
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

HOST = "127.0.0.1"
BODY = b"x" * 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"server {argv[0]} did not start")


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def body(self, size: int) -> None:
        while len(self.buf) < size + 2:
            self.buf += self.sock.recv(65536)
        self.buf = self.buf[size + 2 :]


def put_sequential(port: int, n: int) -> float:
    c = Conn(port)
    c.sock.sendall(b"use quick\r\n")
    c.line()
    cmd = b"put 0 0 60 %d\r\n%b\r\n" % (len(BODY), BODY)
    t = time.perf_counter()
    for _ in range(n):
        c.sock.sendall(cmd)
        c.line()
    return n / (time.perf_counter() - t)


def put_pipelined(port: int, n: int, batch: int = 100) -> float:
    c = Conn(port)
    c.sock.sendall(b"use quick\r\n")
    c.line()
    cmd = b"put 0 0 60 %d\r\n%b\r\n" % (len(BODY), BODY)
    t = time.perf_counter()
    for _ in range(n // batch):
        c.sock.sendall(cmd * batch)
        for _ in range(batch):
            c.line()
    return n // batch * batch / (time.perf_counter() - t)


def reserve_delete(port: int, n: int) -> float:
    c = Conn(port)
    c.sock.sendall(b"watch quick\r\n")
    c.line()
    t = time.perf_counter()
    for _ in range(n):
        c.sock.sendall(b"reserve-with-timeout 0\r\n")
        _, job_id, size = c.line().split()
        c.body(int(size))
        c.sock.sendall(b"delete " + job_id + b"\r\n")
        c.line()
    return n / (time.perf_counter() - t)


def run(name: str, argv: list[str], port: int, n: int, repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {"put": [], "put pipelined x100": [], "reserve+delete": []}
    for _ in range(repeats):
        proc = start(argv, port)
        try:
            results["put"].append(put_sequential(port, n))
            results["reserve+delete"].append(reserve_delete(port, n))
            results["put pipelined x100"].append(put_pipelined(port, n))
        finally:
            proc.terminate()
            proc.wait(10)
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    bs = shutil.which("beanstalkd")
    table: dict[str, dict[str, float]] = {}
    port = free_port()
    servers: list[tuple[str, Callable[[int], list[str]]]] = [
        ("tubeserver", lambda p: [sys.executable, "-m", "tubeserver", "-p", str(p)]),
    ]
    if bs:
        servers.append(("beanstalkd", lambda p: [bs, "-l", HOST, "-p", str(p)]))
    for name, argv in servers:
        table[name] = run(name, argv(port), port, n, repeats)
    print(f"{n} jobs of {len(BODY)} bytes, one connection, median of {repeats} runs (ops/s)")
    print(f"{'':22}" + "".join(f"{k:>14}" for k in table) + ("       ratio" if bs else ""))
    for metric in table["tubeserver"]:
        row = f"{metric:22}" + "".join(f"{table[k][metric]:14.0f}" for k in table)
        if bs:
            row += f"{table['tubeserver'][metric] / table['beanstalkd'][metric]:12.2f}"
        print(row)


if __name__ == "__main__":
    main()
