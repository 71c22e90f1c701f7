"""Tests for the sans-IO command parser: every verb's valid and invalid forms, framing, bounds.

Table tests pin BAD_FORMAT vs UNKNOWN_COMMAND to beanstalkd's prefix table (plus tubeserver's
decided strictness); hypothesis checks chunking invariance, garbage robustness and recovery.
The encoder below is written here on purpose, independent of any client library.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tubeserver import commands as c
from tubeserver.errors import (
    BadFormat,
    ExpectedCRLF,
    JobTooBig,
    ProtocolError,
    UnknownCommand,
)
from tubeserver.limits import (
    BATCH_MAX,
    DEFAULT_MAX_JOB_SIZE,
    LINE_MAX,
    NAME_CHARS,
    NAME_MAX,
    RESERVE_TIMEOUT_MAX,
    U32_MAX,
    U64_MAX,
)
from tubeserver.parser import COMPILED, Parser

CRLF = b"\r\n"
BF = c.Rejected(BadFormat())
UC = c.Rejected(UnknownCommand())
PUT_BF = c.Rejected(BadFormat(), "put")
TOO_BIG = c.Rejected(JobTooBig(), "put")
NO_CRLF = c.Rejected(ExpectedCRLF(), "put")
PAUSE_BF = c.Rejected(BadFormat(), "pause-tube")  # refused, but counted as beanstalkd does
STARTED = c.PutStarted(True)
STARTED_REFUSED = c.PutStarted(False)

U32_OVER = U32_MAX + 1  # 4294967296
U64_OVER = U64_MAX + 1  # 18446744073709551616
NAME_ALPHABET = "".join(sorted(chr(b) for b in NAME_CHARS))
PUNCT = "-+/;.$_()"
NAME200 = ("abcdefghij" * 20)[:NAME_MAX]
NAME201 = NAME200 + "k"

# Every command the parser may produce, extensions included (random garbage finds short
# ones such as `auth !`).
COMMAND_TYPES = typing.get_args(c.Command)
NAME_VERBS: dict[str, type[c.Use | c.Watch | c.Ignore | c.StatsTube]] = {
    "use": c.Use, "watch": c.Watch, "ignore": c.Ignore, "stats-tube": c.StatsTube,
}
ID_VERBS: dict[str, type[c.ReserveJob | c.Delete | c.Touch | c.Peek | c.KickJob | c.StatsJob]] = {
    "reserve-job": c.ReserveJob, "delete": c.Delete, "touch": c.Touch, "peek": c.Peek,
    "kick-job": c.KickJob, "stats-job": c.StatsJob,
}
NO_ARG_VERBS: dict[str, c.Command] = {
    "reserve": c.Reserve(None), "peek-ready": c.PeekReady(), "peek-delayed": c.PeekDelayed(),
    "peek-buried": c.PeekBuried(), "stats": c.Stats(), "list-tubes": c.ListTubes(),
    "list-tube-used": c.ListTubeUsed(), "list-tubes-watched": c.ListTubesWatched(),
    "quit": c.Quit(),
}


# --------------------------------------------------------------------------- helpers


def drain(p: Parser, markers: bool = False) -> list[c.Event]:
    """Every event the parser can produce from what it has been fed; without PutStarted
    markers unless `markers` (they depend on the chunking: see put_counts)."""
    out: list[c.Event] = []
    count = 0
    while (event := p.next_event()) is not None:
        count += 1
        assert count < 1_000_000, "parser keeps producing events without input"
        if markers or not isinstance(event, c.PutStarted):
            out.append(event)
    return out


def put_counts(events: Sequence[c.Event]) -> tuple[int, int]:
    """(cmd-put, producer headers) as the dispatcher counts them from these events: a marker
    counts its put, which then does not count again; an accepted header makes a producer."""
    puts = producers = 0
    marker: c.PutStarted | None = None
    for event in events:
        if isinstance(event, c.PutStarted):
            assert marker is None, "two markers for one put"
            marker = event
            puts += 1
            producers += event.producer
        elif isinstance(event, c.Put | c.Rejected) and (
                isinstance(event, c.Put) or event.verb == "put"):
            accepted = isinstance(event, c.Put) or event.error == ExpectedCRLF()
            if marker is None:
                puts += 1
                producers += accepted
            else:
                assert marker.producer == accepted, (marker, event)
            marker = None
        else:
            assert marker is None, f"{event} between a marker and its put"
    return puts, producers


def parse(
    data: bytes, max_job_size: int = DEFAULT_MAX_JOB_SIZE, hot_path: bool = COMPILED
) -> list[c.Event]:
    p = Parser(max_job_size, hot_path)
    p.feed(data)
    return drain(p)


def parse_chunks(
    chunks: Iterable[bytes], max_job_size: int = DEFAULT_MAX_JOB_SIZE, hot_path: bool = COMPILED,
    markers: bool = False,
) -> list[c.Event]:
    p = Parser(max_job_size, hot_path)
    out: list[c.Event] = []
    for chunk in chunks:
        p.feed(chunk)
        out += drain(p, markers)
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def sized(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted({min(max(p, 0), len(data)) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def parse_every_way(data: bytes, max_job_size: int = DEFAULT_MAX_JOB_SIZE) -> list[c.Event]:
    """Parse whole, byte by byte and in a few chunk sizes, with and without the hot path;
    all must agree, and so must the puts counted (the markers included)."""
    whole = parse(data, max_job_size)
    counts = put_counts(parse_chunks([data], max_job_size, markers=True))
    assert parse_chunks(bytewise(data), max_job_size) == whole, "byte-at-a-time differs"
    assert put_counts(parse_chunks(bytewise(data), max_job_size, markers=True)) == counts
    for size in (2, 3, 7, LINE_MAX - 1, LINE_MAX, LINE_MAX + 1, 4096):
        assert parse_chunks(sized(data, size), max_job_size) == whole, f"chunks of {size} differ"
        chunked = parse_chunks(sized(data, size), max_job_size, markers=True)
        assert put_counts(chunked) == counts, f"chunks of {size} count differently"
    other = not COMPILED
    assert parse(data, max_job_size, other) == whole, f"hot_path={other} differs"
    assert parse_chunks(bytewise(data), max_job_size, other) == whole, f"hot_path={other} differs"
    return whole


def one_line(line: bytes) -> c.Event:
    """The single event for one command line, which must be consumed completely."""
    for hot_path in (COMPILED, not COMPILED):
        p = Parser(DEFAULT_MAX_JOB_SIZE, hot_path)
        p.feed(line + CRLF)
        events = drain(p)
        assert len(events) == 1, f"{line!r} -> {events} (hot_path={hot_path})"
        assert p.buffered() == 0, f"{line!r} left {p.buffered()} bytes (hot_path={hot_path})"
        if hot_path == COMPILED:
            first = events[0]
        assert events[0] == first, f"{line!r}: the hot path and the general path differ"
    return first


# --------------------------------------------------------------------------- encoder


def _num(n: int, zeros: int) -> bytes:
    return b"0" * zeros + str(n).encode()


def encode(cmd: c.Command, spaces: int = 1, zeros: int = 0) -> bytes:
    """Wire bytes for a command; `spaces` separators before numeric arguments and `zeros`
    leading zeros on every number (both accepted by beanstalkd). Falls back to the canonical
    form when the padded line would exceed LINE_MAX."""
    sep = b" " * spaces

    def nums(*values: int) -> bytes:
        return b"".join(sep + _num(v, zeros) for v in values)

    body: bytes | None = None
    match cmd:
        case c.Put():
            line = b"put" + nums(cmd.pri, cmd.delay, cmd.ttr, len(cmd.body))
            body = cmd.body
        case c.Use() | c.Watch() | c.Ignore() | c.StatsTube():
            verb = {c.Use: "use", c.Watch: "watch", c.Ignore: "ignore", c.StatsTube: "stats-tube"}
            line = f"{verb[type(cmd)]} {cmd.tube}".encode()
        case c.Reserve():
            if cmd.timeout is None:
                line = b"reserve"
            else:
                line = b"reserve-with-timeout" + nums(cmd.timeout)
        case c.ReserveBatch():
            line = b"reserve-batch" + nums(cmd.count, cmd.timeout)
        case c.ReserveJob() | c.Delete() | c.Touch() | c.Peek() | c.KickJob() | c.StatsJob():
            name = {v: k for k, v in ID_VERBS.items()}[type(cmd)]
            line = name.encode() + nums(cmd.id)
        case c.Release():
            line = b"release" + nums(cmd.id, cmd.pri, cmd.delay)
        case c.Bury():
            line = b"bury" + nums(cmd.id, cmd.pri)
        case c.Kick():
            line = b"kick" + nums(cmd.bound)
        case c.PauseTube():
            line = f"pause-tube {cmd.tube}".encode() + nums(cmd.delay)
        case c.Finish():
            line, body = b"finish" + nums(cmd.id, len(cmd.result)), cmd.result
        case c.Fail():
            line, body = b"fail" + nums(cmd.id, cmd.pri, len(cmd.reason)), cmd.reason
        case c.Checkpoint():
            line, body = b"checkpoint" + nums(cmd.id, len(cmd.data)), cmd.data
        case c.Result():
            line = b"result" + nums(cmd.id, cmd.timeout)
        case c.JobStatus():
            line = b"job-status" + nums(cmd.id)
        case c.PeekCheckpoint():
            line = b"peek-checkpoint" + nums(cmd.id)
        case _:
            line = {v: k for k, v in NO_ARG_VERBS.items()}[cmd].encode()
    if len(line) + 2 > LINE_MAX and (spaces, zeros) != (1, 0):
        return encode(cmd)
    assert len(line) + 2 <= LINE_MAX, f"encoder produced an over-long line for {cmd}"
    return line + CRLF + (b"" if body is None else body + CRLF)


# --------------------------------------------------------------------------- valid commands

VALID_LINES: list[tuple[bytes, c.Command]] = [
    # names
    (b"use default", c.Use("default")),
    (b"use 123", c.Use("123")),
    (b"use Foo", c.Use("Foo")),
    (b"use " + NAME200.encode(), c.Use(NAME200)),
    (b"use a" + PUNCT.encode(), c.Use("a" + PUNCT)),
    (b"watch w", c.Watch("w")),
    (b"watch " + NAME200.encode(), c.Watch(NAME200)),
    (b"ignore i", c.Ignore("i")),
    (b"ignore " + NAME200.encode(), c.Ignore(NAME200)),
    (b"stats-tube t", c.StatsTube("t")),
    (b"stats-tube " + NAME200.encode(), c.StatsTube(NAME200)),
    # reserve
    (b"reserve", c.Reserve(None)),
    (b"reserve-with-timeout 0", c.Reserve(0)),
    (b"reserve-with-timeout 10", c.Reserve(10)),
    (b"reserve-with-timeout 007", c.Reserve(7)),
    (b"reserve-with-timeout   5", c.Reserve(5)),
    (b"reserve-with-timeout 2147483647", c.Reserve(RESERVE_TIMEOUT_MAX)),
    # ids
    *(
        (f"{verb} {n}".encode(), cls(n))
        for verb, cls in ID_VERBS.items()
        for n in (0, 1, 42, U32_MAX, U32_OVER, U64_MAX)
    ),
    *((f"{verb}  0042".encode(), cls(42)) for verb, cls in ID_VERBS.items()),
    (b"release 1 2 3", c.Release(1, 2, 3)),
    (b"release 0 0 0", c.Release(0, 0, 0)),
    (f"release {U64_MAX} {U32_MAX} {U32_MAX}".encode(), c.Release(U64_MAX, U32_MAX, U32_MAX)),
    (b"release  01   002  0003", c.Release(1, 2, 3)),
    (b"bury 1 2", c.Bury(1, 2)),
    (f"bury {U64_MAX} {U32_MAX}".encode(), c.Bury(U64_MAX, U32_MAX)),
    (b"bury   7  0008", c.Bury(7, 8)),
    (b"kick 0", c.Kick(0)),
    (b"kick 10", c.Kick(10)),
    (b"kick 00010", c.Kick(10)),
    (b"kick  3", c.Kick(3)),
    (f"kick {U32_MAX}".encode(), c.Kick(U32_MAX)),
    (f"kick {U64_MAX}".encode(), c.Kick(U64_MAX)),  # the bound is 64-bit (protocol.md)
    # argument-less
    *((verb.encode(), value) for verb, value in NO_ARG_VERBS.items()),
    # pause-tube
    (b"pause-tube foo 10", c.PauseTube("foo", 10)),
    (b"pause-tube foo 0", c.PauseTube("foo", 0)),
    (b"pause-tube foo   10", c.PauseTube("foo", 10)),
    (b"pause-tube foo 0010", c.PauseTube("foo", 10)),
    (b"pause-tube a" + PUNCT.encode() + b" 1", c.PauseTube("a" + PUNCT, 1)),
    # The longest legal command line: 222 characters + CRLF = LINE_MAX.
    (f"pause-tube {NAME200} {U32_MAX}".encode(), c.PauseTube(NAME200, U32_MAX)),
]


@pytest.mark.parametrize(("line", "expected"), VALID_LINES)
def test_valid_line(line: bytes, expected: c.Command) -> None:
    assert one_line(line) == expected
    assert parse_every_way(line + CRLF) == [expected]


VALID_PUTS: list[tuple[bytes, c.Put]] = [
    (b"put 0 0 0 5\r\nhello\r\n", c.Put(0, 0, 0, b"hello")),
    (b"put 1 2 3 6\r\na\r\nb\r\n\r\n", c.Put(1, 2, 3, b"a\r\nb\r\n")),  # CRLF inside the body
    (b"put 0 0 0 7\r\nstats\r\n\r\n", c.Put(0, 0, 0, b"stats\r\n")),  # a command inside
    (b"put 0 0 0 3\r\n\r\r\n\r\n", c.Put(0, 0, 0, b"\r\r\n")),
    (b"put 0 0 0 256\r\n" + bytes(range(256)) + CRLF, c.Put(0, 0, 0, bytes(range(256)))),
    (b"put 0 0 0 0\r\n\r\n", c.Put(0, 0, 0, b"")),  # zero-length body
    (b"put 5 6 7 0\r\n\r\n", c.Put(5, 6, 7, b"")),
    (
        f"put {U32_MAX} {U32_MAX} {U32_MAX} 3\r\nabc\r\n".encode(),
        c.Put(U32_MAX, U32_MAX, U32_MAX, b"abc"),
    ),
    (b"put 007 0010 000 03\r\nabc\r\n", c.Put(7, 10, 0, b"abc")),  # leading zeros
    (b"put  1  0  1  1\r\nx\r\n", c.Put(1, 0, 1, b"x")),  # multiple spaces
    (b"put 1    2 3     1\r\nx\r\n", c.Put(1, 2, 3, b"x")),
    (b"put 0 0 0 2\r\n\x00\xff\r\n", c.Put(0, 0, 0, b"\x00\xff")),  # NUL in a body is fine
]


@pytest.mark.parametrize(("data", "expected"), VALID_PUTS)
def test_valid_put(data: bytes, expected: c.Put) -> None:
    assert parse_every_way(data) == [expected]
    assert parse_every_way(data + b"stats\r\n") == [expected, c.Stats()]


def test_put_body_of_exactly_max_job_size_is_accepted() -> None:
    body = bytes(range(10))
    assert parse(b"put 0 0 0 10\r\n" + body + CRLF, max_job_size=10) == [c.Put(0, 0, 0, body)]
    big = b"\r\n" * (DEFAULT_MAX_JOB_SIZE // 2) + b"x"
    data = f"put 1 2 3 {len(big)}\r\n".encode() + big + CRLF
    assert parse(data) == [c.Put(1, 2, 3, big)]


def test_put_body_waits_for_its_crlf() -> None:
    p = Parser(100)
    p.feed(b"put 0 0 0 3\r\nabc")
    assert p.next_event() == STARTED  # the header counts now; the put comes with its data
    assert p.next_event() is None
    p.feed(b"\r")
    assert p.next_event() is None
    p.feed(b"\n")
    assert p.next_event() == c.Put(0, 0, 0, b"abc")
    assert p.next_event() is None
    assert p.buffered() == 0


# --------------------------------------------------------------------------- rejected lines

ERROR_LINES: list[tuple[bytes, c.Rejected]] = [
    # empty line, unknown verbs, case sensitivity
    (b"", UC),
    (b" ", UC),
    (b"xyz", UC),
    (b" stats", UC),
    (b"\tstats", UC),
    (b"PUT 0 0 0 1", UC),
    (b"Put 0 0 0 1", UC),
    (b"USE foo", UC),
    (b"Use foo", UC),
    (b"RESERVE", UC),
    (b"Reserve", UC),
    (b"STATS", UC),
    (b"PEEK-READY", UC),
    (b"QUIT", UC),
    (b"Quit", UC),
    (b"DELETE 1", UC),
    (b"PAUSE-TUBE foo 1", UC),
    (b"list", UC),
    (b"list-tube", UC),
    (b"peek", UC),
    (b"peek-", UC),
    (b"deletex 1", UC),
    (b"delete5", UC),
    (b"kickx 1", UC),
    (b"kick-jobx 1", UC),
    (b"usex foo", UC),
    (b"useful", UC),
    (b"use\tfoo", UC),
    (b"release-x 1 2 3", UC),
    (b"put\t0 0 0 1", UC),
    # bare verbs that need arguments: UNKNOWN_COMMAND unless a shorter verb is a prefix
    (b"put", UC),
    (b"use", UC),
    (b"watch", UC),
    (b"ignore", UC),
    (b"delete", UC),
    (b"release", UC),
    (b"bury", UC),
    (b"touch", UC),
    (b"kick", UC),
    (b"kick-job", UC),
    (b"stats-tube", BF),  # matches the `stats` prefix
    (b"stats-job", BF),
    (b"reserve-with-timeout", BF),  # matches the `reserve` prefix
    (b"reserve-job", BF),
    (b"pause-tube", BF),  # beanstalkd's pause-tube prefix has no trailing space
    # the verb and a space, nothing else
    *((verb.encode() + b" ", BF) for verb in (*NAME_VERBS, *ID_VERBS)),
    (b"put ", BF),
    (b"reserve-with-timeout ", BF),
    (b"release ", BF),
    (b"bury ", BF),
    (b"kick ", BF),
    (b"pause-tube ", BF),
    # argument-less verbs followed by anything
    *((verb.encode() + tail, BF) for verb in NO_ARG_VERBS if verb != "quit"
      for tail in (b" ", b"x", b" x", b"  ", b"\t", b"-")),
    (b"reserve-", BF),
    (b"reserve-with-timeoutx 5", BF),
    (b"reserve-jobx 1", BF),
    (b"stats-jobx 1", BF),
    (b"stats-tubex foo", BF),
    (b"statsx", BF),
    (b"list-tubes-watchedx", BF),
    (b"list-tubesx", BF),
    (b"peek-readyx", BF),
    # quit: only the exact word (stricter than beanstalkd)
    (b"quit ", UC),
    (b"quitx", UC),
    (b"quit now", UC),
    (b"quit\t", UC),
    # trailing space
    *((f"{verb} 1 ".encode(), BF) for verb in ID_VERBS),
    (b"release 1 2 3 ", BF),
    (b"bury 1 2 ", BF),
    (b"kick 5 ", BF),
    (b"reserve-with-timeout 5 ", BF),
    (b"pause-tube foo 5 ", BF),
    # missing or extra arguments
    *((f"{verb} 1 2".encode(), BF) for verb in ID_VERBS),
    (b"release 1", BF),
    (b"release 1 2", BF),
    (b"release 1 2 3 4", BF),
    (b"bury 1", BF),
    (b"bury 1 2 3", BF),
    (b"kick 1 2", BF),
    (b"reserve-with-timeout 1 2", BF),
    (b"pause-tube foo", BF),
    (b"pause-tube foo ", BF),
    (b"pause-tube 10", BF),
    (b"pause-tube foo 1 2", BF),
    # out of range
    *((f"{verb} {U64_OVER}".encode(), BF) for verb in ID_VERBS),
    *((f"{verb} {'9' * 30}".encode(), BF) for verb in ID_VERBS),
    (f"release {U64_OVER} 0 0".encode(), BF),
    (f"release 1 {U32_OVER} 0".encode(), BF),
    (f"release 1 0 {U32_OVER}".encode(), BF),
    (f"bury {U64_OVER} 0".encode(), BF),
    (f"bury 1 {U32_OVER}".encode(), BF),
    (f"kick {U64_OVER}".encode(), BF),
    (f"pause-tube foo {U32_OVER}".encode(), BF),
    (b"reserve-with-timeout 2147483648", BF),  # > INT_MAX, as in beanstalkd 1.13
    (f"reserve-with-timeout {U32_OVER}".encode(), BF),
    # not plain decimal (decided: kick and reserve-with-timeout are strict too)
    *((f"{verb} {arg}".encode(), BF) for verb in ID_VERBS
      for arg in ("abc", "-1", "+1", "1x", "0x10", "1.0", "1e3", "111foo", "\t1", "1\t", "1_0")),
    (b"delete \xd9\xa1", BF),  # ARABIC-INDIC DIGIT ONE is not an ASCII digit
    (b"delete \xc2\xb2", BF),  # SUPERSCRIPT TWO
    (b"kick 10abc", BF),
    (b"kick -1", BF),
    (b"kick abc", BF),
    (b"reserve-with-timeout 0 abc", BF),
    (b"reserve-with-timeout -1", BF),
    (b"reserve-with-timeout abc", BF),
    (b"reserve-with-timeout 5x", BF),
    (b"release 1 2 x", BF),
    (b"release 1 -2 3", BF),
    (b"release x 2 3", BF),
    (b"bury 1 x", BF),
    (b"bury -1 2", BF),
    (b"pause-tube foo x", BF),
    (b"pause-tube foo -1", BF),
    (b"pause-tube foo 10x", BF),
    # pause-tube needs the exact verb and one space before the name (stricter than beanstalkd)
    (b"pause-tubefoo 10", BF),
    # beanstalkd skips spaces before the name (and counts it); we do not (but count it)
    (b"pause-tube  foo 10", PAUSE_BF),
    (b"pause-tube-x 10", BF),
    (b"pause-tube\tfoo 10", BF),
    # NUL anywhere in a line
    (b"\x00", BF),
    (b"\x00stats", BF),
    (b"stats\x00", BF),
    (b"PUT\x00", BF),
    (b"xyz\x00", BF),
    (b"use fo\x00o", BF),
    (b"delete 1\x00", BF),
]


@pytest.mark.parametrize(("line", "expected"), ERROR_LINES)
def test_rejected_line(line: bytes, expected: c.Rejected) -> None:
    assert one_line(line) == expected
    # The next command is unaffected.
    assert parse(line + CRLF + b"list-tube-used\r\n") == [expected, c.ListTubeUsed()]


@pytest.mark.parametrize("line", [line for line, _ in VALID_LINES[::5]])
def test_nul_anywhere_in_a_valid_line_is_bad_format(line: bytes) -> None:
    for i in range(len(line) + 1):
        assert one_line(line[:i] + b"\x00" + line[i:]) == BF, f"NUL at {i} in {line!r}"
        assert one_line(line[:i] + b"\x00" + line[i + 1 :]) == BF, f"NUL for byte {i} of {line!r}"


def test_rejections_are_protocol_errors_that_compare_by_type() -> None:
    assert BadFormat() == BadFormat()
    assert BadFormat() != UnknownCommand()
    assert c.Rejected(BadFormat()) != c.Rejected(BadFormat(), "put")
    event = one_line(b"nope")
    assert isinstance(event, c.Rejected)
    assert isinstance(event.error, ProtocolError)


# --------------------------------------------------------------------------- tube names


def name_lines(name: bytes) -> list[tuple[bytes, str]]:
    """Every command that takes a name, with `name` in it; and the verb for messages."""
    lines = [(verb.encode() + b" " + name, verb) for verb in NAME_VERBS]
    return [*lines, (b"pause-tube " + name + b" 1", "pause-tube")]


def expected_for_name(verb: str, name: str) -> c.Command:
    if verb == "pause-tube":
        return c.PauseTube(name, 1)
    return NAME_VERBS[verb](name)


@pytest.mark.parametrize(
    "name",
    ["a", "0", "123", "Z9", NAME200, "a-", "a--b", PUNCT[1:], *PUNCT[1:], "a" + PUNCT,
     NAME_ALPHABET.replace("-", "") + "-"],
)
def test_valid_names(name: str) -> None:
    for line, verb in name_lines(name.encode()):
        assert one_line(line) == expected_for_name(verb, name), line


@pytest.mark.parametrize("ch", list(PUNCT))
def test_each_allowed_punctuation_char(ch: str) -> None:
    name = "x" + ch + "y"
    for line, verb in name_lines(name.encode()):
        assert one_line(line) == expected_for_name(verb, name), line


@pytest.mark.parametrize("name", [b"-", b"-a", b"--", b"-" + NAME200[1:].encode()])
def test_leading_hyphen_is_bad_format(name: bytes) -> None:
    # beanstalkd checks a name's first character and length after it counted pause-tube.
    for line, verb in name_lines(name):
        assert one_line(line) == (PAUSE_BF if verb == "pause-tube" else BF), line


def test_name_of_201_chars_is_bad_format() -> None:
    for line, verb in name_lines(NAME201.encode()):
        assert one_line(line) == (PAUSE_BF if verb == "pause-tube" else BF), line


def test_every_other_byte_in_a_name_is_bad_format() -> None:
    bad = [b for b in range(256) if b not in NAME_CHARS]
    assert len(NAME_CHARS) == 26 + 26 + 10 + len(PUNCT)
    assert len(bad) == 256 - len(NAME_CHARS)
    for byte in bad:
        for where in (b"%sab", b"a%sb", b"ab%s"):
            name = where % bytes([byte])
            for line, verb in name_lines(name):
                if verb == "pause-tube" and name == b"ab ":
                    continue  # `pause-tube ab  1`: extra spaces before the delay are fine
                # `pause-tube  ab 1`: beanstalkd skips the spaces (and counts it); we do not
                # (but count it).
                counted = verb == "pause-tube" and name == b" ab"
                assert one_line(line) == (PAUSE_BF if counted else BF), f"{byte:#04x} {line!r}"


@pytest.mark.parametrize(("line", "counted"), [
    (b"pause-tube -x 1", True),
    (b"pause-tube -x  01", True),
    (b"pause-tube -x 4294967295", True),
    (b"pause-tube " + NAME201.encode() + b" 0", True),
    (b"pause-tube  -x 1", True),
    (b"pause-tube -x 4294967296", False),
    (b"pause-tube -x 1 ", False),
    (b"pause-tube -x 1x", False),
    (b"pause-tube -x", False),
    (b"pause-tube a b 1", False),
    (b"pause-tube ab\x7f 1", False),
    (b"pause-tube \x7fab 1", False),
    (b"pause-tube a\x00b 1", False),
])
def test_refused_pause_tube_counts_as_in_beanstalkd(line: bytes, counted: bool) -> None:
    # beanstalkd counts cmd-pause-tube once it has read a run of name characters and a plain
    # delay, then refuses a name that is too long or starts with '-' (probed on 1.12).
    assert one_line(line) == (PAUSE_BF if counted else BF)


@pytest.mark.parametrize("verb", list(NAME_VERBS))
def test_name_must_fill_the_rest_of_the_line(verb: str) -> None:
    v = verb.encode()
    for line in (v + b"  foo", v + b" foo ", v + b" foo bar", v + b" foo\t"):
        assert one_line(line) == BF, line


# ----------------------------------------------------------------------- put counted at its header


def test_put_header_before_its_data_is_reported_at_once() -> None:
    # beanstalkd counts cmd-put and the producer when the header is read: the marker says so
    # then, and the put itself follows with its data (once: the marker is not repeated).
    p = Parser(100)
    p.feed(b"put 0 0 0 5\r\nab")
    assert drain(p, markers=True) == [STARTED]
    p.feed(b"c")
    assert drain(p, markers=True) == []
    p.feed(b"de\r\nstats\r\n")
    assert drain(p, markers=True) == [c.Put(0, 0, 0, b"abcde"), c.Stats()]


def test_refused_put_header_before_its_skipped_data_is_reported_at_once() -> None:
    p = Parser(10)
    p.feed(b"put 0 0 0 11\r\nab")  # JOB_TOO_BIG: counted, not a producer
    assert drain(p, markers=True) == [STARTED_REFUSED]
    p.feed(b"cdefghijk\r\nput 0 0 0 2 x\r\nab")  # malformed but counted; data skipped
    assert drain(p, markers=True) == [TOO_BIG, STARTED_REFUSED]
    p.feed(b"\r\nput -1 0 0 2\r\na")  # not counted: no marker
    assert drain(p, markers=True) == [PUT_BF]
    p.feed(b"b\r\n")
    assert drain(p, markers=True) == [BF]


def test_no_marker_when_the_data_is_already_there() -> None:
    assert parse(b"put 0 0 0 1\r\nx\r\n") == [c.Put(0, 0, 0, b"x")]
    p = Parser(100)
    p.feed(b"put 0 0 0 1\r\nx\r\n")
    assert drain(p, markers=True) == [c.Put(0, 0, 0, b"x")]
    # Fed in pieces before the parser looked: the data is there, so no marker either.
    for size in (100, 10):
        p = Parser(size)
        for piece in (b"stats\r\nput 0 0 0 11\r\n", b"0123456789", b"a\r\n"):
            p.feed(piece)
        put = c.Put(0, 0, 0, b"0123456789a") if size == 100 else TOO_BIG
        assert drain(p, markers=True) == [c.Stats(), put]


def test_markers_count_each_put_once_whatever_the_chunking() -> None:
    stream = (b"put 0 0 0 3\r\nabc\r\nput 0 0 0 3\r\nabcXY" b"put 0 0 0 40\r\n" + b"z" * 42
              + b"put 0 0 0 3 x\r\nabc\r\nput 0 0 0 3x\r\nput x 0 0 3\r\nabc\r\nstats\r\n")
    for size in (1, 2, 5, 16, len(stream)):
        events = parse_chunks(sized(stream, size), max_job_size=32, markers=True)
        assert put_counts(events) == (5, 2), size
        assert events[-1] == c.Stats()


# --------------------------------------------------------------------------- malformed put headers


def test_malformed_put_header_with_valid_size_skips_the_announced_body() -> None:
    # Decided (stricter than beanstalkd): one BAD_FORMAT and <size>+2 bytes skipped. The
    # verb is "put" when beanstalkd would have counted cmd-put (four numbers parse).
    cases: list[tuple[bytes, c.Rejected]] = [
        (b"put 0 0 1 1 extra\r\nx\r\n", PUT_BF),
        (b"put 0 0 1 1 \r\nx\r\n", PUT_BF),
        (b"put 0 0 1 1 2\r\nx\r\n", PUT_BF),
        (b"put 0 0 1 1 x y z\r\nx\r\n", PUT_BF),
        (b"put -1 0 1 1\r\nx\r\n", BF),
        (b"put +1 0 1 1\r\nx\r\n", BF),
        (b"put 4294967296 0 1 1\r\nx\r\n", BF),
        (b"put 0 4294967296 1 1\r\nx\r\n", BF),
        (b"put 0 0 4294967296 1\r\nx\r\n", BF),
        (b"put 0 -1 100 0\r\n\r\n", BF),
        (b"put -1kkdj9djjkd9 0 1 5\r\nhello\r\n", BF),
        (b"put a b c 5\r\nhello\r\n", BF),
        (b"put 0x 0 0 5\r\nhello\r\n", BF),
        (b"put  0  0  1  0003  junk\r\nabc\r\n", PUT_BF),
    ]
    for data, rejected in cases:
        assert parse_every_way(data + b"stats\r\n") == [rejected, c.Stats()], data


def test_skipped_body_of_a_malformed_header_is_not_executed() -> None:
    body = b"delete 9\r\n"  # 10 bytes that must not become a command
    data = b"put x 0 0 10\r\n" + body + CRLF + b"list-tubes\r\n"
    assert parse_every_way(data) == [BF, c.ListTubes()]
    p = Parser(100)
    p.feed(b"put x 0 0 10\r\n" + body[:4])
    assert drain(p) == []
    assert p.buffered() == 0  # skipped bytes are not kept


def test_malformed_put_header_without_a_usable_size_skips_nothing() -> None:
    cases: list[tuple[bytes, list[c.Event]]] = [
        (b"put 0 0 1\r\nx\r\n", [BF, UC]),
        (b"put 0 0\r\nx\r\n", [BF, UC]),
        (b"put 0 0 1 abc\r\nstats\r\n", [BF, c.Stats()]),
        (b"put 0 0 1 -1\r\nstats\r\n", [BF, c.Stats()]),
        (b"put 0 0 1 4294967296\r\nstats\r\n", [BF, c.Stats()]),
        (f"put 0 0 1 {U64_OVER}\r\nstats\r\n".encode(), [BF, c.Stats()]),
    ]
    for data, expected in cases:
        assert parse_every_way(data) == expected, data


def test_put_header_with_nul_is_bad_format() -> None:
    assert parse(b"put 0 0 0 1\x00\r\n")[0] == BF


# --------------------------------------------------------------------------- JOB_TOO_BIG


def test_job_too_big_skips_exactly_size_plus_two() -> None:
    body = b"quit\r\nstats"  # 11 bytes: a command inside must NOT be executed
    data = b"put 0 0 0 11\r\n" + body + CRLF + b"list-tubes\r\n"
    assert parse_every_way(data, max_job_size=10) == [TOO_BIG, c.ListTubes()]
    # The two bytes after the body are skipped unchecked, as beanstalkd does.
    data = b"put 0 0 0 11\r\n" + body + b"XY" + b"list-tubes\r\n"
    assert parse_every_way(data, max_job_size=10) == [TOO_BIG, c.ListTubes()]


def test_job_too_big_is_reported_after_the_skip() -> None:
    p = Parser(10)
    p.feed(b"put 0 0 0 11\r\n0123456789")
    assert drain(p) == []
    p.feed(b"a\r")
    assert drain(p) == []
    p.feed(b"\nstats\r\n")
    assert drain(p) == [TOO_BIG, c.Stats()]
    assert p.buffered() == 0


def test_max_job_size_boundary() -> None:
    assert parse(b"put 0 0 0 10\r\n0123456789\r\n", max_job_size=10) == [
        c.Put(0, 0, 0, b"0123456789")
    ]
    assert parse(b"put 0 0 0 11\r\n0123456789a\r\n", max_job_size=10) == [TOO_BIG]
    assert parse(b"put 0 0 0 00011\r\n0123456789a\r\n", max_job_size=10) == [TOO_BIG]
    assert parse(b"put 0 0 0 1\r\nx\r\n", max_job_size=0) == [TOO_BIG]
    assert parse(b"put 0 0 0 0\r\n\r\n", max_job_size=0) == [c.Put(0, 0, 0, b"")]


def test_job_too_big_body_in_many_small_chunks_is_never_buffered() -> None:
    size = 1_000_000
    body = (b"stats\r\nquit\r\n" * (size // 13 + 1))[:size]
    p = Parser(10)
    p.feed(f"put 0 0 0 {size}\r\n".encode())
    assert drain(p) == []
    events: list[c.Event] = []
    for chunk in sized(body + CRLF + b"list-tubes\r\n", 997):
        p.feed(chunk)
        events += drain(p)
        assert p.buffered() <= len(b"list-tubes\r\n"), p.buffered()
    assert events == [TOO_BIG, c.ListTubes()]


def test_job_too_big_body_one_byte_at_a_time() -> None:
    body = b"delete 1\r\nquit\r\n" * 4
    data = f"put 0 0 0 {len(body)}\r\n".encode() + body + CRLF + b"stats\r\n"
    p = Parser(8)
    events: list[c.Event] = []
    for byte in bytewise(data):
        p.feed(byte)
        events += drain(p)
        assert p.buffered() < LINE_MAX
    assert events == [TOO_BIG, c.Stats()]


def test_job_too_big_u32_max_keeps_skipping() -> None:
    p = Parser(DEFAULT_MAX_JOB_SIZE)
    p.feed(f"put 0 0 0 {U32_MAX}\r\n".encode())
    for _ in range(100):
        p.feed(b"stats\r\n" * 1000)
        assert drain(p) == []
        assert p.buffered() == 0


# --------------------------------------------------------------------------- EXPECTED_CRLF


def test_expected_crlf_consumes_exactly_size_plus_two() -> None:
    p = Parser(100)
    p.feed(b"put 0 0 0 3\r\nabcXYstats\r\n")
    assert p.next_event() == NO_CRLF
    assert p.buffered() == len(b"stats\r\n")
    assert drain(p) == [c.Stats()]


@pytest.mark.parametrize("after", [b"XY", b"\r\r", b"\n\r", b"\rX", b"X\n", b"\n\n", b"  "])
def test_expected_crlf_for_any_two_bytes_but_crlf(after: bytes) -> None:
    data = b"put 0 0 0 3\r\nabc" + after + b"stats\r\n"
    assert parse_every_way(data) == [NO_CRLF, c.Stats()]


def test_too_long_body_desynchronises_as_in_beanstalkd() -> None:
    # The client sent 2 body bytes for a size of 1: "b\r" is not CRLF, and the left-over LF
    # starts the next line.
    assert parse_every_way(b"put 0 0 0 1\r\nab\r\nstats\r\n") == [NO_CRLF, UC]


def test_expected_crlf_waits_for_both_bytes() -> None:
    p = Parser(100)
    p.feed(b"put 0 0 0 1\r\nxy")
    assert p.next_event() == STARTED
    assert p.next_event() is None
    p.feed(b"z")
    assert p.next_event() == NO_CRLF
    assert p.buffered() == 0


# --------------------------------------------------------------------------- line framing


def padded_delete(total: int) -> bytes:
    """`delete 000...01` + CRLF, `total` bytes long: valid apart from its length."""
    return b"delete " + b"0" * (total - len(b"delete 1\r\n")) + b"1\r\n"


def test_line_of_exactly_line_max_is_accepted() -> None:
    assert LINE_MAX == 224
    line = padded_delete(LINE_MAX)
    assert len(line) == 224
    assert parse_every_way(line + b"stats\r\n") == [c.Delete(1), c.Stats()]
    line = f"pause-tube {NAME200} {U32_MAX}\r\n".encode()
    assert len(line) == 224
    assert parse_every_way(line) == [c.PauseTube(NAME200, U32_MAX)]


@pytest.mark.parametrize("total", [225, 226, 500, 5000, 100_000])
def test_over_long_line_is_one_bad_format_and_the_next_line_parses(total: int) -> None:
    line = padded_delete(total)
    assert len(line) == total
    expected = [BF, c.Stats()]
    data = line + b"stats\r\n"
    assert parse(data) == expected
    for size in (1, 2, 7, 223, 224, 225, 4096):
        if size == 1 and total > 5000:
            continue  # covered by the smaller sizes; keeps the run short
        assert parse_chunks(sized(data, size)) == expected, f"chunks of {size}"


def test_over_long_garbage_line_then_put() -> None:
    data = b"x" * 1000 + CRLF + b"put 0 0 0 2\r\nhi\r\n"
    assert parse_every_way(data) == [BF, c.Put(0, 0, 0, b"hi")]


def test_cr_at_the_end_of_a_chunk_in_an_over_long_line() -> None:
    # CR closes one chunk, LF opens the next.
    assert parse_chunks([b"x" * 300 + b"\r", b"\nstats\r\n"]) == [BF, c.Stats()]
    # The CR is the 224th byte, exactly where the parser starts discarding.
    assert parse_chunks([b"y" * 223 + b"\r", b"\nstats\r\n"]) == [BF, c.Stats()]
    # A CR not followed by LF does not end the line; the next CRLF does.
    assert parse_chunks([b"x" * 300 + b"\r", b"x\r", b"\r\nstats\r\n"]) == [BF, c.Stats()]
    assert parse_chunks([b"x" * 300 + b"\r", b"\r", b"\n", b"stats\r\n"]) == [BF, c.Stats()]
    # Many chunks each ending in CR.
    chunks = [b"z" * 100 + b"\r" for _ in range(10)] + [b"\nstats\r\n"]
    assert parse_chunks(chunks) == [BF, c.Stats()]


def test_bare_lf_and_cr_do_not_end_a_line() -> None:
    assert parse_every_way(b"stats\nstats\r\n") == [BF]  # `stats\nstats` matches `stats`
    assert parse_every_way(b"xyz\nstats\r\n") == [UC]
    assert parse_every_way(b"stats\rstats\r\n") == [BF]
    assert parse_every_way(b"use a\rb\r\n") == [BF]


def test_line_waits_for_crlf() -> None:
    p = Parser(100)
    p.feed(b"sta")
    assert p.next_event() is None
    assert p.buffered() == 3
    p.feed(b"ts\r")
    assert p.next_event() is None
    p.feed(b"\n")
    assert p.next_event() == c.Stats()
    assert p.next_event() is None
    assert p.buffered() == 0


@pytest.mark.parametrize("chunk", [1, 100, 223, 224, 225, 1000, 65536])
def test_buffer_stays_bounded_while_discarding(chunk: int) -> None:
    p = Parser(DEFAULT_MAX_JOB_SIZE)
    total = 300_000 if chunk > 1 else 5_000
    data = (b"x" * 99 + b"\r") * (total // 100) + CRLF + b"stats\r\n"
    events: list[c.Event] = []
    for piece in sized(data, chunk):
        p.feed(piece)
        assert p.buffered() <= LINE_MAX + chunk
        events += drain(p)
        assert p.buffered() <= LINE_MAX, p.buffered()
    assert events == [BF, c.Stats()]
    assert p.buffered() == 0


def test_feed_accepts_bytearray_and_copies_it() -> None:
    p = Parser(100)
    data = bytearray(b"use foo\r\n")
    p.feed(data)
    data[4:7] = b"bar"
    assert drain(p) == [c.Use("foo")]


def test_next_event_without_input() -> None:
    p = Parser(100)
    assert p.next_event() is None
    assert p.next_event() is None
    assert p.buffered() == 0
    p.feed(b"")
    assert p.next_event() is None


def test_pipelined_commands_in_one_feed() -> None:
    cmds: list[c.Command] = [
        c.Use("a"), c.Put(1, 2, 3, b"x\r\ny"), c.Watch("a"), c.Reserve(0), c.Delete(1),
        c.Stats(), c.Put(0, 0, 0, b""), c.Quit(),
    ]
    data = b"".join(encode(cmd) for cmd in cmds)
    assert parse_every_way(data) == cmds


# --------------------------------------------------------------------------- put size judged first


@pytest.mark.parametrize("tail", [b" extra", b" ", b" 5", b"  x y"])
def test_job_too_big_wins_over_trailing_garbage(tail: bytes) -> None:
    # As in beanstalkd: once the four numbers parse, cmd-put counts and the size is judged
    # BEFORE the trailing garbage: JOB_TOO_BIG, and size+2 bytes are skipped (so the `quit`
    # inside the body is not executed).
    data = b"put 0 0 0 11" + tail + b"\r\nquit\r\nstats\r\nlist-tubes\r\n"
    assert parse_every_way(data, max_job_size=10) == [TOO_BIG, c.ListTubes()]


def test_too_big_size_in_an_uncounted_header_skips_nothing() -> None:
    # beanstalkd rejects these before reading the size: BAD_FORMAT, nothing skipped.
    for head in (b"put x 0 0 11", b"put 4294967296 0 0 11", b"put -1 0 0 11"):
        data = head + b"\r\nquit\r\nstats\r\n"
        assert parse_every_way(data, max_job_size=10) == [BF, c.Quit(), c.Stats()], head


@pytest.mark.parametrize("tail", [b"x", b"\t", b"\x7f", b"-", b"x y"])
def test_garbage_glued_to_the_size_is_read_as_beanstalkd_reads_it(tail: bytes) -> None:
    # beanstalkd reads the size with strtoul, which stops at the garbage: `11x` is a counted
    # put of 11 bytes (JOB_TOO_BIG, its data skipped), `4x` a counted put refused at once
    # (BAD_FORMAT, nothing skipped: the next line is a command).
    data = b"put 0 0 0 11" + tail + b"\r\nquit\r\nstats\r\nlist-tubes\r\n"
    assert parse_every_way(data, max_job_size=10) == [TOO_BIG, c.ListTubes()]
    data = b"put 0 0 0 4" + tail + b"\r\nstats\r\n"
    assert parse_every_way(data, max_job_size=10) == [PUT_BF, c.Stats()]
    # Not counted when a number is unreadable (or too big), as in beanstalkd.
    for head in (b"put 0 0 x 4", b"put 0 0 0 4294967296", b"put 0 0 0 99999999999999999999"):
        assert parse_every_way(head + tail + b"\r\nstats\r\n", 10) == [BF, c.Stats()]


# --------------------------------------------------------------------------- hot path, buffering
# Compiled, Parser._hot reads the frequent commands in place and leaves every other line to the
# general path; parse_every_way, one_line and check_garbage already compare the two. These pin
# the edges of what _hot takes, and the buffering of chunks.

HOT_EDGES: list[tuple[bytes, c.Event]] = [
    # ids: _hot takes up to 2**62 - 1, the general path the rest up to U64_MAX
    (f"delete {2**62 - 1}".encode(), c.Delete(2**62 - 1)),
    (f"delete {2**62}".encode(), c.Delete(2**62)),
    (f"touch {U64_MAX}".encode(), c.Touch(U64_MAX)),
    (f"touch {U64_OVER}".encode(), BF),
    (f"release {2**62} 1 2".encode(), c.Release(2**62, 1, 2)),
    (f"release 1 {U32_MAX} {U32_MAX}".encode(), c.Release(1, U32_MAX, U32_MAX)),
    (f"release 1 {U32_MAX} {U32_OVER}".encode(), BF),
    (f"bury {U64_MAX} {U32_MAX}".encode(), c.Bury(U64_MAX, U32_MAX)),
    (f"bury 1 {U32_OVER}".encode(), BF),
    (b"bury 1 " + b"9" * 200, BF),
    # leading zeros, up to the longest line
    (b"delete " + b"0" * (LINE_MAX - 10) + b"1", c.Delete(1)),
    (b"touch 0000000000000000000000000000000000000042", c.Touch(42)),
    (b"reserve-with-timeout 0000", c.Reserve(0)),
    (f"reserve-with-timeout {RESERVE_TIMEOUT_MAX}".encode(), c.Reserve(RESERVE_TIMEOUT_MAX)),
    (f"reserve-with-timeout 0{RESERVE_TIMEOUT_MAX + 1}".encode(), BF),
    # reserve-batch: 1 to BATCH_MAX jobs
    (b"reserve-batch 1 0", c.ReserveBatch(1, 0)),
    (
        f"reserve-batch {BATCH_MAX} {RESERVE_TIMEOUT_MAX}".encode(),
        c.ReserveBatch(BATCH_MAX, RESERVE_TIMEOUT_MAX),
    ),
    (b"reserve-batch 0010 005", c.ReserveBatch(10, 5)),
    (b"reserve-batch  2   5", c.ReserveBatch(2, 5)),  # extra spaces: the general path
    (b"reserve-batch 0 5", BF),
    (b"reserve-batch 000 5", BF),
    (f"reserve-batch {BATCH_MAX + 1} 5".encode(), BF),
    (f"reserve-batch 1 {RESERVE_TIMEOUT_MAX + 1}".encode(), BF),
    (b"reserve-batch 2 5 ", BF),
    (b"reserve-batch 2", BF),
    (b"reserve-batch 2 5 6", BF),
    (b"reserve-batch", BF),
    # a separator or an end that is not one space or the CRLF
    (b"delete 1\r", BF),
    (b"delete 1\n", BF),
    (b"reserve\r", BF),
    (b"reserve\n", BF),
    (b"bury 1\t2", BF),
    (b"release 1 2 3\x00", BF),
    (b"delete\x001", BF),  # a NUL anywhere in a line
    (b"reserve-with-timeout\r5", BF),
]


@pytest.mark.parametrize(("line", "expected"), HOT_EDGES)
def test_hot_path_edges(line: bytes, expected: c.Event) -> None:
    assert one_line(line) == expected
    assert parse_every_way(line + CRLF + b"stats\r\n") == [expected, c.Stats()]


def test_hot_line_of_exactly_line_max() -> None:
    line = b"delete " + b"0" * (LINE_MAX - 10) + b"1\r\n"
    assert len(line) == LINE_MAX
    assert parse_every_way(line) == [c.Delete(1)]
    longer = b"delete 0" + line[len(b"delete ") :]
    assert parse_every_way(longer + b"stats\r\n") == [BF, c.Stats()]


HEAD_ZEROS = b"0" * (LINE_MAX - len(b"put 0 0 0 1\r\n"))
HOT_PUTS: list[tuple[bytes, int, list[c.Event]]] = [
    (f"put {U32_MAX} {U32_MAX} {U32_MAX} 1\r\nx\r\n".encode(), 10,
     [c.Put(U32_MAX, U32_MAX, U32_MAX, b"x")]),
    (f"put {U32_OVER} 0 0 1\r\nx\r\n".encode(), 10, [BF]),
    (f"put 0 0 {U32_OVER} 1\r\nx\r\n".encode(), 10, [BF]),
    (b"put 0 0 0 1 \r\nx\r\n", 10, [PUT_BF]),
    (b"put 0  0 0 1\r\nx\r\n", 10, [c.Put(0, 0, 0, b"x")]),  # extra spaces: general path
    (b"put 0 0 0  1\r\nx\r\n", 10, [c.Put(0, 0, 0, b"x")]),
    (b"put  0 0 0 1\r\nx\r\n", 10, [c.Put(0, 0, 0, b"x")]),
    (b"put 0 0 0 1\r\nxyz", 10, [NO_CRLF]),
    (b"put 0 0 0 1\r\nx\r", 10, []),
    (b"put 0 0 0 10\r\n0123456789\r\n", 10, [c.Put(0, 0, 0, b"0123456789")]),
    (b"put 0 0 0 11\r\n0123456789a\r\n", 10, [TOO_BIG]),
    (b"put 0 0 0 011\r\n0123456789a\r\n", 10, [TOO_BIG]),
    (b"put 0 0 0 " + HEAD_ZEROS + b"1\r\nx\r\n", 10, [c.Put(0, 0, 0, b"x")]),
    (b"put 0 0 0 0" + HEAD_ZEROS + b"1\r\nx\r\n", 10, [BF, UC]),  # one byte over LINE_MAX
    (b"put 0 0 0 1\x00\r\nx\r\n", 10, [BF, UC]),
]


@pytest.mark.parametrize(("data", "max_job_size", "expected"), HOT_PUTS)
def test_hot_put_edges(data: bytes, max_job_size: int, expected: list[c.Event]) -> None:
    assert parse_every_way(data, max_job_size) == expected


EDGE_NUMBERS = [
    0, 1, 9, 10, BATCH_MAX, BATCH_MAX + 1, RESERVE_TIMEOUT_MAX, RESERVE_TIMEOUT_MAX + 1, U32_MAX,
    U32_OVER, 2**62 - 1, 2**62, U64_MAX, U64_OVER, 10**30,
]
HOT_VERBS = ["put", "delete", "reserve", "reserve-with-timeout", "reserve-batch", "release",
             "touch", "bury"]


@settings(max_examples=300, deadline=None)
@given(
    verb=st.sampled_from(HOT_VERBS),
    args=st.lists(
        st.tuples(
            st.sampled_from([b" ", b"  ", b"\t", b""]),
            st.integers(0, 3),
            st.sampled_from(EDGE_NUMBERS) | st.integers(0, 2**70),
        ),
        max_size=5,
    ),
    end=st.sampled_from([b"\r\n", b" \r\n", b"\r\r\n", b"x\r\n"]),
    data=st.data(),
)
def test_hot_verbs_with_any_numbers_agree_with_the_general_path(
    verb: str, args: list[tuple[bytes, int, int]], end: bytes, data: st.DataObject
) -> None:
    line = verb.encode() + b"".join(sep + b"0" * zeros + b"%d" % n for sep, zeros, n in args)
    stream = line + end + b"0123456789\r\nstats\r\n"
    general = parse(stream, 10, hot_path=False)
    assert parse(stream, 10, hot_path=True) == general
    assert parse_chunks(bytewise(stream), 10, hot_path=True) == general
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts")
    assert parse_chunks(cut(stream, points), 10, hot_path=True) == general


def test_big_body_in_many_small_chunks() -> None:
    size = 1 << 20
    body = bytes(range(256)) * (size // 256)
    data = f"put 1 2 3 {size}\r\n".encode() + body + CRLF + b"delete 7\r\n"
    for chunk in (1, 1000, 4096, 65536):
        if chunk == 1:
            data1 = data.replace(f" {size}\r\n".encode(), b" 3000\r\n")
            data1 = data1[: data1.index(b"\r\n") + 2] + body[:3000] + CRLF + b"delete 7\r\n"
            pieces, expected_body = sized(data1, 1), body[:3000]
        else:
            pieces, expected_body = sized(data, chunk), body
        for hot_path in (True, False):
            p = Parser(size, hot_path)
            events: list[c.Event] = []
            for piece in pieces:
                p.feed(piece)
                events += drain(p)
                assert p.buffered() <= size + 2, p.buffered()
            assert events == [c.Put(1, 2, 3, expected_body), c.Delete(7)], chunk
            assert p.buffered() == 0


def test_big_body_in_small_chunks_is_not_copied_with_every_chunk() -> None:
    # Joining what is buffered with every chunk would copy the body again each time
    # (quadratic); the chunks of an incomplete body must wait unjoined until the last one.
    size = 4 << 20
    body = b"\r\n" * (size // 2)
    p = Parser(size)
    p.feed(f"put 0 0 0 {size}\r\n".encode())
    assert drain(p) == []
    pieces = list(sized(body + CRLF, 4096))
    for n, piece in enumerate(pieces[:-1]):
        p.feed(piece)
        assert p.next_event() is None
        assert len(p._later) == n, "the body was joined before it was complete"
    p.feed(pieces[-1])
    assert p.next_event() == c.Put(0, 0, 0, body)
    assert p.buffered() == 0


def test_chunks_fed_before_next_event_are_all_kept() -> None:
    # While a client waits for a reservation the server reads on without parsing.
    cmds: list[c.Command] = [
        *(c.Delete(i) for i in range(500)), c.Put(1, 2, 3, b"x\r\n" * 100), c.Reserve(None),
        c.Release(1, 2, 3), c.ReserveBatch(3, 4),
    ]
    data = b"".join(encode(cmd) for cmd in cmds)
    for size in (1, 7, 1000):
        p = Parser(DEFAULT_MAX_JOB_SIZE)
        for piece in sized(data, size):
            p.feed(piece)
        assert p.buffered() == len(data)
        assert drain(p) == cmds
        assert p.buffered() == 0


@pytest.mark.parametrize(
    "cmd",
    [
        c.Put(0, 0, 0, b""), c.Put(U32_MAX, U32_MAX, U32_MAX, b"x" * DEFAULT_MAX_JOB_SIZE),
        c.Delete(0), c.Delete(2**62 - 1), c.Touch(12345), c.Reserve(None), c.Reserve(0),
        c.Reserve(RESERVE_TIMEOUT_MAX), c.ReserveBatch(1, 0), c.ReserveBatch(BATCH_MAX, 5),
        c.Release(1, U32_MAX, U32_MAX), c.Bury(2**62 - 1, U32_MAX), c.Stats(), c.Quit(),
    ],
)
def test_hot_path_takes_the_usual_forms(cmd: c.Command) -> None:
    # The general path would give the same events, so only this notices a hot path that
    # lets the usual forms through to it (slower, not wrong).
    p = Parser(DEFAULT_MAX_JOB_SIZE, hot_path=True)
    for data, at in ((encode(cmd), 0), (encode(cmd, zeros=2), 0), (b"use a\r\n" + encode(cmd), 7)):
        assert p._hot(data, at) == cmd, data


def test_hot_path_is_on_where_compiled() -> None:
    import tubeserver

    assert COMPILED == tubeserver.BUILD.startswith("compiled")
    assert Parser(1).hot_path == COMPILED


# --------------------------------------------------------------------------- property tests

FIRST_NAME_CHARS = NAME_ALPHABET.replace("-", "")
names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(FIRST_NAME_CHARS),
    st.text(alphabet=NAME_ALPHABET, max_size=NAME_MAX - 1),
)
u32 = st.integers(0, U32_MAX)
u64 = st.integers(0, U64_MAX)
bodies = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"put 0 0 0 1", b"stats", b"quit", b"\x00", b" "]),
    max_size=12,
).map(b"".join)
commands: st.SearchStrategy[c.Command] = st.one_of(
    st.builds(c.Put, u32, u32, u32, bodies),
    st.builds(c.Use, names),
    st.builds(c.Watch, names),
    st.builds(c.Ignore, names),
    st.builds(c.StatsTube, names),
    st.builds(c.Reserve, st.none() | st.integers(0, RESERVE_TIMEOUT_MAX)),
    st.builds(c.ReserveBatch, st.integers(1, BATCH_MAX), st.integers(0, RESERVE_TIMEOUT_MAX)),
    *(st.builds(cls, u64) for cls in ID_VERBS.values()),
    st.builds(c.Release, u64, u32, u32),
    st.builds(c.Bury, u64, u32),
    st.builds(c.Kick, u64),
    st.builds(c.PauseTube, names, u32),
    st.sampled_from(list(NO_ARG_VERBS.values())),
    st.builds(c.Finish, u64, bodies),
    st.builds(c.Fail, u64, u32, bodies),
    st.builds(c.Checkpoint, u64, bodies),
    st.builds(c.Result, u64, st.integers(0, RESERVE_TIMEOUT_MAX)),
    st.builds(c.JobStatus, u64),
    st.builds(c.PeekCheckpoint, u64),
)
styles = st.tuples(st.integers(1, 4), st.integers(0, 3))


def encode_all(cmds: Sequence[c.Command], style: Sequence[tuple[int, int]]) -> bytes:
    return b"".join(encode(cmd, *style[i % len(style)]) for i, cmd in enumerate(cmds))


@settings(max_examples=150, deadline=None)
@given(
    cmds=st.lists(commands, max_size=12),
    style=st.lists(styles, min_size=1, max_size=4),
    data=st.data(),
)
def test_roundtrip_any_chunking(
    cmds: list[c.Command], style: list[tuple[int, int]], data: st.DataObject
) -> None:
    stream = encode_all(cmds, style)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    whole = parse(stream)
    assert whole == cmds
    assert parse_chunks(cut(stream, points)) == whole


@settings(max_examples=40, deadline=None)
@given(cmds=st.lists(commands, max_size=6), style=st.lists(styles, min_size=1, max_size=2))
def test_roundtrip_one_byte_at_a_time(cmds: list[c.Command], style: list[tuple[int, int]]) -> None:
    stream = encode_all(cmds, style)
    assert parse_chunks(bytewise(stream)) == cmds


SMALL_MAX = 32  # so that random put headers hit both the body and the JOB_TOO_BIG paths
FRAMED = ("put", "finish", "fail", "checkpoint")  # verbs followed by data
ERRORS = (BadFormat(), UnknownCommand(), ExpectedCRLF(), JobTooBig())


def check_garbage(stream: bytes, points: Iterable[int]) -> list[c.Event]:
    """Events for `stream`: only known values, never another exception, independent of
    chunking, and a buffer no larger than one line or one accepted body."""
    whole = parse(stream, SMALL_MAX)
    assert parse(stream, SMALL_MAX, not COMPILED) == whole, "hot path and general path differ"
    counts = put_counts(parse_chunks([stream], SMALL_MAX, markers=True))
    for event in whole:
        assert isinstance(event, (*COMMAND_TYPES, c.Rejected)), event
        if isinstance(event, c.Rejected):
            assert event.error in ERRORS, event
            assert event.verb in (None, *FRAMED), event
            if event.error in (ExpectedCRLF(), JobTooBig()):
                assert event.verb in FRAMED, event
    # Besides the drawn cuts, cut right after every CR: a CRLF split across chunks is the
    # classic framing bug.
    after_cr = [i + 1 for i, byte in enumerate(stream) if byte == 0x0D]
    for cuts in (points, after_cr):
        p = Parser(SMALL_MAX)
        chunked: list[c.Event] = []
        for chunk in cut(stream, cuts):
            p.feed(chunk)
            chunked += drain(p, markers=True)
            assert p.buffered() < max(LINE_MAX, SMALL_MAX + 2), p.buffered()
        assert [e for e in chunked if not isinstance(e, c.PutStarted)] == whole
        assert put_counts(chunked) == counts
    return whole


TOKENS = [
    b"put ", b"put 0 0 0 ", b"peek", b"-ready", b"-delayed", b"-buried", b"reserve",
    b"-with-timeout ", b"-job ", b"delete ", b"release ", b"bury ", b"kick", b"-job ", b"touch ",
    b"stats", b"-job ", b"-tube ", b"use ", b"watch ", b"ignore ", b"list-tube", b"s",
    b"-used", b"-watched", b"quit", b"pause-tube ", b"\r\n", b"\r", b"\n", b"\x00", b" ",
    b"  ", b"0", b"1", b"31", b"32", b"33", b"99", b"4294967295", b"4294967296",
    b"18446744073709551615", b"18446744073709551616", b"-", b"+", b"abc", b"x" * 230,
    b"y" * 230 + CRLF, b"finish ", b"fail ", b"checkpoint ", b"result ", b"job-status ",
    b"peek-checkpoint ",
]
garbage = st.binary(max_size=600) | st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=garbage, data=st.data())
def test_garbage_yields_only_events_and_is_chunking_independent(
    stream: bytes, data: st.DataObject
) -> None:
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts")
    check_garbage(stream, points)


@settings(max_examples=30, deadline=None)
@given(stream=garbage)
def test_garbage_one_byte_at_a_time(stream: bytes) -> None:
    check_garbage(stream, range(len(stream)))


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    cmds = draw(st.lists(commands, min_size=1, max_size=8))
    stream = bytearray(encode_all(cmds, draw(st.lists(styles, min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "crlf", "nul"]))
        at = draw(st.integers(0, len(stream)))
        byte = draw(st.integers(0, 255))
        if op == "flip" and at < len(stream):
            stream[at] = byte
        elif op == "insert":
            stream[at:at] = bytes([byte])
        elif op == "delete":
            del stream[at : at + draw(st.integers(1, 4))]
        elif op == "crlf":
            stream[at:at] = CRLF
        elif op == "nul":
            stream[at:at] = b"\x00"
    return bytes(stream)


@settings(max_examples=250, deadline=None)
@given(stream=mutated_streams(), data=st.data())
def test_mutated_valid_streams(stream: bytes, data: st.DataObject) -> None:
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts")
    check_garbage(stream, points)


FRAMED_VERBS = (b"put", b"finish", b"fail", b"checkpoint")  # the headers that skip a body
RECOVERY_COMMANDS = [c.Stats(), c.Use("recovered"), c.Delete(7), c.Put(1, 2, 3, b"ok\r\n")]


def without_data_verbs(junk: bytes) -> bytes:
    """`junk` with every verb followed by data (put, finish, fail, checkpoint) spoiled."""
    for verb in FRAMED:
        junk = junk.replace(verb.encode(), verb[:-1].encode() + b"+")
    return junk


@settings(max_examples=250, deadline=None)
@given(
    junk=garbage.map(without_data_verbs),
    cmd=st.sampled_from(RECOVERY_COMMANDS),
    data=st.data(),
)
def test_recovers_after_garbage_without_put(
    junk: bytes, cmd: c.Command, data: st.DataObject
) -> None:
    # Without a header of a command with data (put, finish, ...) nothing can swallow bytes
    # past a CRLF: the line after the next CRLF is always parsed as a command (an over-long
    # garbage line ends at that CRLF). `finish \x01 10` skips its 10 bytes + 2, as put.
    stream = junk + CRLF + encode(cmd)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    events = check_garbage(stream, points)
    assert events[-1] == cmd
    p = Parser(SMALL_MAX)
    p.feed(stream)
    drain(p)
    assert p.buffered() == 0


@settings(max_examples=250, deadline=None)
@given(junk=garbage | mutated_streams(), cmd=st.sampled_from(RECOVERY_COMMANDS))
def test_recovers_after_any_garbage_unless_a_huge_body_is_being_skipped(
    junk: bytes, cmd: c.Command
) -> None:
    # Limits of recovery: a put header in the garbage legitimately swallows its body. An
    # accepted body (or a malformed header's skipped body) is at most max_job_size+2 bytes,
    # which the CRLF padding below covers; a JOB_TOO_BIG header skips up to 2**32+1 bytes,
    # which may swallow everything after it, or end anywhere inside what follows.
    padding = CRLF * (SMALL_MAX // 2 + 2)
    p = Parser(SMALL_MAX)
    p.feed(junk + CRLF + padding)
    drain(p)
    p.feed(encode(cmd) * 2)
    events = drain(p)
    if events[-1:] == [cmd]:
        assert p.buffered() == 0
    elif not events:
        # Still inside a JOB_TOO_BIG skip: nothing is kept.
        assert p.buffered() == 0
        assert any(verb in junk for verb in FRAMED_VERBS)
    else:
        # A skip ended inside the second copy; the next line parses. A JOB_TOO_BIG one, or
        # a malformed header's whose size (finish, fail, checkpoint: any 32-bit size) is
        # beyond the padding.
        assert TOO_BIG in events or c.Rejected(BadFormat()) in events, events
        p.feed(encode(cmd))
        assert drain(p)[-1:] == [cmd]


def test_auth_takes_one_printable_token_and_hides_it() -> None:
    token = "tbs_" + "A" * 40 + "-_.~!"
    (event,) = parse(b"auth " + token.encode() + b"\r\n")
    assert event == c.Auth(token) and token not in repr(event)
    for line in (b"auth \r\n", b"auth a b\r\n", b"auth " + b"x" * 201 + b"\r\n",
                 b"auth \x7f\r\n", b"auth \xc3\xa9\r\n"):
        (event,) = parse(line)
        assert event == c.Rejected(BadFormat()), line
    assert parse(b"auth " + b"x" * 200 + b"\r\n") == [c.Auth("x" * 200)]
