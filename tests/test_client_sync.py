"""The blocking client against a real tubeserver and a real beanstalkd on loopback.

Every test that talks to a real server runs twice, over the `server_kind` parameter, like
tests/test_real_clients.py: beanstalkd proves the test (and the client) right, tubeserver
that the server agrees. Each test works in a tube of its own on a server shared by the
module. Failure modes a real server will not produce on demand (silence, a reply cut off,
garbage) come from a tiny scripted socket server in a thread. Every blocking call has a
timeout and every loop a bound; nothing asserts timings.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procs
import pytest
import tubeclient
from tubeclient import (
    BatchError,
    Client,
    ConnectFailed,
    ConnectionClosed,
    DeadlineSoon,
    DecodeError,
    Draining,
    ExtensionNotSupported,
    IOTimeout,
    Job,
    JobTooBig,
    NotFound,
    NotIgnored,
    PutOptions,
    TimedOut,
    UnexpectedReply,
)

SERVER_KINDS = ("tubeserver", "beanstalkd")
IO = 10.0  # seconds any command may take before the test fails instead of hanging
_tubes = itertools.count(1)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[procs.RunningServer]:
    with procs.server(server_kind) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


@pytest.fixture
def tube(request: pytest.FixtureRequest) -> str:
    return f"{request.node.originalname[:60]}.{next(_tubes)}"


def connect(srv: procs.RunningServer, **kw: Any) -> Client[Any]:
    kw.setdefault("io_timeout", IO)
    kw.setdefault("connect_timeout", IO)
    client: Client[Any] = Client(srv.addr, **kw)
    return client


@contextlib.contextmanager
def unix_server(kind: str, path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server listening on a UNIX socket at `path` (procs only does TCP)."""
    if kind == "tubeserver":
        argv = [sys.executable, "-m", "tubeserver", "--listen", f"unix:{path}"]
    else:
        argv = [procs.require_beanstalkd(), "-l", f"unix:{path}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1)
                probe.connect(str(path))
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"{kind} did not listen on {path}")
        yield proc
    finally:
        procs.stop(proc)


