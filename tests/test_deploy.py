"""The deployment files in tubeserver/deploy/: systemd units, their example environment
files and the Kubernetes example.

systemd-analyze checks the units (with ExecStart pointed at this run's commands, since verify
wants them to exist). The units' command lines are then built from the unit and the example
environment file as systemd would (units.py) and run for real against temporary
directories; the server's run under strace shows that every sandboxing option of the unit
leaves it room for what it does (syscalls.py). The Kubernetes manifest is not applied
anywhere: it is parsed, and its commands' arguments are read by the commands' own parsers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import procs
import pytest
import yaml
from procs import Conn, yaml_of
from syscalls import Trace, allowed_syscalls, syscall_groups
from tubeclient import Client, Draining, NotFound
from tubeclient.harness import Config as WorkerConfig
from tubeclient.harness import cli as worker_cli
from units import (
    DEPLOY,
    Unit,
    command_line,
    environment,
    read_env_file,
    specifiers,
    venv_bin,
)

from tubeserver.__main__ import parse_config

SERVER_UNIT = "tubeserver.service"
WORKER_UNIT = "tubeworker@.service"
SERVER_ENV = DEPLOY / "tubeserver.env"
WORKER_ENV = DEPLOY / "tubeworker.env"
def require(tool: str) -> str:
    """The path of `tool`; missing, the test skips, or fails under CI=true (.ci/run
    installs it)."""
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} is not installed (apt-get install {tool})"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    return path


def installed_units(tmp_path: Path) -> Path:
    """Both units in a directory of their own, running this test run's commands."""
    units = tmp_path / "units"
    units.mkdir()
    for name in (SERVER_UNIT, WORKER_UNIT):
        (units / name).write_text(Unit.load(name).with_bin(venv_bin()))
    return units


# --------------------------------------------------------------------------- systemd-analyze


