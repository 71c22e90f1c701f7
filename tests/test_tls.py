"""TLS end to end: real tubeserver processes with certificates made at test time (trustme),
and tubeclient's sync client, trio client and pools speaking TLS to them.

Each defence is shown from both sides: a client that must refuse (wrong CA, expired server
certificate, wrong host name) raises ConnectFailed; a server that must refuse (plain TCP to
the TLS port, no client certificate, TLS 1.1, no handshake at all) closes that connection,
logs exactly one line naming the peer and the reason, and goes on serving the next client.
The files' problems are usage errors (exit 2). No timing is asserted; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import procs
import pytest
import tlsfiles
import trio
import trio.testing
from tlsfiles import Pki
from tubeclient import (
    Client,
    ConnectFailed,
    ConnectionClosed,
    ConsumerPool,
    ProducerPool,
    TrioClient,
    TrioProducerPool,
)

from tubeserver.__main__ import parse_config
from tubeserver.server import Server
from tubeserver.tls import HANDSHAKE_TIMEOUT, load

IO = 10.0
LOG_WAIT = 5.0  # seconds a log line may take to appear after the client saw the refusal


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return tlsfiles.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[procs.RunningServer]:
    with procs.tubeserver(*pki.server_flags(), tls=pki.client()) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[procs.RunningServer]:
    """A server that requires client certificates from the test CA."""
    with procs.tubeserver(*pki.server_flags(client_ca=True),
                          tls=pki.client(certificate=True)) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


def handshake_lines(srv: procs.RunningServer) -> list[str]:
    return [line for line in procs.stderr_of(srv.proc).splitlines()
            if "TLS handshake with" in line]


@contextlib.contextmanager
def one_refusal_logged(srv: procs.RunningServer, *words: str) -> Iterator[None]:
    """The block makes the server refuse one handshake: exactly one new log line, naming
    the peer (127.0.0.1:port) and containing `words`; never a traceback."""
    before = len(handshake_lines(srv))
    yield
    end = time.monotonic() + LOG_WAIT
    while len(handshake_lines(srv)) == before and time.monotonic() < end:
        time.sleep(0.02)
    new = handshake_lines(srv)[before:]
    assert len(new) == 1, new
    assert "TLS handshake with 127.0.0.1:" in new[0] and "failed: " in new[0], new
    for word in words:
        assert word in new[0], new
    assert "Traceback" not in procs.stderr_of(srv.proc)


def round_trip(client: Client[bytes], tube: str) -> None:
    client.use(tube)
    client.watch(tube)
    job_id = client.put(b"over tls")
    job = client.reserve(timeout=0)
    assert (job.id, job.body) == (job_id, b"over tls")
    client.delete(job)


# ---------------------------------------------------------------------- clients that succeed


def test_sync_client_put_reserve_delete_over_tls(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    with Client(tls_server.addr, ssl=pki.client(), io_timeout=IO) as c:
        round_trip(c, tube)


async def test_trio_client_put_reserve_delete_over_tls(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    async with TrioClient(tls_server.addr, ssl=pki.client(), use=tube, watch=tube,
                          io_timeout=IO) as c:
        job_id = await c.put(b"trio over tls")
        job = await c.reserve(timeout=0)
        assert (job.id, job.body) == (job_id, b"trio over tls")
        await c.delete(job)
        assert (await c.stats_tube(tube))["total-jobs"] == 1


def test_server_hostname_defaults_to_the_host_and_can_be_overridden(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    # The certificate names 127.0.0.1 and localhost.
    with Client(("localhost", tls_server.port), ssl=pki.client(), io_timeout=IO) as c:
        round_trip(c, tube)
    with Client(tls_server.addr, ssl=pki.client(), server_hostname="localhost",
                io_timeout=IO) as c:
        round_trip(c, tube)
    with one_refusal_logged(tls_server), pytest.raises(ConnectFailed) as info:
        Client(tls_server.addr, ssl=pki.client(), server_hostname="other.example",
               io_timeout=IO)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "other.example" in str(info.value)


def test_pools_speak_tls_on_every_connection(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    context = pki.client()
    with ProducerPool([tls_server.addr], ssl=context, use=tube, io_timeout=IO) as producer:
        put = producer.put(b"pooled")
    with ConsumerPool([tls_server.addr], ssl=context, watch=tube, io_timeout=IO) as consumer:
        job = consumer.reserve(timeout=IO)
        assert (job.id, job.body) == (put.id, b"pooled")
        consumer.delete(job)


async def test_trio_pool_speaks_tls(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    async with TrioProducerPool([tls_server.addr], ssl=pki.client(), use=tube,
                                io_timeout=IO) as producer:
        put = await producer.put(b"trio pooled")
    with Client(tls_server.addr, ssl=pki.client(), watch=tube, io_timeout=IO) as c:
        assert c.reserve(timeout=0).id == put.id


def test_the_json_api_marks_tls_connections(pki: Pki) -> None:
    port = procs.free_port()
    with procs.tubeserver(*pki.server_flags(), "--http", f"127.0.0.1:{port}",
                          tls=pki.client()) as srv, \
            Client(srv.addr, ssl=pki.client(), io_timeout=IO):
        base = f"https://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/healthz", timeout=IO,
                                    context=pki.client()) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(base + "/api/connections", timeout=IO,
                                    context=pki.client()) as resp:
            conns = json.load(resp)
        assert [c["tls"] for c in conns] == [True]
        # The same port refuses plain HTTP: tokens must never travel in clear.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=IO)


def test_https_with_a_client_ca_wants_a_client_certificate(pki: Pki) -> None:
    port = procs.free_port()
    with procs.tubeserver(*pki.server_flags(client_ca=True), "--http", f"127.0.0.1:{port}",
                          tls=pki.client(certificate=True)):
        url = f"https://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=IO,
                                    context=pki.client(certificate=True)) as resp:
            assert resp.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(url, timeout=IO, context=pki.client()).read()


def test_a_unix_socket_listener_stays_plain(pki: Pki, tmp_path: Path) -> None:
    path = str(tmp_path / "tube.sock")
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "tubeserver", "-l", f"unix:{path}",
                                 *pki.server_flags()], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        end = time.monotonic() + IO
        while not os.path.exists(path) and time.monotonic() < end:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.02)
        with Client(path, io_timeout=IO) as c:
            assert c.put(b"plain on unix") == 1
    finally:
        procs.stop(proc)
    assert "plain: TLS is for TCP only" in err.read_text()


# ---------------------------------------------------------------------- refusals


def test_a_client_refuses_a_server_signed_by_another_ca(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    stranger = tlsfiles.make(pki.directory / "stranger")
    with one_refusal_logged(tls_server, "UNKNOWN_CA"), pytest.raises(ConnectFailed) as info:
        Client(tls_server.addr, ssl=stranger.client(), io_timeout=IO)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    # ssl=True trusts the system's CAs, which do not include the test CA either.
    with one_refusal_logged(tls_server), pytest.raises(ConnectFailed):
        Client(tls_server.addr, ssl=True, io_timeout=IO)

    async def trio_side() -> None:
        with pytest.raises(ConnectFailed):
            await TrioClient.connect(tls_server.addr, ssl=stranger.client(), io_timeout=IO)

    with one_refusal_logged(tls_server):
        trio.run(trio_side)
    with Client(tls_server.addr, ssl=pki.client(), io_timeout=IO) as c:
        round_trip(c, tube)


def test_a_client_refuses_an_expired_server_certificate(pki: Pki) -> None:
    cert, key = tlsfiles.expired(pki)
    lenient = pki.client()
    lenient.check_hostname = False
    lenient.verify_mode = ssl.CERT_NONE
    with procs.tubeserver("--tls-cert", str(cert), "--tls-key", str(key), tls=lenient) as srv:
        with one_refusal_logged(srv, "EXPIRED"), pytest.raises(ConnectFailed) as info:
            Client(srv.addr, ssl=pki.client(), io_timeout=IO)
        assert "expired" in str(info.value)

        async def trio_side() -> None:
            with pytest.raises(ConnectFailed, match="expired"):
                await TrioClient.connect(srv.addr, ssl=pki.client(), io_timeout=IO)

        with one_refusal_logged(srv):
            trio.run(trio_side)
        with Client(srv.addr, ssl=lenient, io_timeout=IO) as c:  # it still serves
            assert c.put(b"x") == 1


def test_a_missing_client_certificate_is_refused_and_logged_once(
        mtls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    with Client(mtls_server.addr, ssl=pki.client(certificate=True), io_timeout=IO) as c:
        round_trip(c, tube)
    with one_refusal_logged(mtls_server, "certificate"), pytest.raises(ConnectionClosed):
        # Under TLS 1.3 the client finishes its half of the handshake before the server
        # checks the certificate: the refusal then shows on the first command.
        with Client(mtls_server.addr, ssl=pki.client(), io_timeout=IO) as c:
            c.stats()
    stranger = tlsfiles.make(pki.directory / "stranger-client")
    foreign = pki.client()
    foreign.load_cert_chain(str(stranger.client_cert), str(stranger.client_key))
    with one_refusal_logged(mtls_server, "certificate"), pytest.raises(ConnectionClosed):
        with Client(mtls_server.addr, ssl=foreign, io_timeout=IO) as c:
            c.stats()
    with Client(mtls_server.addr, ssl=pki.client(certificate=True), io_timeout=IO) as c:
        round_trip(c, tube)


def test_plain_tcp_to_the_tls_port_is_closed_and_logged_once(
        tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    with one_refusal_logged(tls_server, "WRONG_VERSION_NUMBER"), \
            socket.create_connection(tls_server.addr, timeout=IO) as sock:
        sock.sendall(b"put 0 0 10 5\r\nhello\r\nstats\r\n")
        received = b""
        with contextlib.suppress(ConnectionResetError):
            for _ in range(100):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        assert b"INSERTED" not in received and b"OK " not in received
    # Nothing was stored, and TLS clients are still served.
    with Client(tls_server.addr, ssl=pki.client(), io_timeout=IO) as c:
        round_trip(c, tube)


def test_a_plain_tubeclient_to_the_tls_port_gets_a_closed_connection(
        tls_server: procs.RunningServer) -> None:
    with one_refusal_logged(tls_server), pytest.raises(ConnectionClosed):
        with Client(tls_server.addr, io_timeout=IO) as c:
            c.stats()


def _tls11_context(pki: Pki) -> ssl.SSLContext:
    """A client context that offers only TLS 1.1, or a skip where OpenSSL cannot offer it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = pki.client()
        try:
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            pytest.skip(f"this OpenSSL cannot be set to offer TLS 1.1: {e}")
    probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost")
    try:
        probe.do_handshake()
    except ssl.SSLWantReadError:
        return context  # a ClientHello went out: TLS 1.1 can be offered
    except ssl.SSLError as e:
        pytest.skip(f"this OpenSSL refuses to offer TLS 1.1 ({e.reason})")
    raise AssertionError("a handshake with nobody cannot succeed")


