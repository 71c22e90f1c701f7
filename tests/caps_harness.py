"""An in-process server with caps for the test_caps_* files, on both of its socket paths: the
epoll hub (hub.py, rounds.py) and a trio task per connection (connection.py, the path of
streams that are not plain sockets), each on a loopback listener of its own. Every cap must
hold on both, so the tests run once per path (the `path` fixture's values)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
from test_hub import Conn

from tubeserver.caps import NO_CAPS, Caps
from tubeserver.hub import Hub
from tubeserver.invariants import check_invariants
from tubeserver.server import Inside, Peer, Server

PATHS = ("hub", "task")


@attrs.define
class Running:
    server: Server
    listeners: dict[str, trio.SocketListener]
    path: str

    async def connect(self, path: str | None = None) -> Conn:
        """A client on the test's path (or `path`)."""
        addr = self.listeners[path or self.path].socket.getsockname()
        return Conn(await trio.open_tcp_stream(*addr[:2]))

    def peers(self) -> list[Peer]:
        """The server's connections (not its own `execute` sessions)."""
        return [p for p in self.server.conns.values() if not isinstance(p, Inside)]


@asynccontextmanager
async def running(path: str, caps: Caps = NO_CAPS,
                  max_job_size: int = 65535) -> AsyncIterator[Running]:
    server = Server(max_job_size, caps=caps)
    listeners = {name: (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
                 for name in PATHS}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run_ticker)
            nursery.start_soon(server.run_sweeper)
            nursery.start_soon(Hub(server, [listeners["hub"]]).run)
            nursery.start_soon(trio.serve_listeners, server.handle_socket,
                               [listeners["task"]])
            yield Running(server, listeners, path)
            nursery.cancel_scope.cancel()
        check_invariants(server.engine)
    finally:
        for listener in listeners.values():
            await trio.aclose_forcefully(listener)
