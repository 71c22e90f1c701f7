"""The one tree of protocol errors; each leaf carries the exact reply line it becomes.

The engine and parser raise these; the dispatcher turns any of them into bytes in one place.
"""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Base of every error a client can be told about; `reply` is the wire line."""

    reply: ClassVar[bytes] = b"INTERNAL_ERROR\r\n"

    # Errors are values on the wire: two of the same kind are the same error.
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == getattr(other, "args", None)

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class BadFormat(ProtocolError):
    reply = b"BAD_FORMAT\r\n"


class UnknownCommand(ProtocolError):
    reply = b"UNKNOWN_COMMAND\r\n"


class ExpectedCRLF(ProtocolError):
    reply = b"EXPECTED_CRLF\r\n"


class JobTooBig(ProtocolError):
    reply = b"JOB_TOO_BIG\r\n"


class NotFound(ProtocolError):
    reply = b"NOT_FOUND\r\n"


class NotIgnored(ProtocolError):
    reply = b"NOT_IGNORED\r\n"


class Draining(ProtocolError):
    reply = b"DRAINING\r\n"


class DeadlineSoon(ProtocolError):
    reply = b"DEADLINE_SOON\r\n"


class TimedOut(ProtocolError):
    reply = b"TIMED_OUT\r\n"


class OutOfMemory(ProtocolError):
    reply = b"OUT_OF_MEMORY\r\n"


class InternalError(ProtocolError):
    reply = b"INTERNAL_ERROR\r\n"


class TubeFull(ProtocolError):
    """A put into a tube holding its `tube-limits` max-jobs (only ever with limits set)."""

    reply = b"TUBE_FULL\r\n"


class Unauthorized(ProtocolError):
    """A command the session's token does not allow, or a failed `auth` (only ever with an
    auth file)."""

    reply = b"UNAUTHORIZED\r\n"
