"""--max-connections: a connection beyond the cap is told TOO_MANY_CONNECTIONS and closed, on
the hub and on the trio path alike, counted in stats and metrics and logged a line a second
at most; tubeclient turns the line into TooManyConnections. Real loopback sockets."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from pathlib import Path

import procs
import pytest
import tlsfiles
import trio
import tubeclient
from caps_harness import PATHS, running
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_hub import eventually
from tubeclient.codec import Codec
from tubeclient.commands import Stats as StatsCommand

from tubeserver.caps import Caps
from tubeserver.metrics import registry

REFUSED = b"TOO_MANY_CONNECTIONS\r\n"


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_connection_beyond_the_cap_is_told_and_closed(path: str) -> None:
    async with running(path, Caps(max_connections=2)) as r:
        a, b = await r.connect(), await r.connect()
        for conn in (a, b):  # both accepted before the third comes
            assert await conn.cmd(b"list-tube-used") == b"USING default\r\n"
        third = await r.connect()
        assert await third.reply() == REFUSED
        await third.expect_eof()
        stats = await a.stats()
        assert (stats["connections-refused"], stats["current-connections"]) == ("1", "2")
        assert stats["total-connections"] == "2"  # a refused one never was a session
        # The other path shares the cap: it is the server's.
        other = await r.connect("task" if path == "hub" else "hub")
        assert await other.reply() == REFUSED
        await b.stream.aclose()
        await eventually(lambda: len(r.server.engine.sessions) == 1, "b gone")
        again = await r.connect()
        assert await again.cmd(b"list-tube-used") == b"USING default\r\n"
        assert (await again.stats())["connections-refused"] == "2"


async def test_a_refused_client_that_spoke_first_still_reads_the_line(path: str) -> None:
    async with running(path, Caps(max_connections=1)) as r:
        first = await r.connect()
        assert await first.cmd(b"list-tube-used") == b"USING default\r\n"
        eager = await r.connect()
        await eager.send(b"put 0 0 60 5\r\nhello\r\n")  # before the server accepted it
        assert await eager.reply() == REFUSED
        await eager.expect_eof()
        assert (await first.stats())["current-jobs-ready"] == "0"


async def test_refusals_are_logged_a_line_a_second_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tubeserver")
    async with running("hub", Caps(max_connections=1)) as r:
        first = await r.connect()
        assert await first.cmd(b"list-tube-used") == b"USING default\r\n"
        for _ in range(5):
            refused = await r.connect()
            assert await refused.reply() == REFUSED
        lines = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
        assert len(lines) == 1, lines
        assert "--max-connections" in lines[0]
        await trio.sleep(1.05)
        refused = await r.connect()
        assert await refused.reply() == REFUSED
        lines = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
        assert len(lines) == 2 and "and 4 more" in lines[1], lines
        assert (await first.stats())["connections-refused"] == "6"


async def test_refusals_are_a_metric() -> None:
    async with running("hub", Caps(max_connections=1)) as r:
        first = await r.connect()
        assert await first.cmd(b"list-tube-used") == b"USING default\r\n"
        refused = await r.connect()
        assert await refused.reply() == REFUSED
        text = generate_latest(registry(r.server)).decode()
        samples = {s.name: s.value for family in text_string_to_metric_families(text)
                   for s in family.samples}
        assert samples["tubeserver_connections_refused_total"] == 1.0
        assert samples["tubeserver_connections_stalled_total"] == 0.0


def test_no_cap_by_default_and_no_refusal() -> None:
    """Without the flag, as beanstalkd: no connection is refused."""
    with procs.tubeserver() as srv:
        conns = [procs.Conn.tcp(srv.port) for _ in range(20)]
        try:
            for conn in conns:
                assert conn.cmd(b"list-tube-used") == b"USING default\r\n"
            assert conns[0].stats()["connections-refused"] == "0"
        finally:
            for conn in conns:
                conn.close()


def hold(port: int) -> procs.Conn:
    """The one connection a --max-connections 1 server allows, once the start-up check's
    connection (procs.wait_listening) is gone."""
    for _ in range(100):
        conn = procs.Conn.tcp(port)
        if conn.cmd(b"list-tube-used") == b"USING default\r\n":
            return conn
        conn.close()
        time.sleep(0.02)
    pytest.fail("the server kept refusing")


def test_tubeclient_raises_too_many_connections() -> None:
    with procs.tubeserver("--max-connections", "1") as srv, hold(srv.port) as holder:
        client = tubeclient.Client(srv.addr)
        with pytest.raises(tubeclient.TooManyConnections) as info:
            client.put(b"x")
        assert isinstance(info.value, tubeclient.ConnectionClosed)
        assert client.closed
        assert holder.stats()["current-jobs-ready"] == "0"


def test_the_codec_reads_the_refusal_as_a_closed_connection() -> None:
    codec = Codec()
    codec.send(StatsCommand())
    codec.receive_data(REFUSED)
    with pytest.raises(tubeclient.TooManyConnections):
        codec.next_reply()


def tls_conn(port: int, context: ssl.SSLContext) -> procs.Conn:
    sock = socket.create_connection((procs.HOST, port), timeout=procs.IO_TIMEOUT)
    return procs.Conn(context.wrap_socket(sock, server_hostname=procs.HOST))


def test_the_cap_holds_over_tls(tmp_path: Path) -> None:
    """TLS connections are served apart from the hub (a task each, after a handshake):
    the cap counts them, and a refused one reads the line over TLS."""
    pki = tlsfiles.make(tmp_path / "pki")
    context = pki.client()
    with procs.tubeserver(*pki.server_flags(), "--max-connections", "1", "--stall-timeout",
                          "0.3", tls=context) as srv:
        early = 0  # refused while the start-up check's connection was still open
        for _ in range(100):
            holder = tls_conn(srv.port, context)
            if holder.cmd(b"list-tube-used") == b"USING default\r\n":
                break
            early += 1
            holder.close()
            time.sleep(0.02)
        with holder:
            with tls_conn(srv.port, context) as refused:
                assert refused.reply() == REFUSED
                assert refused.at_eof()
            # A stalled TLS client is closed as a plain one.
            holder.raw(b"put 0 0 60 10\r\nabc")
            assert holder.at_eof()
        with tls_conn(srv.port, context) as again:
            stats = again.stats()
            assert (stats["connections-refused"], stats["connections-stalled"]) == (
                str(early + 1), "1")
