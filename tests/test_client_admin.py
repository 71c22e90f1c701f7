"""Admin commands end to end: the sync and trio clients against real servers on loopback.

Against tubeserver: list_jobs in each state and order with paging, clear_tube (only the
state named; reserved jobs are never cleared; records kept for status), kick_tube without
`use`, tube_info's figures (waiting apart, oldest ready age, pause, limits) and NotFound for
a tube that does not exist. These follow the spec (protocol.md, "Admin commands").

Against beanstalkd, which has none of them: each method raises ExtensionNotSupported, the
connection stays usable, and nothing changed on the server. Every wait is bounded; nothing
asserts timings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import procs
import pytest
import trio
from live import IO, WAIT, connect, trio_client
from tubeclient import ExtensionNotSupported, JobSummary, NotFound, TubeInfo

NO_TUBE = "no-such-tube"


def ids(jobs: list[JobSummary]) -> list[int]:
    return [j.id for j in jobs]


# --------------------------------------------------------------------------- tubeserver


def test_list_jobs_in_each_state_in_the_order_the_server_acts(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        low = c.put(b"low", priority=9)
        high = c.put(b"high!", priority=1)
        same = c.put(b"same", priority=9)
        late = c.put(b"late", delay=600)
        soon = c.put(b"soon", delay=300)
        assert ids(c.list_jobs(tube)) == [high, low, same]  # as reserve would take them
        assert ids(c.list_jobs(tube, "delayed")) == [soon, late]  # by when they are ready
        (first,) = c.list_jobs(tube, limit=1)
        assert (first.id, first.priority, first.body_size, first.reserves) == (high, 1, 5, 0)
        assert ids(c.list_jobs(tube, offset=1, limit=1)) == [low]
        assert c.list_jobs(tube, offset=3) == []
        assert c.list_jobs(tube, "delayed")[0].time_left > 200
        for body in (b"high!", b"low"):
            job = c.reserve(timeout=WAIT)
            assert job.body == body
            c.bury(job)
        assert ids(c.list_jobs(tube, "buried")) == [high, low]  # oldest burial first
        held = c.reserve(timeout=WAIT)
        (reserved,) = c.list_jobs(tube, "reserved")
        assert (reserved.id, reserved.reserves) == (held.id, 1) and reserved.time_left > 0
        parent = c.put(b"parent", delay=600)
        child = c.put_after(b"child", [parent])
        assert ids(c.list_jobs(tube, "waiting")) == [child]
        with pytest.raises(NotFound):
            c.list_jobs(NO_TUBE)
        with pytest.raises(ValueError):
            c.list_jobs(tube, "finished")


def test_clear_tube_deletes_one_state_only(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        ready = c.put_many([b"r1", b"r2", b"r3"])
        delayed = c.put(b"d", delay=600)
        for _ in range(2):
            c.bury(c.reserve(timeout=WAIT))
        held = c.reserve(timeout=WAIT)
        assert c.clear_tube(tube, "buried") == 2
        assert c.clear_tube(tube, "ready") == 0  # the third is reserved: never cleared
        assert c.stats_tube(tube)["current-jobs-reserved"] == 1
        assert c.clear_tube(tube, "delayed") == 1
        assert c.status(ready[0]).state == "finished"  # deleted as by delete: record kept
        with pytest.raises(NotFound):
            c.peek(delayed)
        c.delete(held)
        with pytest.raises(NotFound):
            c.clear_tube(NO_TUBE, "ready")
        with pytest.raises(ValueError):
            c.clear_tube(tube, "reserved")


def test_kick_tube_without_use(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as producer:
        for _ in range(3):
            producer.put(b"x")
        for _ in range(3):
            producer.bury(producer.reserve(timeout=WAIT))
        producer.put(b"later", delay=600)
    with connect(tubeserver) as c:  # uses `default`
        assert c.kick_tube(tube, 2) == 2
        assert c.stats_tube(tube)["current-jobs-buried"] == 1
        assert c.kick_tube(tube, 5) == 1
        assert c.kick_tube(tube, 5) == 1  # none buried: the delayed one
        assert c.stats_tube(tube)["current-jobs-ready"] == 4
        assert c.kick_tube(tube, 5) == 0
        assert c.using() == "default"
        with pytest.raises(NotFound):
            c.kick_tube(NO_TUBE, 1)


def test_tube_info(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        empty = c.tube_info("default")
        assert isinstance(empty, TubeInfo) and empty.name == "default"
        first = c.put(b"a")
        c.put(b"b", delay=600)
        c.put_after(b"c", [first])
        c.bury(c.reserve(timeout=WAIT))
        c.put(b"d")
        c.tube_limits(tube, max_reserved=3, rate=0.5)
        c.pause_tube(tube, 100)
        info = c.tube_info(tube)
        assert (info.current_jobs_ready, info.current_jobs_reserved, info.current_jobs_delayed,
                info.current_jobs_buried, info.current_jobs_waiting) == (1, 0, 1, 1, 1)
        assert c.stats_tube(tube)["current-jobs-delayed"] == 2  # waiting counted as delayed
        assert info.oldest_ready_age is not None and 0 <= info.oldest_ready_age < 60
        assert (info.total_jobs, info.total_reserves, info.total_buries) == (4, 1, 1)
        assert info.paused and 0 < info.pause_time_left <= 100
        assert (info.max_reserved, info.max_jobs, info.rate) == (3, 0, 0.5)
        c.pause_tube(tube, 0)
        c.clear_tube(tube, "ready")
        after = c.tube_info(tube)
        assert after.oldest_ready_age is None and not after.paused
        assert after.total_deletes == 1
        with pytest.raises(NotFound):
            c.tube_info(NO_TUBE)


async def test_trio_client(tubeserver: procs.RunningServer, tube: str) -> None:
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube, watch=tube) as c:
            a = await c.put(b"a", priority=2)
            b = await c.put(b"b", priority=1)
            assert ids(await c.list_jobs(tube, "ready", 0, 10)) == [b, a]
            assert (await c.tube_info(tube)).current_jobs_ready == 2
            await c.bury(await c.reserve(timeout=WAIT))
            assert await c.kick_tube(tube, 10) == 1
            assert await c.clear_tube(tube, "ready") == 2
            with pytest.raises(NotFound):
                await c.tube_info(NO_TUBE)


# --------------------------------------------------------------------------- beanstalkd

VERBS = ["list-jobs", "clear-tube", "kick-tube", "tube-info"]


def every_method(c: Any, tube: str) -> list[tuple[str, Callable[[], Any]]]:
    """Each admin method of `c`, a Client or a TrioClient (whose calls are then awaited)."""
    return [
        ("list-jobs", lambda: c.list_jobs(tube, "buried")),
        ("clear-tube", lambda: c.clear_tube(tube, "buried")),
        ("kick-tube", lambda: c.kick_tube(tube, 10)),
        ("tube-info", lambda: c.tube_info(tube)),
    ]


@pytest.mark.parametrize("first", range(len(VERBS)), ids=VERBS)
def test_beanstalkd_every_method_is_not_supported_and_the_connection_lives(
    beanstalkd: procs.RunningServer, tube: str, first: int
) -> None:
    with connect(beanstalkd, use=tube, watch=tube) as c:
        c.put(b"victim")
        c.bury(c.reserve(timeout=WAIT))
        methods = every_method(c, tube)
        assert [verb for verb, _ in methods] == VERBS
        for verb, call in methods[first:] + methods[:first]:
            with pytest.raises(ExtensionNotSupported) as info:
                call()
            assert info.value.command == verb
        stats = c.stats_tube(tube)  # nothing kicked or cleared
        assert (stats["current-jobs-buried"], stats["current-jobs-ready"]) == (1, 0)
        assert c.using() == tube  # in sync: this reply is this command's
        assert c.kick(1) == 1


async def test_beanstalkd_trio_every_method_is_not_supported(
    beanstalkd: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(beanstalkd, use=tube) as c:
            victim = await c.put(b"victim")
            for verb, call in every_method(c, tube):
                with pytest.raises(ExtensionNotSupported) as info:
                    await call()
                assert info.value.command == verb
            assert (await c.peek(victim)).body == b"victim"
