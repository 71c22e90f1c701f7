"""The parser on flow control's commands: data framed as put's body, errors as put's."""

from __future__ import annotations

import pytest

from tubeserver import commands as c
from tubeserver.errors import BadFormat, ExpectedCRLF, JobTooBig, UnknownCommand
from tubeserver.parser import Parser

BF = c.Rejected(BadFormat())


def parse(data: bytes, max_job_size: int = 10, step: int = 0) -> list[c.Event]:
    """Every event of `data`, fed whole or `step` bytes at a time."""
    p = Parser(max_job_size)
    out: list[c.Event] = []
    chunks = [data] if not step else [data[i:i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        p.feed(chunk)
        while (event := p.next_event()) is not None:
            out.append(event)
    return out


@pytest.mark.parametrize(("data", "expected"), [
    (b"put-unique report-7 3600 10 0 60 2\r\nhi\r\n",
     c.PutUnique("report-7", 3600, 10, 0, 60, b"hi")),
    (b"put-unique k 0 0 0 0 0\r\n\r\n", c.PutUnique("k", 0, 0, 0, 0, b"")),
    (b"put-after 3,4,5 1 2 3 1\r\nx\r\n", c.PutAfter((3, 4, 5), 1, 2, 3, b"x")),
    (b"put-after 3,3,4,3 1 2 3 1\r\nx\r\n", c.PutAfter((3, 4), 1, 2, 3, b"x")),  # distinct
    (b"schedule nightly reports 5 600 3 0 2 * * *\r\nabc\r\n",
     c.Schedule("nightly", "reports", 5, 600, "0 2 * * *", b"abc")),
    (b"schedule s t 0 1 0 single  every 5\r\n\r\n",
     c.Schedule("s", "t", 0, 1, "single  every 5", b"")),
    (b"unschedule nightly\r\n", c.Unschedule("nightly")),
    (b"list-schedules\r\n", c.ListSchedules()),
    (b"tube-limits emails 5 1000 2.5\r\n", c.TubeLimits("emails", 5, 1000, 2.5)),
    (b"tube-limits emails 0 0 0\r\n", c.TubeLimits("emails", 0, 0, 0.0)),
    (b"list-tube-limits\r\n", c.ListTubeLimits()),
])
def test_valid(data: bytes, expected: c.Event) -> None:
    assert parse(data) == [expected]
    assert parse(data + data, step=1) == [expected, expected]


@pytest.mark.parametrize("line", [
    b"unschedule", b"unschedule -x", b"unschedule a b", b"tube-limits t 1 1",
    b"tube-limits t 1 1 1.", b"tube-limits t 1 1 .5", b"tube-limits t 1 1 1e3",
    b"tube-limits t 1 1 1000001", b"tube-limits t 1 1 0.0000001", b"tube-limits t -1 1 1",
    b"tube-limits t 4294967296 0 0",
    b"list-schedules x",
])
def test_malformed_lines_are_bad_format_or_unknown(line: bytes) -> None:
    want = c.Rejected(UnknownCommand()) if b" " not in line else BF
    if line == b"list-schedules x":
        want = c.Rejected(UnknownCommand())  # not a verb that takes arguments
    assert parse(line + b"\r\nstats\r\n") == [want, c.Stats()]


@pytest.mark.parametrize("header", [
    b"put-unique bad*key 0 0 0 10 2",  # a key follows the tube-name rules
    b"put-unique -k 0 0 0 10 2",
    b"put-unique " + b"k" * 201 + b" 0 0 0 10 2",
    b"put-unique k 4294967296 0 0 10 2",
    b"put-after 1,,2 0 0 10 2",
    b"put-after 1,x 0 0 10 2",
    b"put-after " + b",".join(b"%d" % i for i in range(1, 102)) + b" 0 0 10 2",  # 101 parents
    b"schedule s t 0 10 2",  # no spec
    b"schedule s bad*tube 0 10 2 every 5",
    b"schedule s t x 10 2 every 5",
])
def test_a_bad_header_with_a_size_skips_its_data(header: bytes) -> None:
    assert parse(header + b"\r\nok\r\nstats\r\n") == [BF, c.Stats()]


def test_a_bad_header_without_a_size_skips_nothing() -> None:
    assert parse(b"put-unique k 0 0 0 10\r\nstats\r\n") == [BF, c.Stats()]


@pytest.mark.parametrize(("verb", "header"), [
    (b"put-unique", b"k 0 0 0 10 11"), (b"put-after", b"1 0 0 10 11"),
    (b"schedule", b"s t 0 10 11 every 5"),
])
def test_data_over_the_max_job_size_is_skipped_then_job_too_big(verb: bytes,
                                                                  header: bytes) -> None:
    data = verb + b" " + header + b"\r\n" + b"r" * 11 + b"\r\nstats\r\n"
    assert parse(data) == [c.Rejected(JobTooBig(), verb.decode()), c.Stats()]


def test_missing_crlf_after_the_data_is_expected_crlf() -> None:
    assert parse(b"put-after 1 0 0 10 2\r\nokXYstats\r\n") == [
        c.Rejected(ExpectedCRLF(), "put-after"), c.Stats()]
