"""The operations workloads (`--only ops`): what a Prometheus scrape costs the server, and the
longest stall a well-behaved client sees while another clears a huge tube.

Both are tubeserver's alone (beanstalkd has neither), so each row has one column and is judged
against the issue's bound, not a ratio:
- scrape: a server with `--http`, TUBES tubes holding jobs in every state; the server's own
  CPU time (utime + stime from /proc) over SCRAPES scrapes of /metrics, per scrape, against
  the same count of /healthz requests (the HTTP stack's own cost, not the metrics'). Bound:
  under 10 ms a scrape.
- clear: a tube filled with `jobs` ready jobs, then a probe client doing put + delete round
  trips on its own connection, first alone (its baseline), then while another connection
  clears the tube: the longest round trip in each, and how long the clear took. The bound
  ("a few milliseconds at a time") is judged on the longest stall during the clear.
Their generators are Python (urllib, a socket): neither measures throughput.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request

from . import servers
from .servers import ServerKind
from .workloads import BenchError, Column, Metric, RunFn, Sample, Settings, Variant, _fill

SCRAPE = Column("tubeserver --http", "tubeserver")
CLEAR = Column("tubeserver", "tubeserver")
TUBES, JOBS_PER_TUBE, SCRAPES = 100, 200, 50
PROBE_ALONE_S = 3.0
PYTHON = "generator: python (urllib / one socket); these rows measure cost and stalls, not speed"


def _cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: bytes = resp.read()
        return data


def _cmd(sock: socket.socket, buf: bytearray, data: bytes) -> bytes:
    sock.sendall(data)
    while (end := buf.find(b"\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("the server closed the connection")
        buf += chunk
    line = bytes(buf[:end])
    del buf[:end + 2]
    return line


def scrape(tubes: int, per_tube: int, scrapes: int) -> RunFn:
    def run(kind: ServerKind, settings: Settings) -> Sample:
        http = servers.free_port()
        with servers.running(kind, ("--http", f"127.0.0.1:{http}")) as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                buf = bytearray()
                body = b"put 0 0 60 100\r\n" + b"x" * 100 + b"\r\n"
                for t in range(tubes):
                    _cmd(s, buf, b"use t%03d\r\n" % t)
                    s.sendall(body * per_tube)
                    for _ in range(per_tube):
                        if not _cmd(s, buf, b"").startswith(b"INSERTED"):
                            raise BenchError("a put failed")
                _cmd(s, buf, b"watch t000\r\n")
                for i in range(per_tube // 2):  # some of one tube reserved, some buried
                    job = _cmd(s, buf, b"reserve-with-timeout 0\r\n").split()[1]
                    _cmd(s, buf, b"")  # its body's line
                    if i % 2:
                        _cmd(s, buf, b"bury " + job + b" 0\r\n")
                base = f"http://127.0.0.1:{http}"
                if b"tubeserver_tube_jobs" not in _get(base + "/metrics"):
                    raise BenchError("/metrics has no tube metrics")
                pid = server.pid or server.proc.pid
                costs = {}
                for path in ("/healthz", "/metrics"):
                    before = _cpu_ms(pid)
                    size = 0
                    for _ in range(scrapes):
                        size = len(_get(base + path))
                    costs[path] = ((_cpu_ms(pid) - before) / scrapes, size)
        per_scrape = costs["/metrics"][0]
        return Sample({"scrape_ms": per_scrape,
                       "metrics_ms": per_scrape - costs["/healthz"][0]},
                      {"tubes": tubes, "jobs": tubes * per_tube, "scrapes": scrapes,
                       "healthz_ms": costs["/healthz"][0], "bytes": costs["/metrics"][1],
                       "clock_tick_ms": 1000 / os.sysconf("SC_CLK_TCK"), "warning": PYTHON})

    return run


def clear(jobs: int) -> RunFn:
    def run(kind: ServerKind, settings: Settings) -> Sample:
        with servers.running(kind) as server:
            _fill(server.port, jobs, settings)  # into tube "bench", ready
            addr = ("127.0.0.1", server.port)
            alone = _probe(addr, PROBE_ALONE_S, None)
            done = threading.Event()
            result: dict[str, object] = {}

            def clearer() -> None:
                try:
                    with socket.create_connection(addr, timeout=300) as s:
                        started = time.perf_counter()
                        result["reply"] = _cmd(s, bytearray(), b"clear-tube bench ready\r\n")
                        result["seconds"] = time.perf_counter() - started
                except (OSError, BenchError) as e:
                    result["error"] = repr(e)
                finally:
                    done.set()

            thread = threading.Thread(target=clearer, daemon=True)
            thread.start()
            during = _probe(addr, 300.0, done)
            thread.join(timeout=30)
        if result.get("reply") != b"CLEARED %d" % jobs:
            raise BenchError(f"clear-tube answered {result}")
        seconds = result["seconds"]
        assert isinstance(seconds, float)
        return Sample({"stall_ms": max(during) * 1000, "alone_ms": max(alone) * 1000,
                       "clear_s": seconds},
                      {"jobs": jobs, "round_trips_during": len(during),
                       "round_trips_alone": len(alone), "warning": PYTHON})

    return run


def _probe(addr: tuple[str, int], seconds: float, stop: threading.Event | None) -> list[float]:
    """put + delete round trips on a connection of its own, for `seconds` or until `stop`."""
    out: list[float] = []
    end = time.monotonic() + seconds
    with socket.create_connection(addr, timeout=60) as s:
        buf = bytearray()
        _cmd(s, buf, b"use probe\r\n")
        while True:  # at least one round trip, however soon `stop` comes
            started = time.perf_counter()
            job = _cmd(s, buf, b"put 0 0 60 1\r\ny\r\n").split()[1]
            _cmd(s, buf, b"delete " + job + b"\r\n")
            out.append(time.perf_counter() - started)
            if time.monotonic() >= end or (stop is not None and stop.is_set()):
                return out


def ops(quick: bool, jobs: int | None = None) -> list[Variant]:
    n = jobs if jobs is not None else (100_000 if quick else 1_000_000)
    tubes, per_tube = TUBES, JOBS_PER_TUBE
    if jobs is not None:  # smoke runs: `jobs` in all, over at most TUBES tubes
        tubes = max(1, min(TUBES, jobs))
        per_tube = max(1, jobs // tubes)
    return [
        Variant(f"scrape {tubes} tubes", "ops",
                {"tubes": tubes, "jobs": tubes * per_tube, "scrapes": SCRAPES},
                (Metric("scrape_ms", "server CPU ms per /metrics (bound: 10)", False),
                 Metric("metrics_ms", "... minus a /healthz's", False)),
                scrape(tubes, per_tube, SCRAPES), columns=(SCRAPE,), max_rounds=3),
        Variant(f"clear-tube {n} jobs", "ops", {"jobs": n},
                (Metric("stall_ms", "longest put+delete during clear, ms", False),
                 Metric("alone_ms", "... with no clear, ms", False),
                 Metric("clear_s", "clear-tube took, s", False)),
                clear(n), columns=(CLEAR,), max_rounds=1 if quick else 3),
    ]
