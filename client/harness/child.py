"""Run one child process for one job, in its own process group, and report how it ended.

Theory of operation. A `Spawner` starts the child and hands back a `Spawned`: the process
and its three pipes. Commands are started with ``start_new_session=True`` (`spawn_command`);
``--call`` children are forked by the forkserver (`forkserver.ForkServer.spawn`) into a
process group of their own. Either way the child leads its own process group (a Ctrl-C on
the harness's terminal does not reach it, and everything it forks stays in the group).
Why the two differ: a new session is also a new scheduler autogroup. A forked Python child
moving into one waited about a tick (3-4 ms per job here), while a command, which moves
before it execs, ran 6-10% faster in its own autogroup than sharing the harness's (measured
with alternating runs of ``-- true``), so commands keep their session. The job
body is written to its stdin, then stdin is closed; a child that does not read stdin just
gets EPIPE, which is ignored. stdout and stderr are piped, passed through to the harness's
own stdout/stderr (`output.Sink`, which never blocks), and the last `TAIL_BYTES` of each are
kept for the result and failure records.

`run_child` waits for the child up to `limit` seconds. At the limit (or when `abort` is set
with a reason, e.g. USR1, shutdown or a lost connection) the whole group gets SIGTERM, then
SIGKILL after `kill_grace` seconds if the leader is still alive. However the leader ended,
what is left of its group (grandchildren it left behind) is then killed with SIGKILL. The
leader is not reaped until then, so the group id cannot have been reused: only the group the
harness created is ever signalled.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import attrs
import trio

from .outcome import ChildEnd, End
from .output import Sink

TAIL_BYTES = 4096
# After the leader exits, grandchildren may hold the pipes open: read on only this long.
DRAIN_SECONDS = 0.2


@attrs.define
class Tail:
    """The last `limit` bytes written to a stream."""

    limit: int = TAIL_BYTES
    data: bytearray = attrs.field(factory=bytearray)

    def add(self, chunk: bytes | bytearray) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]



def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


@attrs.define(eq=False)
class Abort:
    """Lets another task end a running child early (the first reason given wins), or give
    it longer: `postpone` moves its run limit later (a checkpoint restarted the TTR)."""

    reason: End | None = None
    event: trio.Event = attrs.field(factory=trio.Event)
    limit: trio.CancelScope | None = None  # the child's run limit, while it runs

    def set(self, reason: End) -> None:
        if self.reason is None:
            self.reason = reason
            self.event.set()

    def postpone(self, deadline: float) -> None:
        """Let the child run until `deadline` (trio time) if that is later than now set."""
        if self.limit is not None and deadline > self.limit.deadline:
            self.limit.deadline = deadline


@attrs.frozen
class ChildResult:
    end: ChildEnd
    duration: float
    pid: int
    stdout: bytes  # the last bytes of stdout (TAIL_BYTES, or more if asked for)
    stderr: bytes  # the last TAIL_BYTES of stderr
    dropped: int = 0  # bytes of output the sinks had no room for

    @property
    def stdout_tail(self) -> str:
        return _text(self.stdout[-TAIL_BYTES:])

    @property
    def stderr_tail(self) -> str:
        return _text(self.stderr[-TAIL_BYTES:])


def substitute(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """`args` with each ``{name}`` of `values` replaced (other braces are left alone)."""
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to process group `pgid`, which may be gone already."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ChildProcess(Protocol):
    """A started child, as `run_child` drives it."""

    pid: int

    async def wait_exited(self) -> None:
        """Return once the leader has exited, before it is reaped (its group id is still
        held, so `signal_group` can only reach this job's group)."""

    async def signal_group(self, sig: int) -> None:
        """Signal the child's process group, if the leader has not been reaped."""

    async def reap(self) -> int:
        """Reap the leader: its exit code, or minus the signal that killed it."""


@attrs.frozen
class Spawned:
    process: ChildProcess
    stdin: trio.abc.SendStream
    stdout: trio.abc.ReceiveStream
    stderr: trio.abc.ReceiveStream


#: Starts one child; raises OSError when the program cannot be run.
Spawner = Callable[[], Awaitable[Spawned]]


class CommandProcess:
    """A command started by trio, watched through a pidfd so the leader's exit is seen
    before trio reaps it (where there is no pidfd, after: a tiny window for reuse)."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._reaped = False
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self._pidfd = -1

    async def wait_exited(self) -> None:
        if self._pidfd >= 0:
            await trio.lowlevel.wait_readable(self._pidfd)
        else:
            await self.reap()

    async def signal_group(self, sig: int) -> None:
        if not self._reaped:
            signal_group(self.pid, sig)

    async def reap(self) -> int:
        code = await self.proc.wait()
        self._reaped = True
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        return code


def spawn_command(argv: Sequence[str], env: Mapping[str, str],
                  pass_fds: Sequence[int] = ()) -> Spawner:
    """The spawner of `argv` with environment `env` (and descriptors `pass_fds` kept open),
    in a new session."""
    async def spawn() -> Spawned:
        proc = await trio.lowlevel.open_process(
            list(argv), stdin=-1, stdout=-1, stderr=-1, env=dict(env),
            start_new_session=True, pass_fds=tuple(pass_fds),
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        return Spawned(CommandProcess(proc), proc.stdin, proc.stdout, proc.stderr)
    return spawn


async def _feed(stream: trio.abc.SendStream, body: bytes) -> None:
    try:
        if body:
            await stream.send_all(body)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the child closed its stdin: it does not want the body
    finally:
        await trio.aclose_forcefully(stream)


@attrs.define
class _Drained:
    tail: Tail = attrs.field(factory=Tail)
    dropped: int = 0

    @property
    def data(self) -> bytes:
        return bytes(self.tail.data)


async def _drain(stream: trio.abc.ReceiveStream, into: _Drained, sink: Sink | None) -> None:
    try:
        while chunk := await stream.receive_some(65536):
            into.tail.add(chunk)
            if sink is not None and not sink.write(bytes(chunk)):
                into.dropped += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def run_child(
    spawn: Spawner,
    body: bytes,
    limit: float,
    kill_grace: float,
    abort: Abort,
    out_sink: Sink | None = None,
    err_sink: Sink | None = None,
    keep_stdout: int = TAIL_BYTES,
) -> ChildResult:
    """Run the child `spawn` starts, `body` on its stdin, until it exits, `limit` passes or
    `abort` fires; its output goes to the sinks (None: kept only in the tails, stdout's
    last `keep_stdout` bytes at least)."""
    out, err = _Drained(Tail(max(TAIL_BYTES, keep_stdout))), _Drained()
    start = time.monotonic()
    try:
        spawned = await spawn()
    except OSError as e:
        # As a shell would say: 126 cannot execute, 127 not found. A failure, not a crash.
        status = 127 if isinstance(e, FileNotFoundError) else 126
        err.tail.add(f"tubeworker: cannot start the child: {e}\n".encode())
        return ChildResult(ChildEnd(End.EXITED, code=status), time.monotonic() - start, 0,
                           b"", err.data)
    proc = spawned.process
    reason: End | None = None
    exited = reaped = False
    code = 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, spawned.stdin, body)
            nursery.start_soon(_drain, spawned.stdout, out, out_sink)
            nursery.start_soon(_drain, spawned.stderr, err, err_sink)
            with trio.move_on_after(limit if math.isfinite(limit) else math.inf) as scope:
                abort.limit = scope
                async with trio.open_nursery() as waiters:
                    async def watch_abort() -> None:
                        await abort.event.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(watch_abort)
                    await proc.wait_exited()
                    exited = True
                    waiters.cancel_scope.cancel()
            abort.limit = None
            if not exited:
                reason = abort.reason or End.DEADLINE
                await _kill_group(proc, kill_grace)
            elif abort.reason is not None:
                reason = abort.reason
            # Grandchildren the leader left behind die with the job (the leader is not
            # reaped yet, so the group is still this job's).
            await proc.signal_group(signal.SIGKILL)
            code = await proc.reap()
            reaped = True
            nursery.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
    finally:
        if not reaped:  # cancelled from outside: never leave the group behind
            with trio.CancelScope(shield=True):
                await _kill_group(proc, kill_grace)
                await proc.reap()
        for stream in (spawned.stdin, spawned.stdout, spawned.stderr):
            await trio.aclose_forcefully(stream)
    if reason is None:
        end = (ChildEnd(End.EXITED, code=code) if code >= 0
               else ChildEnd(End.SIGNALLED, signal=-code))
    else:
        end = ChildEnd(reason, code=code if code >= 0 else None,
                       signal=-code if code < 0 else None)
    return ChildResult(end, time.monotonic() - start, proc.pid, out.data, err.data,
                       out.dropped + err.dropped)


async def _kill_group(proc: ChildProcess, kill_grace: float) -> None:
    """SIGTERM the group, wait `kill_grace` for the leader, then SIGKILL the group."""
    await proc.signal_group(signal.SIGTERM)
    with trio.move_on_after(kill_grace):
        await proc.wait_exited()
    await proc.signal_group(signal.SIGKILL)
    await proc.wait_exited()
