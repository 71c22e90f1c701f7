"""Admin commands in the client codec and core, in memory: exact bytes both ways.

Commands: list-jobs, clear-tube, kick-tube and tube-info encode to the bytes of the spec
(protocol.md, "Admin commands"), tubeserver's own parser reads each as exactly that
command, and what the server would answer BAD_FORMAT to (a state it does not take, an offset
or limit out of range) is refused before anything is sent. Replies: every success and error
line, whole and byte by byte, pipelined; list-jobs and tube-info (written by tubeserver's own
YAML writer) into their records; malformed replies, which must raise UnexpectedReply and
nothing else. Core: the per-connection detection of the extension, which needs no probe.
"""

from __future__ import annotations

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
    replies_of,
)
from tubeclient import admin as ca
from tubeclient import commands as cc
from tubeclient import errors as ce
from tubeclient.admin import CLEAR_STATES, LIST_STATES, JobSummary, TubeInfo
from tubeclient.bodies import RawBytes
from tubeclient.core import ClientCore

from tubeserver import commands as sc
from tubeserver import limits as sl
from tubeserver import stats as ss
from tubeserver.limits import DEFAULT_MAX_JOB_SIZE
from tubeserver.parser import Parser

U64 = 2**64 - 1
NAME = "t" * 200
LONG = "t" * 193  # the longest name that list-jobs' longest line holds


# --------------------------------------------------------------------------- commands out


