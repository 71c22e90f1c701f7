"""The parser on job tracking's commands: data framed as put's body, errors as put's."""

from __future__ import annotations

import pytest

from tubeserver import commands as c
from tubeserver.errors import BadFormat, ExpectedCRLF, JobTooBig, UnknownCommand
from tubeserver.parser import Parser

BF = c.Rejected(BadFormat())


def parse(data: bytes, max_job_size: int = 10) -> list[c.Event]:
    p = Parser(max_job_size)
    p.feed(data)
    out: list[c.Event] = []
    while (event := p.next_event()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize(("data", "expected"), [
    (b"finish 5 2\r\nok\r\n", c.Finish(5, b"ok")),
    (b"finish 5 0\r\n\r\n", c.Finish(5, b"")),
    (b"fail 7 100 4\r\noops\r\n", c.Fail(7, 100, b"oops")),
    (b"checkpoint 9 3\r\na\r\n\r\n", c.Checkpoint(9, b"a\r\n")),
    (b"result 3 0\r\n", c.Result(3, 0)),
    (b"result 3 2147483647\r\n", c.Result(3, 2147483647)),
    (b"job-status 18446744073709551615\r\n", c.JobStatus(18446744073709551615)),
    (b"peek-checkpoint 1\r\n", c.PeekCheckpoint(1)),
    (b"finish  5  2\r\nok\r\n", c.Finish(5, b"ok")),  # extra spaces, as beanstalkd's numbers
])
def test_valid(data: bytes, expected: c.Event) -> None:
    assert parse(data) == [expected]


@pytest.mark.parametrize("line", [
    b"result 3", b"result 3 2147483648", b"result x 1", b"job-status", b"job-status 1 2",
    b"peek-checkpoint -1", b"result 3 1 ",
])
def test_malformed_lines_are_bad_format_or_unknown(line: bytes) -> None:
    # A bare verb is UNKNOWN_COMMAND, as beanstalkd answers any word it does not know.
    want = c.Rejected(UnknownCommand()) if b" " not in line else BF
    assert parse(line + b"\r\nstats\r\n") == [want, c.Stats()]


@pytest.mark.parametrize(("verb", "header"), [
    (b"finish", b"5 11"), (b"fail", b"5 0 11"), (b"checkpoint", b"5 11"),
])
def test_data_over_the_max_job_size_is_skipped_then_job_too_big(verb: bytes,
                                                                  header: bytes) -> None:
    data = verb + b" " + header + b"\r\n" + b"r" * 11 + b"\r\nstats\r\n"
    assert parse(data) == [c.Rejected(JobTooBig(), verb.decode()), c.Stats()]


@pytest.mark.parametrize("data", [
    b"finish x 2\r\nok\r\n", b"fail 5 x 2\r\nok\r\n", b"checkpoint -5 2\r\nok\r\n",
])
def test_a_bad_header_with_a_size_skips_its_data(data: bytes) -> None:
    assert parse(data + b"stats\r\n") == [BF, c.Stats()]


def test_a_bad_header_without_a_size_skips_nothing() -> None:
    assert parse(b"finish 5 x\r\nstats\r\n") == [BF, c.Stats()]


def test_missing_crlf_after_the_data_is_expected_crlf() -> None:
    assert parse(b"finish 5 2\r\nokXYstats\r\n") == [
        c.Rejected(ExpectedCRLF(), "finish"), c.Stats()]


def test_data_one_byte_at_a_time() -> None:
    data = b"fail 7 1 5\r\nab\r\nc\r\nresult 7 1\r\n"
    p = Parser(10)
    out: list[c.Event] = []
    for i in range(len(data)):
        p.feed(data[i : i + 1])
        while (event := p.next_event()) is not None:
            out.append(event)
    assert out == [c.Fail(7, 1, b"ab\r\nc"), c.Result(7, 1)]
