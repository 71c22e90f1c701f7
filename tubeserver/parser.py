"""Sans-IO command parser: bytes in through `feed`, command values out of `next_event`.

It never touches a socket or a clock, and feeding the same stream whole or one byte at a time
yields the same events. Buffering is bounded: a command line longer than LINE_MAX is dropped
up to its CRLF (then BAD_FORMAT), and an oversized put body is skipped without being kept.
"""

from __future__ import annotations

from collections.abc import Callable

from . import commands as c
from .errors import BadFormat, ExpectedCRLF, JobTooBig, ProtocolError, UnknownCommand
from .limits import (
    BATCH_MAX,
    LINE_MAX,
    NAME_CHARS,
    NAME_MAX,
    RESERVE_TIMEOUT_MAX,
    U32_MAX,
    U64_MAX,
)

_NAME_CHARS = bytes(sorted(NAME_CHARS))

# beanstalkd recognises verbs by prefix, in this order. A line we cannot parse is answered
# BAD_FORMAT when beanstalkd would have matched one of these prefixes (and then failed on the
# arguments), UNKNOWN_COMMAND otherwise, so that error replies agree with the reference.
# `quit` is left out on purpose: we accept only the exact word (see protocol.md).
_BEANSTALKD_PREFIXES = (
    b"put ", b"peek ", b"peek-ready", b"peek-delayed", b"peek-buried",
    b"reserve-with-timeout ", b"reserve-job ", b"reserve", b"delete ", b"release ",
    b"bury ", b"kick ", b"kick-job ", b"touch ", b"stats-job ", b"stats-tube ", b"stats",
    b"use ", b"watch ", b"ignore ", b"list-tubes-watched", b"list-tube-used", b"list-tubes",
    b"pause-tube",
)


def _classify(line: bytes) -> ProtocolError:
    if line.startswith(_BEANSTALKD_PREFIXES):
        return BadFormat()
    return UnknownCommand()


def parse_name(raw: bytes) -> str:
    """A tube name: 1-200 bytes from the allowed set, not starting with '-'."""
    if not raw or len(raw) > NAME_MAX or raw[0] == 0x2D or raw.translate(None, _NAME_CHARS):
        raise BadFormat()
    return raw.decode("ascii")


def _number(token: bytes, limit: int) -> int:
    if not token.isdigit():
        raise BadFormat()
    value = int(token)
    if value > limit:
        raise BadFormat()
    return value


def _numbers(rest: bytes, count: int) -> list[bytes]:
    """Split numeric arguments: extra spaces between or before them are fine (as in
    beanstalkd), a trailing space or a missing/extra argument is not."""
    parts = rest.split(b" ")
    if parts[-1] == b"":
        raise BadFormat()
    tokens = [p for p in parts if p]
    if len(tokens) != count:
        raise BadFormat()
    return tokens


def _one_id(rest: bytes) -> int:
    return _number(_numbers(rest, 1)[0], U64_MAX)


def _p_use(rest: bytes) -> c.Event:
    return c.Use(parse_name(rest))


def _p_watch(rest: bytes) -> c.Event:
    return c.Watch(parse_name(rest))


def _p_ignore(rest: bytes) -> c.Event:
    return c.Ignore(parse_name(rest))


def _p_stats_tube(rest: bytes) -> c.Event:
    return c.StatsTube(parse_name(rest))


def _p_reserve_with_timeout(rest: bytes) -> c.Event:
    return c.Reserve(_number(_numbers(rest, 1)[0], RESERVE_TIMEOUT_MAX))


def _p_reserve_batch(rest: bytes) -> c.Event:
    count, timeout = _numbers(rest, 2)
    n = _number(count, BATCH_MAX)
    if n == 0:
        raise BadFormat()
    return c.ReserveBatch(n, _number(timeout, RESERVE_TIMEOUT_MAX))


def _p_reserve_job(rest: bytes) -> c.Event:
    return c.ReserveJob(_one_id(rest))


def _p_delete(rest: bytes) -> c.Event:
    return c.Delete(_one_id(rest))


def _p_release(rest: bytes) -> c.Event:
    a, b, d = _numbers(rest, 3)
    return c.Release(_number(a, U64_MAX), _number(b, U32_MAX), _number(d, U32_MAX))


def _p_bury(rest: bytes) -> c.Event:
    a, b = _numbers(rest, 2)
    return c.Bury(_number(a, U64_MAX), _number(b, U32_MAX))


def _p_touch(rest: bytes) -> c.Event:
    return c.Touch(_one_id(rest))


def _p_peek(rest: bytes) -> c.Event:
    return c.Peek(_one_id(rest))


def _p_kick(rest: bytes) -> c.Event:
    return c.Kick(_number(_numbers(rest, 1)[0], U64_MAX))


def _p_kick_job(rest: bytes) -> c.Event:
    return c.KickJob(_one_id(rest))


def _p_stats_job(rest: bytes) -> c.Event:
    return c.StatsJob(_one_id(rest))


def _p_pause_tube(rest: bytes) -> c.Event:
    name, _, delay = rest.partition(b" ")
    return c.PauseTube(parse_name(name), _number(_numbers(delay, 1)[0], U32_MAX))


