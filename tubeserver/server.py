"""The trio server: listeners and their hub, the ticker, and signals.

Real sockets are served by one hub task (`hub.py`); in-memory streams by a Connection task each
(`handle`). The ticker sleeps until the engine's next deadline; any connection that moves that
deadline earlier shortens the sleep (`after_change`). Wakeups the engine queues for waiting
sessions are handed to their connections here. With a write-ahead log, `commit` writes what the
engine logged before a connection sends its replies, and the syncer task runs fsync in a
thread, one round for everything written meanwhile (group commit). The sweeper task closes
connections that stall mid-command (--stall-timeout), asking each when it last sent anything
while mid-command and sleeping until the soonest can expire. SIGTERM/SIGINT stop everything
and return normally; SIGUSR1 turns on drain mode; SIGHUP reloads the auth file. A failed
`auth` is answered after AUTH_DELAY (`refuse`), which slows guessing down.
"""

from __future__ import annotations

import errno
import functools
import gc
import logging
import math
import os
import select
import signal
import socket as _socket
import ssl
import stat
import time
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import attrs
import trio

from . import recovery
from .access import Rights
from .caps import NO_CAPS, Caps, Tally
from .commands import Command
from .connection import Connection
from .dispatch import Action, Dispatcher, answer
from .engine import Engine, Wakeup
from .errors import InternalError, TooManyConnections, Unauthorized
from .histogram import SYNC_BOUNDS, Histogram
from .hub import Hub, format_peer
from .limits import AUTH_DEADLINE, AUTH_DELAY, DEFAULT_TUBE, FRAME_OVERHEAD, PREAUTH_BUFFER
from .rounds import RECV_SIZE, SEND_HIGH_WATER
from .session import Session
from .stats import NetStats, ProcessInfo
from .tls import HANDSHAKE_TIMEOUT, Tls, handshake_failure
from .tokens import AuthFileError, Tokens
from .tokens import load as load_tokens
from .tracking import DEFAULT_MEMORY, DEFAULT_TTL, Tracker
from .wal import DEFAULT_FSYNC_MS, DEFAULT_SEGMENT_SIZE, DirLock, SyncPlan, Wal, WalError

log = logging.getLogger("tubeserver")

# fsync rounds faster than this run on the event loop; slower ones in a thread.
INLINE_SYNC = 0.0005
# How long a connection refused at accept may take to be told so (a TLS handshake first),
# and how long what it sent meanwhile is waited for before the close.
REFUSE_TIMEOUT = 1.0
REFUSE_DRAIN = 0.05


@attrs.frozen
class Config:
    listen: str
    port: int
    max_job_size: int
    verbose: int = 0
    wal_dir: str | None = None
    fsync_ms: int | None = DEFAULT_FSYNC_MS  # None: never fsync
    segment_size: int = DEFAULT_SEGMENT_SIZE
    wal_repair: bool = False
    result_ttl: int = int(DEFAULT_TTL)  # seconds; 0: no records of finished jobs
    result_memory: int = DEFAULT_MEMORY
    timezone: str | None = None  # schedules' cron times; None: UTC
    http: tuple[str, int] | None = None  # the HTTP endpoint (web.py); None: off
    tls: Tls | None = None  # TLS on TCP listeners and the HTTP endpoint (tls.py); None: off
    auth_file: str | None = None  # tokens and their rights (tokens.py); None: no auth
    auth_deadline: float = AUTH_DEADLINE  # seconds a connection has to authenticate
    http_allow_hosts: tuple[str, ...] = ()  # Host names HTTP answers to, beyond IPs/localhost
    caps: Caps = NO_CAPS  # --max-connections, --max-jobs, ... (caps.py)


class Peer(Protocol):
    """A connection as the server sees it: a Connection task or a hub client."""

    stall_after: float  # seconds it may sit mid-command; inf: for ever

    def wake(self, wakeup: Wakeup) -> None: ...
    def stalled_since(self) -> float | None: ...
    def expire(self, now: float) -> None: ...
    def buffered(self) -> tuple[int, int]: ...


