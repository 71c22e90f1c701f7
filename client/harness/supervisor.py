"""The harness's main loop: reservers, slots, one task per job, signals.

Theory of operation.

*Slots.* A `trio.Semaphore` holds `concurrency` slots, one per running child. A reserver
takes a slot **before** it reserves, and one more for each extra job it asks for in a batch,
so every job it gets starts at once. A job gives its slot back as soon as its child has
ended, so the next reserve overlaps with this job's answer.

*Reservers and connections.* One reserver task per server. Jobs must be answered on the
connection that reserved them, and a blocking reserve holds its connection, so each server has
a pool of connections: a reserve runs on an idle one (a new one when none is idle), and the
connection then belongs to the job(s) it returned until they are all answered, when it goes
back to the pool. A finishing job therefore never waits behind a reserve. The pool has no
fixed size: a job frees its slot when its child ends, before its answer is sent, so the
reserve that slot allows may need another connection while the answer is on its way. That
is usually ``concurrency + 1`` connections per server (at most one per running job, one
reserving); while answers are slower than jobs (an fsync per answer, say) there are more, up
to one per job still being answered. ``--result-tube`` and ``--failure-tube`` add one each.
A refused or broken connection is logged and retried with exponential backoff (0.5 s
doubling to 30 s). Connections speak TLS and send the token (`auth`) when configured; a
refused token (UNAUTHORIZED, also for a tube beyond its rights) or a server without
authentication ends that server's reserver (logged as giving-up, exit status 1): retrying
would not change it.

*Batch sizing.* Where the server has ``reserve-batch``, the reserver asks for
``min(target, free slots)`` jobs. `target` starts at 1, doubles (up to `concurrency`) each time
a batch comes back full, drops to what came back when it comes back partial, and to 1 when a
reserve times out (`outcome.next_batch_target`). Jobs never wait: the batch is no larger than
the free slots, and each job's TTR is restarted (touch) when its child starts. beanstalkd
answers the extension as unknown, and the reserver falls back to ``reserve-with-timeout``.

*A job.* ``stats-job`` gives the counters, priority and TTR; a ``touch`` (pipelined with it,
one round trip) restarts the TTR so the run limit counts from now (``ttr - 1 s - kill
grace``, or ``--timeout`` with ``--touch``). On tubeserver (`tracked`) a job that ran before
starts from its last checkpoint, and each checkpoint its child writes is stored while it
runs, which restarts the TTR and so postpones the run limit (never past ``--timeout``).
While the child runs a keeper task touches the job (``--touch``) or checks it with
``stats-job`` every second; a lost connection or a job no longer reserved kills the child and
is logged as an error. Then `outcome.decide` picks delete / release(delay) / bury, which is
sent on the same connection (on tubeserver as ``finish`` with the result and ``fail`` with
the reason), and one log line is written, naming the command sent.

*Signals.* TERM/INT: stop reserving at once, wait up to the shutdown grace for the children,
then kill them; a second TERM/INT kills at once. Every connection that holds a running job
stays open until that job is answered (a finished child's job is deleted as usual). A job
whose child was killed for the shutdown is not released with ``release`` (the server would
count it as a failed attempt): its connection is closed once all of that connection's jobs
are done, and the server makes the job ready again, uncounted, with its priority. QUIT: stop
reserving and wait for the children however long they take. USR1: kill the running children
(failures). USR2: pause reserving; CONT: resume. HUP with ``--call``: start a new forkserver
(changed code is imported anew) and retire the old one once its children end. The harness
exits 0 after a signal-driven
stop; `--burst` ends a server's reserver once its watched tubes have no ready or delayed jobs
and none of its jobs is running; `--max-jobs` stops reserving after that many jobs;
`--max-idle-time` stops after so long with no job reserved or running.

*Metrics.* Each step is reported to `metrics` (a no-op without ``--metrics-port``): a
reserve's wait and the jobs it brought, a reconnect, a child's start and end, and once per
job its outcome (`metrics.OUTCOMES`), set where the job's fate is decided.

*Bugs.* An unexpected exception inside one job's task is logged with its traceback and
counted (`bugs` in the exit line); the job is released with the backoff of a failure (or
buried once its attempts are spent, so a job that trips a bug cannot spin), and the harness
keeps serving the others.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import signal
import ssl
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..bodies import Msgpack
from ..errors import (
    AuthNotEnabled,
    ConnectionClosed,
    ExtensionNotSupported,
    JobTooBig,
    NotFound,
    ServerError,
    TimedOut,
    TubeError,
    Unauthorized,
)
from ..job import DEFAULT_PRIORITY, Job, server_name
from ..stats import StatsJob
from ..trio_client import TrioClient
from .channels import Outcome, forward_checkpoints, read_outcome
from .child import (
    DRAIN_SECONDS,
    Abort,
    ChildResult,
    Spawned,
    Spawner,
    run_child,
    spawn_command,
    substitute,
)
from .forkserver import ForkServer, ForkServerError
from .log import LogFormat, Logger
from .metrics import Metrics, Prometheus
from .outcome import (
    Action,
    ChildEnd,
    Counters,
    End,
    Policy,
    Verb,
    deadline_after_checkpoint,
    decide,
    next_batch_target,
    run_limit,
)
from .outcome import touch_interval as _touch_interval
from .output import Sink
from .tracked import (
    Answer,
    CheckpointFiles,
    ChildPipes,
    Tracking,
    answer_for,
    send_answer,
    send_checkpoint,
)

RECONNECT_MIN = 0.5
EXIT_FLUSH_SECONDS = 2.0
RECONNECT_MAX = 30.0
PING_INTERVAL = 1.0


@attrs.frozen
class Config:
    """Everything the supervisor needs; built by the CLI from flags and environment."""

    command: tuple[str, ...] = ()
    servers: tuple[tuple[str, int], ...] = (("127.0.0.1", 11300),)
    tubes: tuple[str, ...] = ("default",)
    concurrency: int = 1
    shell: bool = False
    call: str | None = None
    msgpack: bool = False
    preload: tuple[str, ...] = ()
    timeout: float | None = None
    touch: bool = False
    kill_grace: float = 5.0
    policy: Policy = attrs.field(factory=Policy)
    shutdown_grace: float = 25.0
    max_jobs: int | None = None
    burst: bool = False
    log_format: LogFormat = "text"
    result_tube: str | None = None
    failure_tube: str | None = None
    reserve_timeout: int = 1
    passthrough: bool = True
    max_idle_time: float | None = None
    result_bytes: int | None = 4096  # None: --no-result
    metrics_port: int | None = None  # None: no metrics served; 0: any free port
    metrics_addr: str = "127.0.0.1"
    tls: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)  # None: TCP
    token: str | None = attrs.field(default=None, repr=False)  # sent with `auth`; never shown


def child_argv(config: Config, values: dict[str, str]) -> list[str]:
    """The argv of the child for one job (placeholders substituted)."""
    if config.shell:
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        return ["/bin/sh", "-c", " ".join(substitute(config.command, quoted))]
    return substitute(config.command, values)


def child_env(base: dict[str, str], meta: dict[str, str]) -> dict[str, str]:
    """The child's environment: the harness's own minus its TUBEWORKER_* settings, plus the
    job's metadata."""
    env = {k: v for k, v in base.items() if not k.startswith("TUBEWORKER_")}
    env.update(meta)
    return env


