"""Sans-IO command parser: bytes in through `feed`, command values out of `next_event`.

It never touches a socket or a clock, and feeding the same stream whole or one byte at a time
yields the same events, but for one marker: a `put` header whose data has not all arrived is
reported at once as PutStarted (the counters move then, as in beanstalkd), and the put's event
follows with its data. Buffering is bounded: a command line longer than LINE_MAX
(LONG_LINE_MAX for flow control's commands with data) is dropped up to its CRLF (then
BAD_FORMAT), and an oversized put body is skipped without being kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from . import BUILD, limits
from . import commands as c
from .errors import BadFormat, ExpectedCRLF, JobTooBig, ProtocolError, UnknownCommand

# Final copies of the limits: compiled, they are C statics rather than a dict lookup per use.
BATCH_MAX: Final = limits.BATCH_MAX
LINE_MAX: Final = limits.LINE_MAX
NAME_MAX: Final = limits.NAME_MAX
RESERVE_TIMEOUT_MAX: Final = limits.RESERVE_TIMEOUT_MAX
U32_MAX: Final = limits.U32_MAX
U64_MAX: Final = limits.U64_MAX
PARENTS_MAX: Final = limits.PARENTS_MAX
RATE_MAX: Final = limits.RATE_MAX
LIST_MAX: Final = limits.LIST_MAX
OFFSET_MAX: Final = limits.OFFSET_MAX
LIST_STATES: Final = limits.LIST_STATES
CLEAR_STATES: Final = limits.CLEAR_STATES

# Parser._hot reads a line byte by byte: native loops when mypyc compiled this module, but
# slower interpreted than the general path's bytes methods, so by default only compiled.
COMPILED: Final = BUILD.startswith("compiled")
# _hot takes ids up to this; larger ones, up to U64_MAX, go the general way. Compiled, all
# its comparisons then stay within mypyc's unboxed ints.
_ID_MAX: Final = (1 << 62) - 1

_NAME_CHARS: Final = bytes(sorted(limits.NAME_CHARS))
_SP: Final = 0x20
_CR: Final = 0x0D
_LF: Final = 0x0A

# beanstalkd recognises verbs by prefix, in this order. A line we cannot parse is answered
# BAD_FORMAT when beanstalkd would have matched one of these prefixes (and then failed on the
# arguments), UNKNOWN_COMMAND otherwise, so that error replies agree with the reference.
# `quit` is left out on purpose: we accept only the exact word (see protocol.md).
_BEANSTALKD_PREFIXES: Final = (
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


def _field(buf: bytes, i: int, end: int, limit: int, last: bool) -> tuple[int, int]:
    """A decimal number that starts at buf[i] and ends at one space, or at the line's CRLF
    when `last`, all before `end`; and the index after that space or CRLF. When the field is
    not like that, or the number is above `limit`, (-1, end + 1): past `end`, so every field
    read after it fails as well, and one test after the last field covers them all."""
    j = i
    value = 0
    while j < end:
        b = buf[j]
        if b < 0x30 or b > 0x39:
            break
        value = value * 10 + (b - 0x30)
        if value > limit:  # stop at once: a long number costs no more than a short one
            return -1, end + 1
        j += 1
    if j > i:  # some digits
        if last:
            if j + 1 < end and buf[j] == _CR and buf[j + 1] == _LF:
                return value, j + 2
        elif j < end and buf[j] == _SP:
            return value, j + 1
    return -1, end + 1


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


def _p_result(rest: bytes) -> c.Event:
    a, b = _numbers(rest, 2)
    return c.Result(_number(a, U64_MAX), _number(b, RESERVE_TIMEOUT_MAX))


def _p_job_status(rest: bytes) -> c.Event:
    return c.JobStatus(_one_id(rest))


def _p_peek_checkpoint(rest: bytes) -> c.Event:
    return c.PeekCheckpoint(_one_id(rest))


def _p_unschedule(rest: bytes) -> c.Event:
    return c.Unschedule(parse_name(rest))


def _p_tube_limits(rest: bytes) -> c.Event:
    tube, max_reserved, max_jobs, rate = _numbers(rest, 4)
    return c.TubeLimits(parse_name(tube), _number(max_reserved, U32_MAX),
                        _number(max_jobs, U32_MAX), _rate(rate))


def _rate(token: bytes) -> float:
    """Jobs per second: digits, optionally a point and one to six more digits."""
    whole, point, fraction = token.partition(b".")
    # At most six decimals: list-tube-limits shows six, and must show what was set.
    if not whole.isdigit() or (point and not (fraction.isdigit() and len(fraction) <= 6)):
        raise BadFormat()
    rate = float(token)
    if rate > RATE_MAX:
        raise BadFormat()
    return rate


def _p_list_jobs(rest: bytes) -> c.Event:
    tube, state, offset, limit = _numbers(rest, 4)
    count = _number(limit, LIST_MAX)
    if not count:
        raise BadFormat()
    return c.ListJobs(parse_name(tube), _state(state, LIST_STATES), _number(offset, OFFSET_MAX),
                      count)


def _p_clear_tube(rest: bytes) -> c.Event:
    tube, state = _numbers(rest, 2)
    return c.ClearTube(parse_name(tube), _state(state, CLEAR_STATES))


def _p_tube_info(rest: bytes) -> c.Event:
    return c.TubeInfo(parse_name(rest))


# An auth token: 1-200 printable ASCII characters without spaces (tokens.py makes them).
_TOKEN_CHARS: Final = bytes(range(0x21, 0x7F))


def _p_auth(rest: bytes) -> c.Event:
    if not rest or len(rest) > NAME_MAX or rest.translate(None, _TOKEN_CHARS):
        raise BadFormat()
    return c.Auth(rest.decode("ascii"))


def _p_kick_tube(rest: bytes) -> c.Event:
    tube, bound = _numbers(rest, 2)
    return c.KickTube(parse_name(tube), _number(bound, U64_MAX))


def _state(token: bytes, allowed: tuple[str, ...]) -> str:
    state = token.decode("latin-1")
    if state not in allowed:
        raise BadFormat()
    return state


# The extension commands followed by data (flow control): header -> (command without its
# body, <bytes>); and where <bytes> sits among the header's fields, to skip the data of a
# malformed header as for put.
def _h_put_unique(rest: bytes) -> tuple[c.Framed, int]:
    key, window, pri, delay, ttr, size = _numbers(rest, 6)
    return c.PutUnique(parse_name(key), _number(window, U32_MAX), _number(pri, U32_MAX),
                       _number(delay, U32_MAX), _number(ttr, U32_MAX)), _number(size, U32_MAX)


def _h_put_after(rest: bytes) -> tuple[c.Framed, int]:
    ids, pri, delay, ttr, size = _numbers(rest, 5)
    parents: dict[int, None] = {}  # distinct, in order
    for token in ids.split(b","):
        parents[_number(token, U64_MAX)] = None
    if len(parents) > PARENTS_MAX:
        raise BadFormat()
    return c.PutAfter(tuple(parents), _number(pri, U32_MAX), _number(delay, U32_MAX),
                      _number(ttr, U32_MAX)), _number(size, U32_MAX)


def _h_schedule(rest: bytes) -> tuple[c.Framed, int]:
    fields = rest.split(None, 5)
    if len(fields) != 6 or not fields[5].isascii():
        raise BadFormat()
    name, tube, pri, ttr, size, spec = fields
    return c.Schedule(parse_name(name), parse_name(tube), _number(pri, U32_MAX),
                      _number(ttr, U32_MAX), spec.decode("ascii")), _number(size, U32_MAX)


# Their lines may be longer than beanstalkd's 224 bytes: a 200-byte key or two names, or 100
# parent ids, and then the numbers.
LONG_LINE_MAX: Final = 2560
_LONG_VERBS: Final = (b"put-unique ", b"put-after ", b"schedule ")
_EXT_FRAMED: Final[dict[bytes, tuple[Callable[[bytes], tuple[c.Framed, int]], int]]] = {
    b"put-unique": (_h_put_unique, 5),
    b"put-after": (_h_put_after, 4),
    b"schedule": (_h_schedule, 4),
}


def _p_pause_tube(rest: bytes) -> c.Event:
    name, _, delay = rest.partition(b" ")
    try:
        return c.PauseTube(parse_name(name), _number(_numbers(delay, 1)[0], U32_MAX))
    except BadFormat:
        if _pause_counted(rest):
            return c.Rejected(BadFormat(), "pause-tube")
        raise


def _pause_counted(rest: bytes) -> bool:
    """Whether beanstalkd counts this refused `pause-tube` in cmd-pause-tube: it does once it
    has read a name's characters (after any spaces) and then a plain delay, before it checks
    the name's length and leading '-'."""
    words = rest.lstrip(b" ")
    tail = words.lstrip(_NAME_CHARS)
    delay = tail.lstrip(b" ")
    return len(tail) < len(words) and delay.isdigit() and int(delay) <= U32_MAX


