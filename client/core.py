"""The I/O-free half of a client, shared by the sync and the trio client.

Both clients own a `ClientCore`: it holds the codec, the serializer and the server name, and
does everything that does not touch a socket: building commands from method arguments,
turning raw job frames into `Job`s, the connect-time use/watch sequence, splitting put_many
and delete_many into pipelined windows, and the feature detection of the extensions
(reserve-batch, job tracking, flow control, admin commands). The clients only add "write
these bytes, read until these replies are complete" with their own I/O and timeouts, so the
two stay identical in behaviour.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs

from . import commands as c
from .bodies import Serializer
from .codec import Codec, RawJob, Reply
from .errors import (
    AuthNotEnabled,
    BadFormat,
    BatchError,
    DecodeError,
    ExtensionNotSupported,
    JobFailed,
    UnknownCommand,
)
from .flow import parent_ids
from .job import (
    DEFAULT_TUBE,
    Address,
    Job,
    PutOptions,
    check_address,
    job_id,
    server_name,
)

T = TypeVar("T")

# put_many/delete_many pipeline at most this many commands, or about this many bytes, per
# write before reading the replies: the replies to one window must fit in the socket buffers
# (they are ~20 bytes each), else client and server could both block writing.
WINDOW_COMMANDS = 1000
WINDOW_BYTES = 1 << 20


def check_timeout(value: float | None, name: str) -> float | None:
    """A client-side timeout in seconds: None (no limit) or a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, not {value!r}")
    return float(value)


def tls_context(value: ssl.SSLContext | bool | None) -> ssl.SSLContext | None:
    """The client's `ssl=`: a context as given, True for `ssl.create_default_context()` (the
    system's CAs, the host name checked), None or False for plain TCP."""
    if value is None or value is False:
        return None
    if value is True:
        return ssl.create_default_context()
    if not isinstance(value, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not "
                        f"{type(value).__name__}")
    return value


@attrs.frozen
class Access:
    """How a pool opens each of its connections beyond the address: TLS and the token,
    checked once when the pool is made (the repr hides the token)."""

    tls: ssl.SSLContext | None = attrs.field(default=None, eq=False)
    server_hostname: str | None = None
    token: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def check(cls, tls: ssl.SSLContext | bool | None, server_hostname: str | None,
              token: str | None) -> Access:
        context = tls_context(tls)
        if server_hostname is not None and context is None:
            raise ValueError("server_hostname= needs ssl=")
        return cls(context, server_hostname, None if token is None else c.check_token(token))


def io_budget(io_timeout: float | None, wait: int | None, waits_forever: bool) -> float | None:
    """Seconds a command may take in all: the I/O timeout plus the time the server was asked
    to wait (a reserve timeout). None when unlimited: no I/O timeout, or a reserve without
    timeout (it may legitimately block forever)."""
    if io_timeout is None or waits_forever:
        return None
    return io_timeout + (wait or 0)


def windows(commands: Sequence[c.Command[object]]) -> Iterator[Sequence[c.Command[object]]]:
    """`commands` cut into pipelined windows (at least one command each)."""
    start = 0
    while start < len(commands):
        end, size = start, 0
        while end < len(commands) and end - start < WINDOW_COMMANDS and (
            end == start or size < WINDOW_BYTES
        ):
            cmd = commands[end]
            size += len(cmd.body) if isinstance(cmd, c.Put) else 32
            end += 1
        yield commands[start:end]
        start = end


def watch_setup(use: str, watch: str | Iterable[str]) -> list[c.Command[object]]:
    """The commands that make a fresh connection use `use` and watch exactly `watch`
    (greenstalk's rules: `default` is ignored unless listed)."""
    out: list[c.Command[object]] = []
    if c.check_tube(use) != DEFAULT_TUBE:
        out.append(c.Use(use))
    tubes = [watch] if isinstance(watch, str) else list(watch)
    if not tubes:
        raise ValueError("watch must name at least one tube")
    for tube in dict.fromkeys(tubes):
        if c.check_tube(tube) != DEFAULT_TUBE:
            out.append(c.Watch(tube))
    if DEFAULT_TUBE not in tubes:
        out.append(c.Ignore(DEFAULT_TUBE))
    return out


def tracking_probe(cmd: c.Command[object]) -> c.Command[object] | None:
    """Before finish, fail or checkpoint: a `job-status` of the same job."""
    if isinstance(cmd, c.Finish | c.Fail | c.Checkpoint):
        return c.JobStatus(cmd.id)
    return None


def flow_probe(cmd: c.Command[object]) -> c.Command[object] | None:
    """Before put-unique, put-after or schedule: a `list-tube-limits`."""
    if isinstance(cmd, c.PutUnique | c.PutAfter | c.Schedule):
        return c.ListTubeLimits()
    return None


def no_probe(cmd: c.Command[object]) -> c.Command[object] | None:
    """For an extension whose commands carry no data: none is asked about first."""
    return None


