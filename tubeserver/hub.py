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
in-memory streams.
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

from .connection import RECV_SIZE, SEND_HIGH_WATER, WAIT_BUFFER_LIMIT, _short
from .dispatch import Action, answer
from .engine import Wakeup
from .errors import InternalError, TimedOut
from .parser import Parser

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tubeserver.connection")  # the same lines as connection.py logs

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLHUP | select.EPOLLERR
# accept() errors that concern only the one connection attempt (as trio's SocketListener).
_ACCEPT_IGNORED = frozenset({errno.ECONNABORTED, errno.EPERM, errno.EPROTO})
# ... and those that mean no descriptors or memory are left: stop accepting for a moment.
_ACCEPT_FULL = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY = 0.1  # seconds, as trio.serve_listeners
# How long the hub may go on serving ready sockets before it lets other tasks run.
BUSY_BUDGET = 0.001


class Client:
    """One connection as the hub keeps it; the server hands it wakeups through `wake`."""

    __slots__ = (
        "closed", "closing", "fd", "hub", "hung_up", "logged", "mask", "out", "parser", "peer",
        "session", "sock", "stalled", "touched", "unsent", "waiting", "wakeup",
    )

    def __init__(self, hub: Hub, sock: socket.socket, peer: str) -> None:
        self.hub = hub
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.session = hub.server.engine.connect()
        self.parser = Parser(hub.server.max_job_size)
        self.out: list[bytes] = []  # replies of this round, sent together once it commits
        self.logged: list[int] = []  # positions in `out` of replies that report logged changes
        self.unsent = bytearray()  # earlier rounds' replies the socket did not take yet
        self.mask = _IN  # the events registered in the epoll
        self.waiting = False  # a blocked reserve: parse nothing more until `wakeup`
        self.wakeup: Wakeup | None = None
        self.stalled = False  # parsing stopped at SEND_HIGH_WATER with input left
        self.hung_up = False  # read EOF
        self.closing = False  # close once `unsent` is out (quit, or hung up)
        self.touched = False  # in the hub's list of clients to settle this round
        self.closed = False

    def wake(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self.hub.resume(self)


class Hub:
    """Accepts on `listeners` and serves every client until cancelled."""

    def __init__(self, server: Server, listeners: Sequence[trio.SocketListener]) -> None:
        self.server = server
        self._trio_listeners = listeners
        self._epoll = select.epoll()
        self._listeners: dict[int, socket.socket] = {}
        self._clients: dict[int, Client] = {}
        self._runnable: list[Client] = []  # woken, or room again below the high-water mark
        self._touched: list[Client] = []  # clients whose output or state changed this round
        self._logged = False  # some reply of this round waits for a commit
        self._kick = -1  # eventfd: how a wake from another task rouses a parked hub
        self._parked = False
        self._accept_resumes: float | None = None  # accepting is off until then

    async def run(self) -> None:
        epoll = self._epoll
        try:
            self._kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            epoll.register(self._kick, _IN)
            for listener in self._trio_listeners:
                ts = listener.socket
                # A duplicate descriptor of our own; trio's listener is closed by its owner.
                sock = socket.fromfd(ts.fileno(), ts.family, ts.type)
                sock.setblocking(False)
                self._listeners[sock.fileno()] = sock
                epoll.register(sock.fileno(), _IN)
            await self._loop()
        finally:
            self._shutdown()

    def resume(self, client: Client) -> None:
        """Run `client` in the next round (its wakeup came, or its backlog drained)."""
        self._runnable.append(client)
        if self._parked:  # called from another task (the ticker) while the hub sleeps
            self._parked = False
            os.eventfd_write(self._kick, 1)

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        poll = self._epoll.poll
        epoll_fd = self._epoll.fileno()
        wait_readable = trio.lowlevel.wait_readable
        current_time = trio.current_time
        while True:
            if self._runnable:
                await trio.lowlevel.checkpoint()
            elif self._accept_resumes is not None:
                with trio.move_on_at(self._accept_resumes):
                    self._parked = True
                    await wait_readable(epoll_fd)
                self._parked = False
                if current_time() >= self._accept_resumes:
                    self._accept_resumes = None
                    for fd in self._listeners:
                        self._epoll.modify(fd, _IN)
            else:
                self._parked = True
                await wait_readable(epoll_fd)
                self._parked = False
            await self._round(poll(0))
            # While sockets keep coming ready, serve them without a trip through trio's
            # scheduler (it costs about what a round costs at one command per client), but
            # only briefly: the ticker and the syncer need their turns.
            until = current_time() + BUSY_BUDGET
            while not self._runnable and current_time() < until and (events := poll(0)):
                await self._round(events)

    async def _round(self, events: list[tuple[int, int]]) -> None:
        clients = self._clients
        for fd, mask in events:
            client = clients.get(fd)
            if client is None:
                if fd == self._kick:
                    try:
                        os.eventfd_read(fd)
                    except BlockingIOError:
                        pass
                else:
                    self._accept(fd)
                continue
            if mask & _OUT or (mask & _GONE and client.unsent):
                self._send_unsent(client)
                if client.closed:
                    continue
            if mask & _IN or mask & _GONE:
                if client.closing:  # nothing more to read; the peer is gone or going
                    if mask & _GONE:
                        self._drop(client)
                    continue
                self._read(client)

        server = self.server
        server.after_change()
        runnable = self._runnable
        while runnable:
            self._runnable = []
            for client in runnable:
                if not client.closed:
                    self._advance(client)
            server.after_change()
            runnable = self._runnable

        touched, self._touched = self._touched, []
        failed = False
        if self._logged:
            self._logged = False
            assert server.wal is not None
            failed = not await server.commit(server.wal.seq)
        for client in touched:
            client.touched = False
            if client.closed:
                continue
            if client.logged:
                if failed:
                    for i in client.logged:
                        client.out[i] = InternalError.reply
                client.logged.clear()
            if client.out:
                self._send(client)
                if client.closed:
                    continue
            if client.closing and not client.unsent:
                self._drop(client)
                continue
            if client.stalled and len(client.unsent) < SEND_HIGH_WATER:
                self.resume(client)
            self._rearm(client)

    # --- one client ----------------------------------------------------------------------

    def _touch(self, client: Client) -> None:
        if not client.touched:
            client.touched = True
            self._touched.append(client)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(client, e)
            return
        if data:
            client.parser.feed(data)
        else:
            client.hung_up = True
            if client.waiting and client.wakeup is None:
                # As beanstalkd: a waiter that hangs up is answered TIMED_OUT, then closed.
                self.server.engine.cancel_wait(client.session)
                client.wakeup = Wakeup(client.session, None, TimedOut())
        self._advance(client)

    def _advance(self, client: Client) -> None:
        """Run the client's buffered commands until it waits, quits, runs out of complete
        commands, or has SEND_HIGH_WATER bytes of replies pending."""
        self._touch(client)
        if client.closing or (client.waiting and not self._answer(client)):
            return
        server = self.server
        handle = server.dispatcher.handle
        wal = server.wal
        trace = server.verbose >= 2
        parser, session, out = client.parser, client.session, client.out
        room = SEND_HIGH_WATER - len(client.unsent)
        for reply in out:
            room -= len(reply)
        client.stalled = False
        while room > 0:
            event = parser.next_event()
            if event is None:
                if client.hung_up:
                    client.closing = True
                return
            if wal is None:
                result = handle(session, event, trio.current_time())
            else:
                seq = wal.seq
                result = handle(session, event, trio.current_time())
                if wal.seq != seq and isinstance(result, bytes):
                    client.logged.append(len(out))
                    self._logged = True
            if trace:
                log.debug("%s <- %s -> %s", client.peer, _short(event), _short(result))
            if result is Action.WAIT:
                client.waiting = True
                if client.hung_up:
                    server.engine.cancel_wait(session)
                    client.wakeup = Wakeup(session, None, TimedOut())
                if not self._answer(client):
                    return
                room -= len(out[-1])
            elif result is Action.CLOSE:
                client.closing = True
                return
            else:
                out.append(result)
                room -= len(result)
        client.stalled = True

    def _answer(self, client: Client) -> bool:
        """Put the waiting client's reserve answer in its output, if it came. True when
        parsing may go on."""
        wakeup = client.wakeup
        if wakeup is None:
            return False
        client.wakeup = None
        client.waiting = False
        reply = answer(wakeup)
        if self.server.verbose >= 2:
            log.debug("%s <- (reserve answered) -> %s", client.peer, _short(reply))
        client.out.append(reply)
        if client.hung_up:
            client.closing = True
            return False
        return True

    def _send(self, client: Client) -> None:
        out = client.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if client.unsent:
            client.unsent += data
            return
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self._lost(client, e)
            return
        if sent < len(data):
            client.unsent += memoryview(data)[sent:]

    def _send_unsent(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.unsent)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(client, e)
            return
        del client.unsent[:sent]
        self._touch(client)

    def _rearm(self, client: Client) -> None:
        want = _OUT if client.unsent else 0
        if not (client.closing or client.hung_up or client.stalled) \
                and len(client.unsent) < SEND_HIGH_WATER \
                and (not client.waiting or client.parser.buffered() < WAIT_BUFFER_LIMIT):
            want |= _IN
        if want != client.mask:
            self._epoll.modify(client.fd, want)
            client.mask = want

    def _lost(self, client: Client, error: OSError) -> None:
        if self.server.verbose:
            log.info("connection %s lost: %s", client.peer, error)
        self._drop(client)

    def _drop(self, client: Client) -> None:
        server = self.server
        client.closed = True
        del self._clients[client.fd]
        del server.conns[client.session]
        server.engine.disconnect(client.session, trio.current_time())
        server.after_change()
        client.sock.close()  # which also takes it out of the epoll
        if server.verbose:
            log.info("close %s (session %d)", client.peer, client.session.id)

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
            client = Client(self, sock, format_peer(addr))
            self._clients[client.fd] = client
            server.conns[client.session] = client
            self._epoll.register(client.fd, _IN)
            if server.verbose:
                log.info("accept %s (session %d)", client.peer, client.session.id)

    def _shutdown(self) -> None:
        """Close every client (their reserved jobs go back to ready), then our descriptors."""
        self._parked = False
        try:
            for client in list(self._clients.values()):
                self._drop(client)
        finally:
            for sock in self._listeners.values():
                sock.close()
            if self._kick >= 0:
                os.close(self._kick)
            self._epoll.close()


def format_peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) or "unix"
