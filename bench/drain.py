"""Drain rate: reserve_batch(100) + pipelined deletes vs reserve + delete one at a time.

Informational, not a test. For each round a fresh server gets N jobs (loaded with pipelined
puts), then one tubeclient connection drains them either way; beanstalkd (when installed)
is drained one at a time in the same run, for scale. Prints the median jobs/s of REPEATS
rounds. Usage: python bench/drain.py [N] [REPEATS]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from collections.abc import Callable

from tubebench.quick import HOST, free_port, start
from tubeclient import Client, TimedOut

BODY = b"x" * 100
LOAD_CHUNK = 5000


def load(port: int, n: int) -> None:
    with Client((HOST, port), use="drain") as c:
        for start_at in range(0, n, LOAD_CHUNK):
            c.put_many([BODY] * min(LOAD_CHUNK, n - start_at))


def drain_single(port: int, n: int) -> float:
    with Client((HOST, port), watch="drain") as c:
        c.ignore("default")
        t = time.perf_counter()
        done = 0
        while done < n:
            try:
                job = c.reserve(timeout=0)
            except TimedOut:
                break
            c.delete(job)
            done += 1
        elapsed = time.perf_counter() - t
    assert done == n, done
    return n / elapsed


def drain_batch(port: int, n: int, size: int = 100) -> float:
    with Client((HOST, port), watch="drain") as c:
        c.ignore("default")
        t = time.perf_counter()
        done = 0
        while done < n:
            jobs = c.reserve_batch(size, 0)
            if not jobs:
                break
            c.delete_many(jobs)
            done += len(jobs)
        elapsed = time.perf_counter() - t
    assert done == n, done
    return n / elapsed


def rounds(argv: list[str], drain: Callable[[int, int], float], n: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        port = free_port()
        proc = start([*argv, "-p", str(port)], port)
        try:
            load(port, n)
            rates.append(drain(port, n))
        finally:
            proc.terminate()
            proc.wait(10)
    return statistics.median(rates)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ts = [sys.executable, "-m", "tubeserver"]
    rows = [
        ("tubeserver reserve_batch(100) + delete_many", rounds(ts, drain_batch, n, repeats)),
        ("tubeserver reserve + delete", rounds(ts, drain_single, n, repeats)),
    ]
    bs = shutil.which("beanstalkd")
    if bs:
        rows.append(("beanstalkd reserve + delete", rounds([bs, "-l", HOST], drain_single, n,
                                                            repeats)))
    print(f"draining {n} jobs of {len(BODY)} bytes, one connection, median of {repeats}")
    for name, rate in rows:
        print(f"{name:46} {rate:10.0f} jobs/s   x{rate / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