@pytest.mark.parametrize(
    ("command", "data", "server"),
    [
        (cc.ListJobs("emails", "ready", 0, 100), b"list-jobs emails ready 0 100\r\n",
         sc.ListJobs("emails", "ready", 0, 100)),
        (cc.ListJobs(LONG, "waiting", 10_000, 1000),  # 224 bytes with CRLF
         b"list-jobs %b waiting 10000 1000\r\n" % LONG.encode(),
         sc.ListJobs(LONG, "waiting", 10_000, 1000)),
        (cc.ListJobs("t", "reserved", 5, 1), b"list-jobs t reserved 5 1\r\n",
         sc.ListJobs("t", "reserved", 5, 1)),
        (cc.ClearTube("t", "buried"), b"clear-tube t buried\r\n", sc.ClearTube("t", "buried")),
        (cc.ClearTube(NAME, "waiting"), b"clear-tube %b waiting\r\n" % NAME.encode(),
         sc.ClearTube(NAME, "waiting")),
        (cc.KickTube("t", 0), b"kick-tube t 0\r\n", sc.KickTube("t", 0)),
        (cc.KickTube("t", U64), b"kick-tube t 18446744073709551615\r\n", sc.KickTube("t", U64)),
        (cc.KickTube(NAME, 10**10), b"kick-tube %b 10000000000\r\n" % NAME.encode(),
         sc.KickTube(NAME, 10**10)),
        (cc.TubeInfo("a-b+c"), b"tube-info a-b+c\r\n", sc.TubeInfo("a-b+c")),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_command_bytes_and_the_server_reads_them_as_one(
    command: cc.Command[object], data: bytes, server: object
) -> None:
    assert command.encode() == data
    assert command.extension == "admin"
    for bytewise in (False, True):
        parser = Parser(DEFAULT_MAX_JOB_SIZE)
        events: list[object] = []
        for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
            parser.feed(chunk)
            while (event := parser.next_event()) is not None:
                events.append(event)
        assert events == [server]
        assert parser.buffered() == 0


def test_the_longest_lines_fit() -> None:
    for cmd in (cc.ListJobs(LONG, "waiting", 10_000, 1000), cc.KickTube(NAME, 10**10),
                cc.ClearTube(NAME, "waiting"), cc.TubeInfo(NAME)):
        assert len(cmd.encode()) <= sl.LINE_MAX


def test_the_clients_bounds_are_the_servers() -> None:
    assert (LIST_STATES, CLEAR_STATES) == (sl.LIST_STATES, sl.CLEAR_STATES)
    assert (ca.OFFSET_MAX, ca.LIST_MAX) == (
        sl.OFFSET_MAX, sl.LIST_MAX)


BAD_VALUES: list[Callable[[], object]] = [
    lambda: cc.ListJobs("t", "finished", 0, 1),
    lambda: cc.ListJobs("t", "READY", 0, 1),
    lambda: cc.ListJobs("t", "ready", -1, 1),
    lambda: cc.ListJobs("t", "ready", 10_001, 1),
    lambda: cc.ListJobs("t", "ready", 0, 0),
    lambda: cc.ListJobs("t", "ready", 0, 1001),
    lambda: cc.ListJobs("t t", "ready", 0, 1),
    lambda: cc.ListJobs("-t", "ready", 0, 1),
    lambda: cc.ClearTube("t", "reserved"),  # a reserved job is its worker's
    lambda: cc.ClearTube("t", ""),
    lambda: cc.ClearTube("t\r\nstats", "ready"),
    lambda: cc.KickTube("t", -1),
    lambda: cc.KickTube("t", U64 + 1),
    lambda: cc.KickTube("", 1),
    lambda: cc.TubeInfo("t" * 201),
    lambda: cc.TubeInfo("a*b"),
    lambda: cc.ListJobs(LONG + "t", "waiting", 10_000, 1000),  # a line over 224 bytes
    lambda: cc.KickTube(NAME, 10**11),
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
        lambda: cc.ListJobs("t", None, 0, 1),  # type: ignore[arg-type]
        lambda: cc.ListJobs("t", "ready", "0", 1),  # type: ignore[arg-type]
        lambda: cc.ListJobs("t", "ready", 0, True),
        lambda: cc.ClearTube(b"t", "ready"),  # type: ignore[arg-type]
        lambda: cc.KickTube("t", 1.0),  # type: ignore[arg-type]
        lambda: cc.TubeInfo(None),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_are_type_errors(make: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        make()


# --------------------------------------------------------------------------- replies in


def info_pairs(**changes: object) -> list[tuple[str, Any]]:
    """tube-info's keys in the server's order; `changes` replace values (underscores for
    dashes)."""
    pairs: dict[str, object] = {
        "name": "emails", "current-jobs-ready": 3, "current-jobs-reserved": 1,
        "current-jobs-delayed": 2, "current-jobs-buried": 4, "current-jobs-waiting": 5,
        "oldest-ready-age": 17, "total-jobs": 20, "total-reserves": 9, "total-deletes": 6,
        "total-releases": 1, "total-buries": 4, "total-kicks": 2, "total-timeouts": 1,
        "current-waiting": 0, "paused": True, "pause-time-left": 30, "max-reserved": 4,
        "max-jobs": 0, "rate": 0.5,
    }
    for key, value in changes.items():
        pairs[key.replace("_", "-")] = value
    return list(pairs.items())


def info_yaml(**changes: object) -> bytes:
    return ss.to_yaml([p for p in info_pairs(**changes) if p[1] is not None])


INFO = TubeInfo(
    name="emails", current_jobs_ready=3, current_jobs_reserved=1, current_jobs_delayed=2,
    current_jobs_buried=4, current_jobs_waiting=5, oldest_ready_age=17, total_jobs=20,
    total_reserves=9, total_deletes=6, total_releases=1, total_buries=4, total_kicks=2,
    total_timeouts=1, current_waiting=0, paused=True, pause_time_left=30, max_reserved=4,
    max_jobs=0, rate=0.5,
)


def jobs_yaml(*ids: int) -> bytes:
    return ss.to_yaml_seq([[("id", i), ("pri", 10 * i), ("age", 3), ("time-left", 0),
                            ("reserves", 1), ("body-size", 11)] for i in ids])


def summary(id: int) -> JobSummary:
    return JobSummary(id=id, priority=10 * id, age=3, time_left=0, reserves=1, body_size=11)


@BYTEWISE
@pytest.mark.parametrize(
    ("command", "data", "value"),
    [
        (cc.ListJobs("t", "ready", 0, 10), ok(b"--- []\n"), []),
        (cc.ListJobs("t", "ready", 0, 10), ok(jobs_yaml(5)), [summary(5)]),
        (cc.ListJobs("t", "buried", 2, 10), ok(jobs_yaml(9, 2, 7)),
         [summary(9), summary(2), summary(7)]),
        (cc.ClearTube("t", "ready"), b"CLEARED 0\r\n", 0),
        (cc.ClearTube("t", "buried"), b"CLEARED 1000000\r\n", 1_000_000),
        (cc.KickTube("t", 5), b"KICKED 3\r\n", 3),
        (cc.TubeInfo("emails"), ok(info_yaml()), INFO),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_success_replies(
    command: cc.Command[object], data: bytes, value: object, bytewise: bool
) -> None:
    assert_success(command, data, value, bytewise)


def test_tube_info_with_no_ready_job_and_no_limits() -> None:
    info = cc.TubeInfo("t").read(info_yaml(oldest_ready_age=-1, paused=False, rate=0.0,
                                           pause_time_left=0, max_reserved=0))
    assert info.oldest_ready_age is None
    assert (info.paused, info.rate, info.max_reserved) == (False, 0.0, 0)
    assert isinstance(info.rate, float)


def test_tube_info_names_stay_names_and_unknown_keys_are_ignored() -> None:
    payload = info_yaml(name="123") + b"later-key: 5\n"
    assert cc.TubeInfo("123").read(payload).name == "123"
    unquoted = payload.replace(b'"123"', b"123")  # as a beanstalkd 1.12 style writer would
    assert cc.TubeInfo("123").read(unquoted).name == "123"


ERRORS: list[tuple[cc.Command[object], bytes]] = [
    *[(cmd, word) for cmd in (cc.ListJobs("t", "ready", 0, 1), cc.ClearTube("t", "ready"),
                              cc.KickTube("t", 1), cc.TubeInfo("t"))
      for word in (b"NOT_FOUND", b"BAD_FORMAT", b"UNKNOWN_COMMAND", b"INTERNAL_ERROR")],
    (cc.ClearTube("t", "ready"), b"OUT_OF_MEMORY"),
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
        cc.ListJobs("t", "ready", 0, 5), cc.TubeInfo("emails"), cc.ClearTube("t", "ready"),
        cc.KickTube("t", 9), cc.Kick(9), cc.TubeInfo("gone"), cc.ListJobs("t", "delayed", 0, 5),
    ]
    data = (ok(jobs_yaml(1, 2)) + ok(info_yaml()) + b"CLEARED 7\r\nKICKED 2\r\nKICKED 0\r\n"
            + b"NOT_FOUND\r\n" + ok(b"--- []\n"))
    replies = replies_of(cmds, data, bytewise)
    assert [r.command for r in replies] == cmds
    assert [r.value for r in replies] == [[summary(1), summary(2)], INFO, 7, 2, 0, None, []]
    assert replies[5].error == ce.NotFound()


GARBAGE: list[tuple[cc.Command[object], bytes]] = [
    (cc.ClearTube("t", "ready"), b"CLEARED\r\n"),
    (cc.ClearTube("t", "ready"), b"CLEARED -1\r\n"),
    (cc.ClearTube("t", "ready"), b"CLEARED 1 2\r\n"),
    (cc.ClearTube("t", "ready"), b"KICKED 1\r\n"),
    (cc.KickTube("t", 1), b"KICKED\r\n"),  # kick-job's answer, not kick-tube's
    (cc.KickTube("t", 1), b"CLEARED 1\r\n"),
    (cc.TubeInfo("t"), b"OK\r\n"),
    (cc.TubeInfo("t"), ok(b"---\n- a\n")),
    (cc.TubeInfo("t"), ok(info_yaml(total_jobs=None))),
    (cc.TubeInfo("t"), ok(info_yaml(paused="yes"))),
    (cc.TubeInfo("t"), ok(info_yaml(paused=1))),
    (cc.TubeInfo("t"), ok(info_yaml(rate="fast"))),
    (cc.TubeInfo("t"), ok(info_yaml(oldest_ready_age=-2))),
    (cc.TubeInfo("t"), ok(info_yaml(current_jobs_ready=1.5))),
    (cc.ListJobs("t", "ready", 0, 1), ok(b"---\n")),  # empty is written `--- []`
    (cc.ListJobs("t", "ready", 0, 1), ok(info_yaml())),  # a mapping, not a sequence
    (cc.ListJobs("t", "ready", 0, 1), ok(jobs_yaml(1).replace(b"  body-size: 11\n", b""))),
    (cc.ListJobs("t", "ready", 0, 1), ok(jobs_yaml(1).replace(b"age: 3", b"age: -3"))),
    (cc.ListJobs("t", "ready", 0, 1), ok(jobs_yaml(1) + b"  id: 2\n")),  # a repeated key
]


@pytest.mark.parametrize(("command", "data"), GARBAGE)
def test_malformed_replies_are_unexpected(command: cc.Command[object], data: bytes) -> None:
    broken_by(command, data)


def test_a_bad_tube_info_names_the_reply_and_the_key() -> None:
    error = broken_by(cc.TubeInfo("t"), ok(info_yaml(paused="maybe")))
    assert "tube-info" in str(error) and "paused" in str(error)


ADMIN_CHOICES: list[cc.Command[object]] = [
    cc.ListJobs("t", "ready", 0, 5), cc.ClearTube("t", "buried"), cc.KickTube("t", 3),
    cc.TubeInfo("t"), cc.Kick(1),
]
REPLY_PIECES = [
    b"CLEARED 1\r\n", b"KICKED 2\r\n", b"NOT_FOUND\r\n", ok(b"--- []\n"), ok(jobs_yaml(3)),
    ok(info_yaml()), ok(info_yaml(oldest_ready_age=-1)), b"OK 7\r\n--- []\n", b"- ", b"  ",
    b"\r\n", b"\n", b"-1", b": ", b"true",
]


test_garbage_fuzz_only_ever_raises_unexpected_reply = garbage_fuzz(ADMIN_CHOICES, REPLY_PIECES)


# --------------------------------------------------------------------------- detection


def core() -> ClientCore[Any]:
    return ClientCore(("h", 1), RawBytes())


ADMIN: list[cc.Command[object]] = ADMIN_CHOICES[:4]


@pytest.mark.parametrize("cmd", ADMIN, ids=lambda v: v.verb)
def test_admin_commands_carry_no_data_and_are_never_probed(cmd: cc.Command[object]) -> None:
    assert core().probe(cmd) is None
    assert b"\r\n" not in cmd.encode()[:-2]


@pytest.mark.parametrize("word", [b"UNKNOWN_COMMAND", b"BAD_FORMAT"])
@pytest.mark.parametrize("cmd", ADMIN, ids=lambda v: v.verb)
def test_unsupported_is_detected_and_remembered(cmd: cc.Command[object], word: bytes) -> None:
    c = core()
    assert_unsupported_remembered(c, cmd, word, ADMIN)
    assert c.admin.supported is False
    assert (c.tracking.supported, c.flow.supported) == (None, None)  # asked on their own
    assert c.probe(cc.JobStatus(1)) is None and c.probe(cc.ListSchedules()) is None


def test_not_found_first_means_supported_and_later_bad_format_is_the_servers() -> None:
    c = core()
    first = cc.TubeInfo("gone")
    c.learn(first, replies_of([first], b"NOT_FOUND\r\n", False)[0])
    assert c.admin.supported is True
    cmd = cc.ListJobs("t", "ready", 0, 1)
    (reply,) = replies_of([cmd], b"BAD_FORMAT\r\n", False)
    c.learn(cmd, reply)
    with pytest.raises(ce.BadFormat):
        cmd.unwrap(reply)


def test_exports() -> None:
    for name in ("JobSummary", "TubeInfo"):
        assert name in tubeclient.__all__
        assert getattr(tubeclient, name) is getattr(ca, name)
    with pytest.raises(AttributeError):
        INFO.paused = False  # type: ignore[misc]
    for method in ("list_jobs", "clear_tube", "kick_tube", "tube_info"):
        assert callable(getattr(tubeclient.Client, method))
        assert callable(getattr(tubeclient.TrioClient, method))
