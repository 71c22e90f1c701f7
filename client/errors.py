"""The one exception tree of tubeclient: one class per server error line, plus the client's own.

`ServerError` leaves are values the codec returns (they never desynchronise the stream); the
others (`ConnectionClosed`, `UnexpectedReply`, `IOTimeout`) mean the connection is closed.

    TubeError
    ├── ServerError                 the server answered with an error line (`.reply`)
    │   ├── BadFormat  UnknownCommand  ExpectedCRLF  JobTooBig  NotFound  NotIgnored
    │   ├── Draining  DeadlineSoon  TimedOut  OutOfMemory  InternalError
    │   ├── TubeFull                a put into a tube at its max-jobs (flow control)
    │   ├── Unauthorized            a bad token, or a command beyond the token's rights
    │   ├── Buried                  put/release answered BURIED; `.id` for put
    │   └── JobFailed               wait_result: the job failed (was buried); `.id`, `.reason`
    ├── ExtensionNotSupported       the server does not implement an extension command
    ├── AuthNotEnabled              token= given, but the server has no authentication on
    ├── BatchError                  put_many/delete_many: some items failed (`.results`)
    ├── NoServerAvailable           a pool tried every server and none accepted (`.errors`)
    ├── DecodeError                 the serializer could not decode a body, result, reason or
    │                               checkpoint (`.job`, with the raw bytes)
    ├── UnexpectedReply             protocol violation; the connection was closed
    └── ConnectionClosed            (also a builtin ConnectionError) no usable connection
        ├── ConnectFailed           could not connect (refused, unreachable, connect timeout)
        ├── TooManyConnections      the server was at its --max-connections and closed it
        └── IOTimeout               (also a builtin TimeoutError) a command took too long
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job


class TubeError(Exception):
    """Base class of every exception tubeclient raises on purpose."""


class ServerError(TubeError):
    """The server answered a command with an error line; the connection stays usable.

    `reply` is the reply word as sent by the server, e.g. ``b"NOT_FOUND"``.
    """

    reply: bytes = b""

    def __str__(self) -> str:
        text = super().__str__()
        return text or self.reply.decode("ascii")

    # Replies are values: two errors of the same kind and arguments are equal.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == getattr(other, "args", None)

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class BadFormat(ServerError):
    """BAD_FORMAT: the server could not parse the command (malformed or unsupported)."""

    reply = b"BAD_FORMAT"


class UnknownCommand(ServerError):
    """UNKNOWN_COMMAND: the server does not know the command."""

    reply = b"UNKNOWN_COMMAND"


class ExpectedCRLF(ServerError):
    """EXPECTED_CRLF: a job body was not followed by CRLF (a client bug; never sent by us)."""

    reply = b"EXPECTED_CRLF"


class JobTooBig(ServerError):
    """JOB_TOO_BIG: the body is larger than the server's max-job-size."""

    reply = b"JOB_TOO_BIG"


class NotFound(ServerError):
    """NOT_FOUND: no such job (or not reserved by this connection), no such tube, or no job in
    the requested state for the peek commands."""

    reply = b"NOT_FOUND"


class NotIgnored(ServerError):
    """NOT_IGNORED: the tube is the last one on the watch list."""

    reply = b"NOT_IGNORED"


class Draining(ServerError):
    """DRAINING: the server is in drain mode and accepts no new jobs."""

    reply = b"DRAINING"


class DeadlineSoon(ServerError):
    """DEADLINE_SOON: a job reserved by this connection is within 1 s of its TTR deadline."""

    reply = b"DEADLINE_SOON"


class TimedOut(ServerError):
    """TIMED_OUT: no job could be reserved within the reserve timeout.

    Not to be confused with `IOTimeout`, which is the client giving up on a silent server.
    """

    reply = b"TIMED_OUT"


class OutOfMemory(ServerError):
    """OUT_OF_MEMORY: the server could not allocate memory for the job."""

    reply = b"OUT_OF_MEMORY"


class InternalError(ServerError):
    """INTERNAL_ERROR: the server hit a bug while running the command."""

    reply = b"INTERNAL_ERROR"


class TubeFull(ServerError):
    """TUBE_FULL (extension): the tube holds as many jobs as its `max-jobs` limit allows
    (see `tube_limits`); the put stored nothing. Any put may get it, once an operator set
    the limit; it clears as the tube's jobs are deleted."""

    reply = b"TUBE_FULL"


class Unauthorized(ServerError):
    """UNAUTHORIZED (extension, tubeserver --auth-file): in reply to `auth`, the token is not
    known (and the server closes the connection); to any other command, the connection has
    not authenticated, or its token's rights do not cover the command on that tube. The
    command changed nothing."""

    reply = b"UNAUTHORIZED"


class Buried(ServerError):
    """BURIED in reply to put (``BURIED <id>``) or release (``BURIED``): the server ran out of
    memory growing its queue and buried the job instead. `id` is the job id when known."""

    reply = b"BURIED"

    def __init__(self, id: int | None = None) -> None:
        super().__init__(*(() if id is None else (id,)))
        self.id = id

    def __str__(self) -> str:
        return "BURIED" if self.id is None else f"BURIED {self.id}"


