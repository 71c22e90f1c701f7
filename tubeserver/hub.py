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
import math
import os
import select
import socket
from collections.abc import Callable, Sequence
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
# The longest the hub sleeps in its own epoll, or serves rounds from it, before it lets trio
# run (see Hub._wait_direct).
DIRECT_WAIT = 0.01
# With an fsync before every reply: how many more times a round looks for clients that are
# ready before it commits, so that they share its fsync.
GATHER_MORE = 4


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
        self._trio_fd = trio_epoll_fd()  # None: this trio hides it; the hub waits in trio
        self._watching_trio = False  # trio's epoll is in ours
        self._trio_holds_us = False  # ours is in trio's
        self._yielded = 0.0  # when trio last ran other tasks (-inf: let it run next)
        self.direct_wakeups = 0  # rounds started from a sleep in our own epoll

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
        self._yielded = current_time()
        while True:
            events: list[tuple[int, int]] = []
            if rounds.runnable:
                await trio.lowlevel.checkpoint()
                self._yielded = current_time()
            elif self._accept_resumes is not None:
                self._watch_trio(False)
                with trio.move_on_at(self._accept_resumes):
                    rounds.parked = True
                    await wait_readable(epoll_fd)
                rounds.parked = False
                self._yielded = current_time()
                if self._yielded >= self._accept_resumes:
                    self._accept_resumes = None
                    for fd in self._listeners:
                        self._epoll.modify(fd, IN)
            else:
                if current_time() - self._yielded < DIRECT_WAIT:
                    events = self._wait_direct(poll)
                if not events:
                    self._watch_trio(False)
                    rounds.parked = True
                    await wait_readable(epoll_fd)
                    rounds.parked = False
                    self._yielded = current_time()
            await self._round(events or poll(0))
            # While sockets keep coming ready, serve them without a trip through trio's
            # scheduler (it costs about what a round costs at one command per client), but
            # only briefly: the ticker and the syncer need their turns.
            until = current_time() + BUSY_BUDGET
            while not rounds.runnable and current_time() < until and (events := poll(0)):
                await self._round(events)

    def _wait_direct(self, poll: Callable[[float], list[tuple[int, int]]]
                     ) -> list[tuple[int, int]]:
        """Sleep in our own epoll instead of trio's when trio has nothing to run: a wakeup
        then costs one epoll_wait rather than trio's epoll_wait, a trip through its scheduler
        and our epoll_wait (~60 us of every put-to-reserve hop on the test machine).

        trio's own epoll descriptor sits in ours meanwhile, so anything trio waits for
        (another task's socket, a thread's result, a signal) ends the sleep, as does trio's
        next deadline (the ticker's); then the hub parks in trio as before. Our epoll and
        trio's may not hold each other at once (the kernel refuses loops), hence
        `_watch_trio`. Empty when the hub should park in trio instead."""
        if self._trio_fd is None:
            return []
        stats = trio.lowlevel.current_statistics()
        if stats.tasks_runnable or stats.run_sync_soon_queue_size:
            return []
        timeout = min(DIRECT_WAIT, stats.seconds_to_next_deadline)
        if timeout <= 0:
            return []
        self._watch_trio(True)
        events = poll(timeout)
        self.direct_wakeups += bool(events)
        return events

    def _watch_trio(self, on: bool) -> None:
        """Put trio's epoll in ours (on) or take it out before the hub waits in trio's."""
        if self._trio_fd is None:
            return
        if on and not self._watching_trio:
            if self._trio_holds_us:
                # trio keeps a descriptor it waited on registered (disarmed) for good; this
                # is its public way to make it let go, harmless with no task waiting.
                trio.lowlevel.notify_closing(self._epoll.fileno())
                self._trio_holds_us = False
            self._epoll.register(self._trio_fd, IN)
            self._watching_trio = True
        elif not on:
            if self._watching_trio:
                self._epoll.unregister(self._trio_fd)
                self._watching_trio = False
            self._trio_holds_us = True  # the hub is about to wait in trio

    async def _round(self, events: list[tuple[int, int]]) -> None:
        rounds = self._rounds
        self._others(rounds.gather(events, trio.current_time()))
        failed = False
        if rounds.logged:
            server = self.server
            wal = server.wal
            assert wal is not None
            if wal.fsync_ms == 0:
                # Group commit: commands that came while this round ran share its fsync,
                # rather than waiting for the next one (an fsync costs far more than this).
                for _ in range(GATHER_MORE):
                    more = self._epoll.poll(0)
                    if not more:
                        break
                    self._others(rounds.gather(more, trio.current_time()))
            failed = not await server.commit(wal.seq, whole_round=True)
        rounds.settle(failed)

    def _others(self, fds: list[int]) -> None:
        """The descriptors of a round that are not clients: listeners, the kick, trio's."""
        for fd in fds:
            if fd == self._trio_fd:
                self._yielded = -math.inf  # trio has work: the next wait is trio's
            elif fd == self._kick:
                try:
                    os.eventfd_read(fd)
                except BlockingIOError:
                    pass
            else:
                self._accept(fd)

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


def trio_epoll_fd() -> int | None:
    """The descriptor of the running trio's epoll. trio does not publish it: this reaches
    into its internals and answers None when they change (tests/test_hub.py notices)."""
    try:
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
        fd = runner.io_manager._epoll.fileno()
    except AttributeError:
        return None
    return fd if isinstance(fd, int) else None


def format_peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) or "unix"