@contextlib.contextmanager
def scripted_server(reply: bytes | None, *, close: bool) -> Iterator[tuple[str, int]]:
    """Accepts one connection, reads one chunk, sends `reply` (if any), then closes (`close`)
    or stays silent until the client hangs up. Everything is bounded by socket timeouts."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO)

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(IO)
            try:
                conn.recv(65536)
                if reply:
                    conn.sendall(reply)
                if not close:
                    for _ in range(1000):
                        if not conn.recv(65536):
                            break
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        host, port = listener.getsockname()[:2]
        yield (host, port)
    finally:
        listener.close()
        thread.join(IO)


# --------------------------------------------------------------------------- every method


def test_every_method(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube, watch=tube) as c:
        assert c.server == f"{server.host}:{server.port}"
        assert c.using() == tube
        assert c.watching() == [tube]
        assert tube in c.list_tubes()
        assert c.tubes() == c.list_tubes()
        a = c.put(b"a", priority=10)
        b = c.put(b"b", priority=5, delay=100)
        assert c.peek(a) == Job(a, b"a", c.server)
        assert c.peek_ready().id == a
        assert c.peek_delayed() == Job(b, b"b", c.server)
        with pytest.raises(NotFound):
            c.peek_buried()

        job = c.reserve(timeout=1)
        assert job == Job(a, b"a", c.server)
        c.touch(job)
        c.release(job, priority=7)
        stats = c.stats_job(a)
        assert (stats["state"], stats["pri"], stats["releases"]) == ("ready", 7, 1)
        assert stats["tube"] == tube

        job = c.reserve_job(a)
        assert c.stats_job(job)["state"] == "reserved"
        c.bury(job, priority=3)
        assert c.peek_buried().id == a
        assert c.stats_job(a)["buries"] == 1
        assert c.kick(10) == 1  # buried jobs first
        assert c.stats_job(a)["state"] == "ready"
        c.kick_job(b)  # delayed -> ready
        assert c.stats_job(b)["state"] == "ready"
        tstats = c.stats_tube(tube)
        assert (tstats["name"], tstats["current-jobs-ready"]) == (tube, 2)

        c.pause_tube(tube, 100)
        assert c.stats_tube(tube)["pause"] == 100
        with pytest.raises(TimedOut):
            c.reserve(timeout=0)
        c.pause_tube(tube, 0)
        # bury gave `a` priority 3, ahead of b's 5; it is ready, so a plain reserve returns.
        assert c.reserve().id == a
        c.release(a, priority=3, delay=0)

        assert c.watch("other-" + tube) == 2
        assert c.ignore("other-" + tube) == 1
        with pytest.raises(NotIgnored):
            c.ignore(tube)
        assert c.use("default") == "default"
        assert c.using() == "default"

        c.delete(a)
        c.delete(Job(b, b"", c.server))  # a Job or an id
        with pytest.raises(NotFound):
            c.delete(a)
        with pytest.raises(NotFound):
            c.stats_tube("no-such-tube-" + tube)

        s = c.stats()
        assert isinstance(s["current-connections"], int)
        assert isinstance(s["rusage-utime"], float)
        assert isinstance(s["draining"], bool)
        assert isinstance(s["version"], str)
        assert isinstance(s["id"], str)
        assert not c.closed
    assert c.closed
    with pytest.raises(ConnectionClosed):
        c.stats()


def test_reserve_without_job_times_out_and_stays_usable(
    server: procs.RunningServer, tube: str
) -> None:
    with connect(server, watch=tube) as c:
        with pytest.raises(TimedOut):
            c.reserve(timeout=0)
        with pytest.raises(NotFound):
            c.reserve_job(2**40)
        assert c.watching() == [tube]


@pytest.mark.parametrize(
    "body", [b"", b"\r\n", b"a\r\nb", bytes(range(256)), b"put 0 0 1 1\r\nx\r\n", b"x" * 65535]
)
def test_binary_bodies_are_byte_exact(
    server: procs.RunningServer, tube: str, body: bytes
) -> None:
    with connect(server, use=tube, watch=tube) as c:
        job_id = c.put(body)
        job = c.reserve(timeout=1)
        assert (job.id, job.body) == (job_id, body)
        c.delete(job)
        assert c.using() == tube  # still in sync


def test_text_bodies_are_counted_in_encoded_bytes(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube, watch=tube, encoding="utf-8") as c:
        for body in ["café", "日本語 🚀", "line\r\nline", ""]:
            job_id = c.put(body)
            assert c.stats_job(job_id)["state"] == "ready"
            job = c.reserve(timeout=1)
            assert job.body == body
            c.delete(job)
        with pytest.raises(TypeError):
            c.put(12)


def test_msgpack_bodies(server: procs.RunningServer, tube: str) -> None:
    value = {"user": 7, "tags": ["a", "é"], "blob": b"\x00\r\n", "ok": True, "ratio": 0.25}
    with connect(server, use=tube, watch=tube, serializer="msgpack") as c:
        c.put(value)
        job = c.reserve(timeout=1)
        assert job.body == value
        c.delete(job)


def test_undecodable_body_can_still_be_handled(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube) as producer, \
            connect(server, watch=tube, encoding="utf-8") as consumer:
        job_id = producer.put(b"\xff\xfe not utf-8")
        with pytest.raises(DecodeError) as info:
            consumer.reserve(timeout=1)
        assert info.value.job == Job(job_id, b"\xff\xfe not utf-8", consumer.server)
        consumer.bury(info.value.job)  # still reserved by this connection
        assert producer.stats_job(job_id)["state"] == "buried"
        producer.delete(job_id)


def test_put_many_and_delete_many(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube, watch=tube) as c:
        ids = c.put_many([b"a", (b"b", PutOptions(priority=1, delay=50, ttr=9)), b"c"],
                         priority=20)
        assert len(ids) == 3
        assert ids == sorted(ids)
        sb = c.stats_job(ids[1])
        assert (sb["pri"], sb["state"], sb["ttr"]) == (1, "delayed", 9)
        assert c.stats_job(ids[0])["pri"] == 20
        job = c.reserve(timeout=1)
        assert job.id == ids[0]
        c.delete_many([job, ids[1], ids[2]])
        assert c.stats_tube(tube)["current-jobs-ready"] == 0
        # A long pipeline crosses several windows and stays in order.
        many = c.put_many([b"%d" % i for i in range(2500)])
        assert many == sorted(many)
        assert c.peek(many[-1]).body == b"2499"
        c.delete_many(many)
        assert c.stats_tube(tube)["total-jobs"] == 2503


def test_delete_many_reads_every_reply_then_raises(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube) as c:
        a, b = c.put_many([b"a", b"b"])
        missing = 2**40
        with pytest.raises(BatchError) as info:
            c.delete_many([a, missing, b, missing + 1])
        assert info.value.results[0] is None
        assert isinstance(info.value.results[1], NotFound)
        assert info.value.results[2] is None
        assert [i for i, _ in info.value.errors] == [1, 3]
        with pytest.raises(NotFound):
            c.peek(b)  # it was deleted although an earlier item failed
        assert c.using() == tube  # in sync


def test_put_many_partial_failure(server_kind: str) -> None:
    with procs.server(server_kind, "-z", "10") as tiny, connect(tiny) as c:
        with pytest.raises(JobTooBig):
            c.put(b"x" * 11)
        with pytest.raises(BatchError) as info:
            c.put_many([b"ok", b"x" * 11, b"fine"])
        ok, too_big, fine = info.value.results
        assert isinstance(ok, int)
        assert isinstance(fine, int)
        assert isinstance(too_big, JobTooBig)
        assert c.peek(fine).body == b"fine"  # the others were stored
        assert c.stats()["max-job-size"] == 10


def test_deadline_soon(server: procs.RunningServer, tube: str) -> None:
    with connect(server, use=tube, watch=tube) as c:
        c.put(b"short", ttr=1)
        job = c.reserve(timeout=1)
        # With TTR 1 the job is inside the 1-second safety margin at once.
        with pytest.raises(DeadlineSoon):
            c.reserve(timeout=2)
        c.delete(job)


def test_constructor_use_and_watch_lists(server: procs.RunningServer, tube: str) -> None:
    second = "second-" + tube
    with connect(server, use=tube, watch=[tube, second]) as c:
        assert c.using() == tube
        assert sorted(c.watching()) == sorted([tube, second])
    with connect(server, watch=["default", tube]) as c:
        assert sorted(c.watching()) == sorted(["default", tube])


def test_bad_arguments_fail_before_the_wire(server: procs.RunningServer) -> None:
    with connect(server) as c:
        with pytest.raises(ValueError):
            c.use("bad name\r\nput 0 0 1 1")
        with pytest.raises(ValueError):
            c.put(b"x", priority=-1)
        with pytest.raises(ValueError):
            c.reserve_batch(0, 1)
        assert c.using() == "default"
    with pytest.raises(ValueError):
        Client(server.addr, watch=[])
    with pytest.raises(ValueError):
        Client(server.addr, io_timeout=0)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_unix_socket(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "tube.sock"
    with unix_server(kind, path), Client(str(path), io_timeout=IO) as c:
        job_id = c.put(b"over unix")
        job = c.reserve(timeout=1)
        assert job == Job(job_id, b"over unix", str(path))
        c.delete(job)


# --------------------------------------------------------------------------- reserve-batch


@pytest.fixture(scope="module")
def batch_server() -> Iterator[procs.RunningServer]:
    """A tubeserver of its own for the live reserve-batch tests."""
    with procs.tubeserver() as srv:
        yield srv


@pytest.fixture(scope="module")
def batch_supported(batch_server: procs.RunningServer) -> bool:
    """Probe once: does this tubeserver implement reserve-batch yet?"""
    with connect(batch_server, watch="batch-probe") as c:
        try:
            c.reserve_batch(1, 0)
        except ExtensionNotSupported:
            return False
        return True


def test_reserve_batch_probe_keeps_the_connection_usable(
    server: procs.RunningServer, server_kind: str, tube: str
) -> None:
    with connect(server, use=tube, watch=tube) as c:
        c.put(b"one")
        try:
            jobs = c.reserve_batch(5, 0)
        except ExtensionNotSupported as e:
            assert e.command == "reserve-batch"
            assert isinstance(e.__cause__, tubeclient.BadFormat | tubeclient.UnknownCommand)
            with pytest.raises(ExtensionNotSupported):
                c.reserve_batch(5, 0)  # remembered: no second round trip
            job = c.reserve(timeout=1)  # the fallback works on the same connection
        else:
            assert server_kind == "tubeserver", "beanstalkd has no reserve-batch"
            (job,) = jobs
        assert job.body == b"one"
        c.delete(job)


def test_reserve_batch_on_beanstalkd_is_not_supported() -> None:
    with procs.beanstalkd() as srv, connect(srv) as c:
        with pytest.raises(ExtensionNotSupported):
            c.reserve_batch(3, 1)
        assert c.put(b"still fine") == 1


def test_reserve_batch_live(
    batch_server: procs.RunningServer, batch_supported: bool, tube: str
) -> None:
    if not batch_supported:
        pytest.skip("server does not support reserve-batch yet")
    with connect(batch_server, use=tube, watch=tube) as c:
        ids = c.put_many([b"a", b"\r\n", b"c"])
        jobs = c.reserve_batch(2, 1)
        assert 1 <= len(jobs) <= 2
        assert all(j.server == c.server for j in jobs)
        rest = c.reserve_batch(10, 0)
        got = jobs + rest
        assert sorted(j.id for j in got) == ids
        assert {j.body for j in got} == {b"a", b"\r\n", b"c"}
        assert c.reserve_batch(3, 0) == []  # TIMED_OUT is an empty batch
        c.delete_many(got)
        lonely = c.put(b"lonely")
        # Not enough jobs to fill the batch: the server waits out the timeout, then hands
        # over what there is (the client's I/O budget covers that wait).
        assert [j.id for j in c.reserve_batch(5, 1)] == [lonely]
        c.delete(lonely)


def test_reserve_batch_live_msgpack_and_deadline_soon(
    batch_server: procs.RunningServer, batch_supported: bool, tube: str
) -> None:
    if not batch_supported:
        pytest.skip("server does not support reserve-batch yet")
    with connect(batch_server, use=tube, watch=tube, serializer="msgpack") as c:
        c.put_many([{"n": i} for i in range(3)], ttr=1)
        got: list[Job[Any]] = []
        for _ in range(3):  # bounded: each call returns at least one job or []
            got += c.reserve_batch(3, 1)
            if len(got) == 3:
                break
        assert sorted(j.body["n"] for j in got) == [0, 1, 2]
        # TTR 1: the held jobs are inside the safety margin at once.
        with pytest.raises(DeadlineSoon):
            c.reserve_batch(1, 1)
        c.delete_many(got)


# --------------------------------------------------------------------------- failures


def test_connect_refused_is_connect_failed() -> None:
    port = procs.free_port()
    with pytest.raises(ConnectFailed) as info:
        Client(("127.0.0.1", port), connect_timeout=IO)
    assert isinstance(info.value, ConnectionError)


def test_reserved_batch_over_a_socket() -> None:
    # Until tubeserver answers reserve-batch, a scripted server shows the I/O path works.
    reply = b"RESERVED-BATCH 2\r\nRESERVED 7 2\r\n\r\n\r\nRESERVED 9 1\r\nx\r\n"
    with scripted_server(reply, close=False) as addr:
        with Client(addr, io_timeout=IO) as c:
            jobs = c.reserve_batch(2, 0)
        name = f"{addr[0]}:{addr[1]}"
        assert jobs == [Job(7, b"\r\n", name), Job(9, b"x", name)]


def test_silent_server_is_an_io_timeout_then_closed() -> None:
    with scripted_server(None, close=False) as addr:
        c: Client[bytes] = Client(addr, io_timeout=0.2)
        with pytest.raises(IOTimeout):
            c.stats()
        assert c.closed
        with pytest.raises(ConnectionClosed):
            c.put(b"x")


def test_reserve_waits_its_timeout_plus_the_io_timeout() -> None:
    with scripted_server(None, close=False) as addr:
        c: Client[bytes] = Client(addr, io_timeout=0.1)
        with pytest.raises(IOTimeout):
            c.reserve(timeout=0)
        assert c.closed


def test_reply_cut_off_is_connection_closed() -> None:
    with scripted_server(b"RESERVED 1 10\r\nabc", close=True) as addr:
        c: Client[bytes] = Client(addr, io_timeout=IO)
        with pytest.raises(ConnectionClosed):
            c.reserve(timeout=1)
        assert c.closed


def test_garbage_reply_is_unexpected_and_closes() -> None:
    with scripted_server(b"HELLO THERE\r\n", close=False) as addr:
        c: Client[bytes] = Client(addr, io_timeout=IO)
        with pytest.raises(UnexpectedReply):
            c.put(b"x")
        assert c.closed
        with pytest.raises(ConnectionClosed):
            c.stats()


def test_draining_server_refuses_puts_and_keeps_the_connection(server_kind: str) -> None:
    with procs.server(server_kind) as srv, connect(srv) as c:
        c.put(b"before")
        os.kill(srv.proc.pid, signal.SIGUSR1)
        for _ in range(200):  # the signal is asynchronous: wait (bounded) until it took
            if c.stats()["draining"]:
                break
            time.sleep(0.02)
        with pytest.raises(Draining):
            c.put(b"after")
        assert c.peek_ready().body == b"before"
