"""Flow control in the client codec and core, in memory: exact bytes both ways.

Commands: put-unique, put-after, schedule, unschedule, list-schedules, tube-limits and
list-tube-limits encode to the bytes of the spec (protocol.md, "Flow control"), tubeserver's
own parser reads each as exactly that command, and what the server would answer BAD_FORMAT
to (key and name rules, parent counts, rates, over-long lines) is refused before anything is
sent. Replies: every success and error line, whole and byte by byte, pipelined; the two YAML
listings into their records; job-status's `key`, `parents` and `waiting`; malformed replies,
which must raise UnexpectedReply and nothing else. Core: the per-connection detection of the
extension, with its probe before the first command that carries data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import tubeclient
from test_client_tracking_codec import (
    BYTEWISE,
    assert_error_keeps_sync,
    assert_success,
    assert_unsupported_remembered,
    broken_by,
    garbage_fuzz,
    ok,
    one,
    replies_of,
    status_yaml,
)
from tubeclient import commands as cc
from tubeclient import errors as ce
from tubeclient.bodies import RawBytes
from tubeclient.core import ClientCore
from tubeclient.flow import Schedule, TubeLimits, Unique, rate_text
from tubeclient.status import parse_job_status

from tubeserver import commands as sc
from tubeserver.limits import DEFAULT_MAX_JOB_SIZE
from tubeserver.parser import Parser

U32 = 2**32 - 1
U64 = 2**64 - 1
UTC = dt.UTC
NAME = "k" * 200


# --------------------------------------------------------------------------- commands out


@pytest.mark.parametrize(
    ("command", "data", "server"),
    [
        (cc.PutUnique("k1", 0, 10, 0, 60, b"abc"), b"put-unique k1 0 10 0 60 3\r\nabc\r\n",
         sc.PutUnique("k1", 0, 10, 0, 60, b"abc")),
        (cc.PutUnique(NAME, U32, U32, U32, U32, b"a\r\nb"),
         b"put-unique %b 4294967295 4294967295 4294967295 4294967295 4\r\na\r\nb\r\n"
         % NAME.encode(), sc.PutUnique(NAME, U32, U32, U32, U32, b"a\r\nb")),
        (cc.PutAfter((3,), 1, 2, 3, b""), b"put-after 3 1 2 3 0\r\n\r\n",
         sc.PutAfter((3,), 1, 2, 3, b"")),
        (cc.PutAfter(tuple(range(U64 - 99, U64 + 1)), 0, 0, 1, b"x"),
         b"put-after %b 0 0 1 1\r\nx\r\n" % b",".join(b"%d" % i for i in range(U64 - 99, U64 + 1)),
         sc.PutAfter(tuple(range(U64 - 99, U64 + 1)), 0, 0, 1, b"x")),
        (cc.Schedule("nightly", "reports", 10, 600, "30 2 * * *", b"go"),
         b"schedule nightly reports 10 600 2 30 2 * * *\r\ngo\r\n",
         sc.Schedule("nightly", "reports", 10, 600, "30 2 * * *", b"go")),
        (cc.Schedule("s", "t", 0, 1, "single every 5", b""),
         b"schedule s t 0 1 0 single every 5\r\n\r\n",
         sc.Schedule("s", "t", 0, 1, "single every 5", b"")),
        (cc.Unschedule("nightly"), b"unschedule nightly\r\n", sc.Unschedule("nightly")),
        (cc.ListSchedules(), b"list-schedules\r\n", sc.ListSchedules()),
        (cc.TubeLimits("t", 4, 0, 200), b"tube-limits t 4 0 200\r\n",
         sc.TubeLimits("t", 4, 0, 200.0)),
        (cc.TubeLimits("t", 0, U32, 0.5), b"tube-limits t 0 4294967295 0.5\r\n",
         sc.TubeLimits("t", 0, U32, 0.5)),
        (cc.TubeLimits("t", 0, 0, 0), b"tube-limits t 0 0 0\r\n", sc.TubeLimits("t", 0, 0, 0.0)),
        (cc.ListTubeLimits(), b"list-tube-limits\r\n", sc.ListTubeLimits()),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_command_bytes_and_the_server_reads_them_as_one(
    command: cc.Command[object], data: bytes, server: object
) -> None:
    assert command.encode() == data
    assert command.extension == "flow"
    for bytewise in (False, True):
        parser = Parser(DEFAULT_MAX_JOB_SIZE)
        events: list[object] = []
        for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
            parser.feed(chunk)
            while (event := parser.next_event()) is not None:
                events.append(event)
        assert events == [server]
        assert parser.buffered() == 0


@pytest.mark.parametrize(
    ("rate", "text"),
    [(0, b"0"), (-0.0, b"0"), (0.0, b"0"), (200, b"200"), (0.5, b"0.5"),
     (0.000001, b"0.000001"), (1_000_000, b"1000000"), (1e6, b"1000000"), (12.25, b"12.25"),
     (1 / 3, b"0.333333"), (2 / 3, b"0.666667")],
)
def test_rates_are_plain_decimals_of_six_places_at_most(rate: float, text: bytes) -> None:
    written = rate_text(rate)
    assert written == text
    whole, _, fraction = written.partition(b".")
    assert whole.isdigit() and (not fraction or (fraction.isdigit() and len(fraction) <= 6))


def test_a_rate_below_the_servers_precision_is_refused() -> None:
    with pytest.raises(ValueError, match=r"at least 0\.000001"):
        rate_text(1e-7)


BAD_VALUES: list[Callable[[], object]] = [
    lambda: cc.PutUnique("bad*key", 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("-k", 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("", 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("k" * 201, 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("k k", 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("k\r\n", 0, 0, 0, 1, b""),
    lambda: cc.PutUnique("k", U32 + 1, 0, 0, 1, b""),
    lambda: cc.PutUnique("k", -1, 0, 0, 1, b""),
    lambda: cc.PutAfter((), 0, 0, 1, b""),
    lambda: cc.PutAfter(tuple(range(1, 102)), 0, 0, 1, b""),
    lambda: cc.PutAfter((1, 1), 0, 0, 1, b""),
    lambda: cc.PutAfter((-1,), 0, 0, 1, b""),
    lambda: cc.PutAfter((U64 + 1,), 0, 0, 1, b""),
    lambda: cc.PutAfter((1,), U32 + 1, 0, 1, b""),
    lambda: cc.Schedule("s s", "t", 0, 1, "every 5", b""),
    lambda: cc.Schedule("s", "-t", 0, 1, "every 5", b""),
    lambda: cc.Schedule("s", "t", 0, 1, "", b""),
    lambda: cc.Schedule("s", "t", 0, 1, "   ", b""),
    lambda: cc.Schedule("s", "t", 0, 1, "every 5\r\ndelete 1", b""),
    lambda: cc.Schedule("s", "t", 0, 1, "every\t5", b""),
    lambda: cc.Schedule("s", "t", 0, 1, "every 5 é", b""),
    lambda: cc.Schedule(NAME, NAME, 0, 1, "every " + "5" * 2200, b""),  # line over 2560
    lambda: cc.Unschedule("no/such name"),
    lambda: cc.TubeLimits("t", 0, 0, -1),
    lambda: cc.TubeLimits("t", 0, 0, 1_000_000.5),
    lambda: cc.TubeLimits("t", 0, 0, float("nan")),
    lambda: cc.TubeLimits("t", 0, 0, float("inf")),
    lambda: cc.TubeLimits("t", U32 + 1, 0, 0),
    lambda: cc.TubeLimits(NAME, U32, U32, 123456.125),  # line over 224
]


@pytest.mark.parametrize("make", BAD_VALUES)
def test_what_the_server_would_refuse_never_reaches_the_wire(
    make: Callable[[], object],
) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: cc.PutUnique(b"k", 0, 0, 0, 1, b""),  # type: ignore[arg-type]
        lambda: cc.PutUnique("k", 0, 0, 0, 1, "body"),  # type: ignore[arg-type]
        lambda: cc.PutAfter([1, 2], 0, 0, 1, b""),  # type: ignore[arg-type]
        lambda: cc.PutAfter(("1",), 0, 0, 1, b""),  # type: ignore[arg-type]
        lambda: cc.PutAfter((True,), 0, 0, 1, b""),
        lambda: cc.Schedule("s", "t", 0, 1, None, b""),  # type: ignore[arg-type]
        lambda: cc.TubeLimits("t", 0, 0, "5"),  # type: ignore[arg-type]
        lambda: cc.TubeLimits("t", 0, 0, True),
        lambda: cc.TubeLimits("t", 1.5, 0, 0),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_are_type_errors(make: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        make()


def test_the_longest_legal_lines_are_accepted() -> None:
    cc.TubeLimits("t" * 180, U32, U32, 1_000_000)  # 223 bytes with CRLF
    spec = "every " + "0" * 1700 + "5"
    cmd = cc.Schedule(NAME, NAME, U32, U32, spec, b"x")
    assert len(cmd.encode().split(b"\r\n")[0]) + 2 <= 2560


def test_core_put_after_takes_jobs_and_ids_once_each_in_order() -> None:
    core: ClientCore[bytes] = ClientCore(("h", 1), RawBytes())
    job = tubeclient.Job(7, b"x", "h:1")
    cmd = core.put_after(b"body", [9, job, 9, 3, job], 1, 2, 3)
    assert cmd == cc.PutAfter((9, 7, 3), 1, 2, 3, b"body")
    with pytest.raises(ValueError, match="1 to 100 distinct parents"):
        core.put_after(b"body", [], 1, 2, 3)
    assert core.put_after(b"b", iter(range(1, 101)), 0, 0, 1).parents == tuple(range(1, 101))


# --------------------------------------------------------------------------- replies in


def schedules_yaml(*items: dict[str, object]) -> bytes:
    if not items:
        return b"--- []\n"
    lines = ["---"]
    for item in items:
        for i, (key, value) in enumerate(item.items()):
            text = f'"{value}"' if isinstance(value, str) else str(value)
            lines.append(("- " if i == 0 else "  ") + f"{key}: {text}")
    return ("\n".join(lines) + "\n").encode()


NIGHTLY: dict[str, object] = {
    "name": "nightly", "tube": "reports", "spec": "30 2 * * *", "pri": 10, "ttr": 600,
    "body-bytes": 2, "next": "2026-12-08T02:30:00.000000Z", "last": "", "last-job": 0,
    "jobs": 0, "skipped": 0,
}
EVERY: dict[str, object] = {
    "name": "123", "tube": "t", "spec": "single every 5", "pri": 0, "ttr": 1,
    "body-bytes": 0, "next": "2026-12-07T04:30:17.171649Z",
    "last": "2026-12-07T04:30:12.171649Z", "last-job": 41, "jobs": 3, "skipped": 2,
}
LIMITS: dict[str, object] = {
    "tube": "t1", "max-reserved": 4, "max-jobs": 10, "rate": "200.000000",
    "current-jobs-reserved": 1, "current-jobs": 2,
}


def unquoted_rate(payload: bytes) -> bytes:
    return payload.replace(b'rate: "200.000000"', b"rate: 200.000000").replace(
        b'rate: "0.500000"', b"rate: 0.500000"
    )


NIGHTLY_RECORD = Schedule(
    name="nightly", tube="reports", spec="30 2 * * *", priority=10, ttr=600, body_bytes=2,
    next=dt.datetime(2026, 12, 8, 2, 30, tzinfo=UTC), last=None, last_job=None, jobs=0,
    skipped=0,
)
EVERY_RECORD = Schedule(
    name="123", tube="t", spec="single every 5", priority=0, ttr=1, body_bytes=0,
    next=dt.datetime(2026, 12, 7, 4, 30, 17, 171649, tzinfo=UTC),
    last=dt.datetime(2026, 12, 7, 4, 30, 12, 171649, tzinfo=UTC), last_job=41, jobs=3,
    skipped=2,
)
LIMITS_RECORD = TubeLimits("t1", 4, 10, 200.0, 1, 2)
LIMITS_PAYLOAD = unquoted_rate(schedules_yaml(LIMITS, {**LIMITS, "tube": "9", "rate": "0.500000"}))


@BYTEWISE
@pytest.mark.parametrize(
    ("command", "data", "value"),
    [
        (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"INSERTED 5\r\n", Unique(5, True)),
        (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"DUPLICATE 3\r\n", Unique(3, False)),
        (cc.PutAfter((1,), 0, 0, 1, b"x"), b"INSERTED 9\r\n", 9),
        (cc.Schedule("s", "t", 0, 1, "every 5", b""), b"SCHEDULED\r\n", None),
        (cc.Unschedule("s"), b"UNSCHEDULED\r\n", None),
        (cc.TubeLimits("t", 1, 0, 0), b"LIMITED\r\n", None),
        (cc.ListSchedules(), ok(b"--- []\n"), []),
        (cc.ListSchedules(), ok(schedules_yaml(NIGHTLY, EVERY)), [NIGHTLY_RECORD, EVERY_RECORD]),
        (cc.ListTubeLimits(), ok(b"--- []\n"), []),
        (cc.ListTubeLimits(), ok(LIMITS_PAYLOAD),
         [LIMITS_RECORD, TubeLimits("9", 4, 10, 0.5, 1, 2)]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_success_replies(
    command: cc.Command[object], data: bytes, value: object, bytewise: bool
) -> None:
    assert_success(command, data, value, bytewise)


def test_a_rate_written_as_an_integer_is_a_float() -> None:
    payload = schedules_yaml({**LIMITS, "rate": 0}).replace(b'"', b"")
    (limits,) = cc.ListTubeLimits().read(payload)
    assert limits.rate == 0.0 and isinstance(limits.rate, float)
    assert limits.tube == "t1"


PUTS: list[cc.Command[object]] = [
    cc.PutUnique("k", 0, 0, 0, 1, b"x"), cc.PutAfter((1,), 0, 0, 1, b"x"),
    cc.Schedule("s", "t", 0, 1, "every 5", b""),
]
ERRORS: list[tuple[cc.Command[object], bytes]] = [
    *[(cmd, w) for cmd in PUTS for w in (b"JOB_TOO_BIG", b"EXPECTED_CRLF", b"BAD_FORMAT",
                                          b"UNKNOWN_COMMAND", b"DRAINING", b"OUT_OF_MEMORY")],
    (PUTS[0], b"TUBE_FULL"),
    (PUTS[1], b"TUBE_FULL"),
    (PUTS[1], b"NOT_FOUND"),
    (cc.Unschedule("s"), b"NOT_FOUND"),
    (cc.TubeLimits("t", 1, 0, 0), b"BAD_FORMAT"),
    (cc.ListSchedules(), b"UNKNOWN_COMMAND"),
    (cc.ListTubeLimits(), b"UNKNOWN_COMMAND"),
    (cc.Put(0, 0, 1, b"x"), b"TUBE_FULL"),  # any put, once max-jobs is set
]


@BYTEWISE
@pytest.mark.parametrize(("command", "word"), ERRORS, ids=lambda v: getattr(v, "verb", v))
def test_error_lines_are_their_exceptions_and_keep_sync(
    command: cc.Command[object], word: bytes, bytewise: bool
) -> None:
    assert_error_keeps_sync(command, word, bytewise)


@BYTEWISE
def test_every_reply_pipelined_in_one_stream(bytewise: bool) -> None:
    cmds: list[cc.Command[object]] = [
        cc.PutUnique("k", 0, 0, 0, 1, b"a"), cc.PutUnique("k", 0, 0, 0, 1, b"a"),
        cc.PutAfter((1,), 0, 0, 1, b"b"), cc.ListSchedules(), cc.TubeLimits("t", 0, 1, 0),
        cc.Put(0, 0, 1, b"c"), cc.ListTubeLimits(), cc.Unschedule("s"),
    ]
    data = (
        b"INSERTED 1\r\nDUPLICATE 1\r\nINSERTED 2\r\n" + ok(schedules_yaml(NIGHTLY))
        + b"LIMITED\r\nTUBE_FULL\r\n" + ok(schedules_yaml(LIMITS).replace(b'"2', b"2")
                                            .replace(b'0"', b"0"))
        + b"NOT_FOUND\r\n"
    )
    replies = replies_of(cmds, data, bytewise)
    assert [r.command for r in replies] == cmds
    assert [r.value for r in replies] == [
        Unique(1, True), Unique(1, False), 2, [NIGHTLY_RECORD], None, None, [LIMITS_RECORD],
        None,
    ]
    assert [r.error for r in replies][-3:] == [ce.TubeFull(), None, ce.NotFound()]


# --------------------------------------------------------------------------- job-status


def test_status_of_a_waiting_job_with_parents() -> None:
    status = parse_job_status(status_yaml(state="waiting", key="", parents="3,17"))
    assert (status.state, status.key, status.parents) == ("waiting", None, (3, 17))


def test_status_of_a_job_holding_a_key() -> None:
    status = parse_job_status(status_yaml(key="order-42", parents=""))
    assert (status.key, status.parents) == ("order-42", ())
    unquoted = parse_job_status(status_yaml(key="123", parents="5").replace(b'"', b""))
    assert (unquoted.key, unquoted.parents) == ("123", (5,))  # digits stay a key, a list


def test_status_from_a_server_before_flow_control() -> None:
    status = parse_job_status(status_yaml())
    assert (status.key, status.parents) == (None, ())


# --------------------------------------------------------------------------- malformed


GARBAGE: list[tuple[cc.Command[object], bytes]] = [
    (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"INSERTED\r\n"),
    (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"DUPLICATE\r\n"),
    (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"DUPLICATE x\r\n"),
    (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"DUPLICATE 1 2\r\n"),
    (cc.PutUnique("k", 0, 0, 0, 1, b"x"), b"BURIED 1\r\n"),
    (cc.PutAfter((1,), 0, 0, 1, b"x"), b"DUPLICATE 1\r\n"),  # put-unique's answer only
    (cc.Put(0, 0, 1, b"x"), b"DUPLICATE 1\r\n"),
    (cc.PutAfter((1,), 0, 0, 1, b"x"), b"INSERTED -1\r\n"),
    (cc.Schedule("s", "t", 0, 1, "every 5", b""), b"SCHEDULED 1\r\n"),
    (cc.Schedule("s", "t", 0, 1, "every 5", b""), b"INSERTED 1\r\n"),
    (cc.Unschedule("s"), b"UNSCHEDULED s\r\n"),
    (cc.TubeLimits("t", 1, 0, 0), b"LIMITED 1\r\n"),
    (cc.TubeLimits("t", 1, 0, 0), b"TUBE_FULL 1\r\n"),
    (cc.ListSchedules(), b"OK\r\n"),
    (cc.ListSchedules(), ok(b"---\n")),  # empty is written `--- []`
    (cc.ListSchedules(), ok(b"--- [ ]\n")),
    (cc.ListSchedules(), ok(b"---\n- a\n")),
    (cc.ListSchedules(), ok(b"---\nname: x\n")),  # a mapping, not a sequence
    (cc.ListSchedules(), ok(schedules_yaml(NIGHTLY) + b"   jobs: 1\n")),
    (cc.ListSchedules(), ok(schedules_yaml(NIGHTLY) + b"  jobs: 1\n")),  # a repeated key
    (cc.ListSchedules(), ok(schedules_yaml({k: v for k, v in NIGHTLY.items() if k != "jobs"}))),
    (cc.ListSchedules(), ok(schedules_yaml({**NIGHTLY, "pri": "ten"}))),
    (cc.ListSchedules(), ok(schedules_yaml({**NIGHTLY, "next": "2026-12-08"}))),
    (cc.ListSchedules(), ok(schedules_yaml({**NIGHTLY, "last": "2026-12-08T02:30:00"}))),
    (cc.ListSchedules(), ok(schedules_yaml({**NIGHTLY, "skipped": 1.5}))),
    (cc.ListTubeLimits(), ok(schedules_yaml(LIMITS))),  # a quoted rate is a string
    (cc.ListTubeLimits(), ok(unquoted_rate(schedules_yaml({**LIMITS, "max-jobs": -1})))),
    (cc.ListTubeLimits(), ok(schedules_yaml({**LIMITS, "rate": "fast"}).replace(b'"f', b"f")
                             .replace(b't"', b"t"))),
    (cc.ListTubeLimits(), ok(b"--- []\n- tube: t\n")),
    (cc.JobStatus(1), ok(status_yaml(parents="1,x"))),
    (cc.JobStatus(1), ok(status_yaml(parents="1,,2"))),
    (cc.JobStatus(1), ok(status_yaml(parents=","))),
    (cc.JobStatus(1), ok(status_yaml(parents="-1"))),
    (cc.JobStatus(1), ok(status_yaml(key="k"))),  # key without parents
]


@pytest.mark.parametrize(("command", "data"), GARBAGE)
def test_malformed_replies_are_unexpected(command: cc.Command[object], data: bytes) -> None:
    broken_by(command, data)


def test_a_bad_listing_names_the_reply_and_the_key() -> None:
    error = broken_by(cc.ListSchedules(), ok(schedules_yaml({**NIGHTLY, "next": "soon"})))
    assert "list-schedules" in str(error) and "next" in str(error)


FLOW_CHOICES: list[cc.Command[object]] = [
    cc.PutUnique("k", 0, 0, 0, 1, b"x"), cc.PutAfter((1,), 0, 0, 1, b""), cc.ListSchedules(),
    cc.Schedule("s", "t", 0, 1, "every 5", b""), cc.ListTubeLimits(), cc.TubeLimits("t", 0, 0, 1),
    cc.Unschedule("s"), cc.Put(0, 0, 1, b"x"),
]
REPLY_PIECES = [
    b"INSERTED 1\r\n", b"DUPLICATE 1\r\n", b"DUPLICATE ", b"SCHEDULED\r\n", b"UNSCHEDULED\r\n",
    b"LIMITED\r\n", b"TUBE_FULL\r\n", b"NOT_FOUND\r\n", ok(b"--- []\n"),
    ok(schedules_yaml(NIGHTLY)), ok(LIMITS_PAYLOAD), b"OK 7\r\n--- []\n", b"- ", b"  ",
    b"\r\n", b"\n", b"-1", b": ",
]


test_garbage_fuzz_only_ever_raises_unexpected_reply = garbage_fuzz(FLOW_CHOICES, REPLY_PIECES)


# --------------------------------------------------------------------------- detection


def core() -> ClientCore[Any]:
    return ClientCore(("h", 1), RawBytes())


DATA_COMMANDS: list[cc.Command[object]] = PUTS
PLAIN_COMMANDS: list[cc.Command[object]] = [
    cc.Unschedule("s"), cc.ListSchedules(), cc.TubeLimits("t", 1, 0, 0), cc.ListTubeLimits(),
]


@pytest.mark.parametrize("cmd", DATA_COMMANDS, ids=lambda v: v.verb)
def test_commands_with_data_are_probed_with_list_tube_limits_until_support_is_known(
    cmd: cc.Command[object],
) -> None:
    c = core()
    probe = c.probe(cmd)
    assert probe == cc.ListTubeLimits()
    assert probe is not None
    c.learn(cmd, one(probe, ok(b"--- []\n")))
    assert c.flow.supported is True
    assert c.probe(cmd) is None
    assert c.tracking.supported is None  # job tracking is a separate question


@pytest.mark.parametrize("cmd", PLAIN_COMMANDS, ids=lambda v: v.verb)
def test_commands_without_data_are_never_probed(cmd: cc.Command[object]) -> None:
    assert core().probe(cmd) is None


@pytest.mark.parametrize("word", [b"UNKNOWN_COMMAND", b"BAD_FORMAT"])
@pytest.mark.parametrize("cmd", DATA_COMMANDS + PLAIN_COMMANDS, ids=lambda v: v.verb)
def test_unsupported_is_detected_and_remembered(cmd: cc.Command[object], word: bytes) -> None:
    c = core()
    assert_unsupported_remembered(c, cmd, word, DATA_COMMANDS + PLAIN_COMMANDS)
    assert c.flow.supported is False
    assert c.probe(cc.JobStatus(1)) is None  # job tracking may still be there
    assert c.tracking.supported is None


def test_bad_format_after_support_is_the_servers_error() -> None:
    # A schedule with a cron expression that never fires, once the server answered the probe.
    c = core()
    cmd = cc.Schedule("s", "t", 0, 1, "0 0 30 2 *", b"")
    probe = c.probe(cmd)
    assert probe is not None
    c.learn(cmd, one(probe, ok(b"--- []\n")))
    reply = one(cmd, b"BAD_FORMAT\r\n")
    c.learn(cmd, reply)
    with pytest.raises(ce.BadFormat):
        cmd.unwrap(reply)


def test_tracking_unsupported_leaves_flow_control_unknown() -> None:
    c = core()
    status = cc.JobStatus(5)
    with pytest.raises(ce.ExtensionNotSupported):
        c.learn(status, one(status, b"UNKNOWN_COMMAND\r\n"))
    assert c.flow.supported is None
    assert c.probe(cc.ListSchedules()) is None


def test_exports_and_error_tree() -> None:
    assert issubclass(ce.TubeFull, ce.ServerError)
    assert ce.SERVER_ERRORS[b"TUBE_FULL"] is ce.TubeFull
    assert str(ce.TubeFull()) == "TUBE_FULL"
    for name in ("TubeFull", "Unique", "Schedule", "TubeLimits"):
        assert name in tubeclient.__all__
        assert getattr(tubeclient, name) is not None
    assert "TubeFull" in (ce.__doc__ or "")
    with pytest.raises(AttributeError):
        Unique(1, True).new = False  # type: ignore[misc]