class Extension:
    """Whether the server of one connection knows one extension: None until it has answered
    one of the extension's commands.

    A server without it answers UNKNOWN_COMMAND (or BAD_FORMAT, by beanstalkd's prefix
    table) to a well-formed command of the extension; that answer, before any other, means
    "not supported" (ExtensionNotSupported naming the command, as for reserve-batch), and
    is remembered: later commands of the extension fail at once, without a round trip.
    A command that carries data is the trap: such a server answers its line and then reads
    the data after it as a command of its own (a result ``b"delete 7"`` would delete job 7
    on beanstalkd). So before the first of those on a connection, `make_probe` names a
    command of the same extension that carries no data, to ask first.
    """

    def __init__(
        self, make_probe: Callable[[c.Command[object]], c.Command[object] | None]
    ) -> None:
        self.supported: bool | None = None
        self._make_probe = make_probe

    def probe(self, cmd: c.Command[object]) -> c.Command[object] | None:
        """The command to send before `cmd`, or None; ExtensionNotSupported at once if the
        server is known not to support the extension."""
        if self.supported is False:
            raise ExtensionNotSupported(cmd.verb)
        return self._make_probe(cmd) if self.supported is None else None

    def learn(self, cmd: c.Command[object], reply: Reply) -> None:
        """Learn from the reply to `cmd` or to its probe: BAD_FORMAT or UNKNOWN_COMMAND
        before the server ever answered otherwise means it does not know the extension."""
        if isinstance(reply.error, BadFormat | UnknownCommand) and not self.supported:
            self.supported = False
            raise ExtensionNotSupported(cmd.verb) from reply.error
        self.supported = True


