"""The tls workload (`--only tls`): what TLS costs tubeserver, against the same server in
plain TCP and against beanstalkd behind stunnel, what beanstalkd's users run for TLS.

gen.c has no TLS, so every run here, plain ones included, is driven by the Python generator
(loadgen.py with `ssl`); its ceiling row is the same load against null.py speaking TLS. A
self-signed certificate is made once per run with the `openssl` command; stunnel (Debian's
stunnel4) is looked for on PATH, and its column says how to install it when missing.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import null, servers
from .instrument import Load, Outcome, PyGenerator
from .loadgen import bench_context
from .servers import Server, ServerKind
from .workloads import (
    BODY,
    FILL_CONNS,
    FILL_DEPTH,
    RATE,
    BenchError,
    CeilingFn,
    Column,
    RunFn,
    Sample,
    Settings,
    Variant,
    _check,
    _info,
    _scale,
)

TS_TLS = Column("tubeserver tls", "tubeserver")
TS_PLAIN = Column("tubeserver plain", "tubeserver")
BS_STUNNEL = Column("beanstalkd+stunnel", "beanstalkd")
CONNS, DEPTH = 10, 16
START_LIMIT = 20.0

_certs: tuple[str, str] | None = None


def certificate() -> tuple[str, str]:
    """(cert, key) files of a self-signed certificate for 127.0.0.1, made on first use and
    removed when the process exits."""
    global _certs
    if _certs is None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise BenchError("the tls workload needs the openssl command to make a certificate")
        directory = tempfile.mkdtemp(prefix="tubebench-tls-")
        atexit.register(shutil.rmtree, directory, True)
        cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if done.returncode != 0:
            raise BenchError(f"openssl could not make a certificate: {done.stderr.strip()}")
        _certs = (cert, key)
    return _certs


def _server_context() -> ssl.SSLContext:
    cert, key = certificate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def stunnel(backend: int) -> Iterator[int]:
    """stunnel in front of 127.0.0.1:`backend`: yields the TLS port, once it answers a
    handshake."""
    binary = shutil.which("stunnel4") or shutil.which("stunnel")
    if binary is None:
        raise BenchError("stunnel is not installed (apt-get install stunnel4)")
    cert, key = certificate()
    port = servers.free_port()
    with tempfile.TemporaryDirectory(prefix="tubebench-stunnel-") as directory:
        conf = Path(directory) / "stunnel.conf"
        # TCP_NODELAY both ways, as the servers and the generator set it: without it each
        # pipelined reply waits on Nagle's algorithm, and stunnel would be timed on that.
        conf.write_text(f"foreground = yes\npid =\ndebug = 3\noutput = {directory}/log\n"
                        "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                        f"[beanstalkd]\naccept = {servers.HOST}:{port}\n"
                        f"connect = {servers.HOST}:{backend}\ncert = {cert}\nkey = {key}\n")
        proc = subprocess.Popen([binary, str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            _wait_tls(port, proc, Path(directory) / "log")
            yield port
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_tls(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + START_LIMIT
    while time.monotonic() < end:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-300:] if log.exists() else ""
            raise BenchError(f"stunnel exited with {proc.returncode}: {text}")
        try:
            with socket.create_connection((servers.HOST, port), timeout=2) as sock, \
                    bench_context().wrap_socket(sock, server_hostname=servers.HOST):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"stunnel did not answer on port {port} within {START_LIMIT:.0f}s")


@contextlib.contextmanager
def _target(kind: ServerKind) -> Iterator[tuple[Server, int, bool]]:
    """The server a column starts: (the server, whose `stats` checks the run; the port the
    load goes to; whether that port speaks TLS)."""
    if kind.name == TS_TLS.name:
        cert, key = certificate()
        with servers.running(kind, ["--tls-cert", cert, "--tls-key", key],
                             tls=bench_context()) as server:
            yield server, server.port, True
    elif kind.name == BS_STUNNEL.name:
        with servers.running(kind) as server, stunnel(server.port) as port:
            yield server, port, True
    else:
        with servers.running(kind) as server:
            yield server, server.port, False


def _measure(load: Load) -> Outcome:
    out = PyGenerator().run(load)
    if out.errors:
        raise BenchError(f"{out.errors} error replies, first: {out.first_error!r}")
    if not out.done:
        raise BenchError("no job completed" + (" before the deadline" if out.timed_out else ""))
    return out


def put(n: int) -> tuple[RunFn, CeilingFn]:
    def run(kind: ServerKind, settings: Settings) -> Sample:
        with _target(kind) as (server, port, tls):
            out = _measure(Load("put", port, n, CONNS, DEPTH, body=BODY,
                                limit_s=settings.limit_s, tls=tls))
            if not out.timed_out:
                _check(server, total_jobs=out.done)
        return Sample({"rate": out.rate}, {**_info(out), "tls": tls})

    def ceiling(_port: int, settings: Settings) -> Sample:
        proc, port = null.start(_server_context())
        try:
            out = _measure(Load("put", port, n, CONNS, DEPTH, body=BODY,
                                limit_s=settings.limit_s, tls=True))
        finally:
            null.stop(proc)
        return Sample({"rate": out.rate}, {**_info(out), "tls": True})

    return run, ceiling


def drain(n: int) -> tuple[RunFn, CeilingFn]:
    def run(kind: ServerKind, settings: Settings) -> Sample:
        with _target(kind) as (server, port, tls):
            filled = _measure(Load("put", port, n, FILL_CONNS, FILL_DEPTH, body=BODY,
                                   limit_s=60 + n / 2000, tls=tls))
            if filled.done != n:
                raise BenchError(f"filling stopped at {filled.done} of {n} jobs")
            _check(server, current_jobs_ready=n)
            out = _measure(Load("drain", port, n, CONNS, DEPTH, body=BODY,
                                limit_s=settings.limit_s, tls=tls))
            if not out.timed_out:
                _check(server, current_jobs_ready=0, current_jobs_reserved=0)
        return Sample({"rate": out.rate}, {**_info(out), "tls": tls})

    def ceiling(_port: int, settings: Settings) -> Sample:
        proc, port = null.start(_server_context())
        try:
            out = _measure(Load("drain", port, n, CONNS, DEPTH, body=BODY,
                                limit_s=settings.limit_s, tls=True))
        finally:
            null.stop(proc)
        return Sample({"rate": out.rate}, {**_info(out), "tls": True})

    return run, ceiling


def variants(quick: bool, jobs: int | None = None) -> list[Variant]:
    """TLS over plain on tubeserver, then tubeserver's TLS over beanstalkd's through
    stunnel, for put c10 d16 and reserve+delete c10 d16."""
    out: list[Variant] = []
    shapes = (("put", put, _scale(50_000 if quick else 200_000, jobs)),
              ("drain", drain, _scale(30_000 if quick else 100_000, jobs)))
    for name, make, n in shapes:
        run, ceil = make(n)
        params = {"connections": CONNS, "depth": DEPTH, "body": BODY, "jobs": n,
                  "generator": "python, ssl"}
        out.append(Variant(f"tls {name} c{CONNS} d{DEPTH}", "tls",
                           {**params, "columns": "tubeserver TLS / tubeserver plain"},
                           (RATE,), run, ceil,
                           columns=(TS_TLS, TS_PLAIN)))
        out.append(Variant(f"tls {name} c{CONNS} d{DEPTH} stunnel", "tls",
                           {**params, "columns": "tubeserver TLS / beanstalkd behind stunnel"},
                           (RATE,), run, None,
                           columns=(TS_TLS, BS_STUNNEL)))
    return out
