"""The load generator's protocol bits, with no I/O: command bytes, reply counting, reply scanning.

Kept pure so tests can feed them chunks split anywhere; the generator's hot loop calls only
these, and each does C-speed `bytes` work per received chunk rather than Python work per byte.
"""

from __future__ import annotations

from array import array

TUBE = b"bench"
PRI, DELAY, TTR = 100, 0, 600
STAMP_DIGITS = 20  # a timed body starts with time.monotonic_ns() in 20 decimal digits


def put_command(body: bytes) -> bytes:
    return b"put %d %d %d %d\r\n%b\r\n" % (PRI, DELAY, TTR, len(body), body)


def plain_body(size: int) -> bytes:
    return b"x" * size


class StampedPut:
    """Puts whose body carries the monotonic clock at the moment they are sent, for
    put-to-reserve latency (CLOCK_MONOTONIC is system-wide on Linux, so any process may read
    it back)."""

    __slots__ = ("_head", "_tail")

    def __init__(self, body_size: int) -> None:
        if body_size < STAMP_DIGITS:
            raise ValueError(f"a timed body needs at least {STAMP_DIGITS} bytes")
        self._head = b"put %d %d %d %d\r\n" % (PRI, DELAY, TTR, body_size)
        self._tail = b"x" * (body_size - STAMP_DIGITS) + b"\r\n"

    def commands(self, count: int, now_ns: int) -> bytes:
        """`count` puts stamped `now_ns`, as one buffer for one send."""
        return (self._head + b"%020d" % now_ns + self._tail) * count


class LineCounter:
    """Counts CRLF-terminated reply lines across chunks, whatever the split: put replies are
    one line each (`INSERTED <id>`), so counting lines counts replies."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False  # the previous chunk ended in b"\r"

    def feed(self, data: bytes) -> int:
        n = data.count(b"\r\n")
        if self._cr and data[:1] == b"\n":
            n += 1
        self._cr = data[-1:] == b"\r"
        return n


class Replies:
    """What one chunk completed, in order of arrival. `ids` are the reserved jobs' ids (as
    bytes, ready for `delete`), `stamps` their bodies' clocks when the scanner reads them."""

    __slots__ = ("batch_headers", "batch_jobs", "deleted", "ids", "other", "other_first",
                 "stamps", "timed_out")

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.stamps = array("q")
        self.deleted = 0
        self.timed_out = 0  # TIMED_OUT and DEADLINE_SOON: "no job for you now"
        self.batch_headers = 0  # RESERVED-BATCH lines
        self.batch_jobs = 0  # the job counts those lines announced
        self.other = 0  # anything else: errors
        self.other_first = b""

    @property
    def lines(self) -> int:
        """Single-line replies and RESERVED frames completed (batch headers not counted)."""
        return len(self.ids) + self.deleted + self.timed_out + self.other


class ReplyScanner:
    """Splits a reply stream into RESERVED frames (with bodies), RESERVED-BATCH headers,
    DELETED, TIMED_OUT and other lines. Incomplete frames wait for the next chunk."""

    __slots__ = ("_buf", "_stamps")

    def __init__(self, stamps: bool = False) -> None:
        self._buf = b""
        self._stamps = stamps

    @property
    def pending(self) -> int:
        """Bytes held back for an incomplete reply."""
        return len(self._buf)

    def feed(self, data: bytes) -> Replies:
        buf = self._buf + data if self._buf else data
        out = Replies()
        pos, size = 0, len(buf)
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            space = buf.find(b" ", pos + 9, eol) if buf.startswith(b"RESERVED ", pos) else -1
            if space > 0:
                end = eol + 4 + int(buf[space + 1 : eol])  # line, body, CRLF
                if end > size:
                    break
                out.ids.append(buf[pos + 9 : space])
                if self._stamps:
                    out.stamps.append(int(buf[eol + 2 : eol + 2 + STAMP_DIGITS]))
                pos = end
                continue
            if buf.startswith(b"DELETED", pos):
                out.deleted += 1
            elif buf.startswith(b"TIMED_OUT", pos) or buf.startswith(b"DEADLINE_SOON", pos):
                out.timed_out += 1
            elif buf.startswith(b"RESERVED-BATCH ", pos):
                out.batch_headers += 1
                out.batch_jobs += int(buf[pos + 15 : eol])
            else:
                if not out.other:
                    out.other_first = buf[pos:eol]
                out.other += 1
            pos = eol + 2
        self._buf = buf[pos:]
        return out


def delete_commands(ids: list[bytes]) -> bytes:
    return b"".join([b"delete " + i + b"\r\n" for i in ids])
