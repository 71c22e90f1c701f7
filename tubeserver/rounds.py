"""The epoll hub's per-round work on its clients, with no trio and no clock: `now` comes in.

A round (see hub.py) reads every ready client socket once, runs what arrived through the
parser and the dispatcher, delivers the engine's wakeups, and then, after the hub has
committed the log, gives each touched client its replies in one non-blocking send. This
module is that work, split from the trio loop in hub.py so that mypyc compiles it with the
core: the parser, dispatcher and engine are then called natively, once per command. It also
holds the network layer's constants, so hub.py and connection.py share them without
importing each other.
"""

from __future__ import annotations

import logging
import os
import select
import socket
from typing import TYPE_CHECKING, Final

from .dispatch import Action, Dispatcher, answer
from .engine import Engine, Wakeup
from .errors import InternalError, TimedOut, Unauthorized
from .parser import Parser

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tubeserver.connection")  # the same lines as connection.py logs

RECV_SIZE: Final = 65536
# Replies are sent once this much has piled up, even mid-batch, and a client is not parsed
# while this much of its output is unsent.
SEND_HIGH_WATER: Final = 256 * 1024
# While a reserve waits, stop reading once this much pipelined input is buffered.
WAIT_BUFFER_LIMIT: Final = 1 << 20

IN: Final = select.EPOLLIN
OUT: Final = select.EPOLLOUT
GONE: Final = select.EPOLLHUP | select.EPOLLERR


def short(value: object, limit: int = 200) -> str:
    """A repr for the -VV trace, cut so that large job bodies do not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class Client:
    """One connection as the hub keeps it; the server hands it wakeups through `wake`, and
    its sweeper asks it whether it stalled mid-command (`stalled_since`).

    Its caps come from the server's when it opens, and may be set tighter for it alone:
    `in_cap` bounds its unparsed input (it is not read past it: a command that does not fit
    can only stall); `high_water` its unsent output, past which it is not parsed (beyond it
    by one reply at most: reserve-batch's is bounded by the engine's `batch_bytes`);
    `stall_after` is how long it may sit mid-command before the sweeper closes it. With an
    auth file, until its `auth` succeeds (`preauth`) it may buffer PREAUTH_BUFFER bytes and
    has the auth deadline from when it opened, idle or not."""

    __slots__ = (
        "active_at", "closed", "closing", "fd", "high_water", "hung_up", "in_cap", "logged",
        "mask", "opened_at", "out", "parser", "peer", "preauth", "rounds", "session", "sock",
        "stall_after", "stalled", "touched", "unsent", "waiting", "wakeup",
    )

    def __init__(self, rounds: Rounds, sock: socket.socket, peer: str) -> None:
        self.rounds = rounds
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.session = rounds.engine.connect()
        server = rounds.server
        self.parser = Parser(server.max_job_size)
        self.high_water: int = min(SEND_HIGH_WATER, server.buffer)
        self.out: list[bytes] = []  # replies of this round, sent together once it commits
        self.logged: list[int] = []  # positions in `out` of replies that report logged changes
        self.unsent = bytearray()  # earlier rounds' replies the socket did not take yet
        self.mask = IN  # the events registered in the epoll
        self.waiting = False  # a blocked reserve: parse nothing more until `wakeup`
        self.wakeup: Wakeup | None = None
        self.stalled = False  # parsing stopped at `high_water` with input left
        self.hung_up = False  # read EOF
        self.closing = False  # close once `unsent` is out (quit, or hung up)
        self.touched = False  # in the list of clients to settle this round
        self.closed = False
        self.active_at = rounds.now  # when it last sent something (the dashboard's idle time)
        self.opened_at = rounds.now
        self.preauth = server.tokens is not None
        self.in_cap, self.stall_after = server.bounds(rounds.now, self.preauth)

    def wake(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self.rounds.resume(self)

    def stalled_since(self) -> float | None:
        """When it last sent anything, if it is mid-command now of its own doing: not while
        it waits in a reserve (or `result`, `clear-tube`), nor while it is paused because
        its replies pile up."""
        if self.preauth and not self.authenticated():
            return None if self.closing or self.closed else self.opened_at
        if self.closing or self.closed or self.waiting or self.stalled \
                or not self.parser.partial():
            return None
        return self.active_at

    def authenticated(self) -> bool:
        """Whether its `auth` succeeded; then its bounds are lifted to the server's."""
        if self.session.rights is None:
            return False
        self.preauth = False
        self.in_cap, self.stall_after = self.rounds.server.bounds(self.opened_at, False)
        return True

    def expire(self, now: float) -> None:
        """Close it now (the sweeper: it stalled); its reserved jobs go back to ready."""
        if not self.closed:
            rounds = self.rounds
            rounds.now = max(rounds.now, now)
            rounds.drop(self)

    def buffered(self) -> tuple[int, int]:
        """Bytes of its unparsed input and of its output not sent yet."""
        return self.parser.buffered(), len(self.unsent) + sum(len(r) for r in self.out)