# Verbs that take arguments (after exactly one space) ...
_WITH_ARGS: dict[bytes, Callable[[bytes], c.Event]] = {
    b"use": _p_use,
    b"watch": _p_watch,
    b"ignore": _p_ignore,
    b"reserve-with-timeout": _p_reserve_with_timeout,
    b"reserve-job": _p_reserve_job,
    b"reserve-batch": _p_reserve_batch,
    b"delete": _p_delete,
    b"release": _p_release,
    b"bury": _p_bury,
    b"touch": _p_touch,
    b"peek": _p_peek,
    b"kick": _p_kick,
    b"kick-job": _p_kick_job,
    b"stats-job": _p_stats_job,
    b"stats-tube": _p_stats_tube,
    b"pause-tube": _p_pause_tube,
}
# ... and those that must be the whole line. Their values are stateless, so share them.
_NO_ARGS: dict[bytes, c.Event] = {
    b"reserve": c.Reserve(None),
    b"peek-ready": c.PeekReady(),
    b"peek-delayed": c.PeekDelayed(),
    b"peek-buried": c.PeekBuried(),
    b"stats": c.Stats(),
    b"list-tubes": c.ListTubes(),
    b"list-tube-used": c.ListTubeUsed(),
    b"list-tubes-watched": c.ListTubesWatched(),
    b"quit": c.Quit(),
}


class Parser:
    """Incremental parser for one connection's input stream."""

    def __init__(self, max_job_size: int) -> None:
        self.max_job_size = max_job_size
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed
        self._discarding = False  # inside an over-long line, dropping up to its CRLF
        self._skip = 0  # body bytes still to drop before `_after_skip` is reported
        self._after_skip: c.Rejected | None = None
        self._put: tuple[int, int, int, int] | None = None  # header awaiting its body

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos

    def next_event(self) -> c.Event | None:
        """The next complete command (or rejection), or None when more input is needed."""
        buf = self._buf
        if self._skip:
            take = min(self._skip, len(buf) - self._pos)
            self._pos += take
            self._skip -= take
            if self._skip:
                return None
            event, self._after_skip = self._after_skip, None
            assert event is not None
            return event
        if self._put is not None:
            return self._body()
        if self._discarding:
            return self._discard()
        pos = self._pos
        end = buf.find(b"\r\n", pos, pos + LINE_MAX)
        if end < 0:
            if len(buf) - pos >= LINE_MAX:
                self._discarding = True
                return self._discard()
            return None
        line = bytes(buf[pos:end])
        self._pos = end + 2
        return self._line(line)

    def _discard(self) -> c.Event | None:
        buf = self._buf
        end = buf.find(b"\r\n", self._pos)
        if end < 0:
            # Keep a trailing CR: its LF may arrive in the next chunk.
            self._pos = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            return None
        self._pos = end + 2
        self._discarding = False
        return c.Rejected(BadFormat())

    def _body(self) -> c.Event | None:
        assert self._put is not None
        pri, delay, ttr, size = self._put
        buf, pos = self._buf, self._pos
        if len(buf) - pos < size + 2:
            return None
        self._put = None
        self._pos = pos + size + 2
        if buf[pos + size : pos + size + 2] != b"\r\n":
            return c.Rejected(ExpectedCRLF(), "put")
        return c.Put(pri, delay, ttr, bytes(buf[pos : pos + size]))

    def _line(self, line: bytes) -> c.Event | None:
        if b"\0" in line:
            return c.Rejected(BadFormat())
        verb, sp, rest = line.partition(b" ")
        if not sp:
            event = _NO_ARGS.get(verb)
            return event if event is not None else c.Rejected(_classify(line))
        if verb == b"put":
            return self._put_header(rest)
        parse = _WITH_ARGS.get(verb)
        if parse is None:
            return c.Rejected(_classify(line))
        try:
            return parse(rest)
        except ProtocolError as e:
            return c.Rejected(e)

    def _put_header(self, rest: bytes) -> c.Event | None:
        try:
            p, d, t, s = _numbers(rest, 4)
            pri, delay, ttr = _number(p, U32_MAX), _number(d, U32_MAX), _number(t, U32_MAX)
            size = _number(s, U32_MAX)
        except BadFormat:
            return self._bad_put_header(rest)
        if size > self.max_job_size:
            return self._skip_body(size, c.Rejected(JobTooBig(), "put"))
        self._put = (pri, delay, ttr, size)
        return self._body()

    def _bad_put_header(self, rest: bytes) -> c.Event | None:
        # When the size field is readable, the body that follows is skipped, so a malformed
        # header costs one reply and the stream stays in sync. As in beanstalkd, a header
        # whose four numbers parse is judged on its size first (JOB_TOO_BIG) and counts as a
        # put; stricter than beanstalkd, a body of acceptable size is skipped too.
        tokens = [t for t in rest.split(b" ") if t]
        if len(tokens) < 4 or not tokens[3].isdigit():
            return c.Rejected(BadFormat())
        size = int(tokens[3])
        counted = _all_u32(tokens[:4])
        if size > self.max_job_size:
            if counted:
                return self._skip_body(size, c.Rejected(JobTooBig(), "put"))
            return c.Rejected(BadFormat())
        return self._skip_body(size, c.Rejected(BadFormat(), "put" if counted else None))

    def _skip_body(self, size: int, then: c.Rejected) -> c.Event | None:
        self._skip = size + 2
        self._after_skip = then
        return self.next_event()


def _all_u32(tokens: list[bytes]) -> bool:
    return all(t.isdigit() and int(t) <= U32_MAX for t in tokens)