# Verbs that take arguments (after exactly one space) ...
_WITH_ARGS: Final[dict[bytes, Callable[[bytes], c.Event]]] = {
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
    b"result": _p_result,
    b"job-status": _p_job_status,
    b"peek-checkpoint": _p_peek_checkpoint,
    b"unschedule": _p_unschedule,
    b"tube-limits": _p_tube_limits,
    b"list-jobs": _p_list_jobs,
    b"clear-tube": _p_clear_tube,
    b"kick-tube": _p_kick_tube,
    b"tube-info": _p_tube_info,
    b"auth": _p_auth,
}
# Commands followed by data (as put by its body): the kind, the fields before <bytes>.
_PUT: Final = 0
_FINISH: Final = 1
_FAIL: Final = 2
_CHECKPOINT: Final = 3
_EXT: Final = 4  # flow control's: the command waits in Parser._ext
_FRAMED: Final[dict[bytes, int]] = {b"finish": _FINISH, b"fail": _FAIL, b"checkpoint": _CHECKPOINT}
_FRAMED_VERBS: Final = ("put", "finish", "fail", "checkpoint")
_FRAMED_FIELDS: Final = (4, 2, 3, 2)  # fields in the header line, <bytes> last
# A put header read before its data: accepted (a producer from now on), or refused with its
# data being skipped (JOB_TOO_BIG, or malformed but counted).
_STARTED: Final = c.PutStarted(True)
_STARTED_REFUSED: Final = c.PutStarted(False)
# ... and those that must be the whole line. Their values are stateless, so share them.
_RESERVE: Final = c.Reserve(None)
_NO_ARGS: Final[dict[bytes, c.Event]] = {
    b"reserve": _RESERVE,
    b"peek-ready": c.PeekReady(),
    b"peek-delayed": c.PeekDelayed(),
    b"peek-buried": c.PeekBuried(),
    b"stats": c.Stats(),
    b"list-tubes": c.ListTubes(),
    b"list-tube-used": c.ListTubeUsed(),
    b"list-tubes-watched": c.ListTubesWatched(),
    b"quit": c.Quit(),
    b"list-schedules": c.ListSchedules(),
    b"list-tube-limits": c.ListTubeLimits(),
}


