"""Dispatcher: the verb -> engine map, its counters, tick-before-command, and the bug fence.

The differential tests prove reply bytes end to end; these pin the dispatcher's own rules.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from tubeserver import commands as c
from tubeserver.dispatch import Action, Dispatcher
from tubeserver.engine import Engine
from tubeserver.errors import ExpectedCRLF, JobTooBig
from tubeserver.invariants import check_invariants
from tubeserver.server import Server
from tubeserver.stats import ProcessInfo


def make() -> Dispatcher:
    return Dispatcher(Engine(), ProcessInfo.gather(65535, 0.0))


def reply(result: bytes | Action) -> bytes:
    assert isinstance(result, bytes), result
    return result


def broken(*args: object) -> None:
    raise RuntimeError("boom")


class Buggy:
    """A journal whose every call fails with a non-protocol exception: a stand-in for a bug
    inside the engine (the compiled engine's methods cannot be patched)."""

    def __getattr__(self, name: str) -> Any:
        return broken


def test_server_bug_answers_internal_error_and_server_goes_on() -> None:
    bugs: list[tuple[c.Event, Exception]] = []
    d = Dispatcher(Engine(), ProcessInfo.gather(65535, 0.0), lambda ev, e: bugs.append((ev, e)))
    s = d.engine.connect()
    assert d.handle(s, c.Put(0, 0, 5, b"x"), 0.0) == b"INSERTED 1\r\n"
    d.engine.journal = Buggy()
    assert d.handle(s, c.Delete(1), 0.0) == b"INTERNAL_ERROR\r\n"
    assert [(ev, str(e)) for ev, e in bugs] == [(c.Delete(1), "boom")]
    d.engine.journal = None
    assert reply(d.handle(s, c.Peek(1), 0.0)).startswith(b"FOUND 1 1")
    assert d.handle(s, c.Put(0, 0, 5, b"x"), 0.0) == b"INSERTED 2\r\n"


def test_without_a_bug_handler_the_exception_propagates() -> None:
    d = make()
    s = d.engine.connect()
    assert d.handle(s, c.Put(0, 0, 5, b"x"), 0.0) == b"INSERTED 1\r\n"
    d.engine.journal = Buggy()
    with pytest.raises(RuntimeError, match="boom"):
        d.handle(s, c.Delete(1), 0.0)


async def test_server_logs_the_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(65535)
    with caplog.at_level(logging.ERROR, logger="tubeserver"):
        s = server.engine.connect()
        assert server.dispatcher.handle(s, c.Put(0, 0, 5, b"x"), 0.0) == b"INSERTED 1\r\n"
        server.engine.journal = Buggy()
        assert server.dispatcher.handle(s, c.Delete(1), 0.0) == b"INTERNAL_ERROR\r\n"
    assert "internal error handling Delete(id=1)" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_commands_see_time_driven_changes_even_if_the_ticker_is_late() -> None:
    d = make()
    a, b = d.engine.connect(), d.engine.connect()
    assert d.handle(a, c.Put(0, 0, 2, b"x"), 0.0) == b"INSERTED 1\r\n"
    assert reply(d.handle(a, c.Reserve(0), 0.0)).startswith(b"RESERVED 1 1")
    # No tick between: the TTR has run out by t=2, so b can have the job at once.
    assert reply(d.handle(b, c.Reserve(0), 2.0)).startswith(b"RESERVED 1 1")
    assert d.engine.job_timeouts == 1
    check_invariants(d.engine)


def test_reserve_that_blocks_returns_wait_and_quit_returns_close() -> None:
    d = make()
    s = d.engine.connect()
    assert d.handle(s, c.Reserve(None), 0.0) is Action.WAIT
    assert d.handle(d.engine.connect(), c.Quit(), 0.0) is Action.CLOSE


def test_rejected_puts_count_as_beanstalkd_counts_them() -> None:
    d = make()
    s = d.engine.connect()
    assert d.handle(s, c.Rejected(JobTooBig(), "put"), 0.0) == b"JOB_TOO_BIG\r\n"
    assert d.handle(s, c.Rejected(ExpectedCRLF(), "put"), 0.0) == b"EXPECTED_CRLF\r\n"
    assert d.counts["cmd-put"] == 2
    assert d.handle(s, c.Put(0, 0, 1, b""), 0.0) == b"INSERTED 1\r\n"
    assert d.counts["cmd-put"] == 3
    assert d.counts["cmd-reserve"] == 0
    d.handle(s, c.Reserve(None), 0.0)
    d.handle(s, c.Reserve(0), 0.0)
    assert (d.counts["cmd-reserve"], d.counts["cmd-reserve-with-timeout"]) == (1, 1)


def producers_and_workers(d: Dispatcher) -> tuple[int, int, int]:
    sessions = d.engine.sessions
    return (d.counts["cmd-put"], sum(s.producer for s in sessions),
            sum(s.worker for s in sessions))


def test_producers_count_from_an_accepted_header_as_in_beanstalkd() -> None:
    d = make()
    a, b, e, f = (d.engine.connect() for _ in range(4))
    assert d.handle(a, c.Rejected(JobTooBig(), "put"), 0.0) == b"JOB_TOO_BIG\r\n"
    assert producers_and_workers(d) == (1, 0, 0)
    assert d.handle(a, c.Rejected(ExpectedCRLF(), "put"), 0.0) == b"EXPECTED_CRLF\r\n"
    assert producers_and_workers(d) == (2, 1, 0)
    # A header whose data is still coming counts at once, and its put does not count again.
    assert d.handle(b, c.PutStarted(True), 0.0) == b""
    assert producers_and_workers(d) == (3, 2, 0)
    assert d.handle(b, c.Put(0, 0, 5, b"x"), 0.0) == b"INSERTED 1\r\n"
    assert producers_and_workers(d) == (3, 2, 0)
    # A refused header counts, but makes no producer; its refusal does not count again.
    assert d.handle(e, c.PutStarted(False), 0.0) == b""
    assert d.handle(e, c.Rejected(JobTooBig(), "put"), 0.0) == b"JOB_TOO_BIG\r\n"
    assert producers_and_workers(d) == (4, 2, 0)
    assert d.handle(f, c.PutStarted(True), 0.0) == b""
    assert d.handle(f, c.Rejected(ExpectedCRLF(), "put"), 0.0) == b"EXPECTED_CRLF\r\n"
    assert producers_and_workers(d) == (5, 3, 0)
    d.engine.disconnect(f, 0.0)
    assert producers_and_workers(d) == (5, 2, 0)


def test_reserve_job_makes_a_worker_only_when_it_reserves() -> None:
    d = make()
    a, b = d.engine.connect(), d.engine.connect()
    assert d.handle(a, c.ReserveJob(1), 0.0) == b"NOT_FOUND\r\n"
    assert producers_and_workers(d) == (0, 0, 0)
    d.handle(a, c.Put(0, 0, 5, b"x"), 0.0)
    assert reply(d.handle(b, c.ReserveJob(1), 0.0)).startswith(b"RESERVED 1 1")
    assert d.handle(a, c.ReserveJob(1), 0.0) == b"NOT_FOUND\r\n"  # reserved by b
    assert producers_and_workers(d) == (1, 1, 1)
    assert d.engine.sessions.keys() - {a} == {b} and b.worker and not a.worker


async def test_vv_trace_cuts_bodies_and_logs_the_answer_to_a_blocked_reserve(
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    server = Server(65535, verbose=2)
    worker, worker_end = trio.testing.memory_stream_pair()
    producer, producer_end = trio.testing.memory_stream_pair()
    with caplog.at_level(logging.DEBUG, logger="tubeserver"):
        nursery.start_soon(server.handle, worker_end)
        nursery.start_soon(server.handle, producer_end)
        await worker.send_all(b"reserve\r\n")
        await trio.testing.wait_all_tasks_blocked()
        await producer.send_all(b"put 0 0 5 5000\r\n" + b"z" * 5000 + b"\r\n")
        got = b""
        with trio.fail_after(5):
            while len(got) < 5000:
                got += await worker.receive_some()
    assert got.startswith(b"RESERVED 1 5000\r\n")
    assert "(reserve answered) -> b'RESERVED 1 5000" in caplog.text
    assert "chars)" in caplog.text and "z" * 1000 not in caplog.text
    await worker.aclose()
    await producer.aclose()
