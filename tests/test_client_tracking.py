"""The job-tracking extension end to end: sync and trio clients and consumer pools on loopback.

Against tubeserver (a server of this module's own): a producer puts, a worker reserves and
finishes with a result, and the producer's wait_result returns it; fail and JobFailed; the
TIMED_OUT of a wait longer than the client's I/O timeout; job-status of live and finished
jobs; checkpoints surviving a release and read from another connection; msgpack results,
reasons and checkpoints. These follow the spec (protocol.md, "Job tracking") and need a
tubeserver that implements it.

Against beanstalkd, which has no such commands: every method raises ExtensionNotSupported
and the connection stays usable, and the data of finish/fail/checkpoint never reaches it
(it would run as a command). A scripted server checks the bytes on the wire (the probe
before the first command with data, none after) and that a wait_result longer than the
I/O timeout does not trip it. Real sockets need the real clock; every wait is bounded and
nothing asserts timings beyond "the wait did not trip the I/O timeout".
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, cast

import procs
import pytest
import trio
from live import (
    IO,
    WAIT,
    connect,
    in_thread,
    scripted_server,
    trio_client,
)
from tubeclient import (
    Client,
    ConsumerPool,
    DecodeError,
    ExtensionNotSupported,
    Job,
    JobFailed,
    JobStatus,
    NotFound,
    TimedOut,
    TrioClient,
    TrioConsumerPool,
)

NO_SUCH_JOB = 10**12


def result_waiters(c: Client[Any]) -> int:
    return int(cast(dict[str, Any], c.stats())["current-result-waiters"])


def until_waiting(c: Client[Any]) -> None:
    """Return once the server counts a connection waiting in `result` (bounded)."""
    end = time.monotonic() + IO
    while result_waiters(c) < 1:
        assert time.monotonic() < end, "nobody started waiting for a result"
        time.sleep(0.01)


def near_now(when: dt.datetime) -> bool:
    return abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=5)


# --------------------------------------------------------------------------- scripted


PROBED = [
    (b"job-status 5\r\n", 0.0, b"NOT_FOUND\r\n"),  # the probe: the server knows the verb
    (b"finish 5 2\r\nok\r\n", 0.0, b"FINISHED\r\n"),
    (b"checkpoint 6 1\r\nc\r\n", 0.0, b"CHECKPOINTED\r\n"),  # no second probe
    (b"fail 6 9 0\r\n\r\n", 0.0, b"BURIED\r\n"),
]
SLOW_RESULT = [(b"result 1 3\r\n", 1.0, b"RESULT 1 2\r\nok\r\n")]


def test_scripted_probe_once_before_the_first_command_with_data() -> None:
    with scripted_server(PROBED) as (addr, received):
        with Client(addr, io_timeout=IO) as c:
            c.finish(5, b"ok")
            c.checkpoint(6, b"c")
            c.fail(6, None, priority=9)
    assert received == [expected for expected, _, _ in PROBED]


def test_scripted_wait_result_longer_than_the_io_timeout() -> None:
    with scripted_server(SLOW_RESULT) as (addr, _):
        with Client(addr, io_timeout=0.3) as c:
            assert c.wait_result(1, 3) == b"ok"  # answered after 1 s: the wait is budgeted


async def test_scripted_trio_probe_and_slow_result() -> None:
    with trio.fail_after(IO):
        with scripted_server(PROBED) as (addr, received):
            async with TrioClient(addr, io_timeout=IO) as c:
                await c.finish(5, b"ok")
                await c.checkpoint(6, b"c")
                await c.fail(6, None, priority=9)
        assert received == [expected for expected, _, _ in PROBED]
        with scripted_server(SLOW_RESULT) as (addr, _):
            async with TrioClient(addr, io_timeout=0.3) as c:
                assert await c.wait_result(1, 3) == b"ok"


# --------------------------------------------------------------------------- beanstalkd


VERBS = ["finish", "fail", "result", "job-status", "checkpoint", "peek-checkpoint"]


def every_method(c: Client[Any], job: int) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("finish", lambda: c.finish(job, b"result")),
        ("fail", lambda: c.fail(job, b"reason")),
        ("result", lambda: c.wait_result(job, 1)),
        ("job-status", lambda: c.status(job)),
        ("checkpoint", lambda: c.checkpoint(job, b"data")),
        ("peek-checkpoint", lambda: c.peek_checkpoint(job)),
    ]


@pytest.mark.parametrize("first", range(len(VERBS)), ids=VERBS)
def test_beanstalkd_every_method_is_not_supported_and_the_connection_lives(
    beanstalkd: procs.RunningServer, tube: str, first: int
) -> None:
    with connect(beanstalkd, use=tube, watch=tube) as c:
        job = c.reserve_job(c.put(b"work"))
        methods = every_method(c, job.id)
        assert [verb for verb, _ in methods] == VERBS
        # Whichever comes first finds out; the others then know without asking.
        order = methods[first:] + methods[:first]
        for verb, call in order:
            with pytest.raises(ExtensionNotSupported) as info:
                call()
            assert info.value.command == verb
        assert c.peek(job).body == b"work"  # still there, still reserved by us
        c.touch(job)
        c.bury(job)
        assert c.kick(1) == 1
        assert c.put(b"next") == job.id + 1
        assert not c.closed


@pytest.mark.parametrize("method", ["finish", "fail", "checkpoint"])
def test_beanstalkd_never_sees_the_data_as_a_command(
    beanstalkd: procs.RunningServer, tube: str, method: str
) -> None:
    # Sent blindly, `finish <id> 8\r\ndelete 7\r\n` is UNKNOWN_COMMAND, then a delete.
    with connect(beanstalkd, use=tube, watch=tube) as c:
        victim = c.put(b"victim")
        job = c.reserve_job(c.put(b"work"))
        data = b"delete %d" % victim
        call: Callable[[], None] = {
            "finish": lambda: c.finish(job, data),
            "fail": lambda: c.fail(job, data),
            "checkpoint": lambda: c.checkpoint(job, data),
        }[method]
        with pytest.raises(ExtensionNotSupported):
            call()
        assert c.peek(victim).body == b"victim"
        assert c.stats_tube(tube)["current-jobs-ready"] == 1  # and nothing else ran
        assert c.using() == tube  # in sync: this reply is this command's


async def test_beanstalkd_trio_every_method_is_not_supported(
    beanstalkd: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(beanstalkd, use=tube, watch=tube) as c:
            victim = await c.put(b"victim")
            job = await c.reserve_job(await c.put(b"work"))
            calls: list[tuple[str, Callable[[], Any]]] = [
                ("finish", lambda: c.finish(job, b"delete %d" % victim)),
                ("fail", lambda: c.fail(job, b"reason")),
                ("result", lambda: c.wait_result(job, 1)),
                ("job-status", lambda: c.status(job)),
                ("checkpoint", lambda: c.checkpoint(job, b"data")),
                ("peek-checkpoint", lambda: c.peek_checkpoint(job)),
            ]
            for verb, call in calls:
                with pytest.raises(ExtensionNotSupported) as info:
                    await call()
                assert info.value.command == verb
            assert (await c.peek(victim)).body == b"victim"
            await c.delete(job)
            assert await c.put(b"next") == job.id + 1


async def test_beanstalkd_trio_plain_commands_are_asked_directly(
    beanstalkd: procs.RunningServer, tube: str
) -> None:
    # No probe for the commands without data: the first answer is theirs.
    with trio.fail_after(IO):
        async with trio_client(beanstalkd, use=tube) as c:
            with pytest.raises(ExtensionNotSupported) as info:
                await c.wait_result(1, 3)
            assert info.value.command == "result"
            assert await c.using() == tube


def test_beanstalkd_consumer_pool_reports_not_supported(
    beanstalkd: procs.RunningServer, tube: str
) -> None:
    with connect(beanstalkd, use=tube) as producer:
        producer.put(b"work")
    with ConsumerPool([beanstalkd.addr], watch=tube, io_timeout=IO) as pool:
        job = pool.reserve(timeout=WAIT)
        with pytest.raises(ExtensionNotSupported):
            pool.checkpoint(job, b"c")
        with pytest.raises(ExtensionNotSupported):
            pool.finish(job, b"r")
        pool.delete(job)  # the pool's connection is fine


# --------------------------------------------------------------------------- sync, tubeserver


def test_finish_then_wait_result_returns_the_result(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube) as producer, connect(tubeserver, watch=tube) as worker:
        jid = producer.put(b"2+2")

        def work() -> None:
            job = worker.reserve(timeout=WAIT)
            assert (job.id, job.body) == (jid, b"2+2")
            until_waiting(worker)  # finish while the producer waits, not before
            worker.finish(job, b"4\r\n")

        with in_thread(work):
            assert producer.wait_result(jid, WAIT) == b"4\r\n"
        assert producer.wait_result(jid, 0) == b"4\r\n"  # the record is kept
        with pytest.raises(NotFound):
            producer.peek(jid)  # to beanstalkd's commands the job is gone
        with pytest.raises(NotFound):
            producer.stats_job(jid)


def test_wait_longer_than_the_io_timeout(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, io_timeout=0.5) as producer, \
            connect(tubeserver, watch=tube) as worker:
        jid = producer.put(b"slow")
        with pytest.raises(TimedOut):
            producer.wait_result(jid, 1)  # server-side TIMED_OUT, not the client's IOTimeout
        assert not producer.closed

        def work() -> None:
            job = worker.reserve(timeout=WAIT)
            time.sleep(1.0)  # twice the producer's I/O timeout
            worker.finish(job, b"late")

        with in_thread(work):
            assert producer.wait_result(jid, WAIT) == b"late"


def test_wait_result_timeout_and_not_found(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube) as c:
        jid = c.put(b"nobody takes me")
        with pytest.raises(TimedOut):
            c.wait_result(jid, 0)
        with pytest.raises(NotFound):
            c.wait_result(NO_SUCH_JOB, 0)
        with pytest.raises(NotFound):
            c.status(NO_SUCH_JOB)
        c.delete(jid)  # a plain delete is a finish with an empty result
        assert c.wait_result(jid, 0) is None
        assert c.status(jid).result_bytes == 0


def test_fail_raises_job_failed_with_the_reason(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube) as producer, connect(tubeserver, watch=tube) as worker:
        jid = producer.put(b"doomed")
        job = worker.reserve(timeout=WAIT)
        with pytest.raises(NotFound):
            producer.fail(job, b"not mine")  # only the connection holding it may fail it
        worker.fail(job, b"boom", priority=3)
        with pytest.raises(JobFailed) as info:
            producer.wait_result(jid, WAIT)  # a buried job answers at once
        assert (info.value.id, info.value.reason) == (jid, b"boom")
        status = producer.status(jid)
        assert (status.state, status.priority, status.buries) == ("buried", 3, 1)
        assert status.reason_bytes == 4
        # Kicked, it is live again: a later wait waits for its next outcome.
        producer.kick_job(jid)
        with pytest.raises(TimedOut):
            producer.wait_result(jid, 0)
        job = worker.reserve(timeout=WAIT)
        worker.bury(job)  # a plain bury keeps the last reason
        with pytest.raises(JobFailed) as info:
            producer.wait_result(jid, 0)
        assert info.value.reason == b"boom"


def test_plain_bury_without_reason_fails_with_none(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        job = c.reserve_job(c.put(b"x"))
        c.bury(job)
        with pytest.raises(JobFailed) as info:
            c.wait_result(job, 0)
        assert info.value.reason is None


def test_status_of_live_and_finished_jobs(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        delayed = c.status(c.put(b"later", delay=100))
        assert (delayed.state, delayed.delay) == ("delayed", 100)
        jid = c.put(b"now", priority=7, ttr=30)
        ready = c.status(jid)
        assert isinstance(ready, JobStatus)
        assert (ready.id, ready.tube, ready.state) == (jid, tube, "ready")
        assert (ready.priority, ready.delay, ready.ttr) == (7, 0, 30)
        assert (ready.reserves, ready.timeouts, ready.releases, ready.buries, ready.kicks) == (
            0, 0, 0, 0, 0)
        assert near_now(ready.created) and ready.created.tzinfo is not None
        assert (ready.reserved, ready.finished, ready.expires) == (None, None, None)
        assert (ready.result_bytes, ready.reason_bytes, ready.checkpoint_bytes) == (0, 0, None)

        job = c.reserve(timeout=WAIT)
        assert job.id == jid
        c.checkpoint(job, b"abc")
        reserved = c.status(job)
        assert (reserved.state, reserved.reserves) == ("reserved", 1)
        assert reserved.reserved is not None and reserved.reserved >= reserved.created
        assert reserved.checkpoint_bytes == 3

        c.finish(job, b"done!")
        finished = c.status(job)
        assert (finished.state, finished.result_bytes) == ("finished", 5)
        assert finished.checkpoint_bytes is None  # the checkpoint went with the job
        assert finished.created == ready.created
        assert finished.finished is not None and finished.reserved is not None
        assert finished.finished >= finished.reserved
        assert finished.expires is not None
        kept = (finished.expires - finished.finished).total_seconds()
        assert 86399 <= kept <= 86401  # the default --result-ttl, one day


def test_checkpoint_survives_release_and_is_read_elsewhere(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube) as producer, \
            connect(tubeserver, watch=tube) as first, connect(tubeserver, watch=tube) as second:
        jid = producer.put(b"long job")
        with pytest.raises(NotFound):
            producer.peek_checkpoint(jid)  # no checkpoint yet
        job = first.reserve(timeout=WAIT)
        first.checkpoint(job, b"step 1")
        first.checkpoint(job, b"step 2\r\n")  # replaces the first
        with pytest.raises(NotFound):
            second.checkpoint(job, b"not mine")
        first.release(job)
        assert producer.peek_checkpoint(jid) == b"step 2\r\n"  # any connection may read it
        again = second.reserve(timeout=WAIT)
        assert again.id == jid
        assert second.peek_checkpoint(again) == b"step 2\r\n"  # resume from here
        second.finish(again, b"all steps")
        with pytest.raises(NotFound):
            producer.peek_checkpoint(jid)  # gone with the job
        assert producer.wait_result(jid, 0) == b"all steps"


def test_checkpoint_restarts_the_ttr(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        job = c.reserve_job(c.put(b"x", ttr=2))
        time.sleep(1.2)
        c.checkpoint(job, b"half")
        time.sleep(1.2)  # 2.4 s after the reserve: past the TTR had it not restarted
        c.checkpoint(job, b"more")  # NotFound if the TTR had expired
        assert c.status(job).timeouts == 0
        c.finish(job)


def test_msgpack_results_reasons_and_checkpoints(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube, serializer="msgpack") as producer, \
            connect(tubeserver, watch=tube, serializer="msgpack") as worker:
        a = producer.put({"add": [2, 2]})
        job = worker.reserve(timeout=WAIT)
        worker.checkpoint(job, {"done": [0]})
        assert producer.peek_checkpoint(a) == {"done": [0]}
        worker.finish(job, {"sum": 4, "note": None, "raw": b"\x00"})
        assert producer.wait_result(a, WAIT) == {"sum": 4, "note": None, "raw": b"\x00"}

        b = producer.put({"div": [1, 0]})
        worker.fail(worker.reserve(timeout=WAIT), {"error": "ZeroDivisionError"})
        with pytest.raises(JobFailed) as info:
            producer.wait_result(b, WAIT)
        assert info.value.reason == {"error": "ZeroDivisionError"}

        c = producer.put("no result")
        worker.finish(worker.reserve(timeout=WAIT))
        assert producer.wait_result(c, 0) is None
        d = producer.put("deleted")
        worker.delete(worker.reserve(timeout=WAIT))
        assert producer.wait_result(d, 0) is None  # empty, not a DecodeError


def test_undecodable_result_is_decode_error(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, serializer="msgpack") as producer, \
            connect(tubeserver, watch=tube) as worker:
        jid = producer.put("x")
        worker.finish(worker.reserve(timeout=WAIT), b"\xc1")  # never valid msgpack
        with pytest.raises(DecodeError) as info:
            producer.wait_result(jid, 0)
        assert (info.value.what, info.value.job.body) == ("result", b"\xc1")
        assert producer.status(jid).result_bytes == 1  # the connection lives on


def test_consumer_pool_finishes_fails_and_checkpoints(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube, encoding="utf-8") as producer, \
            ConsumerPool([tubeserver.addr], watch=tube, encoding="utf-8",
                         io_timeout=IO) as pool:
        ok_id, bad_id = producer.put("ok"), producer.put("bad")
        for _ in range(2):
            job = pool.reserve(timeout=WAIT)
            pool.checkpoint(job, f"seen {job.body}")
            assert pool.peek_checkpoint(job) == f"seen {job.body}"
            if job.body == "ok":
                pool.finish(job, "fine")
            else:
                pool.fail(job, "not fine")
        assert producer.wait_result(ok_id, 0) == "fine"
        with pytest.raises(JobFailed) as info:
            producer.wait_result(bad_id, 0)
        assert info.value.reason == "not fine"
        assert producer.peek_checkpoint(bad_id) == "seen bad"  # kept while buried


# --------------------------------------------------------------------------- trio, tubeserver


async def test_trio_finish_then_wait_result(tubeserver: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube, io_timeout=0.5) as producer, \
                trio_client(tubeserver, watch=tube) as worker:
            jid = await producer.put(b"2+2")

            async def work() -> None:
                job = await worker.reserve(timeout=WAIT)
                await trio.sleep(1.0)  # longer than the producer's I/O timeout
                await worker.finish(job, b"4")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(work)
                assert await producer.wait_result(jid, WAIT) == b"4"
            assert (await producer.status(jid)).state == "finished"


async def test_trio_fail_timeout_and_not_found(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube, watch=tube, io_timeout=0.5) as c:
            jid = await c.put(b"x")
            with pytest.raises(TimedOut):
                await c.wait_result(jid, 1)  # longer than the I/O timeout
            job = await c.reserve(timeout=WAIT)
            await c.fail(job, b"why", priority=5)
            with pytest.raises(JobFailed) as info:
                await c.wait_result(jid, 1)
            assert (info.value.id, info.value.reason) == (jid, b"why")
            status = await c.status(jid)
            assert (status.state, status.priority, status.reason_bytes) == ("buried", 5, 3)
            with pytest.raises(NotFound):
                await c.wait_result(NO_SUCH_JOB, 0)
            with pytest.raises(NotFound):
                await c.peek_checkpoint(jid)


async def test_trio_checkpoint_release_and_peek_elsewhere(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube, serializer="msgpack") as producer, \
                trio_client(tubeserver, watch=tube, serializer="msgpack") as worker:
            jid = await producer.put({"steps": 3})
            job = await worker.reserve(timeout=WAIT)
            await worker.checkpoint(job, {"step": 2})
            assert (await producer.status(jid)).checkpoint_bytes is not None
            await worker.release(job)
            assert await producer.peek_checkpoint(jid) == {"step": 2}
            job = await worker.reserve(timeout=WAIT)
            await worker.finish(job, {"total": 6})
            assert await producer.wait_result(jid, 0) == {"total": 6}


async def test_trio_consumer_pool_finish_and_fail(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube) as producer:
            ok_id, bad_id = await producer.put(b"ok"), await producer.put(b"bad")
            async with TrioConsumerPool([tubeserver.addr], watch=tube, wait=1,
                                        io_timeout=IO) as pool:
                for _ in range(2):
                    job: Job[bytes] = await pool.reserve(timeout=WAIT)
                    await pool.checkpoint(job, b"seen")
                    assert await pool.peek_checkpoint(job) == b"seen"
                    if job.body == b"ok":
                        await pool.finish(job, b"fine")
                    else:
                        await pool.fail(job, b"not fine")
            assert await producer.wait_result(ok_id, 0) == b"fine"
            with pytest.raises(JobFailed):
                await producer.wait_result(bad_id, 0)
