"""Flow control through a real server process with a write-ahead log: unique keys, waiting
jobs, tube limits and schedules acknowledged before a SIGKILL are all there after the restart,
and firings missed while the server was down coalesce into one job; and every new error line
on the wire.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml
from procs import Conn
from test_wal_process import tubeserver


def listing(conn: Conn, line: bytes) -> list[dict[str, Any]]:
    """A list-* reply: a YAML sequence of mappings."""
    frame = conn.cmd(line)
    assert frame.startswith(b"OK "), frame
    items: list[dict[str, Any]] = yaml.safe_load(frame.split(b"\r\n", 1)[1][:-2])
    return items


def bodies_in(conn: Conn, tube: bytes) -> list[bytes]:
    """The bodies of the ready jobs of `tube`, reserving and deleting each (bounded)."""
    conn.cmd(b"watch " + tube)
    bodies = []
    for _ in range(100):
        reply = conn.cmd(b"reserve-with-timeout 0")
        if reply == b"TIMED_OUT\r\n":
            break
        head, body = reply.split(b"\r\n", 1)
        bodies.append(body[:-2])
        assert conn.cmd(b"delete " + head.split()[1]) == b"DELETED\r\n"
    conn.cmd(b"ignore " + tube)
    return bodies


def test_flow_control_survives_sigkill_and_missed_firings_coalesce(tmp_path: Path) -> None:
    args = ("-b", str(tmp_path / "wal"), "-f", "0")
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        conn.cmd(b"use etl")
        assert conn.cmd(b"put-unique nightly-7 3600 0 0 60 1\r\nx") == b"INSERTED 1\r\n"
        assert conn.cmd(b"put-after 1 0 0 60 9\r\ntransform") == b"INSERTED 2\r\n"
        assert conn.cmd(b"tube-limits etl 1 5 2.5") == b"LIMITED\r\n"
        assert conn.cmd(b"schedule tick ticks 0 60 4 every 1\r\ntick") == b"SCHEDULED\r\n"
        made = listing(conn, b"list-schedules")[0]["jobs"]
        server.kill()
        killed = time.monotonic()
    # Down for more than three firings of `every 1`.
    time.sleep(max(0.0, killed + 3.5 - time.monotonic()))
    started = time.monotonic()
    with tubeserver(*args, log_dir=tmp_path) as server, server.conn() as conn:
        conn.cmd(b"use etl")
        assert conn.cmd(b"put-unique nightly-7 3600 0 0 60 1\r\ny") == b"DUPLICATE 1\r\n"
        status = conn.yaml(b"job-status 2")
        assert (status["state"], status["parents"], status["key"]) == ("waiting", "1", "")
        assert conn.yaml(b"job-status 1")["key"] == "nightly-7"
        assert listing(conn, b"list-tube-limits") == [{
            "tube": "etl", "max-reserved": 1, "max-jobs": 5, "rate": 2.5,
            "current-jobs-reserved": 0, "current-jobs": 2}]
        schedule = listing(conn, b"list-schedules")[0]
        # One job for the three or more firings missed while down (at start-up), then one a
        # second: however slow this machine, never one per missed firing.
        up = math.ceil(time.monotonic() - started)
        assert made + 1 <= schedule["jobs"] <= made + 1 + up, (made, up, schedule)
        ticks = bodies_in(conn, b"ticks")
        assert ticks and set(ticks) == {b"tick"}
        # The chain still runs: the parent finishes, the child is released.
        conn.cmd(b"watch etl")
        assert conn.cmd(b"reserve-with-timeout 0").startswith(b"RESERVED 1 ")
        assert conn.cmd(b"delete 1") == b"DELETED\r\n"
        assert conn.cmd(b"reserve-with-timeout 0") == b"RESERVED 2 9\r\ntransform\r\n"


def test_new_error_lines_on_the_wire(tmp_path: Path) -> None:
    with tubeserver(log_dir=tmp_path) as server, server.conn() as conn:
        assert conn.cmd(b"tube-limits default 0 1 0") == b"LIMITED\r\n"
        assert conn.cmd(b"put 0 0 60 1\r\na").startswith(b"INSERTED")
        assert conn.cmd(b"put 0 0 60 1\r\nb") == b"TUBE_FULL\r\n"
        assert conn.cmd(b"put-unique k 0 0 0 60 1\r\nb") == b"TUBE_FULL\r\n"
        assert conn.cmd(b"put-after 1 0 0 60 1\r\nb") == b"TUBE_FULL\r\n"
        assert conn.cmd(b"tube-limits default 0 0 0") == b"LIMITED\r\n"
        assert conn.cmd(b"put-after 99 0 0 60 1\r\nb") == b"NOT_FOUND\r\n"
        assert conn.cmd(b"schedule s t 0 60 1 0 2 * *\r\nb") == b"BAD_FORMAT\r\n"
        assert conn.cmd(b"schedule s t 0 60 1 every 0\r\nb") == b"BAD_FORMAT\r\n"
        assert conn.cmd(b"unschedule s") == b"NOT_FOUND\r\n"
        assert conn.cmd(b"tube-limits default 1 1 x") == b"BAD_FORMAT\r\n"
        assert conn.cmd(b"put-unique k 0 0 0 60 70000\r\n" + b"z" * 70000) == (
            b"JOB_TOO_BIG\r\n")
        assert conn.cmd(b"list-schedules") == b"OK 7\r\n--- []\n\r\n"
        assert conn.cmd(b"stats-tube default").startswith(b"OK ")  # still in sync
