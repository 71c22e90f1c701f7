"""Job tracking in the harness: where the server keeps results, failure reasons and
checkpoints (tubeserver's extension), a job starts from its last checkpoint and is answered
with ``finish`` / ``fail``; against beanstalkd, with ``delete`` / ``bury`` as before.

Theory of operation. Whether a connection's server has the extension is learned as tubeclient
learns it (`core.Extension`): a ``job-status``, which carries no data, goes out with the
first job's ``stats-job`` and ``touch`` (one round trip) and BAD_FORMAT or UNKNOWN_COMMAND to
it means no. A job reserved before (``reserves`` > 1: only a connection that held it can
have left a checkpoint) has its checkpoint read with ``peek-checkpoint`` and put in a file
for the child (`CheckpointFiles`). The child gets the pipes of `channels`; `Answer` then
picks what to send: the result (a command's stdout tail, a function's msgpack return value)
with ``finish``, the reason (the stderr tail, or a function's traceback) with ``fail``. A
server refusing a result as too big (JOB_TOO_BIG, over its max job size) gets a ``fail``
that says so instead (the producer hears of it; a kick runs the job again); a reason too big
for it, a plain ``bury``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref

import attrs

from .. import commands as c
from ..core import Extension, tracking_probe
from ..errors import ExtensionNotSupported, JobTooBig, NotFound
from ..job import Job
from ..stats import StatsJob
from ..trio_client import TrioClient
from .callee import pack
from .channels import Outcome, Pipe
from .child import ChildResult
from .outcome import Action, End, Verb


@attrs.frozen
class Started:
    """What the harness knows of a job once it holds it with a fresh TTR."""

    stats: StatsJob
    tracking: bool  # the server keeps results, reasons and checkpoints
    checkpoint: bytes | None  # the job's last checkpoint, None if it has none


class Tracking:
    """Per connection, whether its server has the job tracking extension."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[TrioClient[bytes], bool] = (
            weakref.WeakKeyDictionary())

    async def start(self, conn: TrioClient[bytes], job: Job[bytes]) -> Started:
        """stats-job and touch (so the run limit counts from now) in one round trip, with
        the probe on a connection's first job; then the checkpoint of a job run before."""
        ask, touch = c.StatsJob(job.id), c.Touch(job.id)
        known = self._known.get(conn)
        probe = c.JobStatus(job.id) if known is None else None
        replies = await conn.pipeline([ask, touch] if probe is None else [ask, touch, probe])
        stats = ask.unwrap(replies[0])
        touch.unwrap(replies[1])
        if probe is not None:
            extension = Extension(tracking_probe)
            try:
                extension.learn(probe, replies[2])
            except ExtensionNotSupported:
                pass
            known = self._known[conn] = bool(extension.supported)
        checkpoint = None
        if known and stats["reserves"] > 1:
            peek = c.PeekCheckpoint(job.id)
            (reply,) = await conn.pipeline([peek])
            try:
                checkpoint = peek.unwrap(reply).body
            except NotFound:
                pass
        return Started(stats, bool(known), checkpoint)