class ListenError(Exception):
    """The server cannot listen where it was asked to; the message says why."""


class Server:
    """Engine plus dispatcher plus the glue that ties connections to them."""

    def __init__(self, max_job_size: int, verbose: int = 0,
                 tracker: Tracker | None = None, timezone: tzinfo | None = None,
                 caps: Caps = NO_CAPS) -> None:
        self.max_job_size = max_job_size
        self.verbose = verbose
        self.engine = Engine(tracker)
        # The caps (caps.py): the engine's on jobs, and each new connection's defaults.
        self.caps = caps
        self.engine.quota.max_jobs = caps.max_jobs
        self.engine.quota.max_memory = caps.max_memory
        self.buffer = caps.buffer(max_job_size)
        self.stall_after = caps.stall_after
        # The last reply may come on top of SEND_HIGH_WATER pending (rounds.py).
        self.engine.batch_bytes = max(0, self.buffer - SEND_HIGH_WATER - FRAME_OVERHEAD)
        self.refused = 0  # connections refused at accept (--max-connections)
        self.handshakes = 0  # TLS connections in their handshake: not sessions yet
        self.stalled = 0  # connections closed mid-command (--stall-timeout)
        self._refusals = Tally(log)
        self._stalls = Tally(log)
        self._firings_refused = 0  # schedule firings refused by a cap, as last logged
        self._firings_logged_at = -math.inf
        self._sweep_scope: trio.CancelScope | None = None
        self.dispatcher = Dispatcher(
            self.engine, ProcessInfo.gather(max_job_size, trio.current_time()), _log_bug
        )
        self.dispatcher.net_stats = self.net_stats
        self.dispatcher.wall = time.time() - trio.current_time()
        self.engine.flow.wall_offset = self.dispatcher.wall
        self.engine.flow.schedules.tz = timezone
        self.conns: dict[Session, Peer] = {}
        self._tick_scope: trio.CancelScope | None = None
        self.wal: Wal | None = None
        self._lock: DirLock | None = None
        self._sync_wanted = trio.Event()
        self._synced = trio.Event()
        self._syncing = False  # an fsync round is under way (in a thread)
        self._sync_took = math.inf  # seconds the last round took
        self.sync_time = Histogram(SYNC_BOUNDS)  # every fsync round, for the metrics
        self._internal = 0  # sessions made for `execute`
        self.tokens: Tokens | None = None  # the auth file's, once `use_tokens` was called
        self.auth_deadline = AUTH_DEADLINE  # seconds a new connection has to authenticate
        self.nursery: trio.Nursery | None = None  # _run's, for the tasks `refuse` starts
        self.auth_failures = 0  # failed `auth` commands, and wrong HTTP tokens
        self._auth_refusals = Tally(log)  # a guessing storm logs a line a second

    def bounds(self, opened_at: float, preauth: bool) -> tuple[int, float]:
        """A connection's input cap and stall timeout: the server's, or before its `auth`
        succeeds (with an auth file) PREAUTH_BUFFER and the auth deadline, counted from
        `opened_at` (the sweeper is told to look then)."""
        if not preauth:
            return self.buffer, self.stall_after
        self.sweep_by(opened_at + self.auth_deadline)
        return min(self.buffer, PREAUTH_BUFFER), self.auth_deadline

    def use_tokens(self, tokens: Tokens) -> None:
        """Require `auth` from now on (new connections), with these tokens."""
        self.tokens = tokens
        self.dispatcher.authenticate = tokens.check

    def reload_tokens(self, path: str) -> None:
        """SIGHUP: a file that cannot be used leaves the tokens as they were."""
        try:
            tokens = load_tokens(path)
        except AuthFileError as e:
            log.error("SIGHUP: %s; keeping the %d tokens loaded before", e,
                      0 if self.tokens is None else len(self.tokens))
            return
        self.use_tokens(tokens)
        log.warning("SIGHUP: reloaded %s, %d tokens", path, len(tokens))

    async def slow_down(self) -> None:
        """A wrong token over HTTP waits as a failed `auth` does (web.py, dashboard.py)."""
        self.auth_failures += 1
        await trio.sleep(AUTH_DELAY)

    def refuse(self, session: Session) -> None:
        """A failed `auth` (Action.REFUSE): its connection waits AUTH_DELAY, is answered
        UNAUTHORIZED as a waiting reserve is answered, and then closed."""
        self.auth_failures += 1
        self._auth_refusals.note(trio.current_time(), "auth failed from %s",
                                 getattr(self.conns.get(session), "peer", "?"))

        async def later() -> None:
            await trio.sleep(AUTH_DELAY)
            conn = self.conns.get(session)
            if conn is not None:
                conn.wake(Wakeup(session, None, Unauthorized()))

        if self.nursery is not None:
            self.nursery.start_soon(later)
        else:  # a Server used without _run (tests of one connection)
            trio.lowlevel.spawn_system_task(later)

    def open_wal(self, config: Config) -> None:
        """Lock the log directory, rebuild the engine from it and start logging."""
        assert config.wal_dir is not None
        directory = Path(config.wal_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WalError(f"cannot make log directory {directory}: {e.strerror}") from None
        if not directory.is_dir():
            raise WalError(f"log directory {directory} is not a directory")
        self._lock = DirLock(directory)
        started = time.monotonic()
        # Start-up makes millions of objects that all live on; the cyclic collector would
        # walk them over and over (it doubled start-up time at a million jobs).
        gc.disable()
        try:
            found = recovery.read(directory, config.wal_repair)
            read_segments = len(found.segments)
            now, wall = trio.current_time(), time.time()
            pauses = recovery.restore(found, self.engine, now, wall)
            self.wal = Wal(directory, self.engine, segment_size=config.segment_size,
                           fsync_ms=config.fsync_ms, offset=wall - now,
                           segments=found.segments, next_seq=found.next_seq, pauses=pauses,
                           metas=found.meta_file)
            if found.repaired:
                self.wal.rebase()
                log.error("REPAIR: the log was rewritten without the damaged records")
        except (OSError, WalError):
            self.close_wal()
            raise
        finally:
            # What was restored lives on: out of the collector's sight for good, or its
            # first passes would walk every job again.
            gc.freeze()
            gc.enable()
        self.engine.journal = self.wal
        self.dispatcher.log_stats = self.wal.stats
        if read_segments:
            log.warning("log: %d jobs restored from %d records in %d segments of %s in %.2f s",
                        len(self.engine.jobs), found.records, read_segments, directory,
                        time.monotonic() - started)

    def close_wal(self) -> None:
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def commit(self, seq: int, whole_round: bool = False) -> bool:
        """Write what the engine logged; True once records up to `seq` are as durable as the
        fsync policy promises (with -f 0 that waits for a shared fsync round).

        `whole_round`: the caller (the hub) commits everything every client logged since its
        last commit, so nobody else could share this fsync round: with a fast disk and no
        round under way it is run right here, sparing the two task switches to the syncer
        and back (a tenth of a durable put's round). A connection task commits only its own
        changes: it always goes through the syncer, where rounds are shared."""
        wal = self.wal
        assert wal is not None
        wal.write()
        if (whole_round and wal.fsync_ms == 0 and not self._syncing
                and self._sync_took < INLINE_SYNC):
            self._sync_round(wal)
        elif wal.fsync_ms is not None:
            self._sync_wanted.set()
        while not wal.acknowledged(seq) and wal.failed is None and wal.fsync_ms == 0:
            await self._synced.wait()
        return wal.acknowledged(seq)

    async def run_syncer(self) -> None:
        """fsync rounds: each covers everything written before it began, for all connections;
        with -f MS, rounds start at most every MS milliseconds.

        A round runs in a thread, so connections go on meanwhile, unless the last one took
        under INLINE_SYNC seconds: then handing it to a thread and back costs more than it
        blocks (on this project's 2-core test machine, fdatasync takes ~0.15 ms and inline
        rounds gave ~1.5x the durable puts/s of threaded ones)."""
        wal = self.wal
        assert wal is not None and wal.fsync_ms is not None
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted = trio.Event()
            if self._sync_took < INLINE_SYNC:
                self._sync_round(wal)
            else:
                plan = wal.sync_plan()
                if plan is not None:
                    self._syncing = True
                    started = time.perf_counter()
                    try:
                        await trio.to_thread.run_sync(wal.run_sync, plan)
                    except OSError as e:
                        self._sync_finished(wal, plan, e, started)
                    else:
                        self._sync_finished(wal, plan, None, started)
            if wal.fsync_ms:
                await trio.sleep(wal.fsync_ms / 1000)

    def _sync_round(self, wal: Wal) -> None:
        """One fsync round on the event loop (it blocks for as long as the disk takes)."""
        plan = wal.sync_plan()
        if plan is None:
            return
        self._syncing = True
        started = time.perf_counter()
        try:
            wal.run_sync(plan)
        except OSError as e:
            self._sync_finished(wal, plan, e, started)
        else:
            self._sync_finished(wal, plan, None, started)

    def _sync_finished(self, wal: Wal, plan: SyncPlan, error: OSError | None,
                       started: float) -> None:
        self._sync_took = time.perf_counter() - started
        self.sync_time.observe(self._sync_took)
        self._syncing = False
        wal.sync_done(plan, error)
        synced, self._synced = self._synced, trio.Event()
        synced.set()

    # --- caps ------------------------------------------------------------------------------

    def net_stats(self) -> NetStats:
        return NetStats(self.refused, self.stalled)

    def too_many(self, peer: str) -> bool:
        """Whether a new connection from `peer` is one too many (--max-connections); if so
        it is counted and logged (one line a second at most), and the caller sends it
        TOO_MANY_CONNECTIONS and closes it."""
        most = self.caps.max_connections
        if not most or len(self.engine.sessions) + self.handshakes < most:
            return False
        self.refused += 1
        self._refusals.note(trio.current_time(), "refused a connection from %s: %d are open "
                            "(--max-connections)", peer, most)
        return True

    def sweep_by(self, at: float) -> None:
        """Have the sweeper look at the connections by `at` (a connection given a shorter
        `stall_after` than the server's says so when it opens)."""
        scope = self._sweep_scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    async def run_sweeper(self) -> None:
        """Close every connection that has sat mid-command (part of a line or of a body
        sent, then nothing) for its `stall_after`. Idle connections between commands and
        those blocked in a reserve are never stalled (`stalled_since` says None)."""
        due = trio.current_time() + self.stall_after
        while True:
            with trio.CancelScope(deadline=due) as scope:
                self._sweep_scope = scope
                await trio.sleep_forever()
            self._sweep_scope = None
            now = trio.current_time()
            due = self.sweep(now)

    def sweep(self, now: float) -> float:
        """One look at every connection at `now`; returns when the next is due: the soonest
        expiry of a stalled connection, or one `stall_after` on (by then any connection that
        stalls after this look is seen with its own expiry)."""
        due = now + self.stall_after
        closed = self.stalled
        for peer in list(self.conns.values()):
            since = peer.stalled_since()
            if since is None:
                continue
            at = since + peer.stall_after
            if at > now:
                due = min(due, at)
                continue
            self.stalled += 1
            why = ("no good auth within %.1f s (--auth-deadline)"
                   if getattr(peer, "preauth", False)
                   else "it stalled mid-command for %.1f s (--stall-timeout)")
            self._stalls.note(now, "closing %s: " + why, getattr(peer, "peer", "?"),
                              now - since)
            peer.expire(now)
        if self.stalled != closed:
            self.after_change()  # their reserved jobs may go to waiters
        return due

    def _log_refused_firings(self, now: float) -> None:
        """A line for schedule firings a cap refused since the last, a second apart at most
        (the engine counts them; it does not log)."""
        refused = self.engine.quota.firings_refused
        if refused != self._firings_refused and now - self._firings_logged_at >= 1.0:
            log.warning("%d schedule firing(s) made no job: --max-jobs or --max-memory "
                        "reached (schedule-firings-refused: %d)",
                        refused - self._firings_refused, refused)
            self._firings_refused = refused
            self._firings_logged_at = now

    def after_change(self) -> None:
        """Deliver wakeups and pull the ticker's alarm forward if needed."""
        if self.wal is not None and self.wal.dirty:
            # Records no reply waits on (a tube that went away with its pause).
            self.wal.write()
            if self.wal.fsync_ms is not None:
                self._sync_wanted.set()
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
            if self.engine.flow.schedules.table:
                # Schedules keep the wall clock: look at it at least once a minute, so that
                # a clock set (or a resumed VM) moves their timer.
                due = min(math.inf if due is None else due, trio.current_time() + 60.0)
            with trio.CancelScope(deadline=math.inf if due is None else due) as scope:
                self._tick_scope = scope
                await trio.sleep_forever()
            self._tick_scope = None
            now = trio.current_time()
            self.engine.flow.set_wall_offset(time.time() - now)
            self.engine.tick(now)
            self.after_change()
            if self.engine.flow.schedules.table:
                self._log_refused_firings(now)

    def now(self) -> float:
        """The engine's clock."""
        return trio.current_time()

    async def execute(self, event: Command, rights: Rights | None = None) -> bytes:
        """Run one command for the server itself (the HTTP API's actions), on a session of
        its own that holds nothing and watches nothing, and return its reply once what it
        changed is as durable as a client's would be. A clear-tube that goes on in slices
        is waited for. With an auth file, `rights` are the requester's token's."""
        self._internal += 1
        s = Session(-self._internal, self.engine.tube(DEFAULT_TUBE), [])
        s.rights = rights
        wal = self.wal
        seq = 0 if wal is None else wal.seq
        result = self.dispatcher.handle(s, event, trio.current_time())
        if result is Action.WAIT:
            inside = Inside()
            self.conns[s] = inside
            try:
                self.after_change()
                await inside.woken.wait()
            finally:
                del self.conns[s]
            assert inside.wakeup is not None
            result = answer(inside.wakeup)
        assert isinstance(result, bytes)
        self.after_change()
        if wal is not None and wal.seq != seq and not await self.commit(wal.seq):
            return InternalError.reply
        return result

    async def handle(self, stream: trio.abc.Stream, peer: str = "-") -> None:
        """Serve one client on `stream` in a task of its own (in-memory streams; real
        sockets go through the hub)."""
        if self.caps.max_connections and self.too_many(peer):
            await tell_too_many(stream)
            return
        await Connection(self, stream, peer).run()

    async def handle_socket(self, stream: trio.SocketStream) -> None:
        await self.handle(stream, _peer(stream))

    async def handle_tls(self, context: ssl.SSLContext, stream: trio.SocketStream) -> None:
        """Serve one TLS client in a task of its own: the handshake, within
        HANDSHAKE_TIMEOUT, then the protocol as on any stream. A handshake that fails or
        times out closes the connection and logs one line; nothing else happens."""
        peer = _peer(stream)
        # https_compatible: a client that closes without TLS's close_notify (as Python's
        # ssl sockets do) has hung up, like a plain one; the protocol frames every message
        # itself, so a truncation cannot go unnoticed.
        secure = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
        reason = None
        # --max-connections: a connection in its handshake counts; one too many is told
        # so once the handshake lets it read anything.
        refused = bool(self.caps.max_connections) and self.too_many(peer)
        if not refused:
            self.handshakes += 1
        try:
            with trio.move_on_after(HANDSHAKE_TIMEOUT) as scope:
                try:
                    await secure.do_handshake()
                except trio.BrokenResourceError as e:
                    reason = handshake_failure(e)
        finally:
            if not refused:
                self.handshakes -= 1
        if refused and reason is None and not scope.cancelled_caught:
            await tell_too_many(secure)
            return
        if scope.cancelled_caught:
            reason = f"no handshake within {HANDSHAKE_TIMEOUT:g} s"
        if reason is not None:
            log.warning("TLS handshake with %s failed: %s", peer, reason)
            await trio.aclose_forcefully(stream)
            return
        await Connection(self, secure, peer, tls=True).run()


def _peer(stream: trio.SocketStream) -> str:
    try:
        return format_peer(stream.socket.getpeername())
    except OSError:
        return "?"


async def tell_too_many(stream: trio.abc.Stream) -> None:
    """Tell a connection beyond --max-connections so, and close it (as hub.tell_too_many).
    What it sent already is read for a moment first: closing on unread input would reset
    the connection, and the client might lose the line."""
    with trio.move_on_after(REFUSE_TIMEOUT):
        try:
            await stream.send_all(TooManyConnections.reply)
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            with trio.move_on_after(REFUSE_DRAIN):
                await stream.receive_some(RECV_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


class Inside:
    """The Peer of an `execute` session: it only ever waits for a clear-tube's answer."""

    def __init__(self) -> None:
        self.woken = trio.Event()
        self.wakeup: Wakeup | None = None
        self.peer = "tubeserver"
        self.stall_after = math.inf

    def wake(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self.woken.set()

    def stalled_since(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    def buffered(self) -> tuple[int, int]:
        return 0, 0


def _log_bug(event: object, error: Exception) -> None:
    log.error("internal error handling %r", event, exc_info=error)


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


async def open_http_socket(host: str, port: int) -> trio.socket.SocketType:
    """The HTTP endpoint's listening socket, bound here so that a taken port is a clean
    start-up error like the protocol port's."""
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    sock = trio.socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        await sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        reason = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise ListenError(f"cannot serve HTTP on {host}:{port}: {reason}") from e
    return sock


async def serve_http(server: Server, sock: trio.socket.SocketType,
                     allowed_hosts: tuple[str, ...] = (), tls: Tls | None = None, *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve web.py's app, with the dashboard's pages, with hypercorn on `sock` until
    cancelled; reports the address. With `tls`, HTTPS with the protocol listener's
    certificate (and its client CA: then every page, /healthz too, needs a client
    certificate)."""
    from hypercorn.config import Config as HttpConfig
    from hypercorn.trio import serve as hypercorn_serve

    from .dashboard import Dashboard
    from .web import App

    config = HttpConfig()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the copy
    config.accesslog = None
    config.errorlog = logging.getLogger("tubeserver.http")
    config.graceful_timeout = 1.0
    if tls is not None:
        config.certfile, config.keyfile = tls.cert, tls.key
        if tls.client_ca is not None:
            config.ca_certs = tls.client_ca
            config.verify_mode = ssl.CERT_REQUIRED
        config.ssl_handshake_timeout = HANDSHAKE_TIMEOUT
    host, port = sock.getsockname()[:2]
    scheme = "http" if tls is None else "https"
    where = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
    app: Any = App(server, allowed_hosts)  # ASGI; hypercorn's type names its own scope classes
    Dashboard(app)

    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(hypercorn_serve, app, config))
        if not _loopback(host) and server.tokens is None:
            log.warning("HTTP on %s has no authentication (no --auth-file): anyone who "
                        "reaches it can read and delete jobs", where)
        log.warning("HTTP on %s (dashboard at /, metrics at /metrics)", where)
        task_status.started(where)


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def exposure_warnings(listeners: Sequence[trio.SocketListener], auth: bool,
                      tls: bool = False) -> list[str]:
    """What to tell an operator whose server other machines can reach."""
    exposed = []
    for listener in listeners:
        addr = listener.socket.getsockname()
        if not isinstance(addr, str) and not _loopback(addr[0]):
            exposed.append(format_peer(addr))
    if not exposed:
        return []
    out = []
    if not auth:
        out.append(f"{', '.join(exposed)} is reachable beyond this machine without "
                   "authentication (no --auth-file): anyone who connects can read and delete "
                   "every job")
    if not tls:
        out.append(f"{', '.join(exposed)} is reachable beyond this machine without TLS (no "
                   "--tls-cert): jobs, and tokens, cross the network in clear")
    return out


def describe(listeners: Sequence[trio.SocketListener]) -> str:
    names = []
    for listener in listeners:
        addr = listener.socket.getsockname()
        names.append(f"unix:{addr}" if isinstance(addr, str) else format_peer(addr))
    return ", ".join(names)


async def serve(config: Config, *, task_status: trio.TaskStatus[list[trio.SocketListener]]
                = trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGTERM or SIGINT. Raises ListenError when it cannot listen and WalError when
    the log cannot be used. The log is read before listening: connections find every job."""
    # trio restores the handlers it found when _run's signal receiver closes, then delivers
    # what it had not handed out: a SIGUSR1 that came with the SIGTERM would then kill the
    # process by its default action (as one arriving while the log is read would). Ignored
    # outside the receiver, it is harmless.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # likewise (it reloads the auth file)
    server = Server(config.max_job_size, config.verbose,
                    Tracker(config.result_ttl, config.result_memory),
                    None if config.timezone is None else ZoneInfo(config.timezone), config.caps)
    if config.auth_file is not None:
        server.use_tokens(load_tokens(config.auth_file))
        server.auth_deadline = config.auth_deadline or math.inf  # 0: none
    if config.wal_dir is not None:
        server.open_wal(config)
    try:
        listeners = await open_listeners(config)
        http = None
        try:
            if config.http is not None:
                http = await open_http_socket(*config.http)
            # What start-up made (modules, the engine, restored jobs) lives as long as the
            # process: out of the cyclic collector's sight, a full pass walks only what
            # serving made (one in a paced run here: 32 ms before, 20 ms with this).
            gc.freeze()
            await _run(server, listeners, http, task_status, config.auth_file,
                       config.http_allow_hosts, config.tls)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            if http is not None:
                http.close()
    finally:
        server.close_wal()
    if config.listen.startswith("unix:"):
        try:
            os.unlink(config.listen[5:])
        except OSError:
            pass


async def _run(server: Server, listeners: list[trio.SocketListener],
               http: trio.socket.SocketType | None,
               task_status: trio.TaskStatus[list[trio.SocketListener]],
               config_auth: str | None = None,
               http_allow_hosts: tuple[str, ...] = (), tls: Tls | None = None) -> None:
    # TLS is for TCP: a UNIX socket listener stays plain (and in the hub).
    secure = [] if tls is None else [s for s in listeners if s.socket.family != _socket.AF_UNIX]
    plain = [s for s in listeners if s not in secure]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                                   signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            server.nursery = nursery
            nursery.start_soon(server.run_ticker)
            nursery.start_soon(server.run_sweeper)
            if server.wal is not None and server.wal.fsync_ms is not None:
                nursery.start_soon(server.run_syncer)
            if plain and hasattr(select, "epoll"):
                nursery.start_soon(Hub(server, plain).run)
            elif plain:  # not Linux: a task per connection, the shape the in-memory tests use
                nursery.start_soon(trio.serve_listeners, server.handle_socket, plain)
            if secure:
                assert tls is not None
                # A task per TLS connection, beside the hub (see tls.py for why).
                nursery.start_soon(trio.serve_listeners,
                                   functools.partial(server.handle_tls, tls.context), secure)
                log.warning("listening on %s with TLS (pid %d)%s", describe(secure),
                            os.getpid(), ", client certificates required"
                            if tls.verifies_clients else "")
            if plain:
                log.warning("listening on %s (pid %d)%s", describe(plain), os.getpid(),
                            "" if tls is None else ", plain: TLS is for TCP only")
            for warning in exposure_warnings(listeners, server.tokens is not None,
                                             tls is not None):
                log.warning("%s", warning)
            if http is not None:
                await nursery.start(serve_http, server, http, http_allow_hosts, tls)
            task_status.started(listeners)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    server.engine.draining = True
                    log.warning("SIGUSR1: drain mode on, put now answers DRAINING")
                    continue
                if signum == signal.SIGHUP:
                    if config_auth is None:
                        log.warning("SIGHUP: nothing to reload (no --auth-file)")
                    else:
                        server.reload_tokens(config_auth)
                    continue
                log.warning("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
