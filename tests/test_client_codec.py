"""The client codec in memory, both directions, against the server's own parser and replies.

Commands: every client command is encoded and fed to `tubeserver.parser.Parser`, whole and
one byte at a time, and must parse to the command value the server expects. Replies: canned
reply bytes of every kind (some built with the server's `replies`/`stats` modules) are fed
to the client codec whole and byte by byte; garbage must raise UnexpectedReply, never
anything else. Also: the YAML subset, serializers, argument validation and pipelining.
(Tests may import both packages; only client/ must not import tubeserver.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import attrs
import pytest
import tubeclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tubeclient import commands as cc
from tubeclient import errors as ce
from tubeclient import stats as cs
from tubeclient.bodies import Msgpack, RawBytes, Text, resolve
from tubeclient.codec import MAX_LINE, NEED_DATA, Codec, RawJob, Reply
from tubeclient.core import ClientCore, watch_setup, windows

from tubeserver import commands as sc
from tubeserver import replies as sr
from tubeserver import stats as ss
from tubeserver.errors import BadFormat as ServerBadFormat
from tubeserver.job import Job, JobState
from tubeserver.limits import DEFAULT_MAX_JOB_SIZE
from tubeserver.parser import Parser
from tubeserver.tube import Tube

U32 = 2**32 - 1
U64 = 2**64 - 1
NAME_ALL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/;.$_()-"
NAME200 = (NAME_ALL * 3)[:200]
BODIES = [b"", b"x", b"\r\n", b"a\r\nb\r\n", bytes(range(256)), b"put 0 0 1 1\r\nx\r\n"]

# (client command, the event tubeserver's parser must produce for its bytes)
PAIRS: list[tuple[cc.Command[object], object]] = [
    *[(cc.Put(1, 2, 3, b), sc.Put(1, 2, 3, b)) for b in BODIES],
    (cc.Put(U32, U32, U32, b"z" * 1000), sc.Put(U32, U32, U32, b"z" * 1000)),
    (cc.Put(0, 0, 0, b"y"), sc.Put(0, 0, 0, b"y")),
    (cc.Use("default"), sc.Use("default")),
    (cc.Use(NAME200), sc.Use(NAME200)),
    (cc.Use("123"), sc.Use("123")),
    (cc.Reserve(), sc.Reserve(None)),
    (cc.Reserve(0), sc.Reserve(0)),
    (cc.Reserve(2**31 - 1), sc.Reserve(2**31 - 1)),
    (cc.ReserveJob(U64), sc.ReserveJob(U64)),
    (cc.Delete(7), sc.Delete(7)),
    (cc.Release(7, U32, 9), sc.Release(7, U32, 9)),
    (cc.Bury(8, 0), sc.Bury(8, 0)),
    (cc.Touch(9), sc.Touch(9)),
    (cc.Watch("a-b"[::-1]), sc.Watch("b-a")),
    (cc.Ignore("x(y)"), sc.Ignore("x(y)")),
    (cc.Peek(1), sc.Peek(1)),
    (cc.PeekReady(), sc.PeekReady()),
    (cc.PeekDelayed(), sc.PeekDelayed()),
    (cc.PeekBuried(), sc.PeekBuried()),
    (cc.Kick(U64), sc.Kick(U64)),
    (cc.KickJob(3), sc.KickJob(3)),
    (cc.StatsJob(4), sc.StatsJob(4)),
    (cc.StatsTube("$t"), sc.StatsTube("$t")),
    (cc.Stats(), sc.Stats()),
    (cc.ListTubes(), sc.ListTubes()),
    (cc.ListTubeUsed(), sc.ListTubeUsed()),
    (cc.ListTubesWatched(), sc.ListTubesWatched()),
    (cc.PauseTube("p", U32), sc.PauseTube("p", U32)),
    (cc.Quit(), sc.Quit()),
]


def server_events(data: bytes, bytewise: bool) -> list[object]:
    parser = Parser(DEFAULT_MAX_JOB_SIZE)
    out: list[object] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        parser.feed(chunk)
        while (event := parser.next_event()) is not None:
            if not isinstance(event, sc.PutStarted):  # a put's header before its data
                out.append(event)
    assert parser.buffered() == 0
    return out


# --------------------------------------------------------------------------- commands out


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("command", "expected"), PAIRS, ids=lambda v: type(v).__name__)
def test_every_command_parses_on_the_server(
    command: cc.Command[object], expected: object, bytewise: bool
) -> None:
    assert server_events(command.encode(), bytewise) == [expected]


def test_all_commands_pipelined_in_one_write() -> None:
    codec = Codec()
    data = codec.send(*(cmd for cmd, _ in PAIRS))
    assert server_events(data, bytewise=False) == [ev for _, ev in PAIRS]
    assert codec.pending == len(PAIRS) - 1  # quit has no reply


def test_reserve_batch_bytes_and_what_the_server_makes_of_them() -> None:
    cmd = cc.ReserveBatch(5, 2)
    assert cmd.encode() == b"reserve-batch 5 2\r\n"
    (event,) = server_events(cmd.encode(), bytewise=True)
    batch_type = getattr(sc, "ReserveBatch", None)
    if batch_type is None:
        # A server without the extension answers BAD_FORMAT (prefix `reserve`), as
        # beanstalkd does; the client reads that as ExtensionNotSupported.
        assert event == sc.Rejected(ServerBadFormat())
    else:
        assert isinstance(event, batch_type)
        assert event.astuple() == (5, 2)
        # The client's largest batch is one the server accepts.
        (largest,) = server_events(cc.ReserveBatch(1000, 0).encode(), bytewise=False)
        assert isinstance(largest, batch_type) and largest.astuple() == (1000, 0)


@given(
    cmds=st.lists(
        st.one_of(
            st.builds(cc.Put, st.integers(0, U32), st.integers(0, U32), st.integers(0, U32),
                      st.binary(max_size=300)),
            st.builds(cc.Use, st.text(NAME_ALL, min_size=1, max_size=200).filter(
                lambda s: not s.startswith("-"))),
            st.builds(cc.Release, st.integers(0, U64), st.integers(0, U32),
                      st.integers(0, U32)),
            st.builds(cc.Reserve, st.one_of(st.none(), st.integers(0, 2**31 - 1))),
            st.builds(cc.Kick, st.integers(0, U64)),
        ),
        max_size=8,
    ),
    cut=st.integers(1, 50),
)
@settings(max_examples=150, deadline=None)
def test_random_commands_round_trip_through_the_server_parser(
    cmds: list[cc.Command[object]], cut: int
) -> None:
    data = Codec().send(*cmds)
    parser = Parser(DEFAULT_MAX_JOB_SIZE)
    events: list[object] = []
    for i in range(0, len(data), cut):
        parser.feed(data[i : i + cut])
        while (event := parser.next_event()) is not None:
            if not isinstance(event, sc.PutStarted):  # a put's header before its data
                events.append(event)
    assert len(events) == len(cmds)
    for cmd, parsed in zip(cmds, events, strict=True):
        assert type(parsed).__name__ == type(cmd).__name__
        assert isinstance(parsed, sc._Record)
        assert parsed.astuple() == attrs.astuple(cast(Any, cmd))


@pytest.mark.parametrize(
    "make",
    [
        lambda: cc.Use(""),
        lambda: cc.Use("a b"),
        lambda: cc.Use("a\r\nput 0 0 1 1"),
        lambda: cc.Use("-lead"),
        lambda: cc.Use("x" * 201),
        lambda: cc.Use("café"),
        lambda: cc.Watch("a\x00"),
        lambda: cc.PauseTube("t t", 1),
        lambda: cc.Put(-1, 0, 1, b""),
        lambda: cc.Put(2**32, 0, 1, b""),
        lambda: cc.Release(2**64, 0, 0),
        lambda: cc.Reserve(-1),
        lambda: cc.Reserve(2**31),
        lambda: cc.ReserveBatch(0, 1),
        lambda: cc.ReserveBatch(1001, 1),
        lambda: cc.Delete(-5),
    ],
)
def test_invalid_arguments_never_reach_the_wire(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: cc.Put(True, 0, 1, b""),
        lambda: cc.Put(1.5, 0, 1, b""),  # type: ignore[arg-type]
        lambda: cc.Put(1, 0, 1, "text"),  # type: ignore[arg-type]
        lambda: cc.Delete("7"),  # type: ignore[arg-type]
        lambda: cc.Use(7),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_are_type_errors(make: Any) -> None:
    with pytest.raises(TypeError):
        make()


# --------------------------------------------------------------------------- replies in


def replies_of(
    commands: Sequence[cc.Command[object]], data: bytes, bytewise: bool
) -> list[Reply]:
    codec = Codec()
    codec.send(*commands)
    out: list[Reply] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        codec.receive_data(chunk)
        while codec.pending:
            reply = codec.next_reply()
            if reply is NEED_DATA:
                break
            out.append(reply)
    assert codec.pending == 0, "replies left unread"
    assert codec.buffered() == 0
    return out


def one(command: cc.Command[object], data: bytes, bytewise: bool) -> Reply:
    (reply,) = replies_of([command], data, bytewise)
    assert reply.command is command
    return reply


BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def server_job(id: int, body: bytes) -> Job:
    """A server-side job with the two fields tubeserver.replies reads (a real Job: the
    compiled replies module accepts nothing else)."""
    return Job(id, Tube("default"), 0, 0, 1, body, 0.0, JobState.READY)


@BYTEWISE
@pytest.mark.parametrize(
    ("command", "data", "value"),
    [
        (cc.Put(0, 0, 1, b"x"), sr.inserted(42), 42),
        (cc.Put(0, 0, 1, b"x"), sr.inserted(U64), U64),
        (cc.Use("t"), sr.using("t"), "t"),
        (cc.Use(NAME200), sr.using(NAME200), NAME200),
        (cc.ListTubeUsed(), sr.using("123"), "123"),
        (cc.Watch("t"), sr.watching(2), 2),
        (cc.Ignore("t"), sr.watching(1), 1),
        (cc.Kick(10), sr.kicked(3), 3),
        (cc.Delete(1), sr.DELETED, None),
        (cc.Release(1, 0, 0), sr.RELEASED, None),
        (cc.Bury(1, 0), sr.BURIED, None),
        (cc.Touch(1), sr.TOUCHED, None),
        (cc.KickJob(1), sr.KICKED, None),
        (cc.PauseTube("t", 1), sr.PAUSED, None),
        (cc.Reserve(0), sr.reserved(server_job(5, b"a\r\nb")), RawJob(5, b"a\r\nb")),
        (cc.Reserve(), b"RESERVED 6 0\r\n\r\n", RawJob(6, b"")),
        (cc.ReserveJob(7), sr.reserved(server_job(7, bytes(range(256)))),
         RawJob(7, bytes(range(256)))),
        (cc.Peek(8), sr.found(server_job(8, b"\r\n\r\n")), RawJob(8, b"\r\n\r\n")),
        (cc.PeekReady(), sr.found(server_job(9, b"FOUND 1 1\r\n")), RawJob(9, b"FOUND 1 1\r\n")),
        (cc.PeekDelayed(), b"FOUND 10 2\r\n\r\n\r\n", RawJob(10, b"\r\n")),
        (cc.PeekBuried(), b"FOUND 11 1\r\nz\r\n", RawJob(11, b"z")),
        (cc.ListTubes(), sr.ok(sr.yaml_list(["default", "123", "a.b"])),
         ["default", "123", "a.b"]),
        (cc.ListTubesWatched(), b"OK 14\r\n---\n- default\n\r\n", ["default"]),
        (cc.ListTubesWatched(), sr.ok(b'---\n- "default"\n'), ["default"]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_success_replies(
    command: cc.Command[object], data: bytes, value: object, bytewise: bool
) -> None:
    reply = one(command, data, bytewise)
    assert reply.error is None
    assert reply.value == value
    assert command.unwrap(reply) == value


@BYTEWISE
@pytest.mark.parametrize("word", sorted(ce.SERVER_ERRORS))
def test_every_error_line_is_its_exception_and_keeps_sync(word: bytes, bytewise: bool) -> None:
    first, second = cc.Peek(1), cc.Stats()
    payload = b"---\npid: 1\n"
    data = word + b"\r\n" + b"OK %d\r\n%b\r\n" % (len(payload), payload)
    r1, r2 = replies_of([first, second], data, bytewise)
    assert type(r1.error) is ce.SERVER_ERRORS[word]
    assert isinstance(r1.error, ce.ServerError)
    assert r1.error.reply == word
    with pytest.raises(ce.SERVER_ERRORS[word]):
        first.unwrap(r1)
    assert r2.value == {"pid": 1}


@BYTEWISE
def test_buried_replies(bytewise: bool) -> None:
    put, release, bury = cc.Put(0, 0, 1, b"x"), cc.Release(1, 0, 0), cc.Bury(1, 0)
    r_put, r_release, r_bury = replies_of(
        [put, release, bury], b"BURIED 12\r\nBURIED\r\nBURIED\r\n", bytewise
    )
    assert isinstance(r_put.error, ce.Buried)
    assert r_put.error.id == 12
    assert isinstance(r_release.error, ce.Buried)
    assert r_release.error.id is None
    assert r_bury.error is None


TUBESERVER_STATS = ss.to_yaml([
    ("current-jobs-ready", 3), ("rusage-utime", 0.5), ("rusage-stime", 0.0),
    ("version", "tubeserver 0.1.0"), ("draining", False), ("id", "0123456789012345"),
    ("hostname", "1e5"), ("os", '#1 SMP "quoted" \\ back'), ("platform", "x86_64"),
])
BEANSTALKD_112_STATS = (
    b"---\ncurrent-jobs-ready: 3\nrusage-utime: 0.500000\nrusage-stime: 0.000000\n"
    b'version: "1.12"\ndraining: true\nid: 0123456789012345\nhostname: 1e5\n'
    b"os: #1 SMP PREEMPT_DYNAMIC @0\nplatform: x86_64\n"
)


@BYTEWISE
def test_stats_yaml_typed_from_tubeserver(bytewise: bool) -> None:
    reply = one(cc.Stats(), sr.ok(TUBESERVER_STATS), bytewise)
    assert reply.value == {
        "current-jobs-ready": 3, "rusage-utime": 0.5, "rusage-stime": 0.0,
        "version": "tubeserver 0.1.0", "draining": False, "id": "0123456789012345",
        "hostname": "1e5", "os": '#1 SMP "quoted" \\ back', "platform": "x86_64",
    }
    assert isinstance(reply.value, dict)
    assert type(reply.value["rusage-stime"]) is float
    assert reply.value["draining"] is False


@BYTEWISE
def test_stats_yaml_typed_from_beanstalkd_112_unquoted(bytewise: bool) -> None:
    reply = one(cc.Stats(), sr.ok(BEANSTALKD_112_STATS), bytewise)
    assert reply.value == {
        "current-jobs-ready": 3, "rusage-utime": 0.5, "rusage-stime": 0.0, "version": "1.12",
        "draining": True, "id": "0123456789012345", "hostname": "1e5",
        "os": "#1 SMP PREEMPT_DYNAMIC @0", "platform": "x86_64",
    }


def test_stats_tube_and_job_keep_string_keys_strings() -> None:
    tube = cs.parse_mapping(b"---\nname: 123\ncurrent-jobs-ready: 0\npause: 0\n", "stats-tube")
    assert tube == {"name": "123", "current-jobs-ready": 0, "pause": 0}
    job = cs.parse_mapping(b"---\nid: 5\ntube: 1.5\nstate: ready\n", "stats-job")
    assert job == {"id": 5, "tube": "1.5", "state": "ready"}
    quoted = cs.parse_mapping(b'---\nid: 5\ntube: "1.5"\nstate: "ready"\n', "stats-job")
    assert quoted == job


def test_stats_from_server_stats_module_for_a_job_and_a_tube_name_of_digits() -> None:
    payload = ss.to_yaml([("name", "007"), ("current-jobs-ready", 1), ("pause", 0)])
    assert cs.parse_mapping(payload, "stats-tube") == {
        "name": "007", "current-jobs-ready": 1, "pause": 0,
    }


@pytest.mark.parametrize(
    "payload",
    [
        b"", b"--\n", b"---\nno colon\n", b"---\nkey: 1", b"---\n: 1\n", b"---\na: 1\na: 2\n",
        b'---\na: "unterminated\\"\n', b'---\na: "x"y"\n', b"---\n\xff: 1\n",
    ],
)
def test_bad_yaml_mapping(payload: bytes) -> None:
    with pytest.raises(cs.StatsFormatError):
        cs.parse_mapping(payload, "stats")


@pytest.mark.parametrize("payload", [b"---\nnot a list\n", b"---\n-\n", b"---\n- a"])
def test_bad_yaml_list(payload: bytes) -> None:
    with pytest.raises(cs.StatsFormatError):
        cs.parse_list(payload)


def test_empty_yaml_documents() -> None:
    assert cs.parse_list(b"---\n") == []
    assert cs.parse_mapping(b"---\n", "stats") == {}
    assert cs.scalar("") == ""
    assert cs.scalar("12.5x") == "12.5x"
    assert cs.scalar('"a\\"b\\\\c"') == 'a"b\\c'


# --------------------------------------------------------------------------- reserve-batch


def batch_bytes(jobs: Sequence[tuple[int, bytes]]) -> bytes:
    out = b"RESERVED-BATCH %d\r\n" % len(jobs)
    for id, body in jobs:
        out += b"RESERVED %d %d\r\n%b\r\n" % (id, len(body), body)
    return out


@BYTEWISE
def test_reserved_batch_parses_every_frame(bytewise: bool) -> None:
    jobs = [(1, b"a"), (2, b"\r\n"), (3, b""), (4, b"RESERVED 9 1\r\nx\r\n"), (5, bytes(300))]
    cmd = cc.ReserveBatch(5, 1)
    after = cc.ListTubeUsed()
    reply, used = replies_of([cmd, after], batch_bytes(jobs) + b"USING t\r\n", bytewise)
    assert cmd.unwrap(reply) == [RawJob(i, b) for i, b in jobs]
    assert used.value == "t"


@BYTEWISE
def test_reserved_batch_timed_out_is_an_empty_list(bytewise: bool) -> None:
    cmd = cc.ReserveBatch(3, 0)
    assert cmd.unwrap(one(cmd, b"TIMED_OUT\r\n", bytewise)) == []
    cmd = cc.ReserveBatch(3, 0)
    with pytest.raises(ce.DeadlineSoon):
        cmd.unwrap(one(cmd, b"DEADLINE_SOON\r\n", bytewise))


@pytest.mark.parametrize("word", [b"BAD_FORMAT", b"UNKNOWN_COMMAND"])
def test_reserve_batch_unsupported_is_detected_once_per_connection(word: bytes) -> None:
    core: ClientCore[bytes] = ClientCore(("h", 1), RawBytes())
    cmd = cc.ReserveBatch(2, 0)
    with pytest.raises(ce.ExtensionNotSupported) as info:
        core.reserve_batch_result(cmd, one(cmd, word + b"\r\n", False))
    assert type(info.value.__cause__) is ce.SERVER_ERRORS[word]
    with pytest.raises(ce.ExtensionNotSupported):
        core.reserve_batch_check()  # known now: no round trip needed


def test_reserve_batch_bad_format_after_success_is_bad_format() -> None:
    core: ClientCore[bytes] = ClientCore(("h", 1), RawBytes())
    cmd = cc.ReserveBatch(2, 0)
    jobs = core.reserve_batch_result(cmd, one(cmd, batch_bytes([(1, b"x")]), False))
    assert jobs == [tubeclient.Job(1, b"x", "h:1")]
    assert core.batch_supported is True
    cmd = cc.ReserveBatch(2, 0)
    with pytest.raises(ce.BadFormat):
        core.reserve_batch_result(cmd, one(cmd, b"BAD_FORMAT\r\n", False))


@pytest.mark.parametrize(
    "data",
    [
        b"RESERVED-BATCH 0\r\n",
        b"RESERVED-BATCH 3\r\n" + b"RESERVED 1 1\r\na\r\n" * 3,  # more than asked for
        b"RESERVED-BATCH 1\r\nFOUND 1 1\r\na\r\n",
        b"RESERVED-BATCH 1\r\nTIMED_OUT\r\n",
        b"RESERVED-BATCH 1\r\nRESERVED 1\r\n",
        b"RESERVED-BATCH 1\r\nRESERVED 1 1\r\nab\r\n",
        b"RESERVED-BATCH x\r\n",
        b"RESERVED-BATCH\r\n",
        b"RESERVED 1 1\r\na\r\n",  # a bare frame is not a batch reply
    ],
)
def test_malformed_batches_are_unexpected(data: bytes) -> None:
    codec = Codec()
    codec.send(cc.ReserveBatch(2, 0))
    codec.receive_data(data)
    with pytest.raises(ce.UnexpectedReply):
        while codec.next_reply() is not NEED_DATA:
            pass


# --------------------------------------------------------------------------- garbage


GARBAGE: list[tuple[cc.Command[object], bytes]] = [
    (cc.Put(0, 0, 1, b"x"), b"INSERTED\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"INSERTED -1\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"INSERTED 1 2\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"INSERTED 99999999999999999999999\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"INSERTED 1.5\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"inserted 1\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"DELETED\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"NOT_FOUND 1\r\n"),
    (cc.Put(0, 0, 1, b"x"), b"BURIED\r\n"),
    (cc.Release(1, 0, 0), b"BURIED 5\r\n"),
    (cc.Delete(1), b"BURIED\r\n"),
    (cc.Delete(1), b"DELETED \r\n"),
    (cc.Delete(1), b"\r\n"),
    (cc.Delete(1), b"DELETED\x00\r\n"),
    (cc.Delete(1), b"DEL\xffETED\r\n"),
    (cc.Delete(1), b"X" * MAX_LINE),
    (cc.Use("t"), b"USING a b\r\n"),
    (cc.Use("t"), b"USING -bad\r\n"),
    (cc.Use("t"), b"USING\r\n"),
    (cc.Reserve(0), b"RESERVED 1 3\r\nabcde\r\n"),
    (cc.Reserve(0), b"RESERVED 1 x\r\n"),
    (cc.Reserve(0), b"RESERVED 1\r\n"),
    (cc.Reserve(0), b"FOUND 1 1\r\nx\r\n"),
    (cc.Reserve(0), b"RESERVED 1 %d\r\n" % (2**31)),
    (cc.Stats(), b"OK 3\r\nabc\r\n"),
    (cc.Stats(), b"OK 5\r\n---\nx\r\n"),
    (cc.ListTubes(), b"OK 8\r\n---\nfoo\n\r\n"),
    (cc.Kick(1), b"KICKED\r\n"),
    (cc.KickJob(1), b"KICKED 1\r\n"),
    (cc.Watch("t"), b"WATCHING x\r\n"),
]


@pytest.mark.parametrize(("command", "data"), GARBAGE)
def test_garbage_replies_are_unexpected_and_break_the_codec(
    command: cc.Command[object], data: bytes
) -> None:
    codec = Codec(max_body=2**30)
    codec.send(command)
    codec.receive_data(data)
    with pytest.raises(ce.UnexpectedReply):
        while codec.next_reply() is not NEED_DATA:
            pass
    assert codec.broken is not None
    with pytest.raises(ce.UnexpectedReply):
        codec.next_reply()
    with pytest.raises(ce.UnexpectedReply):
        codec.send(cc.Stats())


def test_body_over_the_limit_is_refused_before_it_is_read() -> None:
    codec = Codec(max_body=10)
    codec.send(cc.Peek(1))
    codec.receive_data(b"FOUND 1 11\r\n")
    with pytest.raises(ce.UnexpectedReply):
        codec.next_reply()


def test_data_with_no_command_outstanding() -> None:
    codec = Codec()
    with pytest.raises(RuntimeError):
        codec.next_reply()
    codec.receive_data(b"DELETED\r\n")
    with pytest.raises(ce.UnexpectedReply):
        codec.next_reply()


def test_extra_reply_after_the_expected_ones_is_caught_on_the_next_command() -> None:
    codec = Codec()
    codec.send(cc.Delete(1))
    codec.receive_data(b"DELETED\r\nDELETED\r\n")
    reply = codec.next_reply()
    assert isinstance(reply, Reply)
    codec.send(cc.Stats())
    with pytest.raises(ce.UnexpectedReply):
        codec.next_reply()


COMMAND_CHOICES: list[cc.Command[object]] = [
    cc.Put(0, 0, 1, b"x"), cc.Reserve(0), cc.ReserveBatch(3, 0), cc.Stats(), cc.StatsJob(1),
    cc.ListTubes(), cc.Use("t"), cc.Delete(1), cc.Kick(1), cc.KickJob(1), cc.Bury(1, 0),
    cc.Release(1, 0, 0),
]
REPLY_PIECES = [
    b"INSERTED 1\r\n", b"RESERVED 1 1\r\nx\r\n", b"RESERVED-BATCH 2\r\n", b"OK 4\r\n---\n\r\n",
    b"TIMED_OUT\r\n", b"BURIED\r\n", b"BURIED 3\r\n", b"USING t\r\n", b"KICKED 2\r\n",
    b"KICKED\r\n", b"\r\n", b"\x00", b"OK 99\r\n", b"RESERVED 1 ", b"-", b"\n", b"\r",
]


@given(
    commands=st.lists(st.sampled_from(COMMAND_CHOICES), min_size=1, max_size=5),
    stream=st.lists(st.one_of(st.sampled_from(REPLY_PIECES), st.binary(max_size=12)),
                    max_size=12),
    cut=st.integers(1, 7),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_fuzz_only_ever_raises_unexpected_reply(
    commands: list[cc.Command[object]], stream: list[bytes], cut: int
) -> None:
    data = b"".join(stream)
    codec = Codec(max_body=1000)
    codec.send(*commands)
    whole = Codec(max_body=1000)
    whole.send(*commands)
    got: list[object] = []
    try:
        for i in range(0, len(data), cut):
            codec.receive_data(data[i : i + cut])
            while codec.pending and (reply := codec.next_reply()) is not NEED_DATA:
                got.append(reply)
    except ce.UnexpectedReply:
        got.append("broken")
    # Chunking never changes the outcome.
    expect: list[object] = []
    try:
        whole.receive_data(data)
        while whole.pending and (reply := whole.next_reply()) is not NEED_DATA:
            expect.append(reply)
        if whole.pending == 0 and whole.buffered():
            whole.next_reply()
    except ce.UnexpectedReply:
        expect.append("broken")
    if got and got[-1] != "broken" and codec.pending == 0 and codec.buffered():
        got.append("broken")  # leftover bytes with nothing pending: the next call says so
    assert got == expect


# --------------------------------------------------------------------------- bodies


def test_serializers_round_trip_and_lengths_are_encoded_lengths() -> None:
    text = Text("utf-8")
    assert text.dumps("café") == "café".encode()
    assert cc.Put(0, 0, 1, text.dumps("café")).encode() == b"put 0 0 1 5\r\ncaf\xc3\xa9\r\n"
    assert text.loads(b"caf\xc3\xa9") == "café"
    raw = RawBytes()
    assert raw.dumps(bytearray(b"ab")) == b"ab"  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        raw.dumps("str")  # type: ignore[arg-type]
    mp = Msgpack()
    value = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "c": "é", 3: "int key"}
    assert mp.loads(mp.dumps(value)) == value
    assert mp.loads(mp.dumps((1, 2))) == [1, 2]


def test_resolve_serializer_arguments() -> None:
    assert isinstance(resolve(None, None), RawBytes)
    assert isinstance(resolve("utf-8", None), Text)
    assert isinstance(resolve(None, "msgpack"), Msgpack)
    with pytest.raises(ValueError):
        resolve("utf-8", "msgpack")
    with pytest.raises(ValueError):
        resolve(None, "pickle")
    with pytest.raises(LookupError):
        resolve("no-such-codec", None)
    with pytest.raises(TypeError):
        resolve(None, object())  # type: ignore[arg-type]


def test_undecodable_body_raises_decode_error_with_the_raw_job() -> None:
    core: ClientCore[str] = ClientCore("/tmp/sock", Text("utf-8"))
    with pytest.raises(ce.DecodeError) as info:
        core.jobs([RawJob(1, b"ok"), RawJob(2, b"\xff")])
    assert info.value.job == tubeclient.Job(2, b"\xff", "/tmp/sock")
    assert [j.id for j in info.value.jobs] == [1, 2]


def test_put_many_items_and_options() -> None:
    core: ClientCore[Any] = ClientCore(("::1", 5), Msgpack())
    assert core.server == "[::1]:5"
    opts = tubeclient.PutOptions(priority=1, delay=2, ttr=3)
    cmds = core.put_many([(1, 2), ("body", opts)], 7, 8, 9)
    assert [(c.priority, c.delay, c.ttr) for c in cmds] == [(7, 8, 9), (1, 2, 3)]
    assert Msgpack().loads(cmds[0].body) == [1, 2]  # a plain tuple is a body


def test_windows_split_long_pipelines() -> None:
    cmds = [cc.Delete(i) for i in range(2500)]
    sizes = [len(w) for w in windows(cmds)]
    assert sizes == [1000, 1000, 500]
    big = [cc.Put(0, 0, 1, b"x" * 600_000) for _ in range(3)]
    assert [len(w) for w in windows(big)] == [2, 1]
    assert list(windows([])) == []


def test_watch_setup_follows_greenstalk() -> None:
    assert watch_setup("default", "default") == []
    assert watch_setup("a", "b") == [cc.Use("a"), cc.Watch("b"), cc.Ignore("default")]
    assert watch_setup("default", ["default", "b", "b"]) == [cc.Watch("b")]
    with pytest.raises(ValueError):
        watch_setup("default", [])
    with pytest.raises(ValueError):
        watch_setup("bad name", "default")


def test_error_tree() -> None:
    assert issubclass(ce.ConnectionClosed, ConnectionError)
    assert issubclass(ce.IOTimeout, ce.ConnectionClosed)
    assert issubclass(ce.IOTimeout, TimeoutError)
    for cls in ce.SERVER_ERRORS.values():
        assert issubclass(cls, ce.ServerError)
        assert issubclass(cls, ce.TubeError)
    assert str(ce.Buried(3)) == "BURIED 3"
    assert str(ce.NotFound()) == "NOT_FOUND"
    err = ce.BatchError([1, ce.NotFound(), 3])
    assert err.errors == [(1, err.results[1])]
    assert "1 of 3" in str(err)
