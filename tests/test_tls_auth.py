"""tubeclient's side of authentication: the `auth` command and its replies in the codec, and
the clients and pools sending the token first on every connection.

A tiny fake responder on 127.0.0.1 plays a server with authentication (OK for the right
token, UNAUTHORIZED and a hang-up for any other) or without it (UNKNOWN_COMMAND, as
tubeserver without --auth-file and beanstalkd answer); real beanstalkd and tubeserver show
the last case for real, and a real tubeserver with --auth-file and TLS shows tokens, rights
and UNAUTHORIZED end to end. The token must never show: not in a repr, not in a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import procs
import pytest
import tlsfiles
from tubeclient import (
    AuthNotEnabled,
    Client,
    ConnectionClosed,
    ConsumerPool,
    NoServerAvailable,
    ProducerPool,
    TimedOut,
    TrioClient,
    TrioProducerPool,
    Unauthorized,
    UnexpectedReply,
    UnknownCommand,
)
from tubeclient import commands as c
from tubeclient.codec import Codec, Reply
from tubeclient.core import Access
from tubeclient.errors import SERVER_ERRORS, BadFormat

TOKEN = "s3cret-t0ken_with.symbols~"
IO = 10.0


# ---------------------------------------------------------------------- the fake responder


@attrs.define
class Fake:
    """Plays one server for every connection it accepts (bounded): `auth` against `token`
    (None: answers UNKNOWN_COMMAND, as a server without authentication), use/watch/ignore,
    put (closing the connection after `puts_per_connection` of them) and reserve with a
    timeout (TIMED_OUT). `lines` records every command line, per connection."""

    token: str | None = TOKEN
    unknown: bytes = b"UNKNOWN_COMMAND"
    puts_per_connection: int = 1000
    lines: list[list[bytes]] = attrs.field(factory=list)
    address: tuple[str, int] = ("127.0.0.1", 0)

    def serve(self, conn: socket.socket) -> None:
        seen: list[bytes] = []
        self.lines.append(seen)
        conn.settimeout(IO)
        buf = b""
        puts = 0
        with conn:
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                seen.append(line)
                verb, _, rest = line.partition(b" ")
                if verb == b"auth":
                    if self.token is None:
                        conn.sendall(self.unknown + b"\r\n")
                    elif rest == self.token.encode():
                        conn.sendall(b"OK\r\n")
                    else:
                        conn.sendall(b"UNAUTHORIZED\r\n")
                        return
                elif verb == b"use":
                    conn.sendall(b"USING " + rest + b"\r\n")
                elif verb in (b"watch", b"ignore"):
                    conn.sendall(b"WATCHING 1\r\n")
                elif verb == b"put":
                    size = int(rest.split()[-1]) + 2
                    while len(buf) < size:
                        buf += conn.recv(65536)
                    buf = buf[size:]
                    puts += 1
                    conn.sendall(b"INSERTED %d\r\n" % puts)
                    if puts >= self.puts_per_connection:
                        return
                elif verb == b"reserve-with-timeout":
                    conn.sendall(b"TIMED_OUT\r\n")
                else:
                    conn.sendall(b"UNKNOWN_COMMAND\r\n")

    def auths(self) -> list[bytes]:
        return [line for seen in self.lines for line in seen if line.startswith(b"auth ")]


@contextlib.contextmanager
def fake(**kw: Any) -> Iterator[Fake]:
    server = Fake(**kw)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    server.address = listener.getsockname()[:2]
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set() and len(threads) < 50:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=server.serve, args=(conn,), daemon=True)
            threads.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join(IO)
        listener.close()
        for t in threads:
            t.join(IO)


# ---------------------------------------------------------------------- the command and codec


def test_auth_encodes_its_token_and_hides_it() -> None:
    cmd = c.Auth(TOKEN)
    assert cmd.encode() == b"auth " + TOKEN.encode() + b"\r\n"
    assert TOKEN not in repr(cmd) and TOKEN not in str(cmd)
    assert (cmd.ok, cmd.verb) == (b"OK", "auth")


@pytest.mark.parametrize("bad", ["", "two words", "line\r\nput 0 0 1 1", "tab\there",
                                 "é", "x" * 201])
def test_a_token_that_cannot_be_sent_is_refused_without_being_shown(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        c.Auth(bad)
    if bad:
        assert bad not in str(info.value)
    assert "not shown" in str(info.value)


def test_the_longest_token_fits_the_command_line() -> None:
    assert c.TOKEN_MAX == 200  # protocol.md's bound
    assert len(c.Auth("x" * c.TOKEN_MAX).encode()) <= 224
    with pytest.raises(TypeError):
        c.Auth(b"bytes")  # type: ignore[arg-type]


def test_unauthorized_is_an_error_line_of_any_command() -> None:
    assert SERVER_ERRORS[b"UNAUTHORIZED"] is Unauthorized
    codec = Codec()
    auth, put, stats = c.Auth(TOKEN), c.Put(0, 0, 10, b"x"), c.Stats()
    codec.send(auth, put, stats)
    codec.receive_data(b"OK\r\nUNAUTHORIZED\r\nUNAUTHORIZED\r\n")
    replies = [reply_of(codec) for _ in range(3)]
    assert [r.command for r in replies] == [auth, put, stats]
    assert [r.error for r in replies] == [None, Unauthorized(), Unauthorized()]
    with pytest.raises(Unauthorized):
        put.unwrap(replies[1])


def reply_of(codec: Codec) -> Reply:
    reply = codec.next_reply()
    assert isinstance(reply, Reply)
    return reply


def test_an_unexpected_reply_to_auth_breaks_the_stream() -> None:
    codec = Codec()
    codec.send(c.Auth(TOKEN))
    codec.receive_data(b"OK 5\r\n")
    with pytest.raises(UnexpectedReply):
        codec.next_reply()


# ---------------------------------------------------------------------- the sync client


def test_the_token_goes_first_then_use_and_watch() -> None:
    with fake() as server, Client(server.address, token=TOKEN, use="a", watch="b",
                                  io_timeout=IO) as client:
        assert client.put(b"job") == 1
        assert TOKEN not in repr(client)
    assert server.lines == [[b"auth " + TOKEN.encode(), b"use a", b"watch b",
                             b"ignore default", b"put 65536 0 60 3"]]


def test_a_refused_token_raises_unauthorized_and_closes() -> None:
    with fake() as server:
        with pytest.raises(Unauthorized) as info:
            Client(server.address, token="wrong-token", use="a", io_timeout=IO)
        assert "wrong-token" not in str(info.value)
    # Nothing was sent after the refused auth.
    assert server.lines == [[b"auth wrong-token"]]


@pytest.mark.parametrize("answer", [b"UNKNOWN_COMMAND", b"BAD_FORMAT"])
def test_a_server_without_authentication_is_a_clear_error(answer: bytes) -> None:
    with fake(token=None, unknown=answer) as server:
        with pytest.raises(AuthNotEnabled, match="does not have authentication turned on") as info:
            Client(server.address, token=TOKEN, io_timeout=IO)
        assert isinstance(info.value.__cause__, UnknownCommand | BadFormat)
        assert TOKEN not in str(info.value)
    assert server.lines == [[b"auth " + TOKEN.encode()]]


def test_without_a_token_nothing_is_sent_first() -> None:
    with fake(token=None) as server, Client(server.address, io_timeout=IO) as client:
        assert client.put(b"x") == 1
    assert server.lines == [[b"put 65536 0 60 1"]]


def test_real_servers_without_authentication(
        tubeserver: procs.RunningServer, beanstalkd: procs.RunningServer) -> None:
    for srv in (tubeserver, beanstalkd):
        with pytest.raises(AuthNotEnabled):
            Client(srv.addr, token=TOKEN, io_timeout=IO)


# ---------------------------------------------------------------------- the trio client


async def test_trio_client_sends_the_token_first() -> None:
    with fake() as server:
        async with TrioClient(server.address, token=TOKEN, watch="b", io_timeout=IO) as client:
            with pytest.raises(TimedOut):  # the fake has no job
                await client.reserve(timeout=0)
            assert TOKEN not in repr(client)
    assert server.lines[0][:3] == [b"auth " + TOKEN.encode(), b"watch b", b"ignore default"]


async def test_trio_client_refused_token_and_missing_authentication() -> None:
    with fake() as server:
        with pytest.raises(Unauthorized):
            await TrioClient.connect(server.address, token="nope", io_timeout=IO)
    with fake(token=None) as server:
        client = TrioClient(server.address, token=TOKEN, io_timeout=IO)
        with pytest.raises(AuthNotEnabled):
            await client.__aenter__()
        assert client.closed
        with pytest.raises(ConnectionClosed):
            await client.stats()


# ---------------------------------------------------------------------- pools


def test_a_pool_sends_the_token_on_every_reconnect() -> None:
    # The fake hangs up after each put: the next put finds the connection gone (failover,
    # nothing else to try), and the one after reconnects, authenticating again.
    with fake(puts_per_connection=1) as server:
        with ProducerPool([server.address], token=TOKEN, io_timeout=IO, backoff=0.01,
                          max_backoff=0.01) as pool:
            assert TOKEN not in repr(pool._access)
            pool.put(b"one")
            with pytest.raises(NoServerAvailable):
                pool.put(b"two")
            pool.put(b"three")
    assert server.auths() == [b"auth " + TOKEN.encode()] * 2


async def test_a_trio_pool_sends_the_token_on_every_reconnect() -> None:
    with fake(puts_per_connection=1) as server:
        async with TrioProducerPool([server.address], token=TOKEN, io_timeout=IO,
                                    backoff=0.01, max_backoff=0.01) as pool:
            await pool.put(b"one")
            with pytest.raises(NoServerAvailable):
                await pool.put(b"two")
            await pool.put(b"three")
    assert server.auths() == [b"auth " + TOKEN.encode()] * 2


def test_a_pool_raises_a_refused_token_at_once() -> None:
    with fake() as server, ProducerPool([server.address], token="bad-token",
                                        io_timeout=IO) as pool:
        with pytest.raises(Unauthorized):
            pool.put(b"x")


def test_access_checks_the_token_once_and_hides_it() -> None:
    access = Access.check(None, None, TOKEN)
    assert access.token == TOKEN and TOKEN not in repr(access)
    with pytest.raises(ValueError, match="not shown"):
        Access.check(None, None, "has space")


# ---------------------------------------------------------------------- a real server with auth
# tubeserver --auth-file, over TLS: what a deployment reachable from other machines runs.

ROOT, PRODUCER, WORKER = ("tbs_root-0123456789abcdef", "tbs_producer-0123456789abcdef",
                          "tbs_worker-0123456789abcdef")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tlsfiles.Pki:
    return tlsfiles.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(pki: tlsfiles.Pki, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[procs.RunningServer]:
    """tubeserver with TLS and an auth file: root may do anything, the producer only put
    into `emails`, the worker only consume from it."""
    def entry(name: str, token: str, rights: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return f'[[token]]\nname = "{name}"\nsha256 = "{digest}"\n{rights}\n\n'

    auth = tmp_path_factory.mktemp("auth") / "auth.toml"
    auth.write_text(entry("root", ROOT, 'admin = ["*"]')
                    + entry("producer", PRODUCER, 'produce = ["emails"]')
                    + entry("worker", WORKER, 'consume = ["emails"]'))
    with procs.tubeserver(*pki.server_flags(), "--auth-file", str(auth), tls=pki.client(),
                          token=ROOT) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


def test_a_token_over_tls_against_a_real_server(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    with Client(secured.addr, ssl=pki.client(), token=ROOT, use="jobs", watch="jobs",
                io_timeout=IO) as client:
        job_id = client.put(b"secret job")
        job = client.reserve(timeout=0)
        assert (job.id, job.body) == (job_id, b"secret job")
        client.delete(job)


def test_rights_are_enforced_and_unauthorized_maps_one_to_one(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    with Client(secured.addr, ssl=pki.client(), token=PRODUCER, use="emails",
                io_timeout=IO) as producer:
        job_id = producer.put(b"mail")
        with pytest.raises(Unauthorized):
            producer.stats()  # inspect: beyond a producer's rights
        with pytest.raises(Unauthorized):
            producer.peek(job_id)
        assert producer.put(b"more mail") == job_id + 1  # still connected, still in sync
    # The worker may watch and consume `emails`, not put there.
    with Client(secured.addr, ssl=pki.client(), token=WORKER, watch="emails",
                io_timeout=IO) as worker:
        with pytest.raises(Unauthorized):
            worker.put(b"no")
        for expected in (job_id, job_id + 1):
            job = worker.reserve(timeout=0)
            assert job.id == expected
            worker.delete(job)
    # A watch beyond the token's rights fails the connect itself.
    with pytest.raises(Unauthorized):
        Client(secured.addr, ssl=pki.client(), token=WORKER, watch="reports", io_timeout=IO)


def test_no_token_or_a_wrong_one_against_a_real_server(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    with Client(secured.addr, ssl=pki.client(), io_timeout=IO) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.stats()
    with pytest.raises(Unauthorized) as info:
        Client(secured.addr, ssl=pki.client(), token="tbs_not-a-token", io_timeout=IO)
    assert "tbs_not-a-token" not in str(info.value)


async def test_trio_client_and_pools_with_tokens_against_a_real_server(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    async with TrioClient(secured.addr, ssl=pki.client(), token=PRODUCER, use="emails",
                          io_timeout=IO) as producer:
        first = await producer.put(b"from trio")
    async with TrioProducerPool([secured.addr], ssl=pki.client(), token=PRODUCER,
                                use="emails", io_timeout=IO) as pool:
        second = (await pool.put(b"from a pool")).id
    with ConsumerPool([secured.addr], ssl=pki.client(), token=WORKER, watch="emails",
                      io_timeout=IO) as consumer:
        for expected in (first, second):
            job = consumer.reserve(timeout=IO)
            assert job.id == expected
            consumer.delete(job)
