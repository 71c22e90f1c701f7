"""The pipes a child talks to the harness through besides its output: checkpoints, and for
``--call`` its outcome (the return value, or the traceback of what it raised).

Theory of operation. Where the server has job tracking, every child gets the write end of a
*checkpoint pipe*; a command finds its number in ``TUBEWORKER_CHECKPOINT_FD``, a ``--call``
function writes through ``job.checkpoint(data)``. Each record is framed as its length in
ASCII decimal, a newline, then exactly that many bytes (``5\\nhello``): binary-safe, and a
shell can write it (``printf '%s\\n%s' "${#s}" "$s" >>"/dev/fd/$TUBEWORKER_CHECKPOINT_FD"``
for an ASCII ``$s``; the descriptor is a pipe the harness opened, usually above 9, which
dash's ``>&N`` cannot name). `Records` parses the stream (sans-IO); `forward_checkpoints`
sends each record as ``checkpoint`` while the child runs. A record arriving while one is
being sent replaces any other waiting one: only the newest checkpoint matters, so a child
that writes faster than the server answers never queues up. Garbage (a header that is not
a number, or a record longer than `MAX_RECORD`) ends the parsing with a `ChannelError`; the
rest is read and dropped so the child never blocks on a full pipe.

A ``--call`` child also gets an *outcome pipe*: at its end it writes one msgpack map,
``{"result": bytes}`` (its return value, msgpack-encoded, empty for None) or
``{"error": str}`` (the traceback it printed), read whole by `read_outcome`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import attrs
import trio

from .callee import unpack

#: The longest record or outcome the harness reads (tubeserver's max job size, -z, is far
#: below it by default; the server answers JOB_TOO_BIG to what it will not keep).
MAX_RECORD = 1 << 24
_MAX_HEADER = len(str(MAX_RECORD)) + 1


class ChannelError(Exception):
    """A child wrote something that is not a framed record."""


def _bad(header: bytes | bytearray) -> str:
    return (f"bad checkpoint header {bytes(header)!r}: expected a length of at most "
            f"{MAX_RECORD} in decimal, then a newline")


class Records:
    """Sans-IO parser of ``<length>\\n<bytes>`` records: `feed` bytes, get whole records."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # bytes of the current record's data, -1 while reading its header

    def feed(self, data: bytes) -> list[bytes]:
        """The records `data` completes, in order; ChannelError on garbage."""
        self._buf += data
        out: list[bytes] = []
        while True:  # one record per pass; each pass consumes bytes or returns
            if self._need < 0:
                end = self._buf.find(b"\n", 0, _MAX_HEADER)
                if end < 0:
                    if len(self._buf) >= _MAX_HEADER:
                        raise ChannelError(_bad(self._buf[:_MAX_HEADER]))
                    return out
                header = bytes(self._buf[:end])
                if not header.isdigit() or int(header) > MAX_RECORD:
                    raise ChannelError(_bad(header))
                self._need = int(header)
                del self._buf[: end + 1]
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = -1

    @property
    def pending(self) -> bool:
        """True when a record was started and not finished."""
        return self._need >= 0 or bool(self._buf)


@attrs.define(eq=False)
class Pipe:
    """One pipe from a child to the harness: the harness reads `stream`; `child_fd` goes to
    the child and is closed here once the child has it (`release_child_end`)."""

    stream: trio.lowlevel.FdStream
    child_fd: int

    @classmethod
    def open(cls) -> Pipe:
        r, w = os.pipe()
        return cls(trio.lowlevel.FdStream(r), w)

    def release_child_end(self) -> None:
        """Close the harness's copy of the child's end, so the child's exit is an EOF."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1


async def _receive(stream: trio.abc.ReceiveStream) -> bytes:
    """The next chunk; b"" at EOF or on a broken pipe."""
    try:
        return bytes(await stream.receive_some(65536))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return b""


async def forward_checkpoints(
    stream: trio.abc.ReceiveStream,
    send: Callable[[bytes], Awaitable[None]],
    garbage: Callable[[str], None],
) -> None:
    """Read records until EOF and `send` each (the newest waiting one whenever a send ends);
    `garbage` is told once if the child breaks the framing."""
    records = Records()
    newest: list[bytes] = []
    sending = False
    broken = False

    async def sender() -> None:
        nonlocal sending
        while newest:  # at most one waiting record: each pass sends it
            data = newest.pop()
            await send(data)
        sending = False

    async with trio.open_nursery() as nursery:
        while chunk := await _receive(stream):  # ends at EOF; the child's exit closes it
            if broken:
                continue
            try:
                got = records.feed(chunk)
            except ChannelError as e:
                broken = True
                garbage(str(e))
                continue
            if got:
                newest[:] = got[-1:]
                if not sending:
                    sending = True
                    nursery.start_soon(sender)
        if records.pending and not broken:
            garbage("the last checkpoint record was cut short")


@attrs.frozen
class Outcome:
    """What a --call child said at its end: its encoded return value or its traceback."""

    result: bytes | None = None
    error: str | None = None


async def read_outcome(stream: trio.abc.ReceiveStream) -> Outcome:
    """The outcome a --call child wrote (an empty Outcome when it died before writing)."""
    data = bytearray()
    while chunk := await _receive(stream):  # ends at EOF, or at MAX_RECORD
        data += chunk
        if len(data) > MAX_RECORD:
            return Outcome(error=f"the return value is larger than {MAX_RECORD} bytes")
    if not data:
        return Outcome()
    try:
        message = unpack(bytes(data))
        result, error = message.get("result"), message.get("error")
    except Exception:
        return Outcome(error="the child's outcome was garbled")
    return Outcome(result if isinstance(result, bytes) else None,
                   error if isinstance(error, str) else None)


__all__ = ["MAX_RECORD", "ChannelError", "Outcome", "Pipe", "Records",
           "forward_checkpoints", "read_outcome"]