@pytest.mark.parametrize("instance", ["tubeserver.service", "tubeworker@render.service"])
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path, instance: str) -> None:
    analyze = require("systemd-analyze")
    units = installed_units(tmp_path)
    # An instance name loads the template; verify also checks ExecStart's command exists.
    p = subprocess.run([analyze, "verify", str(units / instance)], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    assert (p.returncode, p.stdout + p.stderr) == (0, "")


# systemd's exposure score: 0 is fully sandboxed, 10 not at all. The server needs only the
# network and its directory (1.1 when written); a worker runs arbitrary commands, so its
# unit leaves out what a command might need (4.9).
@pytest.mark.parametrize(("instance", "bound"), [("tubeserver.service", 2.0),
                                                 ("tubeworker@render.service", 5.0)])
def test_units_are_sandboxed(tmp_path: Path, instance: str, bound: float) -> None:
    analyze = require("systemd-analyze")
    units = installed_units(tmp_path)
    p = subprocess.run([analyze, "security", "--offline=true", str(units / instance)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    m = re.search(rf"Overall exposure level for {re.escape(instance)}: ([0-9.]+)", p.stdout)
    assert m is not None, p.stdout + p.stderr
    assert float(m[1]) <= bound, p.stdout


# --------------------------------------------------------------------------- examples


def names_in_help(command: str, prefix: str) -> set[str]:
    out = subprocess.run([venv_bin() + command, "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return set(re.findall(prefix + r"[A-Z_]+[A-Z]", out))


def test_server_env_example_sets_only_real_settings() -> None:
    active, commented = read_env_file(SERVER_ENV)
    known = names_in_help("tubeserver", "TUBESERVER_")
    assert set(active) | set(commented) <= known
    assert "TUBESERVER_WAL_DIR" not in {**active, **commented}  # the unit's -b decides
    unit = Unit.load(SERVER_UNIT)
    argv = command_line(unit, environment(unit, SERVER_ENV))[1:]
    # Each commented-out line, switched on alone, is a valid setting too.
    for name, value in [(None, None), *commented.items()]:
        env = environment(unit, SERVER_ENV)
        if name is not None:
            env[name] = value or ""
        config = parse_config(argv, env)
        assert config.wal_dir == "/var/lib/tubeserver"


def worker_config(env: dict[str, str]) -> WorkerConfig:
    unit = Unit.load(WORKER_UNIT)
    return worker_cli.parse(command_line(unit, env, "render")[1:], env)


def test_worker_env_example_and_the_stop_timeout() -> None:
    unit = Unit.load(WORKER_UNIT)
    active, commented = read_env_file(WORKER_ENV)
    known = names_in_help("tubeworker", "TUBEWORKER_") | {"WORKER_COMMAND"}
    assert set(active) | set(commented) <= known
    base = environment(unit, WORKER_ENV, "render")
    config = worker_config(base)
    assert config.tubes == ("render",)  # the instance name, as Environment= sets it
    assert config.command == ("/usr/local/bin/render", "--job", "{id}")
    # systemd's KILL must not come before the harness has ended its children itself.
    stop = unit.seconds("TimeoutStopSec")
    for name, value in commented.items():
        env = dict(base, **{name: value})
        if name == "TUBEWORKER_CALL":  # as the example says: instead of WORKER_COMMAND
            del env["WORKER_COMMAND"]
        config = worker_config(env)
        assert config.shutdown_grace + config.kill_grace < stop, name
    assert worker_config(dict(base, TUBEWORKER_CALL="m:f", WORKER_COMMAND="")).call == "m:f"
    assert unit.value("KillMode") == "mixed"


# --------------------------------------------------------------------------- running the units


def start_server(argv: list[str], env: dict[str, str], port: int,
                 trace: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server (under strace when `trace` is given); (process, server's pid) once
    it answers `stats`."""
    if trace is not None:
        argv = [require("strace"), "-f", "-qq", "-s", "4096", "-e", "signal=none", "-o",
                str(trace), *argv]
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"exited with {proc.returncode}: {proc.stderr.read()!r}")
        try:
            with Conn.tcp(port) as conn:
                return proc, int(yaml_of(conn.cmd(b"stats"))["pid"])
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the server did not answer within 30 s")


def stop_server(proc: subprocess.Popen[bytes], pid: int, unit: Unit) -> str:
    """Stop it as systemd does (TERM, at most TimeoutStopSec); its standard error."""
    os.kill(pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=unit.seconds("TimeoutStopSec"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return err.decode(errors="replace")


def server_run(tmp_path: Path, **overrides: str) -> tuple[Unit, list[str], dict[str, str], int]:
    """The server unit's command line and environment (the example file), with /var/lib
    under tmp_path and a free port; `overrides` are set on top of the example."""
    unit = Unit.load(SERVER_UNIT)
    state_root = tmp_path / "var-lib"
    env = environment(unit, SERVER_ENV, state_root=str(state_root))
    port = procs.free_port()
    env.update(TUBESERVER_PORT=str(port), TUBESERVER_HTTP=f"127.0.0.1:{procs.free_port()}",
               **overrides)
    argv = command_line(unit, env, state_root=str(state_root))
    argv = [venv_bin() + Path(argv[0]).name, *argv[1:]]
    # As the unit's own state directory is: /var/lib/tubeserver -> tmp_path.
    argv = [str(state_root / "tubeserver") if a == "/var/lib/tubeserver" else a for a in argv]
    (state_root / "tubeserver").mkdir(parents=True)
    return unit, argv, env, port


def test_server_unit_command_line_serves_and_keeps_jobs(tmp_path: Path) -> None:
    unit, argv, env, port = server_run(tmp_path)
    proc, pid = start_server(argv, env, port)
    with Client(("127.0.0.1", port), use="mail") as c:
        kept = c.put(b"kept across the restart")
        assert c.stats()["current-jobs-ready"] == 1
    stop_server(proc, pid, unit)
    assert sorted(p.name for p in (tmp_path / "var-lib" / "tubeserver").iterdir())[0] == "lock"

    proc, pid = start_server(argv, env, port)
    with Client(("127.0.0.1", port), watch="mail") as c:
        job = c.reserve(timeout=5)
        assert (job.id, job.body) == (kept, b"kept across the restart")
        c.delete(job)
    stop_server(proc, pid, unit)


def workload(port: int, pid: int) -> None:
    """Every kind of change the log records, enough of them to fill, roll over and compact
    4 KiB segments; then drain mode (SIGUSR1)."""
    with Client(("127.0.0.1", port), use="w", watch="w") as c:
        ids = [c.put(b"x" * 200) for _ in range(120)]
        for n, id in enumerate(ids):
            job = c.reserve_job(id)
            if n % 4 == 0:
                c.bury(job)
            elif n % 4 == 1:
                c.release(job, delay=60)
            elif n % 4 == 2:
                c.finish(job, b"done")
            else:
                c.delete(job)
        c.kick(1000)
        c.pause_tube("w", 1)
        for _ in range(200):  # churn: the log grows, the live jobs do not
            c.delete(c.put(b"y" * 200))
        assert c.stats()["binlog-records-migrated"] > 0  # compaction ran
        os.kill(pid, signal.SIGUSR1)
        # Stop only once drain mode is on: trio sends a signal still pending when the
        # server leaves its loop back to itself, and USR1's default action kills.
        wait_for(lambda: draining(c))


def draining(client: Client[Any]) -> bool:
    try:
        client.delete(client.put(b"z"))
    except Draining:
        return True
    return False


def test_server_unit_sandbox_leaves_room_for_what_the_server_does(tmp_path: Path) -> None:
    """Run the server under strace (start, every kind of logged change, compaction, drain
    mode, TERM, a restart that reads the log back, TERM) and check what it did against the
    unit's settings."""
    require("systemd-analyze")
    require("strace")
    groups = syscall_groups()
    unit, argv, env, port = server_run(tmp_path, TUBESERVER_WAL_SEGMENT_SIZE="4096")
    state = tmp_path / "var-lib" / "tubeserver"
    traces = [tmp_path / "first.trace", tmp_path / "restart.trace"]
    proc, pid = start_server(argv, env, port, traces[0])
    workload(port, pid)
    stop_server(proc, pid, unit)
    proc, pid = start_server(argv, env, port, traces[1])
    with Client(("127.0.0.1", port)) as c:
        assert c.stats()["current-jobs-delayed"] == 30
    stop_server(proc, pid, unit)

    for trace in map(Trace.read, traces):
        assert "openat" in trace.syscalls and "epoll_wait" in trace.syscalls, "no trace"
        implied = [group for option, group in IMPLIED_DENIALS.items() if unit.flag(option)]
        allowed = allowed_syscalls(unit.values("SystemCallFilter"), implied, groups)
        assert trace.syscalls - allowed == set()
        assert trace.socket_families <= set(unit.value("RestrictAddressFamilies").split())
        if unit.flag("MemoryDenyWriteExecute"):
            assert trace.write_exec == ()
        assert unit.value("ProtectSystem") == "strict"
        outside = {p for p in trace.written_paths
                   if p != str(state) and not p.startswith(f"{state}/")}
        # /dev/null (for ctypes' ldconfig run, at import); Python's bytecode cache, whose
        # failed writes it ignores.
        assert {p for p in outside if p != "/dev/null" and "/__pycache__/" not in p} == set()
        if unit.flag("PrivateDevices"):
            devices = {p for p in trace.opened_paths if p.startswith("/dev/")}
            assert devices <= PRIVATE_DEVICES
        if unit.values("ProcSubset") == ["pid"]:
            proc_files = {p for p in trace.opened_paths if p.startswith("/proc/")}
            assert [p for p in proc_files
                    if not re.match(r"/proc/(self|thread-self|\d+)/", p)] == []


# Options that deny system calls besides SystemCallFilter= (systemd.exec(5)).
IMPLIED_DENIALS = {
    "ProtectClock": "@clock",
    "ProtectKernelModules": "@module",
    "ProtectKernelLogs": "syslog",
    "PrivateDevices": "@raw-io",
    "RestrictNamespaces": "setns",
}
# The device nodes PrivateDevices= leaves.
PRIVATE_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                   "/dev/tty", "/dev/ptmx", "/dev/pts/ptmx", "/dev/shm"}


JOB_SCRIPT = """#!/bin/sh
# One job: say it started, take a while, then keep its body and where it ran.
touch "$OUT/started-$1"
sleep 1
{ cat; echo " $(pwd)"; } > "$OUT/done-$1"
"""


def test_worker_unit_command_line_runs_jobs_and_stops_gracefully(tmp_path: Path) -> None:
    """The worker unit's command line, with the example file but for the server and the
    command, runs a job from the tube named by the instance; a reload (HUP) changes nothing
    for a command, and TERM to the harness alone (KillMode=mixed) lets the running job
    finish, and the harness exits 0 in time."""
    unit = Unit.load(WORKER_UNIT)
    state_root = tmp_path / "var-lib"
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "job.sh"
    script.write_text(JOB_SCRIPT)
    script.chmod(0o755)
    with procs.tubeserver() as srv:
        env = environment(unit, WORKER_ENV, "render", str(state_root))
        env.update(TUBEWORKER_SERVERS=f"{srv.host}:{srv.port}", OUT=str(out),
                   WORKER_COMMAND=f"{script} {{id}}")
        argv = command_line(unit, env, "render", str(state_root))
        argv = [venv_bin() + Path(argv[0]).name, *argv[1:]]
        cwd = Path(specifiers(unit.value("WorkingDirectory"), "render", str(state_root)))
        cwd.mkdir(parents=True)  # StateDirectory=tubeworker/%i
        with Client(srv.addr, use="render") as c:
            id = c.put(b"page 1", ttr=30)
        worker = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: (out / f"started-{id}").exists() or worker.poll() is not None)
            worker.send_signal(signal.SIGHUP)  # systemctl reload (ExecReload=)
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=unit.seconds("TimeoutStopSec"))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 0, err
        assert (out / f"done-{id}").read_text() == f"page 1 {cwd}\n"
        with Client(srv.addr) as c, pytest.raises(NotFound):
            c.stats_job(id)


def wait_for(predicate: Any, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_example_parses_and_hangs_together() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (claim,) = by_kind["PersistentVolumeClaim"]
    (service,) = by_kind["Service"]
    (scaled,) = by_kind["ScaledObject"]
    server, worker = by_kind["Deployment"]

    # The server: one pod at a time on its volume, reached through the Service.
    spec = server["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (box,) = pod["containers"]
    env = {e["name"]: e["value"] for e in box.get("env", [])}
    config = parse_config(box["args"], env)
    (mount,) = box["volumeMounts"]
    assert config.wal_dir == mount["mountPath"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert ports["beanstalk"] == config.port and config.listen == "0.0.0.0"
    assert env["TUBESERVER_HTTP"].endswith(f":{ports['http']}")

    # The workers: reserve from the Service, stop within the pod's grace.
    pod = worker["spec"]["template"]["spec"]
    (box,) = pod["containers"]
    env = {e["name"]: e["value"] for e in box.get("env", [])}
    wconfig = worker_cli.parse(box["args"], env)
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert wconfig.servers == ((service["metadata"]["name"], service_ports["beanstalk"]),)
    assert wconfig.shutdown_grace + wconfig.kill_grace < pod["terminationGracePeriodSeconds"]

    # KEDA scales the worker Deployment on the depth of the tube it watches.
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    (tube,) = wconfig.tubes
    assert "tubeserver_tube_jobs{" in query and f'tube="{tube}"' in query
    assert "ready" in query and float(trigger["metadata"]["threshold"]) > 0