@attrs.define(eq=False)
class _Run:
    """One job being handled: what is known of it so far (a bug may strike at any point)."""

    conn: TrioClient[bytes]
    job: Job[bytes]
    ref: str
    counters: Counters = attrs.field(factory=Counters)
    pri: int = DEFAULT_PRIORITY
    tracking: bool = False  # the server keeps results, reasons and checkpoints
    answered: bool = False  # answered, or left for the connection's close to give back
    slot_held: bool = True
    outcome: str | None = None  # for the metrics: one of metrics.OUTCOMES once known

    def free_slot(self, slots: trio.Semaphore) -> None:
        if self.slot_held:
            self.slot_held = False
            slots.release()


@attrs.define(eq=False)
class _Lease:
    """A connection owned by the jobs it reserved until each one is answered."""

    conn: TrioClient[bytes]
    refs: int


class Supervisor:
    def __init__(self, config: Config, logger: Logger | None = None,
                 rand: Callable[[], float] = random.random,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.log = logger or Logger(config.log_format)
        self.rand = rand
        if metrics is None:
            metrics = (Metrics() if config.metrics_port is None else
                       Prometheus([server_name(a) for a in config.servers],
                                  config.concurrency))
        self.metrics = metrics
        self.slots = trio.Semaphore(config.concurrency)
        self.stopping = False
        self.killing = False  # children are being killed for shutdown: start no more
        self.paused = False
        self.resumed = trio.Event()
        self.intakes: set[trio.CancelScope] = set()
        self.running: set[Abort] = set()
        self.completed = 0
        self.runs = 0  # children that ran to an end, for --max-jobs
        self.failed_servers = 0
        self.bugs = 0
        self.dropped = 0  # bytes of children's output dropped for a slow reader
        self.active = 0  # jobs reserved and not yet answered, over all servers
        self.last_active = 0.0  # trio time a job was last reserved or answered
        self.out_sink: Sink | None = None
        self.err_sink: Sink | None = None
        self.forkserver: ForkServer | None = None
        self.tracking = Tracking()
        self.checkpoint_files = CheckpointFiles()
        self._outer: trio.Nursery | None = None

    # ------------------------------------------------------------------ control

    def stop(self, grace: float | None) -> None:
        """Stop reserving; kill the children after `grace` seconds (None: never, 0: now)."""
        if not self.stopping:
            self.stopping = True
            self.log.info("stopping", grace=grace, running=len(self.running))
            for scope in list(self.intakes):
                scope.cancel()
            self.resumed.set()
        if grace == 0:
            self.kill_all(End.SHUTDOWN)
        elif grace is not None and self._outer is not None:
            self._outer.start_soon(self._kill_after, grace)

    async def _kill_after(self, grace: float) -> None:
        await trio.sleep(grace)
        self.kill_all(End.SHUTDOWN)

    def kill_all(self, reason: End) -> None:
        if reason is End.SHUTDOWN:
            self.killing = True
        for abort in list(self.running):
            abort.set(reason)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.resumed = trio.Event()
            # A reserve in progress would still hand out a job: interrupt it. Its connection
            # holds no jobs (jobs own theirs), so closing it loses nothing.
            for scope in list(self.intakes):
                scope.cancel()
            self.log.info("paused")

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.resumed.set()
            self.log.info("resumed")

    async def _signals(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                  signal.SIGUSR2, signal.SIGCONT, signal.SIGHUP)
        with trio.open_signal_receiver(*wanted) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                self.log.info("signal", signal=name)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.stop(0 if self.stopping else self.config.shutdown_grace)
                elif signum == signal.SIGQUIT:
                    self.stop(None)
                elif signum == signal.SIGUSR1:
                    self.kill_all(End.ABORTED)
                elif signum == signal.SIGUSR2:
                    self.pause()
                elif signum == signal.SIGHUP:
                    if self.config.call is not None and self._outer is not None:
                        self._outer.start_soon(self._restart_forkserver)
                else:
                    self.resume()

    # ------------------------------------------------------------------ main loop

    async def run(self, handle_signals: bool = True) -> int:
        """Run until stopped (signal, --max-jobs) or drained (--burst); the exit status."""
        if self.config.passthrough:
            self.out_sink, self.err_sink = Sink(1), Sink(2)
            self.log.sink = self.err_sink
        try:
            self.last_active = trio.current_time()
            async with trio.open_nursery() as outer:
                self._outer = outer
                if handle_signals:
                    # Before "start" is logged: whoever waits for that line may signal at
                    # once, and USR1, USR2 or HUP without a handler would kill the harness.
                    await outer.start(self._signals)
                self.log.info("start",
                              servers=",".join(server_name(a) for a in self.config.servers),
                              tubes=",".join(self.config.tubes),
                              concurrency=self.config.concurrency)
                if not await self._serve_metrics() or (
                        self.config.call is not None and not await self._start_forkserver()):
                    outer.cancel_scope.cancel()
                    return 2
                if self.config.max_idle_time is not None:
                    outer.start_soon(self._idle_watch, self.config.max_idle_time)
                async with trio.open_nursery() as reservers:
                    for address in self.config.servers:
                        reservers.start_soon(self._reserver, address)
                outer.cancel_scope.cancel()
            self.log.info("exit", jobs=self.completed, bugs=self.bugs or None,
                          dropped=self.dropped or None)
        finally:
            self.checkpoint_files.close()
            if isinstance(self.metrics, Prometheus):
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.metrics.close)
            self.log.sink = None
            for sink in (self.out_sink, self.err_sink):
                # A reader that never reads must not keep the harness from exiting.
                if sink is not None and not sink.close(EXIT_FLUSH_SECONDS):
                    self.log.warning("output-stuck", fd=sink.fd,
                                     note="the reader stopped reading; output left unwritten")
        return 1 if self.failed_servers else 0

    async def _serve_metrics(self) -> bool:
        """--metrics-port: serve the metrics, and log where; False (logged) when the address
        cannot be listened on."""
        cfg = self.config
        if cfg.metrics_port is None or not isinstance(self.metrics, Prometheus):
            return True
        try:
            host, port = await trio.to_thread.run_sync(self.metrics.serve, cfg.metrics_addr,
                                                       cfg.metrics_port)
        except OSError as e:
            self.log.error("metrics", addr=cfg.metrics_addr, port=cfg.metrics_port,
                           error=str(e))
            return False
        self.log.info("metrics", addr=host, port=port)
        return True

    async def _start_forkserver(self) -> bool:
        """Start the --call forkserver and serve its reports; False (logged) when the target
        or a preload cannot be imported."""
        assert self.config.call is not None and self._outer is not None
        try:
            server = await ForkServer.start(self.config.call, self.config.msgpack,
                                            self.config.preload)
        except ForkServerError as e:
            self.log.error("forkserver", error=str(e), traceback=e.details or None)
            return False
        self.forkserver = server
        self._outer.start_soon(server.serve)
        self.log.info("forkserver", pid=server.pid, call=self.config.call,
                      preload=",".join(self.config.preload) or None)
        return True

    async def _restart_forkserver(self) -> None:
        """SIGHUP with --call: new jobs go to a fresh forkserver (changed code is imported
        anew); the old one exits once its running children are done."""
        old = self.forkserver
        if not await self._start_forkserver():
            self.log.warning("forkserver", note="restart failed; keeping the running one")
            return
        if old is not None:
            old.retire()

    async def _fork(self, meta: dict[str, str], fds: list[int]) -> Spawned:
        server = self.forkserver
        if server is None or server.closed:
            raise OSError("the forkserver is not running (see its error above)")
        return await server.spawn(meta, fds)

    async def _idle_watch(self, limit: float) -> None:
        """--max-idle-time: stop once no job has been reserved or running for `limit`."""
        while not self.stopping:
            due = self.last_active + limit
            if self.active == 0 and trio.current_time() >= due:
                self.log.info("idle", seconds=limit)
                self.stop(None)
                return
            await trio.sleep_until(max(due, trio.current_time() + 0.05))

    async def _reserver(self, address: tuple[str, int]) -> None:
        name = server_name(address)
        idle: list[TrioClient[bytes]] = []
        inflight = [0]
        target = 1
        batch_ok = True
        # --burst polls once without waiting (so a drained server is noticed at once), and
        # waits the normal reserve timeout after an empty poll that found delayed jobs.
        quick = self.config.burst
        backoff = RECONNECT_MIN
        producer: dict[str, TrioClient[bytes]] = {}
        try:
            async with trio.open_nursery() as jobs:
                while not self.stopping:
                    held = 0
                    got: list[Job[bytes]] = []
                    conn: TrioClient[bytes] | None = None
                    give_up = connecting = False
                    with trio.CancelScope() as intake:
                        self.intakes.add(intake)
                        if self.stopping:
                            intake.cancel()
                        try:
                            while self.paused:
                                await self.resumed.wait()
                            await self.slots.acquire()
                            held = 1
                            connecting = not idle
                            conn = idle.pop() if idle else await self._connect(address)
                            connecting = False
                            want = min(target, self.config.concurrency) if batch_ok else 1
                            while held < want:
                                try:
                                    self.slots.acquire_nowait()
                                except trio.WouldBlock:
                                    break
                                held += 1
                            asked_at = trio.current_time()
                            got, batch_ok = await self._reserve(
                                conn, held, batch_ok,
                                0 if quick else self.config.reserve_timeout)
                            self.metrics.reserved(trio.current_time() - asked_at, len(got))
                            backoff = RECONNECT_MIN
                        except ConnectionClosed as e:
                            for _ in range(held):
                                self.slots.release()
                            held, conn = 0, None
                            self.log.error("connection", server=name, error=str(e),
                                           retry_in=backoff)
                            if self.config.burst and connecting:
                                self.failed_servers += 1
                                self.log.error("giving-up", server=name,
                                               reason="cannot connect in burst mode")
                                give_up = True
                            else:
                                self.metrics.reconnect(name)
                                await trio.sleep(backoff)
                                backoff = min(RECONNECT_MAX, backoff * 2)
                        except (Unauthorized, AuthNotEnabled) as e:
                            # The token (or its rights) will not change by retrying.
                            for _ in range(held):
                                self.slots.release()
                            if conn is not None:
                                await conn.aclose()
                            held, conn = 0, None
                            self.failed_servers += 1
                            reason = (f"UNAUTHORIZED: the token was refused, or its rights do "
                                      f"not cover {','.join(self.config.tubes)}"
                                      if isinstance(e, Unauthorized) else str(e))
                            self.log.error("giving-up", server=name, reason=reason)
                            give_up = True
                        finally:
                            self.intakes.discard(intake)
                    if intake.cancelled_caught and conn is not None:
                        await conn.aclose()  # a reserve was interrupted: state unknown
                        conn = None
                    for _ in range(held - len(got)):
                        self.slots.release()
                    if give_up:
                        break
                    if conn is None:
                        continue
                    if not got:
                        target = 1
                        quick = False
                        drained = (self.config.burst and inflight[0] == 0
                                   and await self._drained(conn))
                        if not conn.closed:
                            idle.append(conn)
                        if drained:
                            self.log.info("drained", server=name)
                            break
                        continue
                    target = next_batch_target(target, held, len(got), self.config.concurrency)
                    quick = self.config.burst
                    lease = _Lease(conn, len(got))
                    for job in got:
                        inflight[0] += 1
                        self.active += 1
                        self.last_active = trio.current_time()
                        jobs.start_soon(self._job, lease, job, idle, inflight, producer)
        finally:
            with trio.CancelScope(shield=True):
                for client in [*idle, *producer.values()]:
                    await client.aclose()

    async def _connect(self, address: tuple[str, int], use: str | None = None
                       ) -> TrioClient[bytes]:
        """A connection to reserve from (watching the tubes) or, with `use`, to put into."""
        cfg = self.config
        if use is not None:
            return await TrioClient.connect(address, use=use, ssl=cfg.tls, token=cfg.token)
        return await TrioClient.connect(address, watch=cfg.tubes, ssl=cfg.tls,
                                        token=cfg.token)

    async def _reserve(self, conn: TrioClient[bytes], count: int, batch_ok: bool,
                       timeout: int) -> tuple[list[Job[bytes]], bool]:
        if batch_ok:
            try:
                return await conn.reserve_batch(count, timeout), True
            except ExtensionNotSupported:
                batch_ok = False
        try:
            return [await conn.reserve(timeout=timeout)], batch_ok
        except TimedOut:
            return [], batch_ok

    async def _drained(self, conn: TrioClient[bytes]) -> bool:
        for tube in self.config.tubes:
            try:
                st = await conn.stats_tube(tube)
            except NotFound:
                continue
            except ConnectionClosed:
                return False  # the connection is closed; the next reserve reconnects
            if st["current-jobs-ready"] or st["current-jobs-delayed"]:
                return False
        return True

    # ------------------------------------------------------------------ one job

    async def _job(self, lease: _Lease, job: Job[bytes], idle: list[TrioClient[bytes]],
                   inflight: list[int], producer: dict[str, TrioClient[bytes]]) -> None:
        conn = lease.conn
        run = _Run(conn, job, f"{conn.server}/{job.id}")
        try:
            await self._run_job(run, producer)
        except ConnectionClosed as e:
            run.outcome = run.outcome or "lost"
            self.log.error("lost", job=run.ref, error=str(e),
                           note="connection lost; the server re-queues the job")
        except ServerError as e:
            run.outcome = run.outcome or "error"
            self.log.error("job-error", job=run.ref, error=repr(e))
        except Exception as e:
            run.outcome = run.outcome or "bug"
            await self._bug(run, e)
        finally:
            if run.outcome is not None:
                self.metrics.job(run.outcome)
            run.free_slot(self.slots)
            inflight[0] -= 1
            self.active -= 1
            self.last_active = trio.current_time()
            lease.refs -= 1
            if lease.refs == 0:
                if conn.closed:
                    pass
                elif self.stopping:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                else:
                    idle.append(conn)

    async def _bug(self, run: _Run, error: Exception) -> None:
        """A bug in this job's task: log it with its traceback, count it, and give the job
        back as a failed attempt; the harness goes on with the other jobs."""
        self.bugs += 1
        text = "".join(traceback.format_exception(error))
        action = decide(ChildEnd(End.BUG), run.counters, self.config.policy, self.rand())
        command: str | None = None  # nothing sent: answered already, or the server re-queues
        failure: TubeError | None = None
        if not (run.answered or run.conn.closed):
            with trio.CancelScope(shield=True):
                try:
                    reason = f"tubeworker: {error!r}"
                    call = self.config.call is not None
                    sent = await send_answer(
                        run.conn, run.job, run.pri,
                        Answer(action, None, Msgpack().dumps(reason) if call
                               else reason.encode()), run.tracking, call)
                    action, command = sent.action, sent.command
                except TubeError as e:
                    failure = e
                    # The server takes the job back when the connection goes.
                    await run.conn.aclose()
        self.log.error("bug", job=run.ref, error=repr(error), action=command,
                       delay=action.delay if command == "release" else None,
                       traceback=text)
        if failure is not None:
            self.log.error("job-error", job=run.ref, error=repr(failure))

    async def _run_job(self, run: _Run, producer: dict[str, TrioClient[bytes]]) -> None:
        abort = Abort()
        self.running.add(abort)
        try:
            await self._run_job_tracked(run, producer, abort)
        finally:
            self.running.discard(abort)

    def _spawner(self, values: dict[str, str], meta: dict[str, str],
                 pipes: ChildPipes | None = None) -> Spawner:
        fds = pipes.child_fds if pipes is not None else []
        if self.config.call is not None:
            inner: Spawner = lambda: self._fork(meta, fds)  # noqa: E731
        else:
            if pipes is not None:
                meta = {**meta, "TUBEWORKER_CHECKPOINT_FD": str(fds[0])}
            inner = spawn_command(child_argv(self.config, values),
                                  child_env(dict(os.environ), meta), fds)
        if pipes is None:
            return inner

        async def spawn() -> Spawned:
            try:
                return await inner()
            finally:
                pipes.release_child_ends()  # the child has its copies: its exit is an EOF
        return spawn

    async def _run_job_tracked(self, run: _Run, producer: dict[str, TrioClient[bytes]],
                               abort: Abort) -> None:
        cfg = self.config
        conn, job, ref = run.conn, run.job, run.ref
        # One round trip: the job's counters, and a fresh TTR for the run limit to count from
        # (and on tubeserver, the checkpoint of a job that ran before).
        started = await self.tracking.start(conn, job)
        stats = started.stats
        counters = Counters(releases=stats["releases"], timeouts=stats["timeouts"],
                            buries=stats["buries"], kicks=stats["kicks"])
        pri, ttr, tube = stats["pri"], stats["ttr"], stats["tube"]
        run.counters, run.pri, run.tracking = counters, pri, started.tracking
        if self.killing or abort.reason is End.SHUTDOWN:
            run.answered = True  # given back uncounted when its connection closes
            run.outcome = "released"
            self.log.info("job", job=ref, tube=tube, action="release", delay=0,
                          reason="shutdown before start")
            return
        limit = run_limit(ttr, cfg.kill_grace, cfg.timeout, cfg.touch)
        values = {"id": str(job.id), "tube": tube, "server": conn.server}
        meta = {
            "TUBEWORKER_JOB_ID": str(job.id), "TUBEWORKER_TUBE": tube,
            "TUBEWORKER_SERVER": conn.server, "TUBEWORKER_PRIORITY": str(pri),
            "TUBEWORKER_TTR": str(ttr), "TUBEWORKER_ATTEMPT": str(counters.attempt),
            "TUBEWORKER_RELEASES": str(stats["releases"]),
            "TUBEWORKER_TIMEOUTS": str(stats["timeouts"]),
            "TUBEWORKER_BODY_BYTES": str(len(job.body)),
            "TUBEWORKER_DEADLINE": (f"{time.time() + limit:.3f}" if math.isfinite(limit)
                                    else ""),
        }
        checkpoint_file = None
        if started.checkpoint is not None:
            checkpoint_file = self.checkpoint_files.write(started.checkpoint)
            meta["TUBEWORKER_CHECKPOINT"] = checkpoint_file
        pipes = ChildPipes.open(cfg.call is not None) if started.tracking else None
        lost: list[str] = []
        try:
            result, outcome, checkpoints = await self._run_child(
                run, ttr, limit, self._spawner(values, meta, pipes), pipes, abort, lost)
        finally:
            if pipes is not None:
                await pipes.aclose()
            if checkpoint_file is not None:
                self.checkpoint_files.remove(checkpoint_file)
        self.runs += 1
        if cfg.max_jobs is not None and self.runs >= cfg.max_jobs:
            self.stop(None)  # before the slot is free, so no further job is reserved
        # The child is gone: its slot may take the next job while this one is answered.
        run.free_slot(self.slots)
        self.dropped += result.dropped
        fields: dict[str, Any] = {
            "job": ref, "tube": tube, "attempt": counters.attempt, **_describe(result.end),
            "duration": round(result.duration, 3), "dropped": result.dropped or None,
            "checkpoints": checkpoints or None,
            "resumed": started.checkpoint is not None or None,
        }
        if result.end.kind is End.LOST:
            run.outcome = "lost"
            self.log.error("job", **fields, action="none",
                           reason=f"connection lost ({'; '.join(lost)}); child killed, the "
                                  "server re-queues the job and it may run again")
            return
        action = decide(result.end, counters, cfg.policy, self.rand())
        run.answered = True
        command = action.verb.value  # a shutdown's release: the connection's close
        if result.end.kind is not End.SHUTDOWN:
            call = cfg.call is not None
            answer = answer_for(action, result, outcome, call, cfg.result_bytes)
            sent = await send_answer(conn, job, pri, answer, started.tracking, call)
            action, command = sent.action, sent.command
        run.outcome = ("released" if result.end.kind is End.SHUTDOWN
                       else _OUTCOMES[action.verb])
        self.completed += 1
        level = "info" if action.verb is Verb.DELETE else "warning"
        self.log.emit(level, "job", **fields, action=command,
                      delay=action.delay if action.verb is Verb.RELEASE else None,
                      reason=action.reason)
        await self._record(conn, job, tube, counters, result, action, producer)

    async def _run_child(self, run: _Run, ttr: int, limit: float, spawn: Spawner,
                         pipes: ChildPipes | None, abort: Abort,
                         lost: list[str]) -> tuple[ChildResult, Outcome | None, int]:
        """Run the job's child with its keeper and, where the server keeps them, its
        checkpoints sent as they come; the child's result, its --call outcome and the
        number of checkpoints stored. The pipes are read to their end (bounded by
        DRAIN_SECONDS once the child is gone), so every checkpoint is stored before the
        job is answered."""
        cfg = self.config
        conn, job = run.conn, run.job
        hard = trio.current_time() + (cfg.timeout if cfg.timeout is not None else math.inf)
        stored = 0
        outcome: list[Outcome] = []

        async def checkpoint(data: bytes) -> None:
            nonlocal stored
            sent_at = trio.current_time()
            try:
                with trio.CancelScope(shield=True):  # cancelled in flight = connection closed
                    await send_checkpoint(conn, job, data)
            except JobTooBig as e:
                self.log.warning("checkpoint", job=run.ref, bytes=len(data), error=repr(e),
                                 note="larger than the server's max job size; not stored")
                return
            except (TubeError, OSError) as e:
                await self._lose(conn, abort, lost, e)
                return
            stored += 1
            abort.postpone(deadline_after_checkpoint(sent_at, ttr, cfg.kill_grace, hard))

        def garbage(error: str) -> None:
            self.log.warning("checkpoint", job=run.ref, error=error,
                             note="the rest of the child's checkpoint pipe is ignored")

        async def read_to_end(stream: trio.abc.ReceiveStream) -> None:
            outcome.append(await read_outcome(stream))

        async with trio.open_nursery() as talk:
            if pipes is not None:
                talk.start_soon(forward_checkpoints, pipes.checkpoints.stream, checkpoint,
                                garbage)
                if pipes.outcome is not None:
                    talk.start_soon(read_to_end, pipes.outcome.stream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keeper, conn, job, ttr, abort, lost)
                self.metrics.child_started()
                ran: float | None = None
                try:
                    result = await run_child(spawn, job.body, limit, cfg.kill_grace, abort,
                                             self.out_sink, self.err_sink,
                                             cfg.result_bytes or 0)
                    ran = result.duration
                finally:
                    self.metrics.child_ended(ran)
                nursery.cancel_scope.cancel()
            talk.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
        return result, (outcome[0] if outcome else None), stored

    async def _keeper(self, conn: TrioClient[bytes], job: Job[bytes], ttr: int, abort: Abort,
                      lost: list[str]) -> None:
        """Touch the job (--touch) or check it, so a lost connection kills the child.

        The keeper is cancelled when the child ends, but only while it sleeps: a request
        cancelled in flight makes the client close the connection (its state is unknown),
        and that connection still has to carry this job's answer (and its siblings' from
        the same batch). So each request runs shielded, bounded by the client's I/O timeout.
        """
        interval = _touch_interval(ttr) if self.config.touch else PING_INTERVAL
        while True:
            await trio.sleep(interval)
            try:
                with trio.CancelScope(shield=True):
                    if self.config.touch:
                        await conn.touch(job)
                    else:
                        st: StatsJob = await conn.stats_job(job)
                        if st["state"] != "reserved":
                            raise NotFound(f"job is {st['state']}")
            except (TubeError, OSError) as e:
                await self._lose(conn, abort, lost, e)
                return

    @staticmethod
    async def _lose(conn: TrioClient[bytes], abort: Abort, lost: list[str],
                    error: Exception) -> None:
        """The job's connection failed, or the job is no longer ours: kill the child."""
        lost.append(repr(error))
        await conn.aclose()
        abort.set(End.LOST)

    async def _record(self, conn: TrioClient[bytes], job: Job[bytes], tube: str,
                      counters: Counters, result: ChildResult, action: Action,
                      producer: dict[str, TrioClient[bytes]]) -> None:
        """Put the result record (--result-tube) or failure record (--failure-tube)."""
        if action.verb is Verb.DELETE and self.config.result_tube:
            target, tail_key, tail = self.config.result_tube, "stdout_tail", result.stdout_tail
        elif action.verb is Verb.BURY and self.config.failure_tube:
            target, tail_key, tail = self.config.failure_tube, "stderr_tail", result.stderr_tail
        else:
            return
        record = {
            "server": conn.server, "id": job.id, "tube": tube, "attempt": counters.attempt,
            "exit": result.end.code, "signal": result.end.signal,
            "end": result.end.kind.value, "duration": round(result.duration, 3),
            "action": action.verb.value, "reason": action.reason, tail_key: tail,
        }
        try:
            client = producer.get(target)
            if client is None or client.closed:
                host, port = conn.server.rsplit(":", 1)
                client = await self._connect((host.strip("[]"), int(port)), use=target)
                producer[target] = client
            await client.put(Msgpack().dumps(record))
        except TubeError as e:
            self.log.error("record", job=f"{conn.server}/{job.id}", tube=target, error=str(e))


def _describe(end: ChildEnd) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if end.code is not None:
        out["exit"] = end.code
    if end.signal is not None:
        out["signal"] = signal.Signals(end.signal).name if end.signal in _SIGNALS else end.signal
    if end.kind not in (End.EXITED, End.SIGNALLED):
        out["killed"] = end.kind.value
    return out


_SIGNALS = frozenset(int(s) for s in signal.Signals)
_OUTCOMES = {Verb.DELETE: "succeeded", Verb.RELEASE: "retried", Verb.BURY: "buried"}
