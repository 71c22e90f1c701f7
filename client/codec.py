"""Sans-IO client side of the protocol: commands -> bytes, bytes -> replies, pipelining aware.

Theory of operation. `send(*commands)` returns the bytes to write and appends each command to
a FIFO of replies owed. The I/O layer writes those bytes, then feeds whatever it reads to
`receive_data` and calls `next_reply()` until it returns a `Reply` (or `NEED_DATA`, meaning
"read more"). Replies come back in command order, so the head of the FIFO says how to read the
next one: which success word to expect, whether a body follows, and for `reserve-batch` how
many job frames. Feeding the same bytes whole or one at a time gives the same replies.

Server error lines (NOT_FOUND, TIMED_OUT, ...) are ordinary replies: `Reply.error` holds the
exception and the stream stays in sync; so is `FAILED <id> <bytes>` + reason, the tracking
extension's answer to `result` for a failed job (a JobFailed holding the raw reason).
`DUPLICATE <id>`, flow control's answer to `put-unique` for a key already held, is a success
(a `Unique` with `new` False), as INSERTED is (`new` True). Anything else that does not fit
(unknown word, wrong argument count, a bad number, a body without its CRLF, an over-long
line, a malformed YAML payload, bytes arriving with no command outstanding) raises
`UnexpectedReply`, and from then on the codec is broken: every call raises again, and the
I/O layer must close the connection. Nothing else is ever raised for bad input. Memory is
bounded: a line may be at most MAX_LINE bytes and a body at most `max_body` bytes; a body is
kept only once, when complete.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final, Literal, NoReturn

import attrs

from . import stats
from .commands import Command, ReserveBatch, Shape
from .errors import (
    SERVER_ERRORS,
    Buried,
    JobFailed,
    ServerError,
    TooManyConnections,
    UnexpectedReply,
)
from .flow import Unique
from .job import NAME_CHARS, NAME_MAX, U64_MAX

# A reply line, CRLF included, longer than this is garbage (the longest real one is
# `USING <200-byte name>`).
MAX_LINE: Final = 1024
# beanstalkd and tubeserver cap max-job-size at 1 GiB; stats payloads are tiny.
DEFAULT_MAX_BODY: Final = 1 << 30
_MAX_DIGITS: Final = 20
_PRINTABLE: Final = bytes(range(0x20, 0x7F))


class NeedData(enum.Enum):
    """Sentinel type of NEED_DATA."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@attrs.frozen
class RawJob:
    """A job frame as read from the wire (the client turns it into a `Job`)."""

    id: int
    body: bytes


@attrs.frozen
class Reply:
    """The reply to `command`: its value, or the server's error line as `error`."""

    command: Command[object]
    value: object = None
    error: ServerError | None = None


class _Violation(Exception):
    pass


def _number(token: bytes, limit: int = U64_MAX) -> int:
    if not token or len(token) > _MAX_DIGITS or not token.isdigit():
        raise _Violation(f"not a number: {token!r}")
    value = int(token)
    if value > limit:
        raise _Violation(f"number out of range: {token!r}")
    return value


def _name(token: bytes) -> str:
    text = token.decode("ascii")  # the line was checked to be printable ASCII
    if not 1 <= len(text) <= NAME_MAX or text[0] == "-" or not NAME_CHARS.issuperset(text):
        raise _Violation(f"not a tube name: {token!r}")
    return text


