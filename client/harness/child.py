"""Run one child process for one job, in its own process group, and report how it ended.

Theory of operation. The child is started with ``start_new_session=True``, so it leads a new
session and process group (a Ctrl-C on the harness's terminal does not reach it, and
everything it forks stays in the group). The job body is written to its stdin, then stdin is
closed; a child that does not read stdin just gets EPIPE, which is ignored. stdout and stderr
are piped, passed through to the harness's own stdout/stderr, and the last `TAIL_BYTES` of
each are kept for the result and failure records.

`run_child` waits for the child up to `limit` seconds. At the limit (or when `abort` is set
with a reason, e.g. USR1, shutdown or a lost connection) the whole group gets SIGTERM, then
SIGKILL after `kill_grace` seconds if the leader is still alive; leftovers of the group get
SIGKILL too. Only the group the harness created is ever signalled.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import BinaryIO

import attrs
import trio

from .outcome import ChildEnd, End

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

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", errors="replace")


@attrs.define(eq=False)
class Abort:
    """Lets another task end a running child early; the first reason given wins."""

    reason: End | None = None
    event: trio.Event = attrs.field(factory=trio.Event)

    def set(self, reason: End) -> None:
        if self.reason is None:
            self.reason = reason
            self.event.set()


@attrs.frozen
class ChildResult:
    end: ChildEnd
    duration: float
    pid: int
    stdout_tail: str
    stderr_tail: str


def substitute(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """`args` with each ``{name}`` of `values` replaced (other braces are left alone)."""
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _feed(stream: trio.abc.SendStream, body: bytes) -> None:
    try:
        if body:
            await stream.send_all(body)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the child closed its stdin: it does not want the body
    finally:
        await trio.aclose_forcefully(stream)


async def _drain(stream: trio.abc.ReceiveStream, tail: Tail, sink: BinaryIO | None) -> None:
    try:
        while chunk := await stream.receive_some(65536):
            tail.add(chunk)
            if sink is not None:
                sink.write(chunk)
                sink.flush()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def run_child(
    argv: Sequence[str],
    body: bytes,
    env: Mapping[str, str],
    limit: float,
    kill_grace: float,
    abort: Abort,
    passthrough: bool = True,
) -> ChildResult:
    """Run `argv` with `body` on stdin until it exits, `limit` passes or `abort` fires."""
    out, err = Tail(), Tail()
    start = time.monotonic()
    try:
        proc = await trio.lowlevel.open_process(
            list(argv), stdin=-1, stdout=-1, stderr=-1, env=dict(env),
            start_new_session=True,
        )
    except OSError as e:
        # As a shell would say: 126 cannot execute, 127 not found. A failure, not a crash.
        status = 127 if isinstance(e, FileNotFoundError) else 126
        err.add(f"tubeworker: cannot run {argv[0]!r}: {e}\n".encode())
        return ChildResult(ChildEnd(End.EXITED, code=status), time.monotonic() - start, 0,
                           "", err.text())
    pgid = proc.pid  # a new session: the leader's pid is the group id
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    reason: End | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, proc.stdin, body)
            nursery.start_soon(_drain, proc.stdout, out,
                               sys.stdout.buffer if passthrough else None)
            nursery.start_soon(_drain, proc.stderr, err,
                               sys.stderr.buffer if passthrough else None)
            with trio.move_on_after(limit if math.isfinite(limit) else math.inf):
                async with trio.open_nursery() as waiters:
                    async def watch_abort() -> None:
                        await abort.event.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(watch_abort)
                    await proc.wait()
                    waiters.cancel_scope.cancel()
            if proc.returncode is None:
                reason = abort.reason or End.DEADLINE
                await _kill_group(proc, pgid, kill_grace)
            elif abort.reason is not None:
                reason = abort.reason
            # Leftovers of the group (when we killed it) must not keep the pipes open forever.
            nursery.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
    finally:
        if proc.returncode is None:  # cancelled from outside: never leave the group behind
            with trio.CancelScope(shield=True):
                await _kill_group(proc, pgid, kill_grace)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            await trio.aclose_forcefully(stream)
    final = proc.returncode
    assert final is not None
    code: int = final
    if reason is None:
        end = (ChildEnd(End.EXITED, code=code) if code >= 0
               else ChildEnd(End.SIGNALLED, signal=-code))
    else:
        end = ChildEnd(reason, code=code if code >= 0 else None,
                       signal=-code if code < 0 else None)
    return ChildResult(end, time.monotonic() - start, proc.pid, out.text(), err.text())


async def _kill_group(proc: trio.Process, pgid: int, kill_grace: float) -> None:
    """SIGTERM the group, wait `kill_grace` for the leader, then SIGKILL the group."""
    _signal_group(pgid, signal.SIGTERM)
    with trio.move_on_after(kill_grace):
        await proc.wait()
    # The group id cannot be reused while any member lives, so this reaches only our group.
    _signal_group(pgid, signal.SIGKILL)
    await proc.wait()