class Parser:
    """Incremental parser for one connection's input stream.

    `hot_path` (on where compiled) tries `_hot` on each line first; the events are the same
    either way, which the tests check both ways round.
    """

    def __init__(self, max_job_size: int, hot_path: bool = COMPILED) -> None:
        self.max_job_size = max_job_size
        self.hot_path = hot_path
        # Received bytes: _buf[_pos:] is not parsed yet. _buf is bytes, not a bytearray, so
        # that a slice of it (a line, a body) is one copy. Chunks fed while _buf still holds
        # unparsed bytes wait in _later until the parser needs them (see _gather).
        self._buf = b""
        self._pos = 0
        self._later: list[bytes] = []
        self._later_size = 0
        self._discarding = False  # inside an over-long line, dropping up to its CRLF
        self._skip = 0  # body bytes still to drop before `_after_skip` is reported
        self._after_skip: c.Rejected | None = None
        # A header awaiting its data: (kind, field, field, field, size); kind _PUT has pri,
        # delay, ttr; _FINISH and _CHECKPOINT the id; _FAIL the id and pri.
        self._put: tuple[int, int, int, int, int] | None = None
        self._ext: c.Framed | None = None  # kind _EXT: the command, waiting for its body
        self._ext_verb = ""

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos == len(self._buf) and not self._later:
            # All parsed (the usual case): the chunk becomes the buffer, uncopied if bytes.
            self._buf = bytes(data)
            self._pos = 0
        else:
            # Not `_buf[_pos:] + data`: a large body arriving in small chunks would be
            # copied again with every chunk.
            self._later.append(bytes(data))
            self._later_size += len(data)

    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf) - self._pos + self._later_size

    def next_event(self) -> c.Event | None:
        """The next complete command (or rejection), or None when more input is needed."""
        event = self._next()
        while event is None and self._gather():
            event = self._next()
        return event

    def _gather(self) -> bool:
        """Join the chunks in _later onto the unparsed tail of _buf; not while they leave an
        awaited body incomplete, so that its bytes are copied once, when the last arrives."""
        if not self._later or (
            self._put is not None and self.buffered() < self._put[4] + 2
        ):
            return False
        self._buf = b"".join([self._buf[self._pos :], *self._later])
        self._pos = 0
        self._later = []
        self._later_size = 0
        return True

    def _next(self) -> c.Event | None:
        """next_event from what _buf holds (not _later)."""
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
        if self.hot_path:
            hot = self._hot(buf, pos)
            if hot is not None:
                return hot
        end = buf.find(b"\r\n", pos, pos + LINE_MAX)
        if end < 0:
            limit = LONG_LINE_MAX if buf.startswith(_LONG_VERBS, pos) else LINE_MAX
            if limit > LINE_MAX:
                end = buf.find(b"\r\n", pos, pos + limit)
            if end < 0:
                if len(buf) - pos >= limit:
                    self._discarding = True
                    return self._discard()
                return None
        self._pos = end + 2
        return self._line(buf[pos:end])

    def _hot(self, buf: bytes, pos: int) -> c.Event | None:
        """The frequent commands in their usual form, read in place in one pass: the verb,
        one space before each argument, plain decimal numbers in range, CRLF within LINE_MAX.
        Anything else, a line not complete yet included, is None and left to the general
        path below, which also chooses every error reply, so those stay as they were."""
        end = min(len(buf), pos + LINE_MAX)  # CRLF included, a line ends before this
        i = pos
        b = 0
        while i < end:
            b = buf[i]
            if b == _SP or b == _CR:
                break
            i += 1
        if i + 1 >= end:
            return None
        verb = buf[pos:i]
        if b == _CR:
            event = _RESERVE if verb == b"reserve" else _NO_ARGS.get(verb)  # spare a hash
            if event is None or buf[i + 1] != _LF:
                return None
            self._pos = i + 2
            return event
        i += 1
        if verb == b"put":
            return self._hot_put(buf, i, end)
        if verb == b"delete":
            id, i = _field(buf, i, end, _ID_MAX, True)
            event = c.Delete(id)
        elif verb == b"reserve-with-timeout":
            timeout, i = _field(buf, i, end, RESERVE_TIMEOUT_MAX, True)
            event = c.Reserve(timeout)
        elif verb == b"reserve-batch":
            count, i = _field(buf, i, end, BATCH_MAX, False)
            timeout, i = _field(buf, i, end, RESERVE_TIMEOUT_MAX, True)
            if count == 0:
                return None
            event = c.ReserveBatch(count, timeout)
        elif verb == b"release":
            id, i = _field(buf, i, end, _ID_MAX, False)
            pri, i = _field(buf, i, end, U32_MAX, False)
            delay, i = _field(buf, i, end, U32_MAX, True)
            event = c.Release(id, pri, delay)
        elif verb == b"touch":
            id, i = _field(buf, i, end, _ID_MAX, True)
            event = c.Touch(id)
        elif verb == b"bury":
            id, i = _field(buf, i, end, _ID_MAX, False)
            pri, i = _field(buf, i, end, U32_MAX, True)
            event = c.Bury(id, pri)
        else:
            return None
        if i > end:  # a field was not good (see _field): the event is not used
            return None
        self._pos = i
        return event

    def _hot_put(self, buf: bytes, i: int, end: int) -> c.Event | None:
        """`put` with its body already in _buf; else (a body still to come, too big, ...)
        None, and `_put_header` reads the line again."""
        pri, i = _field(buf, i, end, U32_MAX, False)
        delay, i = _field(buf, i, end, U32_MAX, False)
        ttr, i = _field(buf, i, end, U32_MAX, False)
        size, i = _field(buf, i, end, U32_MAX, True)
        stop = i + size
        if i > end or size > self.max_job_size or stop + 2 > len(buf):
            return None
        self._pos = stop + 2
        if buf[stop] != _CR or buf[stop + 1] != _LF:
            return c.Rejected(ExpectedCRLF(), "put")
        return c.Put(pri, delay, ttr, buf[i:stop])

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
        kind, a, b, d, size = self._put
        buf, pos = self._buf, self._pos
        if len(buf) - pos < size + 2:
            return None
        self._put = None
        self._pos = pos + size + 2
        if buf[pos + size] != _CR or buf[pos + size + 1] != _LF:
            self._ext = None
            verb = self._ext_verb if kind == _EXT else _FRAMED_VERBS[kind]
            return c.Rejected(ExpectedCRLF(), verb)
        data = buf[pos : pos + size]
        if kind == _EXT:
            event = self._ext
            assert event is not None
            self._ext = None
            event.body = data
            return event
        if kind == _PUT:
            return c.Put(a, b, d, data)
        if kind == _FINISH:
            return c.Finish(a, data)
        if kind == _FAIL:
            return c.Fail(a, b, data)
        return c.Checkpoint(a, data)

    def _line(self, line: bytes) -> c.Event | None:
        if 0 in line:  # a NUL; not `b"\0" in line`, which raises and clears a TypeError
            return c.Rejected(BadFormat())
        verb, sp, rest = line.partition(b" ")
        if not sp:
            event = _NO_ARGS.get(verb)
            return event if event is not None else c.Rejected(_classify(line))
        if verb == b"put":
            return self._put_header(rest)
        kind = _FRAMED.get(verb)
        if kind is not None:
            return self._data_header(kind, rest)
        ext = _EXT_FRAMED.get(verb)
        if ext is not None:
            return self._ext_header(verb.decode("ascii"), ext[0], ext[1], rest)
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
        self._put = (_PUT, pri, delay, ttr, size)
        event = self._body()
        if event is None and self.buffered() < size + 2:
            return _STARTED
        return event  # or None: the data is here, in chunks that next_event joins

    def _data_header(self, kind: int, rest: bytes) -> c.Event | None:
        """finish, fail, checkpoint: like put's header, the data skipped when refused."""
        verb = _FRAMED_VERBS[kind]
        count = _FRAMED_FIELDS[kind]
        try:
            tokens = _numbers(rest, count)
            id = _number(tokens[0], U64_MAX)
            pri = _number(tokens[1], U32_MAX) if kind == _FAIL else 0
            size = _number(tokens[-1], U32_MAX)
        except BadFormat:
            # As for put: when the line has its fields and the last is a size, skip the data
            # so that one bad line costs one reply and the stream stays in sync.
            tokens = [t for t in rest.split(b" ") if t]
            if len(tokens) == count and tokens[-1].isdigit() and int(tokens[-1]) <= U32_MAX:
                return self._skip_body(int(tokens[-1]), c.Rejected(BadFormat()))
            return c.Rejected(BadFormat())
        if size > self.max_job_size:
            return self._skip_body(size, c.Rejected(JobTooBig(), verb))
        self._put = (kind, id, pri, 0, size)
        return self._body()

    def _ext_header(self, verb: str, parse: Callable[[bytes], tuple[c.Framed, int]],
                    size_at: int, rest: bytes) -> c.Event | None:
        try:
            event, size = parse(rest)
        except BadFormat:
            tokens = rest.split()
            if len(tokens) > size_at and tokens[size_at].isdigit() and (
                    int(tokens[size_at]) <= U32_MAX):
                return self._skip_body(int(tokens[size_at]), c.Rejected(BadFormat()))
            return c.Rejected(BadFormat())
        if size > self.max_job_size:
            return self._skip_body(size, c.Rejected(JobTooBig(), verb))
        self._ext = event
        self._ext_verb = verb
        self._put = (_EXT, 0, 0, 0, size)
        return self._body()

    def _bad_put_header(self, rest: bytes) -> c.Event | None:
        # As beanstalkd, which reads the four numbers with strtoul: a header whose first
        # three fields are numbers and whose fourth starts with one counts as a put, and is
        # judged on that size first (JOB_TOO_BIG, data skipped) before anything after it
        # (BAD_FORMAT). Stricter than beanstalkd, when the size field is a plain number the
        # data of acceptable size is skipped too, so a malformed header costs one reply and
        # the stream stays in sync; `put 0 0 1 5x` skips nothing, as in beanstalkd.
        tokens = [t for t in rest.split(b" ") if t]
        if len(tokens) < 4:
            return c.Rejected(BadFormat())
        field = tokens[3]
        digits = len(field) - len(field.lstrip(b"0123456789"))
        if not digits:
            return c.Rejected(BadFormat())
        size = int(field[:digits])
        counted = size <= U32_MAX and all(
            t.isdigit() and int(t) <= U32_MAX for t in tokens[:3])
        if size > self.max_job_size:
            if counted:
                return self._skip_body(size, c.Rejected(JobTooBig(), "put"))
            return c.Rejected(BadFormat())
        rejected = c.Rejected(BadFormat(), "put" if counted else None)
        if digits < len(field):  # garbage glued to the size
            return rejected
        return self._skip_body(size, rejected)

    def _skip_body(self, size: int, then: c.Rejected) -> c.Event | None:
        self._skip = size + 2
        self._after_skip = then
        event = self.next_event()
        if event is None and then.verb == "put":
            return _STARTED_REFUSED  # counted now; `then` follows the skipped data
        return event