class Codec:
    """One connection's protocol state: the replies owed and the bytes received so far."""

    def __init__(self, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.max_body = max_body
        self._pending: deque[Command[object]] = deque()
        self._buf = bytearray()
        self._pos = 0
        self._broken: str | None = None
        # Reply in progress: a body of this size is awaited (for a job frame or YAML) ...
        self._body_size: int | None = None
        self._frame_id = 0
        # ... the body is the reason of a FAILED reply to `result` ...
        self._failed = False
        # ... and, inside a RESERVED-BATCH, the frames still to come and those read.
        self._batch_left = 0
        self._batch: list[RawJob] = []

    # ------------------------------------------------------------------ sending

    def send(self, *commands: Command[object]) -> bytes:
        """The bytes for `commands`, in order; their replies are now owed (except quit's)."""
        if self._broken is not None:
            raise UnexpectedReply(self._broken)
        data = b"".join(c.encode() for c in commands)
        self._pending.extend(c for c in commands if c.shape is not Shape.NO_REPLY)
        return data

    @property
    def pending(self) -> int:
        """How many replies are owed."""
        return len(self._pending)

    @property
    def broken(self) -> str | None:
        """Why the stream is unusable, or None while it is in sync."""
        return self._broken

    def buffered(self) -> int:
        """Bytes received but not yet turned into replies."""
        return len(self._buf) - self._pos

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the connection."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_reply(self) -> Reply | Literal[NeedData.NEED_DATA]:
        """The next complete reply, or NEED_DATA. Raises UnexpectedReply on a protocol
        violation (and on every later call), RuntimeError if no reply is owed and no data is
        buffered (a caller bug: waiting would block forever)."""
        if self._broken is not None:
            raise UnexpectedReply(self._broken)
        if not self._pending:
            if self.buffered():
                self._fail(f"data with no command outstanding: {self._peek_text()}")
            raise RuntimeError("no reply is owed: send a command first")
        command = self._pending[0]
        try:
            while True:
                if self._body_size is not None:
                    body = self._take_body(self._body_size)
                    if body is None:
                        return NEED_DATA
                    self._body_size = None
                    reply = self._on_body(command, body)
                else:
                    line = self._take_line()
                    if line is None:
                        return NEED_DATA
                    reply = self._on_line(command, line)
                if reply is not None:
                    self._pending.popleft()
                    return reply
        except _Violation as e:
            self._fail(f"{e} (in reply to {command.verb!r})")

    def _fail(self, why: str) -> NoReturn:
        self._broken = why
        raise UnexpectedReply(why)

    def _peek_text(self) -> str:
        return repr(bytes(self._buf[self._pos : self._pos + 40]))

    def _take_line(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos, pos + MAX_LINE)
        if end < 0:
            if len(buf) - pos >= MAX_LINE:
                raise _Violation(f"reply line longer than {MAX_LINE} bytes")
            return None
        line = bytes(buf[pos:end])
        self._pos = end + 2
        if line.translate(None, _PRINTABLE):
            raise _Violation(f"reply line is not printable ASCII: {line[:60]!r}")
        return line

    def _take_body(self, size: int) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise _Violation("body not followed by CRLF")
        self._pos = pos + size + 2
        return bytes(buf[pos : pos + size])

    def _expect_body(self, token: bytes) -> None:
        size = _number(token)
        if size > self.max_body:
            raise _Violation(f"body of {size} bytes is above the limit of {self.max_body}")
        self._body_size = size

    def _on_line(self, command: Command[object], line: bytes) -> Reply | None:
        word, *args = line.split(b" ")
        if self._batch_left:
            if word != b"RESERVED" or len(args) != 2:
                raise _Violation(f"expected a RESERVED frame in a batch, got {line[:60]!r}")
            self._frame_id = _number(args[0])
            self._expect_body(args[1])
            return None
        if word == command.ok:
            return self._on_success(command, args)
        error = SERVER_ERRORS.get(word)
        if error is not None and not args:
            return Reply(command, error=error())
        if word == TooManyConnections.reply and not args:
            # Sent at accept, before any reply, and then the connection is closed.
            self._broken = "the server refused the connection: TOO_MANY_CONNECTIONS"
            raise TooManyConnections(self._broken)
        if word == b"BURIED" and command.verb == "put" and len(args) == 1:
            return Reply(command, error=Buried(_number(args[0])))
        if word == b"BURIED" and command.verb == "release" and not args:
            return Reply(command, error=Buried(None))
        if word == b"DUPLICATE" and command.shape is Shape.UNIQUE and len(args) == 1:
            return Reply(command, Unique(_number(args[0]), new=False))
        if word == b"FAILED" and command.verb == "result" and len(args) == 2:
            self._frame_id = _number(args[0])
            self._expect_body(args[1])
            self._failed = True
            return None
        raise _Violation(f"unexpected reply {line[:60]!r}")

    def _on_success(self, command: Command[object], args: list[bytes]) -> Reply | None:
        shape = command.shape
        if shape is Shape.NONE:
            if args:
                raise _Violation(f"{command.ok!r} takes no arguments")
            return Reply(command)
        if shape is Shape.JOB:
            if len(args) != 2:
                raise _Violation(f"{command.ok!r} needs <id> <bytes>")
            self._frame_id = _number(args[0])
            self._expect_body(args[1])
            return None
        if len(args) != 1:
            raise _Violation(f"{command.ok!r} needs exactly one argument")
        (arg,) = args
        if shape is Shape.ID or shape is Shape.COUNT:
            return Reply(command, _number(arg))
        if shape is Shape.UNIQUE:
            return Reply(command, Unique(_number(arg), new=True))
        if shape is Shape.NAME:
            return Reply(command, _name(arg))
        if shape is Shape.MAPPING or shape is Shape.LIST or shape is Shape.PAYLOAD:
            self._expect_body(arg)
            return None
        if shape is Shape.BATCH:
            assert isinstance(command, ReserveBatch)
            n = _number(arg)
            if not 1 <= n <= command.count:
                raise _Violation(f"RESERVED-BATCH {n} for a batch of at most {command.count}")
            self._batch_left = n
            self._batch = []
            return None
        raise _Violation(f"no reply expected for {command.verb!r}")  # pragma: no cover

    def _on_body(self, command: Command[object], body: bytes) -> Reply | None:
        shape = command.shape
        if self._failed:
            self._failed = False
            return Reply(command, error=JobFailed(self._frame_id, body))
        if shape is Shape.JOB:
            return Reply(command, RawJob(self._frame_id, body))
        if shape is Shape.BATCH:
            self._batch.append(RawJob(self._frame_id, body))
            self._batch_left -= 1
            if self._batch_left:
                return None
            jobs, self._batch = self._batch, []
            return Reply(command, jobs)
        try:
            if shape is Shape.MAPPING:
                return Reply(command, stats.parse_mapping(body, command.verb))
            if shape is Shape.PAYLOAD:
                return Reply(command, command.read(body))
            return Reply(command, stats.parse_list(body))
        except stats.StatsFormatError as e:
            raise _Violation(f"bad YAML payload: {e}") from None
