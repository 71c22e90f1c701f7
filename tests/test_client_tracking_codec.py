"""The job-tracking extension in the client codec and core, in memory: exact bytes both ways.

Commands: each of finish, fail, result, job-status, checkpoint and peek-checkpoint encodes
to the bytes of the spec, and its arguments are checked before anything is sent. Replies:
every success and error line of the spec, whole and byte by byte, pipelined together, and
malformed ones, which must raise UnexpectedReply (the codec's protocol error) and nothing
else. Core: results, reasons and checkpoints decoded like bodies (empty data is None), and
the per-connection detection of the extension, including the probe sent before the first
command that carries data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import tubeclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tubeclient import commands as cc
from tubeclient import errors as ce
from tubeclient.bodies import Msgpack, RawBytes, Serializer, Text
from tubeclient.codec import NEED_DATA, Codec, RawJob, Reply
from tubeclient.core import ClientCore
from tubeclient.status import JobStatus, parse_job_status

from tubeserver import commands as sc
from tubeserver import stats as ss
from tubeserver.errors import UnknownCommand as ServerUnknownCommand
from tubeserver.limits import DEFAULT_MAX_JOB_SIZE
from tubeserver.parser import Parser

U32 = 2**32 - 1
U64 = 2**64 - 1
TIMEOUT_MAX = 2**31 - 1
UTC = dt.UTC
BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


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


def one(command: cc.Command[object], data: bytes, bytewise: bool = False) -> Reply:
    (reply,) = replies_of([command], data, bytewise)
    assert reply.command is command
    return reply


def broken_by(command: cc.Command[object], data: bytes) -> ce.UnexpectedReply:
    """The UnexpectedReply that `data` raises as the reply to `command`; the codec stays
    broken afterwards."""
    codec = Codec()
    codec.send(command)
    codec.receive_data(data)
    with pytest.raises(ce.UnexpectedReply) as info:
        while codec.next_reply() is not NEED_DATA:
            pass
    assert codec.broken is not None
    with pytest.raises(ce.UnexpectedReply):
        codec.send(cc.Stats())
    return info.value


# --------------------------------------------------------------------------- commands out


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (cc.Finish(7, b"ok"), b"finish 7 2\r\nok\r\n"),
        (cc.Finish(7, b""), b"finish 7 0\r\n\r\n"),
        (cc.Finish(U64, b"a\r\nb"), b"finish 18446744073709551615 4\r\na\r\nb\r\n"),
        (cc.Fail(7, 1024, b"boom"), b"fail 7 1024 4\r\nboom\r\n"),
        (cc.Fail(0, U32, b""), b"fail 0 4294967295 0\r\n\r\n"),
        (cc.Result(7, 0), b"result 7 0\r\n"),
        (cc.Result(7, TIMEOUT_MAX), b"result 7 2147483647\r\n"),
        (cc.JobStatus(12), b"job-status 12\r\n"),
        (cc.Checkpoint(7, b"\x00\xff\r\n"), b"checkpoint 7 4\r\n\x00\xff\r\n\r\n"),
        (cc.Checkpoint(7, b""), b"checkpoint 7 0\r\n\r\n"),
        (cc.PeekCheckpoint(U64), b"peek-checkpoint 18446744073709551615\r\n"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_command_bytes(command: cc.Command[object], data: bytes) -> None:
    assert command.encode() == data
    codec = Codec()
    assert codec.send(command) == data
    assert codec.pending == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: cc.Finish(-1, b""),
        lambda: cc.Finish(2**64, b""),
        lambda: cc.Fail(1, -1, b""),
        lambda: cc.Fail(1, 2**32, b""),
        lambda: cc.Result(1, -1),
        lambda: cc.Result(1, 2**31),
        lambda: cc.JobStatus(-1),
        lambda: cc.Checkpoint(2**64, b""),
        lambda: cc.PeekCheckpoint(-5),
    ],
)
def test_out_of_range_arguments_never_reach_the_wire(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: cc.Finish(1, "text"),  # type: ignore[arg-type]
        lambda: cc.Fail(1, 0, None),  # type: ignore[arg-type]
        lambda: cc.Result(1, None),  # type: ignore[arg-type]
        lambda: cc.Result(1, 1.5),  # type: ignore[arg-type]
        lambda: cc.Result(1, True),
        lambda: cc.JobStatus("1"),  # type: ignore[arg-type]
        lambda: cc.Checkpoint(1, bytearray(b"x")),  # type: ignore[arg-type]
        lambda: cc.PeekCheckpoint(1.0),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_are_type_errors(make: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize(
    "command",
    [cc.Finish(3, b"a\r\nb"), cc.Fail(3, 5, b"why"), cc.Result(3, 9), cc.JobStatus(3),
     cc.Checkpoint(3, b""), cc.PeekCheckpoint(3)],
    ids=lambda v: v.verb,
)
def test_the_server_parser_reads_each_command_as_one(command: cc.Command[object]) -> None:
    """Once tubeserver's parser knows a verb, the client's bytes must be exactly one command
    to it, whole or fed byte by byte (the data included)."""
    outcomes = []
    for bytewise in (False, True):
        parser = Parser(DEFAULT_MAX_JOB_SIZE)
        data = command.encode()
        events: list[object] = []
        for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
            parser.feed(chunk)
            while (event := parser.next_event()) is not None:
                events.append(event)
        assert parser.buffered() == 0
        outcomes.append(events)
    whole, bytewise_events = outcomes
    assert whole == bytewise_events
    if whole[0] == sc.Rejected(ServerUnknownCommand()):
        pytest.skip(f"tubeserver's parser does not know {command.verb!r} yet")
    assert len(whole) == 1
    assert not isinstance(whole[0], sc.Rejected), whole


# --------------------------------------------------------------------------- replies in


def status_yaml(**changes: object) -> bytes:
    """A job-status payload as tubeserver writes it (keys in the spec's order); `changes`
    replace values (underscores for dashes), None drops a key."""
    pairs: dict[str, object] = {
        "id": 7, "tube": "default", "state": "reserved", "pri": 1024, "delay": 0,
        "ttr": 60, "reserves": 2, "timeouts": 1, "releases": 0, "buries": 0, "kicks": 0,
        "created": "2026-12-07T01:02:03.123456Z", "reserved": "2026-12-07T01:02:04.000001Z",
        "finished": "", "result-bytes": 0, "reason-bytes": 0, "checkpoint-bytes": 5,
        "expires": "",
    }
    for key, value in changes.items():
        pairs[key.replace("_", "-")] = value
    return ss.to_yaml([(k, v) for k, v in pairs.items() if v is not None])  # type: ignore[misc]


def ok(payload: bytes) -> bytes:
    return b"OK %d\r\n%b\r\n" % (len(payload), payload)


LIVE = JobStatus(
    id=7, tube="default", state="reserved", priority=1024, delay=0, ttr=60, reserves=2,
    timeouts=1, releases=0, buries=0, kicks=0,
    created=dt.datetime(2026, 12, 7, 1, 2, 3, 123456, tzinfo=UTC),
    reserved=dt.datetime(2026, 12, 7, 1, 2, 4, 1, tzinfo=UTC),
    finished=None, result_bytes=0, reason_bytes=0, checkpoint_bytes=5, expires=None,
)


@BYTEWISE
@pytest.mark.parametrize(
    ("command", "data", "value"),
    [
        (cc.Finish(7, b"r"), b"FINISHED\r\n", None),
        (cc.Fail(7, 0, b"r"), b"BURIED\r\n", None),
        (cc.Checkpoint(7, b"c"), b"CHECKPOINTED\r\n", None),
        (cc.Result(7, 0), b"RESULT 7 2\r\nok\r\n", RawJob(7, b"ok")),
        (cc.Result(7, 0), b"RESULT 7 0\r\n\r\n", RawJob(7, b"")),
        (cc.Result(7, 0), b"RESULT 7 10\r\nRESULT 1\r\n\r\n", RawJob(7, b"RESULT 1\r\n")),
        (cc.PeekCheckpoint(7), b"FOUND 7 3\r\n\x00\r\n\r\n", RawJob(7, b"\x00\r\n")),
        (cc.PeekCheckpoint(7), b"FOUND 7 0\r\n\r\n", RawJob(7, b"")),
        (cc.JobStatus(7), ok(status_yaml()), LIVE),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, cc.Command) else "",
)
def test_success_replies(
    command: cc.Command[object], data: bytes, value: object, bytewise: bool
) -> None:
    assert_success(command, data, value, bytewise)


def assert_success(command: cc.Command[object], data: bytes, value: object, bytewise: bool
                   ) -> None:
    """`data` answering `command` is a success whose value, unwrapped too, is `value`."""
    reply = one(command, data, bytewise)
    assert reply.error is None
    assert reply.value == value
    assert command.unwrap(reply) == value


ERRORS: list[tuple[cc.Command[object], bytes]] = [
    *[(cc.Finish(1, b"x"), w) for w in (b"NOT_FOUND", b"JOB_TOO_BIG", b"EXPECTED_CRLF",
                                         b"BAD_FORMAT", b"UNKNOWN_COMMAND")],
    *[(cc.Fail(1, 0, b"x"), w) for w in (b"NOT_FOUND", b"JOB_TOO_BIG", b"EXPECTED_CRLF",
                                          b"BAD_FORMAT", b"UNKNOWN_COMMAND")],
    *[(cc.Checkpoint(1, b"x"), w) for w in (b"NOT_FOUND", b"JOB_TOO_BIG", b"EXPECTED_CRLF",
                                             b"BAD_FORMAT", b"UNKNOWN_COMMAND")],
    (cc.Result(1, 5), b"TIMED_OUT"),
    (cc.Result(1, 5), b"NOT_FOUND"),
    (cc.Result(1, 5), b"UNKNOWN_COMMAND"),
    (cc.JobStatus(1), b"NOT_FOUND"),
    (cc.JobStatus(1), b"UNKNOWN_COMMAND"),
    (cc.PeekCheckpoint(1), b"NOT_FOUND"),
    (cc.PeekCheckpoint(1), b"UNKNOWN_COMMAND"),
]


@BYTEWISE
@pytest.mark.parametrize(("command", "word"), ERRORS, ids=lambda v: getattr(v, "verb", v))
def test_error_lines_are_their_exceptions_and_keep_sync(
    command: cc.Command[object], word: bytes, bytewise: bool
) -> None:
    assert_error_keeps_sync(command, word, bytewise)


def assert_error_keeps_sync(command: cc.Command[object], word: bytes, bytewise: bool) -> None:
    """The error line `word` answering `command` is its exception, and the reply after it is
    read as the next command's."""
    after = cc.Delete(2)
    first, second = replies_of([command, after], word + b"\r\nDELETED\r\n", bytewise)
    assert type(first.error) is ce.SERVER_ERRORS[word]
    with pytest.raises(ce.SERVER_ERRORS[word]):
        command.unwrap(first)
    assert second.error is None and second.command is after


@BYTEWISE
def test_failed_is_job_failed_with_the_raw_reason(bytewise: bool) -> None:
    cmd, after = cc.Result(7, 3), cc.Result(8, 0)
    first, second = replies_of(
        [cmd, after], b"FAILED 7 6\r\nno\r\nno\r\nFAILED 8 0\r\n\r\n", bytewise
    )
    assert first.error == ce.JobFailed(7, b"no\r\nno")
    assert isinstance(first.error, ce.ServerError)
    assert first.error.reply == b"FAILED"
    with pytest.raises(ce.JobFailed) as info:
        cmd.unwrap(first)
    assert (info.value.id, info.value.reason) == (7, b"no\r\nno")
    assert second.error == ce.JobFailed(8, b"")


@BYTEWISE
def test_every_reply_pipelined_in_one_stream(bytewise: bool) -> None:
    cmds: list[cc.Command[object]] = [
        cc.Finish(1, b"a"), cc.Fail(2, 0, b"b"), cc.Result(1, 0), cc.Result(2, 0),
        cc.Result(3, 0), cc.JobStatus(7), cc.Checkpoint(4, b"c"), cc.PeekCheckpoint(4),
        cc.PeekCheckpoint(5), cc.Finish(6, b""),
    ]
    data = (
        b"FINISHED\r\nBURIED\r\nRESULT 1 1\r\na\r\nFAILED 2 1\r\nb\r\nTIMED_OUT\r\n"
        + ok(status_yaml())
        + b"CHECKPOINTED\r\nFOUND 4 1\r\nc\r\nNOT_FOUND\r\nNOT_FOUND\r\n"
    )
    replies = replies_of(cmds, data, bytewise)
    assert [r.command for r in replies] == cmds
    assert [r.value for r in replies] == [
        None, None, RawJob(1, b"a"), None, None, LIVE, None, RawJob(4, b"c"), None, None,
    ]
    assert [r.error for r in replies] == [
        None, None, None, ce.JobFailed(2, b"b"), ce.TimedOut(), None, None, None,
        ce.NotFound(), ce.NotFound(),
    ]


# --------------------------------------------------------------------------- job-status


def test_status_of_a_finished_job() -> None:
    payload = status_yaml(
        state="finished", finished="2026-12-07T01:02:05.5Z", result_bytes=11,
        reason_bytes=3, checkpoint_bytes=-1, expires="2026-12-08T01:02:05.500000Z",
        tube="123",
    )
    status = one(cc.JobStatus(7), ok(payload)).value
    assert isinstance(status, JobStatus)
    assert status.state == "finished"
    assert status.tube == "123"  # a tube named with digits stays a str
    assert status.finished == dt.datetime(2026, 12, 7, 1, 2, 5, 500000, tzinfo=UTC)
    assert status.expires == dt.datetime(2026, 12, 8, 1, 2, 5, 500000, tzinfo=UTC)
    assert status.finished is not None and status.finished.utcoffset() == dt.timedelta(0)
    assert (status.result_bytes, status.reason_bytes, status.checkpoint_bytes) == (11, 3, None)


def test_status_never_reserved_and_without_checkpoint() -> None:
    status = parse_job_status(status_yaml(state="ready", reserved="", checkpoint_bytes=-1))
    assert status.reserved is None
    assert status.checkpoint_bytes is None
    assert parse_job_status(status_yaml(checkpoint_bytes=0)).checkpoint_bytes == 0


def test_status_ignores_keys_it_does_not_know() -> None:
    # A later extension adds keys; older clients read on.
    payload = status_yaml() + b'owner: "k1"\nwaiting: 2\nlabels: "3,4"\n'
    assert parse_job_status(payload) == LIVE


def test_status_unquoted_as_a_beanstalkd_112_style_writer_would() -> None:
    payload = status_yaml().replace(b'"', b"")
    assert parse_job_status(payload) == LIVE


def test_status_is_a_frozen_record() -> None:
    with pytest.raises(AttributeError):
        LIVE.state = "buried"  # type: ignore[misc]
    assert tubeclient.JobStatus is JobStatus


# --------------------------------------------------------------------------- malformed


GARBAGE: list[tuple[cc.Command[object], bytes]] = [
    (cc.Finish(1, b"x"), b"FINISHED 1\r\n"),
    (cc.Finish(1, b"x"), b"DELETED\r\n"),
    (cc.Finish(1, b"x"), b"BURIED\r\n"),
    (cc.Finish(1, b"x"), b"FAILED 1 1\r\nx\r\n"),  # FAILED answers `result` only
    (cc.Fail(1, 0, b"x"), b"BURIED 1\r\n"),
    (cc.Fail(1, 0, b"x"), b"FAILED\r\n"),
    (cc.Checkpoint(1, b"x"), b"CHECKPOINTED 1\r\n"),
    (cc.Checkpoint(1, b"x"), b"TOUCHED\r\n"),
    (cc.Result(1, 0), b"RESULT\r\n"),
    (cc.Result(1, 0), b"RESULT 1\r\n"),
    (cc.Result(1, 0), b"RESULT 1 x\r\n"),
    (cc.Result(1, 0), b"RESULT 1 -1\r\n"),
    (cc.Result(1, 0), b"RESULT 1 2 3\r\n"),
    (cc.Result(1, 0), b"RESULT 1 3\r\nabcd\r\n"),  # no CRLF after the 3 bytes
    (cc.Result(1, 0), b"FAILED 1\r\n"),
    (cc.Result(1, 0), b"FAILED 1 x\r\n"),
    (cc.Result(1, 0), b"FAILED 1 1\r\nxy\r\n"),
    (cc.Result(1, 0), b"FOUND 1 1\r\nx\r\n"),
    (cc.Result(1, 0), b"FINISHED\r\n"),
    (cc.Result(1, 0), b"TIMED_OUT 1\r\n"),
    (cc.PeekCheckpoint(1), b"FOUND 1\r\n"),
    (cc.PeekCheckpoint(1), b"RESERVED 1 1\r\nx\r\n"),
    (cc.PeekCheckpoint(1), b"RESULT 1 1\r\nx\r\n"),
    (cc.JobStatus(1), b"OK\r\n"),
    (cc.JobStatus(1), ok(b"abc")),
    (cc.JobStatus(1), ok(b"---\n- a\n")),
    (cc.JobStatus(1), ok(status_yaml(state=None))),
    (cc.JobStatus(1), ok(status_yaml(created=None))),
    (cc.JobStatus(1), ok(status_yaml(checkpoint_bytes=None))),
    (cc.JobStatus(1), ok(status_yaml(id="seven"))),
    (cc.JobStatus(1), ok(status_yaml(pri=True))),
    (cc.JobStatus(1), ok(status_yaml(ttr=1.5))),
    (cc.JobStatus(1), ok(status_yaml(created=""))),
    (cc.JobStatus(1), ok(status_yaml(created="2026-12-07"))),
    (cc.JobStatus(1), ok(status_yaml(created="2026-12-07T01:02:03"))),  # naive
    (cc.JobStatus(1), ok(status_yaml(created="2026-12-07 01:02:03Z"))),
    (cc.JobStatus(1), ok(status_yaml(reserved="yesterday"))),
    (cc.JobStatus(1), ok(status_yaml(finished="2026-13-07T01:02:03Z"))),
    (cc.JobStatus(1), ok(status_yaml(expires="2026-12-07T25:00:00Z"))),
    (cc.JobStatus(1), ok(status_yaml(checkpoint_bytes=-2))),
    (cc.JobStatus(1), ok(status_yaml(checkpoint_bytes="5"))),
    (cc.JobStatus(1), ok(status_yaml() + b"id: 8\n")),  # a repeated key
]


@pytest.mark.parametrize(("command", "data"), GARBAGE)
def test_malformed_replies_are_unexpected(command: cc.Command[object], data: bytes) -> None:
    broken_by(command, data)


def test_a_bad_status_names_the_key() -> None:
    error = broken_by(cc.JobStatus(1), ok(status_yaml(reserved="yesterday")))
    assert "reserved" in str(error)
    assert "job-status" in str(error)


TRACKING_CHOICES: list[cc.Command[object]] = [
    cc.Finish(1, b"x"), cc.Fail(1, 0, b""), cc.Result(1, 0), cc.JobStatus(1),
    cc.Checkpoint(1, b"c"), cc.PeekCheckpoint(1), cc.Delete(1),
]
REPLY_PIECES = [
    b"FINISHED\r\n", b"BURIED\r\n", b"CHECKPOINTED\r\n", b"RESULT 1 1\r\nx\r\n",
    b"FAILED 1 2\r\nno\r\n", b"FAILED 1 ", b"TIMED_OUT\r\n", b"NOT_FOUND\r\n",
    b"FOUND 1 0\r\n\r\n", ok(status_yaml()), b"OK 4\r\n---\n\r\n", b"DELETED\r\n",
    b"UNKNOWN_COMMAND\r\n", b"\r\n", b"\r", b"\n", b"-1",
]


def garbage_fuzz(
    choices: list[cc.Command[object]], pieces: list[bytes]
) -> Callable[..., None]:
    """A test: any mix of `choices` sent, any stream of `pieces` and random bytes received,
    fed in random cuts: the codec raises UnexpectedReply or nothing (anything else escapes
    and fails the test), and how the stream is cut changes nothing."""

    @given(
        commands=st.lists(st.sampled_from(choices), min_size=1, max_size=5),
        stream=st.lists(st.one_of(st.sampled_from(pieces), st.binary(max_size=12)),
                        max_size=10),
        cut=st.integers(1, 7),
    )
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test(commands: list[cc.Command[object]], stream: list[bytes], cut: int) -> None:
        data = b"".join(stream)
        assert replies_or_broken(commands, data, cut) == replies_or_broken(
            commands, data, max(len(data), 1)
        )

    return test


test_garbage_fuzz_only_ever_raises_unexpected_reply = garbage_fuzz(
    TRACKING_CHOICES, REPLY_PIECES
)


def replies_or_broken(commands: list[cc.Command[object]], data: bytes, chunk: int) -> list[object]:
    """The replies `data` gives to `commands`, fed `chunk` bytes at a time, then "broken" if
    the codec raised UnexpectedReply (any other exception escapes)."""
    codec = Codec(max_body=1000)
    codec.send(*commands)
    got: list[object] = []
    try:
        for i in range(0, len(data), chunk):
            codec.receive_data(data[i : i + chunk])
            while codec.pending and (reply := codec.next_reply()) is not NEED_DATA:
                got.append(reply)
    except ce.UnexpectedReply:
        got.append("broken")
    return got


# --------------------------------------------------------------------------- the core


def core_of(serializer: Serializer[Any]) -> ClientCore[Any]:
    return ClientCore(("h", 1), serializer)


@pytest.mark.parametrize(
    ("serializer", "value", "data"),
    [
        (RawBytes(), b"out\r\n", b"out\r\n"),
        (Text(), "café", "café".encode()),
        (Msgpack(), {"n": [1, 2]}, b"\x81\xa1n\x92\x01\x02"),
        (Msgpack(), b"", b"\xc4\x00"),
        (Msgpack(), 0, b"\x00"),
    ],
    ids=["bytes", "text", "msgpack", "msgpack-empty-bytes", "msgpack-zero"],
)
def test_data_is_encoded_and_decoded_like_bodies(
    serializer: Serializer[Any], value: object, data: bytes
) -> None:
    core = core_of(serializer)
    assert core.encode_data(value) == data
    assert core.decode_data(1, data, "result") == value


@pytest.mark.parametrize("serializer", [RawBytes(), Text(), Msgpack()], ids=type)
def test_empty_data_is_none_both_ways(serializer: Serializer[Any]) -> None:
    # A plain delete leaves an empty result, which msgpack could not decode.
    core = core_of(serializer)
    assert core.encode_data(None) == b""
    assert core.decode_data(1, b"", "result") is None
    assert cc.Finish(1, core.encode_data(None)).encode() == b"finish 1 0\r\n\r\n"


def test_wrong_data_type_fails_before_the_wire() -> None:
    with pytest.raises(TypeError):
        core_of(RawBytes()).encode_data("text")


def test_result_reply_decoded() -> None:
    core = core_of(Msgpack())
    cmd = cc.Result(7, 1)
    assert core.result(cmd, one(cmd, b"RESULT 7 3\r\n\x92\x01\x02\r\n")) == [1, 2]
    cmd = cc.Result(7, 1)
    assert core.result(cmd, one(cmd, b"RESULT 7 0\r\n\r\n")) is None


def test_failed_reply_raises_job_failed_with_the_decoded_reason() -> None:
    core = core_of(Msgpack())
    cmd = cc.Result(7, 1)
    with pytest.raises(ce.JobFailed) as info:
        core.result(cmd, one(cmd, b"FAILED 7 5\r\n\x81\xa1e\xa1x\r\n"))
    assert info.value.id == 7
    assert info.value.reason == {"e": "x"}
    assert str(info.value) == "job 7 failed: {'e': 'x'}"
    assert hash(info.value) == hash(ce.JobFailed(7, {"other": 1}))  # unhashable reason
    cmd = cc.Result(7, 1)
    with pytest.raises(ce.JobFailed) as info:
        core.result(cmd, one(cmd, b"FAILED 7 0\r\n\r\n"))  # a plain bury: no reason
    assert info.value.reason is None


@pytest.mark.parametrize(("word", "error"), [(b"TIMED_OUT", ce.TimedOut),
                                             (b"NOT_FOUND", ce.NotFound)])
def test_result_errors_raise(word: bytes, error: type[Exception]) -> None:
    core = core_of(RawBytes())
    cmd = cc.Result(7, 1)
    with pytest.raises(error):
        core.result(cmd, one(cmd, word + b"\r\n"))


@pytest.mark.parametrize(
    ("data", "what"),
    [(b"RESULT 7 2\r\n\xff\xfe\r\n", "result"), (b"FAILED 7 2\r\n\xff\xfe\r\n", "reason")],
)
def test_undecodable_result_or_reason_is_decode_error_with_raw_bytes(
    data: bytes, what: str
) -> None:
    core = core_of(Text())
    cmd = cc.Result(7, 1)
    with pytest.raises(ce.DecodeError) as info:
        core.result(cmd, one(cmd, data))
    assert info.value.what == what
    assert info.value.job == tubeclient.Job(7, b"\xff\xfe", "h:1")
    assert f"cannot decode the {what} of job 7" in str(info.value)


def test_checkpoint_decoded_or_decode_error() -> None:
    core = core_of(Text())
    cmd = cc.PeekCheckpoint(4)
    assert core.checkpoint(cmd.unwrap(one(cmd, b"FOUND 4 2\r\nhi\r\n"))) == "hi"
    cmd = cc.PeekCheckpoint(4)
    assert core.checkpoint(cmd.unwrap(one(cmd, b"FOUND 4 0\r\n\r\n"))) is None
    cmd = cc.PeekCheckpoint(4)
    with pytest.raises(ce.DecodeError) as info:
        core.checkpoint(cmd.unwrap(one(cmd, b"FOUND 4 1\r\n\xff\r\n")))
    assert info.value.what == "checkpoint"


# --------------------------------------------------------------------------- detection


DATA_COMMANDS: list[cc.Command[object]] = [
    cc.Finish(5, b"delete 7"), cc.Fail(5, 0, b"r"), cc.Checkpoint(5, b"c"),
]
PLAIN_COMMANDS: list[cc.Command[object]] = [
    cc.Result(5, 0), cc.JobStatus(5), cc.PeekCheckpoint(5),
]


@pytest.mark.parametrize("cmd", DATA_COMMANDS, ids=lambda v: v.verb)
def test_commands_with_data_are_probed_first_until_support_is_known(
    cmd: cc.Command[object],
) -> None:
    core = core_of(RawBytes())
    assert core.probe(cmd) == cc.JobStatus(5)
    probe = cc.JobStatus(5)
    core.learn(cmd, one(probe, b"NOT_FOUND\r\n"))  # known now: the server answered
    assert core.tracking.supported is True
    assert core.probe(cmd) is None


@pytest.mark.parametrize("cmd", PLAIN_COMMANDS, ids=lambda v: v.verb)
def test_commands_without_data_are_never_probed(cmd: cc.Command[object]) -> None:
    assert core_of(RawBytes()).probe(cmd) is None


@pytest.mark.parametrize("word", [b"UNKNOWN_COMMAND", b"BAD_FORMAT"])
@pytest.mark.parametrize("cmd", DATA_COMMANDS + PLAIN_COMMANDS, ids=lambda v: v.verb)
def test_unsupported_is_detected_and_remembered(cmd: cc.Command[object], word: bytes) -> None:
    core = core_of(RawBytes())
    assert_unsupported_remembered(core, cmd, word, DATA_COMMANDS + PLAIN_COMMANDS)
    assert core.tracking.supported is False
    assert core.batch_supported is None  # reserve-batch is a separate question


def assert_unsupported_remembered(
    core: ClientCore[Any], cmd: cc.Command[object], word: bytes,
    family: list[cc.Command[object]],
) -> None:
    """`word` answering `cmd` (or its probe) on a fresh connection is ExtensionNotSupported
    caused by that error line, and then every command of the `family` fails at once,
    without a round trip."""
    probe = core.probe(cmd)
    asked = probe if probe is not None else cmd
    with pytest.raises(ce.ExtensionNotSupported) as info:
        core.learn(cmd, one(asked, word + b"\r\n"))
    assert info.value.command == cmd.verb
    assert type(info.value.__cause__) is ce.SERVER_ERRORS[word]
    for other in family:
        with pytest.raises(ce.ExtensionNotSupported) as info:
            core.probe(other)
        assert info.value.command == other.verb


def test_unknown_command_after_support_is_the_servers_error() -> None:
    core = core_of(RawBytes())
    status = cc.JobStatus(5)
    core.learn(status, one(status, b"NOT_FOUND\r\n"))
    cmd = cc.Result(5, 0)
    reply = one(cmd, b"UNKNOWN_COMMAND\r\n")
    core.learn(cmd, reply)  # no ExtensionNotSupported: the server knows it
    with pytest.raises(ce.UnknownCommand):
        core.result(cmd, reply)


def test_error_tree() -> None:
    assert issubclass(ce.JobFailed, ce.ServerError)
    assert ce.JobFailed.reply not in ce.SERVER_ERRORS  # it carries data: not a bare line
    assert ce.JobFailed(1, b"x") == ce.JobFailed(1, b"x") != ce.JobFailed(1, b"y")
    assert tubeclient.JobFailed is ce.JobFailed
    assert "JobFailed" in tubeclient.__all__ and "JobStatus" in tubeclient.__all__
    assert "JobFailed" in (ce.__doc__ or "")