class ClientCore(Generic[T]):
    """Connection-independent state and logic of one client."""

    def __init__(
        self, address: Address, serializer: Serializer[Any], *,
        tls: ssl.SSLContext | bool | None = None, server_hostname: str | None = None,
        token: str | None = None,
    ) -> None:
        self.address = check_address(address)
        self.server = server_name(self.address)
        self.serializer = serializer
        # TLS: the context, and the name the server's certificate must carry (the host given,
        # unless overridden). A UNIX socket is never TLS: the server keeps it plain.
        self.tls = tls_context(tls)
        if self.tls is not None and isinstance(self.address, str):
            raise ValueError("ssl= is for TCP servers: a UNIX socket is plain")
        if server_hostname is not None and self.tls is None:
            raise ValueError("server_hostname= needs ssl=")
        host = self.address[0] if isinstance(self.address, tuple) else ""
        self.server_hostname = server_hostname or host
        # Sent with `auth` right after connecting; never shown.
        self._token = None if token is None else c.check_token(token)
        self.codec = Codec()
        # reserve-batch support on this connection: None until the server has answered.
        self.batch_supported: bool | None = None
        # Job tracking (finish, fail, result, job-status, checkpoint, peek-checkpoint),
        # flow control (put-unique, put-after, schedule, unschedule, list-schedules,
        # tube-limits, list-tube-limits) and admin commands: extensions, each learned on
        # its own.
        self.tracking = Extension(tracking_probe)
        self.flow = Extension(flow_probe)
        # Admin commands (list-jobs, clear-tube, kick-tube, tube-info) carry no data: their
        # first use is the question.
        self.admin = Extension(no_probe)
        self.extensions = {"tracking": self.tracking, "flow": self.flow, "admin": self.admin}

    # ----------------------------------------------------------------- authentication

    def auth(self) -> c.Auth | None:
        """The `auth` command a new connection sends first, or None without a token."""
        return None if self._token is None else c.Auth(self._token)

    def authenticated(self, cmd: c.Auth, reply: Reply) -> None:
        """Check the reply to `auth`: Unauthorized for a token the server refused,
        AuthNotEnabled when the server does not know `auth` at all (going on unauthenticated
        would hide a misconfiguration: the client was asked to authenticate)."""
        if isinstance(reply.error, UnknownCommand | BadFormat):
            raise AuthNotEnabled(self.server) from reply.error
        cmd.unwrap(reply)

    # ----------------------------------------------------------------- bodies and jobs

    def encode(self, body: T) -> bytes:
        """The bytes of a job body."""
        return self.serializer.dumps(body)

    def jobs(self, raws: Sequence[RawJob]) -> list[Job[T]]:
        """Jobs with decoded bodies; DecodeError (with the raw jobs) if any body fails."""
        out: list[Job[T]] = []
        for raw in raws:
            try:
                body = self.serializer.loads(raw.body)
            except Exception as e:
                raw_jobs = [Job(r.id, r.body, self.server) for r in raws]
                bad = Job(raw.id, raw.body, self.server)
                raise DecodeError(bad, raw_jobs) from e
            out.append(Job(raw.id, body, self.server))
        return out

    def job(self, raw: RawJob) -> Job[T]:
        """One job with its decoded body."""
        return self.jobs([raw])[0]

    # ----------------------------------------------------------------- commands

    def put(self, body: T, priority: int, delay: int, ttr: int) -> c.Put:
        """The put command for one body."""
        return c.Put(priority, delay, ttr, self.encode(body))

    def put_many(
        self, items: Iterable[T | tuple[T, PutOptions]], priority: int, delay: int, ttr: int
    ) -> list[c.Put]:
        """Put commands for put_many; every body is encoded before anything is sent."""
        out: list[c.Put] = []
        for item in items:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], PutOptions):
                body, opts = item
                out.append(c.Put(opts.priority, opts.delay, opts.ttr, self.encode(body)))
            else:
                out.append(c.Put(priority, delay, ttr, self.encode(item)))  # type: ignore[arg-type]
        return out

    @staticmethod
    def delete_many(jobs: Iterable[Job[Any] | int]) -> list[c.Delete]:
        """Delete commands for delete_many."""
        return [c.Delete(job_id(j)) for j in jobs]

    @staticmethod
    def batch_results(replies: Sequence[Reply]) -> list[object]:
        """Per item: the value, or the ServerError; BatchError if any item failed."""
        results: list[object] = [r.error if r.error is not None else r.value for r in replies]
        if any(r.error is not None for r in replies):
            raise BatchError(results)
        return results

    def reserve_batch_check(self) -> None:
        """Raise ExtensionNotSupported at once if this connection already knows."""
        if self.batch_supported is False:
            raise ExtensionNotSupported("reserve-batch")

    def reserve_batch_result(self, cmd: c.ReserveBatch, reply: Reply) -> list[Job[T]]:
        """Jobs of a reserve-batch reply ([] on TIMED_OUT). BAD_FORMAT or UNKNOWN_COMMAND
        from a server that never answered reserve-batch before means it does not support it.
        """
        if isinstance(reply.error, BadFormat | UnknownCommand) and not self.batch_supported:
            self.batch_supported = False
            raise ExtensionNotSupported("reserve-batch") from reply.error
        raws = cmd.unwrap(reply)
        if reply.error is None:
            self.batch_supported = True
        return self.jobs(raws)

    # ----------------------------------------------------------------- job tracking

    def encode_data(self, value: T | None) -> bytes:
        """The bytes of a result, reason or checkpoint: encoded like a body; None is empty."""
        return b"" if value is None else self.serializer.dumps(value)

    def decode_data(self, id: int, data: bytes, what: str) -> T | None:
        """A result, reason or checkpoint of job `id`, decoded like a body. Empty data is
        None: it is what a plain delete or bury leaves, and msgpack cannot decode it."""
        if not data:
            return None
        try:
            value: T = self.serializer.loads(data)
        except Exception as e:
            raw = Job(id, data, self.server)
            raise DecodeError(raw, [raw], what) from e
        return value

    def probe(self, cmd: c.Command[object]) -> c.Command[object] | None:
        """The command to send before extension command `cmd` to learn whether the server
        knows its extension, or None; ExtensionNotSupported at once if this connection
        already knows it does not (see `Extension`)."""
        return self.extensions[cmd.extension].probe(cmd)

    def learn(self, cmd: c.Command[object], reply: Reply) -> None:
        """Learn from the reply to extension command `cmd` (or to its probe) whether the
        server knows the extension (see `Extension`)."""
        self.extensions[cmd.extension].learn(cmd, reply)

    def result(self, cmd: c.Result, reply: Reply) -> T | None:
        """The decoded result of a `result` reply; JobFailed with the decoded reason, or the
        server's error (TimedOut, NotFound)."""
        error = reply.error
        if isinstance(error, JobFailed) and reply.command is cmd:
            assert isinstance(error.reason, bytes)  # the codec's raw reason
            raise JobFailed(error.id, self.decode_data(error.id, error.reason, "reason"))
        raw = cmd.unwrap(reply)
        return self.decode_data(raw.id, raw.body, "result")

    def checkpoint(self, raw: RawJob) -> T | None:
        """The decoded checkpoint of a peek-checkpoint reply."""
        return self.decode_data(raw.id, raw.body, "checkpoint")

    # ----------------------------------------------------------------- flow control

    def put_unique(
        self, body: T, key: str, window: int, priority: int, delay: int, ttr: int
    ) -> c.PutUnique:
        """The put-unique command for one body."""
        return c.PutUnique(key, window, priority, delay, ttr, self.encode(body))

    def put_after(
        self, body: T, parents: Iterable[Job[Any] | int], priority: int, delay: int, ttr: int
    ) -> c.PutAfter:
        """The put-after command for one body: parents as distinct ids, in order."""
        ids = parent_ids([job_id(p) for p in parents])
        return c.PutAfter(ids, priority, delay, ttr, self.encode(body))

    def schedule(
        self, name: str, tube: str, body: T, spec: str, priority: int, ttr: int
    ) -> c.Schedule:
        """The schedule command: `body` is encoded like a job's."""
        return c.Schedule(name, tube, priority, ttr, spec, self.encode(body))
