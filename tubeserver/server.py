"""The trio server: listeners, one task per connection, the ticker, and signals.

The ticker sleeps until the engine's next deadline; any connection that moves that deadline
earlier shortens the sleep (`after_change`). Wakeups the engine queues for waiting sessions
are handed to their connection tasks here. SIGTERM/SIGINT stop everything and return
normally; SIGUSR1 turns on drain mode.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import socket as _socket
import stat
from collections.abc import Sequence

import attrs
import trio

from .connection import Connection
from .dispatch import Dispatcher
from .engine import Engine
from .session import Session
from .stats import ProcessInfo

log = logging.getLogger("tubeserver")


@attrs.frozen
class Config:
    listen: str
    port: int
    max_job_size: int
    verbose: int = 0


class ListenError(Exception):
    """The server cannot listen where it was asked to; the message says why."""


class Server:
    """Engine plus dispatcher plus the glue that ties connection tasks to them."""

    def __init__(self, max_job_size: int, verbose: int = 0) -> None:
        self.max_job_size = max_job_size
        self.verbose = verbose
        self.engine = Engine()
        self.dispatcher = Dispatcher(
            self.engine, ProcessInfo.gather(max_job_size, trio.current_time()), _log_bug
        )
        self.conns: dict[Session, Connection] = {}
        self._tick_scope: trio.CancelScope | None = None

    def after_change(self) -> None:
        """Deliver wakeups and pull the ticker's alarm forward if needed."""
        for w in self.engine.drain_wakeups():
            conn = self.conns.get(w.session)
            if conn is not None:
                conn.wake(w)
        scope = self._tick_scope
        due = self.engine.next_deadline()
        if scope is not None and due is not None and due < scope.deadline:
            scope.deadline = due

    async def run_ticker(self) -> None:
        while True:
            due = self.engine.next_deadline()
            with trio.CancelScope(deadline=math.inf if due is None else due) as scope:
                self._tick_scope = scope
                await trio.sleep_forever()
            self._tick_scope = None
            self.engine.tick(trio.current_time())
            self.after_change()

    async def handle(self, stream: trio.abc.Stream, peer: str = "-") -> None:
        await Connection(self, stream, peer).run()

    async def _handle_socket(self, stream: trio.SocketStream) -> None:
        try:
            peer = _format_peer(stream.socket.getpeername())
        except OSError:
            peer = "?"
        await self.handle(stream, peer)


def _log_bug(event: object, error: Exception) -> None:
    log.error("internal error handling %r", event, exc_info=error)


def _format_peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) or "unix"


async def open_listeners(config: Config) -> list[trio.SocketListener]:
    if config.listen.startswith("unix:"):
        return [await _unix_listener(config.listen[5:])]
    try:
        return await trio.open_tcp_listeners(config.port, host=config.listen, backlog=1024)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            reason = "address already in use (is another server running on this port?)"
        raise ListenError(f"cannot listen on {config.listen}:{config.port}: {reason}") from e


async def _unix_listener(path: str) -> trio.SocketListener:
    if not path:
        raise ListenError("unix: needs a path, as in unix:/run/tubeserver.sock")
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run, as beanstalkd does
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ListenError(f"cannot listen on unix:{path}: {e.strerror}") from e
    sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on unix:{path}: {e.strerror}") from e
    return trio.SocketListener(sock)


def describe(listeners: Sequence[trio.SocketListener]) -> str:
    names = []
    for listener in listeners:
        addr = listener.socket.getsockname()
        names.append(f"unix:{addr}" if isinstance(addr, str) else _format_peer(addr))
    return ", ".join(names)


async def serve(config: Config, *, task_status: trio.TaskStatus[list[trio.SocketListener]]
                = trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGTERM or SIGINT. Raises ListenError when it cannot listen."""
    server = Server(config.max_job_size, config.verbose)
    listeners = await open_listeners(config)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run_ticker)
            nursery.start_soon(trio.serve_listeners, server._handle_socket, listeners)
            log.warning("listening on %s (pid %d)", describe(listeners), os.getpid())
            task_status.started(listeners)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    server.engine.draining = True
                    log.warning("SIGUSR1: drain mode on, put now answers DRAINING")
                    continue
                log.warning("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    if config.listen.startswith("unix:"):
        try:
            os.unlink(config.listen[5:])
        except OSError:
            pass
