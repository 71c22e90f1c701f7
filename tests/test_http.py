"""The HTTP endpoint (web.py, metrics.py) of a real server process: Prometheus metrics that
agree with the protocol's own counts, health checks, the JSON API and its actions, and the
command line's errors."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_wal_process import Conn, Server, run, tubeserver

HTTP_TIMEOUT = 5.0


@contextlib.contextmanager
def with_http(tmp_path: Path, *args: str) -> Iterator[tuple[Server, str]]:
    for attempt in range(3):
        port = procs.free_port()
        with tubeserver("--http", f"127.0.0.1:{port}", *args, log_dir=tmp_path) as server:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if f"HTTP on {base}" in server.stderr():
                    break
                if "cannot serve HTTP" in server.stderr() and attempt < 2:
                    break  # the free port was taken meanwhile: another
                time.sleep(0.05)
            else:
                pytest.fail(f"no HTTP line; stderr: {server.stderr()}")
            if f"HTTP on {base}" not in server.stderr():
                continue
            yield server, base
            return
    pytest.fail("no free port for HTTP")


def get(base: str, path: str) -> tuple[int, Any]:
    return request(base, path, "GET")


def post(base: str, path: str) -> tuple[int, Any]:
    return request(base, path, "POST")


def request(base: str, path: str, method: str) -> tuple[int, Any]:
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST"
                                 else None)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            status, body, kind = resp.status, resp.read(), resp.headers["content-type"]
    except urllib.error.HTTPError as e:
        status, body, kind = e.code, e.read(), e.headers["content-type"]
    return status, json.loads(body) if kind == "application/json" else body.decode()


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(base, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def conn(server: Server) -> Conn:
    return Conn(socket.create_connection(("127.0.0.1", server.port), timeout=5))


def test_metrics_agree_with_the_protocols_counts(tmp_path: Path) -> None:
    with with_http(tmp_path, "-b", str(tmp_path / "wal"), "-f", "0") as (server, base), \
            conn(server) as c:
        c.cmd(b"use emails")
        for _ in range(5):
            c.put_id(b"hello")
        c.put_id(b"later", delay=60)
        c.cmd(b"watch emails")
        first = c.cmd(b"reserve").split()[1]
        assert c.cmd(b"delete " + first) == b"DELETED\r\n"
        second = c.cmd(b"reserve").split()[1]
        assert c.cmd(b"bury %s 0" % second) == b"BURIED\r\n"
        held = c.cmd(b"reserve").split()[1]
        m = metrics(base)
        stats = c.yaml(b"stats-tube emails")

        def tube(name: str, **labels: str) -> float:
            return m[(name, tuple(sorted({"tube": "emails", **labels}.items())))]

        for state, key in (("ready", "current-jobs-ready"), ("reserved", "current-jobs-reserved"),
                           ("delayed", "current-jobs-delayed"), ("buried", "current-jobs-buried")):
            assert tube("tubeserver_tube_jobs", state=state) == int(stats[key]), state
        assert tube("tubeserver_tube_jobs", state="waiting") == 0
        assert tube("tubeserver_tube_puts_total") == int(stats["total-jobs"]) == 6
        assert tube("tubeserver_tube_deletes_total") == int(stats["cmd-delete"]) == 1
        assert tube("tubeserver_tube_reserves_total") == 3
        assert tube("tubeserver_tube_buries_total") == 1
        # Three jobs reserved for the first time; one of them deleted by its worker.
        assert tube("tubeserver_tube_queue_time_seconds_count") == 3
        assert tube("tubeserver_tube_run_time_seconds_count") == 1
        assert tube("tubeserver_tube_queue_time_seconds_bucket", le="+Inf") == 3
        assert 0 <= tube("tubeserver_tube_oldest_ready_age_seconds") < 60
        assert m[("tubeserver_commands_total", (("command", "put"),))] == 6
        assert m[("tubeserver_connections", ())] == 1
        assert m[("tubeserver_wal_fsync_seconds_count", ())] >= 1  # -f 0: before each reply
        assert m[("tubeserver_wal_bytes", ())] > 0
        assert ("process_resident_memory_bytes", ()) in m
        assert held


def test_health_readiness_and_drain(tmp_path: Path) -> None:
    with with_http(tmp_path) as (server, base):
        assert get(base, "/healthz") == (200, {"status": "ok"})
        assert get(base, "/readyz") == (200, {"status": "ready"})
        server.popen.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while get(base, "/readyz")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = get(base, "/readyz")
        assert status == 503 and "draining" in body["error"]
        assert get(base, "/healthz")[0] == 200
        assert get(base, "/nope")[0] == 404
        assert post(base, "/metrics")[0] == 405


def test_json_api_reads_and_actions(tmp_path: Path) -> None:
    with with_http(tmp_path) as (server, base), conn(server) as c:
        c.cmd(b"use reports")
        text = c.put_id(b"caf\xc3\xa9 report")
        binary = c.put_id(b"\xff\x00\x01")
        c.cmd(b"watch reports")
        c.cmd(b"ignore default")
        for _ in range(2):
            job = c.cmd(b"reserve").split()[1]
            c.cmd(b"bury %s 0" % job)
        status, tubes = get(base, "/api/tubes")
        assert status == 200 and [t["name"] for t in tubes] == ["default", "reports"]
        reports = tubes[1]
        assert (reports["current-jobs-buried"], reports["total-buries"]) == (2, 2)
        status, listing = get(base, "/api/tubes/reports/jobs?state=buried&limit=10")
        assert status == 200 and listing["total"] == 2
        assert [j["id"] for j in listing["jobs"]] == [text, binary]
        assert listing["jobs"][0]["body"] == {"encoding": "text", "data": "café report",
                                              "size": 12, "truncated": False}
        assert listing["jobs"][1]["body"]["encoding"] == "hex"
        assert listing["jobs"][1]["body"]["data"] == "ff0001"
        status, job = get(base, f"/api/jobs/{text}")
        assert (status, job["state"], job["tube"], job["buries"]) == (200, "buried", "reports", 1)
        status, conns = get(base, "/api/connections")
        assert [(x["using"], x["watching"]) for x in conns] == [("reports", ["reports"])]
        # Actions are protocol commands: their reply line comes back.
        assert post(base, f"/api/jobs/{text}/kick") == (200, {"reply": "KICKED"})
        assert c.yaml(b"stats-job %d" % text)["state"] == "ready"
        assert post(base, f"/api/jobs/{binary}/delete") == (200, {"reply": "DELETED"})
        assert c.cmd(b"peek %d" % binary) == b"NOT_FOUND\r\n"
        status, body = post(base, f"/api/jobs/{binary}/delete")
        assert (status, body) == (404, {"error": "NOT_FOUND"})
        assert post(base, "/api/tubes/reports/clear?state=ready") == (200, {"reply": "CLEARED 1"})
        assert c.yaml(b"stats-tube reports")["current-jobs-ready"] == "0"
        assert post(base, "/api/tubes/reports/clear?state=reserved")[0] == 400
        assert post(base, "/api/tubes/reports/pause?delay=30") == (200, {"reply": "PAUSED"})
        assert c.yaml(b"stats-tube reports")["pause"] == "30"
        assert post(base, "/api/tubes/nope/kick")[0] == 404
        assert get(base, "/api/tubes/reports/jobs?state=lost")[0] == 400
        assert get(base, "/api/tubes/reports/jobs?limit=0")[0] == 400
        assert get(base, "/api/jobs/999")[0] == 404
        stats = c.stats()
        assert (stats["cmd-clear-tube"], stats["jobs-cleared"]) == ("1", "1")


def test_command_line_errors(tmp_path: Path) -> None:
    result = run("--http", "nowhere")
    assert result.returncode == 2 and "ADDR:PORT" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("-p", str(procs.free_port()), "--http", f"127.0.0.1:{port}")
        assert result.returncode == 1
        assert f"cannot serve HTTP on 127.0.0.1:{port}: address already in use" in result.stderr
        assert "Traceback" not in result.stderr


def test_actions_refuse_other_sites(tmp_path: Path) -> None:
    """A page of another site cannot drive the actions through its visitor's browser: a POST
    that a browser marks as cross-site, or whose Origin is not this host, is refused."""
    with with_http(tmp_path) as (server, base), conn(server) as c:
        c.cmd(b"use victims")
        job = c.put_id(b"keep me")

        def delete(headers: dict[str, str]) -> tuple[int, Any]:
            req = urllib.request.Request(f"{base}/api/jobs/{job}/delete", method="POST",
                                         data=b"", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, body = delete({"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin" in body["error"]
        status, body = delete({"Sec-Fetch-Site": "cross-site"})
        assert status == 403 and "cross-site" in body["error"]
        assert delete({"Sec-Fetch-Site": "same-site"})[0] == 403
        assert c.yaml(b"stats-job %d" % job)["state"] == "ready"
        # The dashboard's own requests: same origin.
        host = base.removeprefix("http://")
        assert delete({"Origin": base, "Sec-Fetch-Site": "same-origin", "Host": host}) == (
            200, {"reply": "DELETED"})
        assert c.cmd(b"peek %d" % job) == b"NOT_FOUND\r\n"


def test_tube_names_with_a_slash(tmp_path: Path) -> None:
    """Routes match the path as sent: a tube name with `/` is one %2F-encoded segment."""
    with with_http(tmp_path) as (server, base), conn(server) as c:
        c.cmd(b"use a/b")
        c.put_id(b"x")
        status, tube = get(base, "/api/tubes/a%2Fb")
        assert (status, tube["name"], tube["current-jobs-ready"]) == (200, "a/b", 1)
        status, listing = get(base, "/api/tubes/a%2Fb/jobs")
        assert (status, listing["total"]) == (200, 1)
        assert post(base, "/api/tubes/a%2Fb/clear?state=ready") == (200, {"reply": "CLEARED 1"})
        assert get(base, "/api/tubes/a/b")[0] == 404