def test_tls_1_1_is_refused(tls_server: procs.RunningServer, pki: Pki, tube: str) -> None:
    context = _tls11_context(pki)
    with one_refusal_logged(tls_server, "UNSUPPORTED_PROTOCOL"), \
            pytest.raises(ConnectFailed) as info:
        Client(tls_server.addr, ssl=context, io_timeout=IO)
    assert isinstance(info.value.__cause__, ssl.SSLError)
    with Client(tls_server.addr, ssl=pki.client(), io_timeout=IO) as c:
        round_trip(c, tube)


async def test_a_connection_without_a_handshake_is_closed_after_the_deadline(
        pki: Pki, autojump_clock: trio.testing.MockClock,
        caplog: pytest.LogCaptureFixture) -> None:
    server = Server(65535)
    context = load(str(pki.cert), str(pki.key)).context
    ours, theirs = trio.socket.socketpair()
    silent = trio.SocketStream(theirs)
    with caplog.at_level(logging.WARNING, logger="tubeserver"):
        started = trio.current_time()
        await server.handle_tls(context, trio.SocketStream(ours))
        waited = trio.current_time() - started
    assert waited == pytest.approx(HANDSHAKE_TIMEOUT)  # the clock is virtual
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"no handshake within {HANDSHAKE_TIMEOUT:g} s" in lines[0]
    assert await silent.receive_some(10) == b""  # closed on the server's side
    assert not server.conns
    await silent.aclose()