class JobFailed(ServerError):
    """`wait_result` (extension): the job failed, i.e. it is buried (by `fail`, or by a plain
    `bury`, which keeps the last reason). `id` is the job; `reason` is its last failure
    reason decoded like a result (None if it never had one). The job stays buried: kick it
    to retry it."""

    reply = b"FAILED"

    def __init__(self, id: int, reason: object = None) -> None:
        super().__init__(id, reason)
        self.id = id
        self.reason = reason

    def __str__(self) -> str:
        return f"job {self.id} failed: {self.reason!r}"

    # A reason may be unhashable (a msgpack map).
    def __hash__(self) -> int:
        return hash((type(self), self.id))


# Error lines without arguments, by reply word. BURIED is special (success for `bury`).
SERVER_ERRORS: dict[bytes, type[ServerError]] = {
    cls.reply: cls
    for cls in (
        BadFormat, UnknownCommand, ExpectedCRLF, JobTooBig, NotFound, NotIgnored, Draining,
        DeadlineSoon, TimedOut, OutOfMemory, InternalError, TubeFull, Unauthorized,
    )
}


class ExtensionNotSupported(TubeError):
    """The server does not implement an extension command (it answered BAD_FORMAT or
    UNKNOWN_COMMAND to a well-formed one). The connection stays usable; `command` names the
    extension and `__cause__` is the server's reply."""

    def __init__(self, command: str) -> None:
        super().__init__(f"the server does not support {command!r}")
        self.command = command


class AuthNotEnabled(TubeError):
    """The client was given a token, but the server has no authentication turned on: it
    answered UNKNOWN_COMMAND (or BAD_FORMAT) to `auth` (tubeserver without --auth-file, or
    beanstalkd). The client closed the connection rather than go on unauthenticated:
    connect without a token, or turn authentication on. `__cause__` is the server's reply."""

    def __init__(self, server: str) -> None:
        super().__init__(f"{server} does not have authentication turned on (it does not know "
                         "`auth`); connect without a token, or start tubeserver with "
                         "--auth-file")
        self.server = server


class BatchError(TubeError):
    """Some items of put_many/delete_many failed. Every reply was read, so the connection is
    still in sync. `results` is aligned with the input: for put_many an id (int) or the
    `ServerError` of that item; for delete_many None (deleted) or the `ServerError`."""

    def __init__(self, results: Sequence[object]) -> None:
        self.results = list(results)
        self.errors: list[tuple[int, ServerError]] = [
            (i, r) for i, r in enumerate(self.results) if isinstance(r, ServerError)
        ]
        first = self.errors[0] if self.errors else None
        detail = f"; first: item {first[0]}: {first[1]}" if first else ""
        super().__init__(f"{len(self.errors)} of {len(self.results)} items failed{detail}")


class NoServerAvailable(TubeError):
    """A pool tried every server it may use and none accepted the command. `errors` maps
    each tried server to the exception it gave."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{server}: {e!r}" for server, e in self.errors.items())
        super().__init__(f"no server accepted the command ({detail or 'no servers'})")


class UnexpectedReply(TubeError):
    """The server sent something that is not a valid reply to the command sent (garbage, a
    reply with no command outstanding, a malformed number, a body without CRLF, ...). The
    client closes the connection: its state is unknown."""


class ConnectionClosed(TubeError, ConnectionError):
    """There is no usable connection: the server closed it, it broke, or the client closed it
    (after `close()`, an I/O timeout, a cancellation or an `UnexpectedReply` mid-command).
    Jobs reserved on it are back in ready on the server."""


class ConnectFailed(ConnectionClosed):
    """The connection could not be opened (refused, unreachable, or the connect timeout
    passed). `__cause__` holds the underlying error."""


class TooManyConnections(ConnectionClosed):
    """TOO_MANY_CONNECTIONS (extension): the server already had as many connections open as
    its operator allows (`--max-connections`), said so instead of a reply and closed this
    one. Nothing of the command was run. A pool tries its next server, as for any closed
    connection; a retry later may find room."""

    reply = b"TOO_MANY_CONNECTIONS"


class IOTimeout(ConnectionClosed, TimeoutError):
    """A command did not complete within the client's I/O timeout; the connection was closed
    because a late reply would desynchronise it."""


class DecodeError(TubeError, ValueError):
    """The serializer could not decode a job body. The job stays reserved (for reserve) on
    the server; `job` is it with its raw bytes body, so it can be buried or deleted, and
    `jobs` holds every job of the reply (one, or a whole reserve_batch) with raw bodies.

    From wait_result and peek_checkpoint (extension), `what` is "result", "reason" or
    "checkpoint" and `job.body` holds those raw bytes instead of the job's body."""

    def __init__(
        self, job: Job[bytes], jobs: Sequence[Job[bytes]], what: str = "body"
    ) -> None:
        super().__init__(f"cannot decode the {what} of job {job.id} from {job.server}")
        self.what = what
        self.job = job
        self.jobs = list(jobs)
