"""tubeworker --metrics-port: Prometheus metrics scraped over HTTP from a real harness.

Real harnesses against real servers on loopback, scraped with urllib and read with
prometheus-client's own parser; every wait is bounded. The flags' checks run in process.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

import procs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_worker import (
    FAST,
    Harness,
    harnesses,
    jobs,
    put,
    run,
    server,
    server_args,
    wait_for,
)
from tubeclient.harness.cli import config_from, parse
from tubeclient.harness.metrics import OUTCOMES, Prometheus

__all__ = ["harnesses", "server"]  # the fixtures, imported for these tests

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# "ok" succeeds, "bad" fails, "wait" runs until the file named by $2 exists (bounded: 10 s).
SCRIPT = '''
body=$(cat)
[ "$body" = bad ] && exit 1
if [ "$body" = wait ]; then
    echo $$ > "$1"; i=0
    while [ ! -e "$2" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
fi
exit 0
'''


def metrics_port(h: Harness) -> int:
    wait_for(lambda: any(r["event"] == "metrics" for r in h.log()))
    (line,) = [r for r in h.log() if r["event"] == "metrics"]
    assert line["addr"] == "127.0.0.1" and line["level"] == "info"
    return int(line["port"])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def outcomes(samples: Samples) -> dict[str, float]:
    return {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
            if name == "tubeworker_jobs_total"}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_jobs_by_outcome_run_times_reserves_and_the_running_gauge(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    put(server, b"ok", b"ok", b"bad", b"ok")
    pidfile, go = tmp_path / "child.pid", tmp_path / "go"
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--max-attempts", "1",
                "--metrics-port", "0", "--", "sh", "-c", SCRIPT, "sh", str(pidfile), str(go))
    harnesses.append(h)
    port = metrics_port(h)
    wait_for(lambda: sum(outcomes(scrape(port)).values()) == 4, limit=30)
    s = scrape(port)
    assert outcomes(s) == {**dict.fromkeys(OUTCOMES, 0.0), "succeeded": 3.0, "buried": 1.0}
    assert value(s, "tubeworker_job_run_seconds_count") == 4
    assert value(s, "tubeworker_job_run_seconds_bucket", le="+Inf") == 4
    assert value(s, "tubeworker_children_running") == 0
    assert value(s, "tubeworker_concurrency") == 1
    # -c 1: one job per reserve; the empty ones are the 1 s reserve timeouts since.
    assert value(s, "tubeworker_reserves_total", result="jobs") == 4
    assert value(s, "tubeworker_jobs_reserved_total") == 4
    assert value(s, "tubeworker_reserve_wait_seconds_count") == 4 + value(
        s, "tubeworker_reserves_total", result="empty")
    assert value(s, "tubeworker_reconnects_total", server=f"127.0.0.1:{server.port}") == 0

    put(server, b"wait")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), limit=30)
    s = scrape(port)
    assert value(s, "tubeworker_children_running") == 1
    assert sum(outcomes(s).values()) == 4 and value(s, "tubeworker_jobs_reserved_total") == 5
    go.touch()
    wait_for(lambda: outcomes(scrape(port))["succeeded"] == 4, limit=30)
    s = scrape(port)
    assert value(s, "tubeworker_children_running") == 0
    assert value(s, "tubeworker_job_run_seconds_count") == 5
    h.proc.terminate()
    assert h.wait() == 0
    assert sorted(j["action"] for j in jobs(h.log())) == ["fail"] + ["finish"] * 4


TASKS = "def job(body):\n    return body.decode()\n"


def test_call_children_are_counted_too(
    server: procs.RunningServer, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """With the metrics server's thread running, the --call forkserver still starts (a fresh
    interpreter, never a fork of the harness) and its children are counted."""
    (tmp_path / "tasks.py").write_text(TASKS)
    put(server, b"a", b"b")
    h = Harness(tmp_path, *server_args(server), "-t", "w", *FAST, "--metrics-port", "0",
                "--call", "tasks:job", cwd=tmp_path)
    harnesses.append(h)
    port = metrics_port(h)
    wait_for(lambda: outcomes(scrape(port))["succeeded"] == 2, limit=30)
    assert value(scrape(port), "tubeworker_job_run_seconds_count") == 2
    h.proc.terminate()
    assert h.wait() == 0
    assert [r["event"] for r in h.log()][:3] == ["start", "metrics", "forkserver"]


def test_reconnects_are_counted_per_server(tmp_path: Path, harnesses: list[Harness]) -> None:
    with socket.socket() as refuser:  # bound, not listening: connections are refused
        refuser.bind(("127.0.0.1", 0))
        name = f"127.0.0.1:{refuser.getsockname()[1]}"
        h = Harness(tmp_path, "-s", name, *FAST, "--metrics-port", "0", "--", "true")
        harnesses.append(h)
        port = metrics_port(h)
        wait_for(lambda: len([r for r in h.log() if r["event"] == "connection"]) >= 2)
        seen = value(scrape(port), "tubeworker_reconnects_total", server=name)
        h.proc.terminate()
        assert h.wait() == 0
    # Each refused connection's line comes before its count, and the count before the retry.
    assert 1 <= seen <= len([r for r in h.log() if r["event"] == "connection"])


def test_a_port_that_cannot_be_listened_on_exits_2_with_an_error_line(
    server: procs.RunningServer,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, log, err = run(*server_args(server), "-t", "w", "--burst", *FAST,
                             "--metrics-port", str(taken.getsockname()[1]), "--", "true")
    assert code == 2 and "Traceback" not in err
    (line,) = [r for r in log if r["event"] == "metrics"]
    assert line["level"] == "error" and "in use" in line["error"]
    assert not jobs(log)


# --------------------------------------------------------------------------- flags


def test_flags_and_their_environment_variables() -> None:
    config = parse(["--metrics-port", "0", "--", "true"], env={})
    assert (config.metrics_port, config.metrics_addr) == (0, "127.0.0.1")
    config = parse(["--", "true"], env={"TUBEWORKER_METRICS_PORT": "9108",
                                        "TUBEWORKER_METRICS_ADDR": "[::1]"})
    assert (config.metrics_port, config.metrics_addr) == (9108, "::1")
    assert parse(["--", "true"], env={}).metrics_port is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--metrics-port", "65536"], "--metrics-port: must be a port number"),
    (["--metrics-port", "nine"], "--metrics-port: invalid literal"),
    (["--metrics-addr", "0.0.0.0"], "--metrics-addr only applies with --metrics-port"),
    (["--metrics-port", "0", "--metrics-addr", " "], "--metrics-addr: empty address"),
])
def test_bad_metrics_flags_exit_2(argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        config_from([*argv, "--", "true"], env={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tubeworker") and message in err


def test_without_prometheus_client_metrics_port_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if absent
    assert parse(["--", "true"], env={}).metrics_port is None  # not needed without the flag
    with pytest.raises(SystemExit) as exited:
        config_from(["--metrics-port", "9108", "--", "true"], env={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--metrics-port needs prometheus-client" in err
    assert "pip install 'tubeserver[metrics]'" in err and "Traceback" not in err


def test_every_metric_and_outcome_is_documented() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    families = list(Prometheus(["x:1"], 1).registry.collect())
    assert len(families) == 8
    for family in families:
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}" in readme, shown
    for outcome in OUTCOMES:
        assert f"`{outcome}`" in readme, outcome
    assert "--metrics-port" in readme and "TUBEWORKER_METRICS_PORT" in readme