class CheckpointFiles:
    """The files that hand a job's last checkpoint to its child, in one private directory
    made on first use and removed by `close`."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self._names = itertools.count(1)

    def write(self, data: bytes) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="tubeworker-")
        path = os.path.join(self._dir, f"checkpoint-{next(self._names)}")
        with open(path, "wb") as f:
            f.write(data)
        return path

    @staticmethod
    def remove(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


@attrs.define(eq=False)
class ChildPipes:
    """The checkpoint pipe of one child, and with --call its outcome pipe."""

    checkpoints: Pipe
    outcome: Pipe | None

    @classmethod
    def open(cls, call: bool) -> ChildPipes:
        return cls(Pipe.open(), Pipe.open() if call else None)

    @property
    def child_fds(self) -> list[int]:
        """The descriptors the child gets, checkpoint pipe first."""
        return [p.child_fd for p in (self.checkpoints, self.outcome) if p is not None]

    def release_child_ends(self) -> None:
        for pipe in (self.checkpoints, self.outcome):
            if pipe is not None:
                pipe.release_child_end()

    async def aclose(self) -> None:
        self.release_child_ends()
        for pipe in (self.checkpoints, self.outcome):
            if pipe is not None:
                await pipe.stream.aclose()


@attrs.frozen
class Sent:
    """How a job was answered: the action taken, and the command that carried it (``delete``,
    ``release`` or ``bury``; with tracking, ``finish`` for a result and ``fail`` for a
    reason), which is what the log line names."""

    action: Action
    command: str


@attrs.frozen
class Answer:
    """How to answer a job that ended: the decided action, and what tracking keeps."""

    action: Action
    result: bytes | None  # for finish; None: a plain delete (--no-result)
    reason: bytes  # for fail


def _describe_end(result: ChildResult, action: Action) -> str:
    """A reason for a child that left nothing on stderr."""
    end = result.end
    if end.kind is End.EXITED:
        how = f"exit status {end.code}"
    elif end.kind is End.SIGNALLED:
        how = f"killed by signal {end.signal}"
    else:
        how = f"killed by the harness ({end.kind.value})"
    return f"{how}; {action.reason}" if action.reason else how


def answer_for(action: Action, result: ChildResult, outcome: Outcome | None, call: bool,
               result_bytes: int | None) -> Answer:
    """The result and reason to send with `action` (see the module docstring). For --call
    (`call`) both are msgpack, as the function's values are: its encoded return value, and
    its traceback (else the stderr tail) as a string. `result_bytes` None sends no result."""
    if result_bytes is None:
        value = None
    elif call:
        value = outcome.result if outcome is not None and outcome.result is not None else b""
    else:
        value = result.stdout[-result_bytes:] if result_bytes else b""
    if call:
        traceback = outcome.error if outcome is not None else None
        reason = pack(traceback or result.stderr_tail or _describe_end(result, action))
    else:
        reason = result.stderr or _describe_end(result, action).encode()
    return Answer(action, value, reason)


async def send_answer(conn: TrioClient[bytes], job: Job[bytes], pri: int, answer: Answer,
                      tracking: bool, call: bool) -> Sent:
    """Send `answer`; the action taken (a finish refused as too big becomes a fail) and the
    command sent."""
    action = answer.action
    if action.verb is Verb.RELEASE:
        await conn.release(job, pri, action.delay)
        return Sent(action, "release")
    if not tracking:
        await (conn.delete(job) if action.verb is Verb.DELETE else conn.bury(job, pri))
        return Sent(action, action.verb.value)
    reason = answer.reason
    if action.verb is Verb.DELETE:
        if answer.result is None:
            await conn.delete(job)
            return Sent(action, "delete")
        try:
            await _send(conn, c.Finish(job.id, answer.result))
            return Sent(action, "finish")
        except JobTooBig:
            why = (f"the result ({len(answer.result)} bytes) is larger than the server's "
                   "max job size")
            action = Action(Verb.BURY, 0, why)
            reason = pack(why) if call else why.encode()
    try:
        await _send(conn, c.Fail(job.id, pri, reason))
    except JobTooBig:
        await conn.bury(job, pri)
        return Sent(action, "bury")
    return Sent(action, "fail")


async def _send(conn: TrioClient[bytes], cmd: c.Finish | c.Fail | c.Checkpoint) -> None:
    """An extension command on a connection known to have the extension (no probe)."""
    (reply,) = await conn.pipeline([cmd])
    cmd.unwrap(reply)


async def send_checkpoint(conn: TrioClient[bytes], job: Job[bytes], data: bytes) -> None:
    await _send(conn, c.Checkpoint(job.id, data))


__all__ = ["Answer", "CheckpointFiles", "ChildPipes", "Sent", "Started", "Tracking",
           "answer_for", "send_answer", "send_checkpoint"]
