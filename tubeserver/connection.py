"""One trio task per client: read -> parse -> dispatch -> write, one send per batch.

All replies produced by one received chunk go out in a single send. With a write-ahead log,
the records of those commands are committed first; if that fails, every reply that reported
a logged change becomes INTERNAL_ERROR instead, never a success. A blocked reserve parks
the task on an Event set by the server when the engine's Wakeup for this session arrives;
meanwhile the task keeps reading so that a hang-up is noticed (beanstalkd then answers
TIMED_OUT and closes) and pipelined input is buffered for later. The caps are the hub
client's (rounds.py): `in_cap` on unparsed input, `high_water` on replies piled up before
they are sent (a slow reader then holds the task in its send), and `stall_after`, the time
the server's sweeper lets it sit mid-command before it cancels `scope`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .dispatch import Action, answer
from .engine import Wakeup
from .errors import InternalError, TimedOut, Unauthorized
from .limits import AUTH_DELAY
from .parser import Parser
from .rounds import RECV_SIZE, SEND_HIGH_WATER, WAIT_BUFFER_LIMIT
from .rounds import short as _short

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tubeserver.connection")

__all__ = ["RECV_SIZE", "SEND_HIGH_WATER", "WAIT_BUFFER_LIMIT", "Connection"]


class Connection:
    def __init__(self, server: Server, stream: trio.abc.Stream, peer: str,
                 tls: bool = False) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.tls = tls  # the stream is a TLS one (the JSON API and the dashboard say so)
        self.session = server.engine.connect()
        self.parser = Parser(server.max_job_size)
        self.wakeup: Wakeup | None = None
        self.woken = trio.Event()
        self.hung_up = False
        # Positions in the reply batch of replies that report a logged change.
        self.logged: list[int] = []
        self.active_at = trio.current_time()  # when it last sent something
        self.high_water: int = min(SEND_HIGH_WATER, server.buffer)
        self.pending = 0  # bytes of replies piled up or being sent
        self.blocked = False  # in a reserve's wait or a send: never a stall of its own
        self.scope = trio.CancelScope()  # cancelled by `expire`
        # Before a good `auth` (with an auth file), as the hub's client (rounds.py).
        self.opened_at = self.active_at
        self.preauth = server.tokens is not None
        self.in_cap, self.stall_after = server.bounds(self.opened_at, self.preauth)

    async def run(self) -> None:
        server = self.server
        server.conns[self.session] = self
        if server.verbose:
            log.info("accept %s (session %d)", self.peer, self.session.id)
        try:
            with self.scope:
                await self._serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if server.verbose:
                log.info("connection %s lost: %s", self.peer, e)
        finally:
            del server.conns[self.session]
            server.engine.disconnect(self.session, trio.current_time())
            server.after_change()
            await trio.aclose_forcefully(self.stream)
            if server.verbose:
                log.info("close %s (session %d)", self.peer, self.session.id)

    async def _serve(self) -> None:
        parser, stream, session = self.parser, self.stream, self.session
        handle = self.server.dispatcher.handle
        trace = self.server.verbose >= 2
        wal = self.server.wal
        logged = self.logged
        out: list[bytes] = []
        while True:
            if self.preauth:
                self.authenticated()
            room = self.in_cap - parser.buffered()
            if room <= 0:
                # A command longer than this connection may buffer can never end: left to
                # the sweeper, as any stall.
                await trio.sleep_forever()
            data = await stream.receive_some(RECV_SIZE if room >= RECV_SIZE else room)
            if not data:
                return
            parser.feed(data)
            self.active_at = trio.current_time()
            while (event := parser.next_event()) is not None:
                if wal is None:
                    result = handle(session, event, trio.current_time())
                else:
                    seq = wal.seq
                    result = handle(session, event, trio.current_time())
                    if wal.seq != seq:
                        logged.append(len(out))
                if trace:
                    log.debug("%s <- %s -> %s", self.peer, _short(event), _short(result))
                if result is Action.WAIT:
                    await self._flush(out)
                    wakeup = await self._wait()
                    if wal is not None and wakeup.cleared >= 0:
                        logged.append(len(out))  # clear-tube's deletes were logged
                    result = answer(wakeup)
                    if trace:
                        log.debug("%s <- (reserve answered) -> %s", self.peer, _short(result))
                elif result is Action.CLOSE:
                    await self._flush(out)
                    return
                elif result is Action.REFUSE:  # a failed `auth`: answered late, then closed
                    await self._flush(out)
                    await trio.sleep(AUTH_DELAY)
                    await self._flush([Unauthorized.reply])
                    return
                out.append(result)
                self.pending += len(result)
                if self.hung_up or self.pending >= self.high_water:
                    await self._flush(out)
                    if self.hung_up:
                        return
            await self._flush(out)

    async def _flush(self, out: list[bytes]) -> None:
        """Send the piled-up replies. Wakeups for other sessions go out first: this send
        may block on a slow reader, and a waiter's job must never wait on that. Replies that
        report a logged change wait until it is committed."""
        server = self.server
        server.after_change()
        self.blocked = True
        try:
            if self.logged:
                assert server.wal is not None
                if not await server.commit(server.wal.seq):
                    for i in self.logged:
                        out[i] = InternalError.reply
                self.logged.clear()
            if out:
                await self.stream.send_all(b"".join(out))
                out.clear()
        finally:
            self.blocked = False
        self.pending = 0

    async def _wait(self) -> Wakeup:
        """Park until this session's reserve is answered (or the client hangs up)."""
        self.blocked = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_hangup)
                await self.woken.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.blocked = False
        wakeup, self.wakeup = self.wakeup, None
        self.woken = trio.Event()
        assert wakeup is not None
        return wakeup

    async def _watch_hangup(self) -> None:
        limit = min(WAIT_BUFFER_LIMIT, self.in_cap)
        while (room := limit - self.parser.buffered()) > 0:
            data = await self.stream.receive_some(RECV_SIZE if room >= RECV_SIZE else room)
            if not data:
                self.hung_up = True
                if not self.woken.is_set():
                    self.server.engine.cancel_wait(self.session)
                    self.wake(Wakeup(self.session, None, TimedOut()))
                return
            self.parser.feed(data)
        await trio.sleep_forever()

    def wake(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self.woken.set()

    def stalled_since(self) -> float | None:
        """When it last sent anything, if it is mid-command now of its own doing (as the hub
        client's, rounds.py)."""
        if self.preauth and not self.authenticated():
            return self.opened_at
        if self.blocked or not self.parser.partial():
            return None
        return self.active_at

    def authenticated(self) -> bool:
        """Whether its `auth` succeeded; then its bounds are lifted to the server's."""
        if self.session.rights is None:
            return False
        self.preauth = False
        self.in_cap, self.stall_after = self.server.bounds(self.opened_at, False)
        return True

    def expire(self, now: float) -> None:
        self.scope.cancel()

    def buffered(self) -> tuple[int, int]:
        """Bytes of its unparsed input and of its replies not sent yet."""
        return self.parser.buffered(), self.pending