class Rounds:
    """The clients of one hub and what a round does to them."""

    def __init__(self, server: Server, epoll: select.epoll, kick: int) -> None:
        self.server = server
        self.engine: Engine = server.engine
        self.dispatcher: Dispatcher = server.dispatcher
        self.epoll = epoll
        self.kick = kick  # eventfd: how a wake from another task rouses a parked hub
        self.clients: dict[int, Client] = {}
        self.runnable: list[Client] = []  # woken, or room again below the high-water mark
        self.touched: list[Client] = []  # clients whose output or state changed this round
        self.logged = False  # some reply of this round waits for a commit
        self.parked = False  # the hub sleeps in trio: a resume must write to `kick`
        self.now = 0.0  # the time of the current round

    def add(self, sock: socket.socket, peer: str) -> Client:
        client = Client(self, sock, peer)
        self.clients[client.fd] = client
        self.server.conns[client.session] = client
        self.epoll.register(client.fd, IN)
        return client

    def resume(self, client: Client) -> None:
        """Run `client` in the next round (its wakeup came, or its backlog drained)."""
        self.runnable.append(client)
        if self.parked:  # called from another task (the ticker) while the hub sleeps
            self.parked = False
            os.eventfd_write(self.kick, 1)

    def gather(self, events: list[tuple[int, int]], now: float) -> list[int]:
        """The first half of a round: read and run every client with events, and every
        runnable one. Returns the descriptors that are not clients (listeners, the kick);
        `logged` then says whether a commit must come before `settle`."""
        self.now = now
        clients = self.clients
        others: list[int] = []
        for fd, mask in events:
            client = clients.get(fd)
            if client is None:
                others.append(fd)
                continue
            if mask & OUT or (mask & GONE and client.unsent):
                self._send_unsent(client)
                if client.closed:
                    continue
            if mask & IN or mask & GONE:
                if client.closing:  # nothing more to read; the peer is gone or going
                    if mask & GONE:
                        self.drop(client)
                    continue
                self._read(client)
        server = self.server
        server.after_change()
        runnable = self.runnable
        while runnable:
            self.runnable = []
            for client in runnable:
                if not client.closed:
                    self._advance(client)
            server.after_change()
            runnable = self.runnable
        return others

    def settle(self, failed: bool) -> None:
        """The second half: each touched client gets its replies (INTERNAL_ERROR for those
        whose change was not committed, when `failed`)."""
        touched, self.touched = self.touched, []
        self.logged = False
        # Latest touched first: a consumer woken by this round's put hears RESERVED before
        # the producer hears INSERTED (a wakeup is what someone is waiting on).
        touched.reverse()
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
                self.drop(client)
                continue
            if client.stalled and len(client.unsent) < client.high_water:
                self.resume(client)
            self._rearm(client)

    # --- one client ----------------------------------------------------------------------

    def _touch(self, client: Client) -> None:
        if not client.touched:
            client.touched = True
            self.touched.append(client)

    def _read(self, client: Client) -> None:
        if client.preauth:
            client.authenticated()
        room = client.in_cap - client.parser.buffered()
        if room <= 0:
            # Not read at its cap (see _rearm): only a hang-up or an error wakes it here.
            # Anything still in the socket would be more than it may buffer; it is gone.
            data = b""
        else:
            try:
                data = client.sock.recv(RECV_SIZE if room >= RECV_SIZE else room)
            except BlockingIOError:
                return
            except OSError as error:
                self._lost(client, error)
                return
        if data:
            client.parser.feed(data)
            client.active_at = self.now
        else:
            client.hung_up = True
            if client.waiting and client.wakeup is None:
                # As beanstalkd: a waiter that hangs up is answered TIMED_OUT, then closed.
                self.engine.cancel_wait(client.session)
                client.wakeup = Wakeup(client.session, None, TimedOut())
        self._advance(client)

    def _advance(self, client: Client) -> None:
        """Run the client's buffered commands until it waits, quits, runs out of complete
        commands, or has `high_water` bytes of replies pending."""
        self._touch(client)
        if client.closing or (client.waiting and not self._answer(client)):
            return
        server = self.server
        dispatcher = self.dispatcher
        wal = server.wal
        trace = server.verbose >= 2
        now = self.now
        parser, session, out = client.parser, client.session, client.out
        room = client.high_water - len(client.unsent)
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
                result = dispatcher.handle(session, event, now)
            else:
                seq = wal.seq
                result = dispatcher.handle(session, event, now)
                if wal.seq != seq and isinstance(result, bytes):
                    client.logged.append(len(out))
                    self.logged = True
            if trace:
                log.debug("%s <- %s -> %s", client.peer, short(event), short(result))
            if isinstance(result, bytes):
                out.append(result)
                room -= len(result)
            elif result is Action.WAIT:
                client.waiting = True
                if client.hung_up:
                    self.engine.cancel_wait(session)
                    client.wakeup = Wakeup(session, None, TimedOut())
                if not self._answer(client):
                    return
                room -= len(out[-1])
            elif result is Action.REFUSE:  # answered later (server.refuse), then closed
                client.waiting = True
                server.refuse(session)
                return
            else:  # Action.CLOSE
                client.closing = True
                return
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
            log.debug("%s <- (reserve answered) -> %s", client.peer, short(reply))
        if wakeup.cleared >= 0 and self.server.wal is not None:
            client.logged.append(len(client.out))  # clear-tube's deletes were logged
            self.logged = True
        client.out.append(reply)
        if client.hung_up or isinstance(wakeup.error, Unauthorized):  # a refused `auth`
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
        except OSError as error:
            self._lost(client, error)
            return
        if sent < len(data):
            client.unsent += memoryview(data)[sent:]

    def _send_unsent(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.unsent)
        except BlockingIOError:
            return
        except OSError as error:
            self._lost(client, error)
            return
        del client.unsent[:sent]
        self._touch(client)

    def _rearm(self, client: Client) -> None:
        want = OUT if client.unsent else 0
        if not (client.closing or client.hung_up or client.stalled) \
                and len(client.unsent) < client.high_water:
            if client.preauth:
                client.authenticated()
            limit = client.in_cap
            if client.waiting and limit > WAIT_BUFFER_LIMIT:
                limit = WAIT_BUFFER_LIMIT
            if client.parser.buffered() < limit:
                want |= IN
        if want != client.mask:
            self.epoll.modify(client.fd, want)
            client.mask = want

    def _lost(self, client: Client, error: OSError) -> None:
        if self.server.verbose:
            log.info("connection %s lost: %s", client.peer, error)
        self.drop(client)

    def drop(self, client: Client) -> None:
        server = self.server
        client.closed = True
        del self.clients[client.fd]
        del server.conns[client.session]
        self.engine.disconnect(client.session, self.now)
        server.after_change()
        client.sock.close()  # which also takes it out of the epoll
        if server.verbose:
            log.info("close %s (session %d)", client.peer, client.session.id)
