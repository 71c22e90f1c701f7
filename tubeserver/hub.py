"""The real-socket network layer: one trio task serves every TCP and UNIX client via an epoll.

A task per connection pays a trip through trio's scheduler for every command; here one task
owns a `select.epoll` of the listeners and all client sockets and parks on its fd. Each wakeup
is a round: read every ready socket once, run what arrived through the parser and dispatcher,
deliver the engine's wakeups (and run the clients they resume), commit the log once for all
clients (group commit), then give each client its replies in one non-blocking send. Rounds
follow each other without parking for as long as sockets are ready, up to BUSY_BUDGET. What
the socket does not take waits for EPOLLOUT; once SEND_HIGH_WATER bytes are pending the client
is neither parsed nor read until they drain. A blocked reserve stops parsing its client until
the Wakeup comes, while reading goes on (up to WAIT_BUFFER_LIMIT) to notice a hang-up. The
bytes on the wire (and the log lines) are those of `connection.py`, which still serves
in-memory streams. This module is the trio loop, accepting and shutting down; the work a round
does on clients is in `rounds.py`, which mypyc compiles.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from .rounds import IN, Rounds

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tubeserver.connection")  # the same lines as connection.py logs

# accept() errors that concern only the one connection attempt (as trio's SocketListener).
_ACCEPT_IGNORED = frozenset({errno.ECONNABORTED, errno.EPERM, errno.EPROTO})
# ... and those that mean no descriptors or memory are left: stop accepting for a moment.
_ACCEPT_FULL = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY = 0.1  # seconds, as trio.serve_listeners
# How long the hub may go on serving ready sockets before it lets other tasks run.
BUSY_BUDGET = 0.001


class Hub:
    """Accepts on `listeners` and serves every client until cancelled."""

    def __init__(self, server: Server, listeners: Sequence[trio.SocketListener]) -> None:
        self.server = server
        self._trio_listeners = listeners
        self._epoll = select.epoll()
        self._listeners: dict[int, socket.socket] = {}
        self._kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._rounds = Rounds(server, self._epoll, self._kick)
        self._accept_resumes: float | None = None  # accepting is off until then

    async def run(self) -> None:
        epoll = self._epoll
        try:
            epoll.register(self._kick, IN)
            for listener in self._trio_listeners:
                ts = listener.socket
                # A duplicate descriptor of our own; trio's listener is closed by its owner.
                sock = socket.fromfd(ts.fileno(), ts.family, ts.type)
                sock.setblocking(False)
                self._listeners[sock.fileno()] = sock
                epoll.register(sock.fileno(), IN)
            await self._loop()
        finally:
            self._shutdown()

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        poll = self._epoll.poll
        epoll_fd = self._epoll.fileno()
        wait_readable = trio.lowlevel.wait_readable
        current_time = trio.current_time
        rounds = self._rounds
        while True:
            if rounds.runnable:
                await trio.lowlevel.checkpoint()
            elif self._accept_resumes is not None:
                with trio.move_on_at(self._accept_resumes):
                    rounds.parked = True
                    await wait_readable(epoll_fd)
                rounds.parked = False
                if current_time() >= self._accept_resumes:
                    self._accept_resumes = None
                    for fd in self._listeners:
                        self._epoll.modify(fd, IN)
            else:
                rounds.parked = True
                await wait_readable(epoll_fd)
                rounds.parked = False
            await self._round(poll(0))
            # While sockets keep coming ready, serve them without a trip through trio's
            # scheduler (it costs about what a round costs at one command per client), but
            # only briefly: the ticker and the syncer need their turns.
            until = current_time() + BUSY_BUDGET
            while not rounds.runnable and current_time() < until and (events := poll(0)):
                await self._round(events)

    async def _round(self, events: list[tuple[int, int]]) -> None:
        rounds = self._rounds
        for fd in rounds.gather(events, trio.current_time()):
            if fd == self._kick:
                try:
                    os.eventfd_read(fd)
                except BlockingIOError:
                    pass
            else:
                self._accept(fd)
        failed = False
        if rounds.logged:
            server = self.server
            assert server.wal is not None
            failed = not await server.commit(server.wal.seq)
        rounds.settle(failed)

    # --- listeners -----------------------------------------------------------------------

    def _accept(self, fd: int) -> None:
        listener = self._listeners[fd]
        server = self.server
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _ACCEPT_IGNORED:
                    continue
                if e.errno not in _ACCEPT_FULL:
                    raise
                log.error("accept returned %s (%s); retrying in %s seconds",
                          errno.errorcode.get(e.errno or 0, "?"), os.strerror(e.errno or 0),
                          ACCEPT_RETRY)
                for listening in self._listeners:
                    self._epoll.modify(listening, 0)
                self._accept_resumes = trio.current_time() + ACCEPT_RETRY
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = self._rounds.add(sock, format_peer(addr))
            if server.verbose:
                log.info("accept %s (session %d)", client.peer, client.session.id)

    def _shutdown(self) -> None:
        """Close every client (their reserved jobs go back to ready), then our descriptors."""
        rounds = self._rounds
        rounds.parked = False
        rounds.now = trio.current_time()
        try:
            for client in list(rounds.clients.values()):
                rounds.drop(client)
        finally:
            for sock in self._listeners.values():
                sock.close()
            os.close(self._kick)
            self._epoll.close()


def format_peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) or "unix"