# ---------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(("flags", "message"), [
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "{key}"], "--tls-cert and --tls-key go together"),
    (["--tls-client-ca", "{ca}"], "--tls-client-ca needs --tls-cert and --tls-key"),
    (["--tls-cert", "{dir}/missing.pem", "--tls-key", "{key}"],
     "--tls-cert {dir}/missing.pem: cannot read it: No such file or directory"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], "no PEM certificate in it"),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "no PEM private key in it"),
    (["--tls-cert", "{cert}", "--tls-key", "{client_key}"],
     "--tls-key {client_key} is not the key of --tls-cert {cert}"),
    (["--tls-cert", "{cert}", "--tls-key", "{encrypted}"], "is encrypted"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{key}"],
     "--tls-client-ca {key}: no PEM certificate in it"),
])
def test_bad_tls_settings_are_usage_errors(
        pki: Pki, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    names = {"cert": pki.cert, "key": pki.key, "ca": pki.ca_file, "dir": pki.directory,
             "client_key": pki.client_key, "encrypted": tlsfiles.encrypted_key(pki)}
    argv = [flag.format(**names) for flag in flags]
    with pytest.raises(SystemExit) as info:
        parse_config(argv, {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err
    assert "Traceback" not in err


def test_tls_settings_come_from_the_environment_too(pki: Pki) -> None:
    env = {"TUBESERVER_TLS_CERT": str(pki.cert), "TUBESERVER_TLS_KEY": str(pki.key),
           "TUBESERVER_TLS_CLIENT_CA": str(pki.ca_file)}
    config = parse_config([], env)
    assert config.tls is not None
    assert (config.tls.cert, config.tls.key, config.tls.client_ca) == (
        str(pki.cert), str(pki.key), str(pki.ca_file))
    assert config.tls.context.verify_mode == ssl.CERT_REQUIRED
    assert config.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert parse_config([], {}).tls is None


def test_a_bad_key_file_stops_a_real_server_with_status_2(pki: Pki) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tubeserver", "-p", "0", "--tls-cert", str(pki.cert),
         "--tls-key", str(pki.client_key)], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "is not the key of --tls-cert" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------- client arguments


def test_client_tls_arguments_are_checked(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UNIX socket is plain"):
        Client(str(tmp_path / "sock"), ssl=True)
    with pytest.raises(ValueError, match="server_hostname= needs ssl="):
        Client(("127.0.0.1", 1), server_hostname="localhost")
    with pytest.raises(TypeError, match="ssl must be"):
        Client(("127.0.0.1", 1), ssl="yes")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="server_hostname= needs ssl="):
        ProducerPool([("127.0.0.1", 1)], server_hostname="localhost")
