"""Flow control end to end: the sync and trio clients against real servers on loopback.

Against tubeserver: put_unique answering a new job then the job holding the key (while live
and for its window), put_after chains released as parents finish and NotFound for unknown
parents, tube limits (TubeFull from every kind of put at max-jobs, a reserve held back at
max-reserved, the listing), and schedules (an `every 1` schedule's job arrives, the listing
counts it, a spec the server rejects is the client's BadFormat, unschedule). These follow the
spec (protocol.md, "Flow control").

Against beanstalkd, which has none of it: every method raises ExtensionNotSupported, the
connection stays usable, and the data of put_unique/put_after/schedule never reaches it (it
would run as a command). A scripted server checks the bytes on the wire: the probe before the
first command with data, none after; and nothing but the probe for a server that answers it
UNKNOWN_COMMAND. Every wait is bounded; nothing asserts timings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import procs
import pytest
import trio
from live import IO, WAIT, connect, scripted_server, trio_client
from tubeclient import (
    BadFormat,
    BatchError,
    Client,
    ExtensionNotSupported,
    NotFound,
    Schedule,
    TimedOut,
    TrioClient,
    TubeFull,
    TubeLimits,
    Unique,
)

NO_SUCH_JOB = 10**12


def schedule_named(c: Client[Any], name: str) -> Schedule:
    (found,) = [s for s in c.schedules() if s.name == name]
    return found


def limits_of(c: Client[Any], tube: str) -> TubeLimits | None:
    found = [t for t in c.list_tube_limits() if t.tube == tube]
    return found[0] if found else None


# --------------------------------------------------------------------------- scripted

EMPTY_LIST = b"OK 7\r\n--- []\n\r\n"
PROBED = [
    (b"list-tube-limits\r\n", 0.0, EMPTY_LIST),  # the probe: the server knows the verb
    (b"put-unique k 0 1 0 60 2\r\nab\r\n", 0.0, b"DUPLICATE 4\r\n"),
    (b"put-after 4,5 1 0 60 0\r\n\r\n", 0.0, b"INSERTED 6\r\n"),  # no second probe
    (b"schedule s t 1 60 1 every 5\r\nx\r\n", 0.0, b"SCHEDULED\r\n"),
]
TRACKING_ONLY = [  # a tubeserver from before flow control
    (b"list-tube-limits\r\n", 0.0, b"UNKNOWN_COMMAND\r\n"),
    (b"job-status 1\r\n", 0.0, b"NOT_FOUND\r\n"),  # the put-unique was never sent
]


def test_scripted_probe_once_before_the_first_command_with_data() -> None:
    with scripted_server(PROBED) as (addr, received):
        with Client(addr, io_timeout=IO) as c:
            assert c.put_unique(b"ab", "k", priority=1) == Unique(4, False)
            assert c.put_after(b"", [4, 5, 4], priority=1) == 6
            c.schedule("s", "t", b"x", "every 5", priority=1)
    assert received == [expected for expected, _, _ in PROBED]


def test_scripted_server_without_flow_control_never_sees_the_data() -> None:
    with scripted_server(TRACKING_ONLY) as (addr, received):
        with Client(addr, io_timeout=IO) as c:
            with pytest.raises(ExtensionNotSupported) as info:
                c.put_unique(b"delete 1", "k")
            assert info.value.command == "put-unique"
            with pytest.raises(ExtensionNotSupported):
                c.schedules()  # known now: no round trip
            with pytest.raises(NotFound):
                c.status(1)  # job tracking is asked on its own
    assert received == [expected for expected, _, _ in TRACKING_ONLY]


async def test_scripted_trio_probe() -> None:
    with trio.fail_after(IO):
        with scripted_server(PROBED) as (addr, received):
            async with TrioClient(addr, io_timeout=IO) as c:
                assert await c.put_unique(b"ab", "k", priority=1) == Unique(4, False)
                assert await c.put_after(b"", [4, 5], priority=1) == 6
                await c.schedule("s", "t", b"x", "every 5", priority=1)
        assert received == [expected for expected, _, _ in PROBED]


# --------------------------------------------------------------------------- beanstalkd

VERBS = ["put-unique", "put-after", "schedule", "unschedule", "list-schedules",
         "tube-limits", "list-tube-limits"]


def every_method(c: Any, victim: int, tube: str) -> list[tuple[str, Callable[[], Any]]]:
    """Each flow method of `c`, a Client or a TrioClient (whose calls are then awaited)."""
    data = b"delete %d" % victim  # beanstalkd would run it, were it sent
    return [
        ("put-unique", lambda: c.put_unique(data, "key")),
        ("put-after", lambda: c.put_after(data, [victim])),
        ("schedule", lambda: c.schedule("nightly", tube, data, "30 2 * * *")),
        ("unschedule", lambda: c.unschedule("nightly")),
        ("list-schedules", c.schedules),
        ("tube-limits", lambda: c.tube_limits(tube, max_reserved=1)),
        ("list-tube-limits", c.list_tube_limits),
    ]


@pytest.mark.parametrize("first", range(len(VERBS)), ids=VERBS)
def test_beanstalkd_every_method_is_not_supported_and_the_connection_lives(
    beanstalkd: procs.RunningServer, tube: str, first: int
) -> None:
    with connect(beanstalkd, use=tube, watch=tube) as c:
        victim = c.put(b"victim")
        methods = every_method(c, victim, tube)
        assert [verb for verb, _ in methods] == VERBS
        for verb, call in methods[first:] + methods[:first]:
            with pytest.raises(ExtensionNotSupported) as info:
                call()
            assert info.value.command == verb
        assert c.peek(victim).body == b"victim"  # never deleted by a body run as a command
        assert c.stats_tube(tube)["current-jobs-ready"] == 1  # and nothing else was stored
        assert c.using() == tube  # in sync: this reply is this command's
        job = c.reserve(timeout=0)
        c.delete(job)
        assert not c.closed


async def test_beanstalkd_trio_every_method_is_not_supported(
    beanstalkd: procs.RunningServer, tube: str
) -> None:
    with trio.fail_after(IO):
        async with trio_client(beanstalkd, use=tube) as c:
            victim = await c.put(b"victim")
            calls = every_method(c, victim, tube)
            for verb, call in calls:
                with pytest.raises(ExtensionNotSupported) as info:
                    await call()
                assert info.value.command == verb
            assert (await c.peek(victim)).body == b"victim"
            assert await c.put(b"next") == victim + 1


# --------------------------------------------------------------------------- sync, tubeserver


def test_put_unique_inserts_then_names_the_job_holding_the_key(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        first = c.put_unique(b"charge order 42", "order-42", priority=5, ttr=30)
        assert first.new and isinstance(first, Unique)
        again = c.put_unique(b"charge order 42 again", "order-42")
        assert again == Unique(first.id, False)
        assert c.peek(first.id).body == b"charge order 42"  # the second body was discarded
        status = c.status(first.id)
        assert (status.key, status.priority, status.ttr, status.parents) == (
            "order-42", 5, 30, ())
        c.use(tube + ".other")
        assert c.put_unique(b"x", "order-42").new  # keys are per tube
        c.use(tube)
        c.delete(c.reserve(timeout=WAIT))  # finished: with window 0 the key is free
        freed = c.put_unique(b"charge order 42", "order-42")
        assert freed.new and freed.id != first.id
        c.delete(freed.id)


def test_put_unique_window_keeps_the_key_after_the_job(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube) as c:
        first = c.put_unique(b"daily digest", "digest", 3600)
        c.delete(first.id)
        assert c.put_unique(b"daily digest", "digest", 3600) == Unique(first.id, False)
        stats: dict[str, Any] = dict(c.stats())
        assert stats["unique-duplicates"] >= 1


def test_put_after_chain_runs_in_order(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        fetch = c.put(b"fetch")
        transform = c.put_after(b"transform", [fetch], priority=1)
        load = c.put_after(b"load", [c.peek(transform)], priority=0)  # a Job works too
        status = c.status(transform)
        assert (status.state, status.parents) == ("waiting", (fetch,))
        assert c.stats_job(transform)["state"] == "delayed"  # what beanstalkd's commands see
        order = []
        for _ in range(3):
            job = c.reserve(timeout=WAIT)  # only the step whose parents finished is ready
            order.append(job.body)
            c.finish(job, b"done: " + job.body)
        assert order == [b"fetch", b"transform", b"load"]
        assert c.status(load).state == "finished"
        with pytest.raises(TimedOut):
            c.reserve(timeout=0)


def test_put_after_an_unknown_parent_stores_nothing(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver, use=tube) as c:
        parent = c.put(b"parent")
        with pytest.raises(NotFound):
            c.put_after(b"orphan", [parent, NO_SUCH_JOB])
        assert c.stats_tube(tube)["total-jobs"] == 1
        with pytest.raises(ValueError):
            c.put_after(b"too many", range(1, 102))
        assert c.put_after(b"ok", [parent] * 3) == parent + 1  # duplicates count once


def test_tube_full_from_every_kind_of_put(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c:
        c.tube_limits(tube, max_jobs=2)
        first = c.put(b"1")
        c.put_unique(b"2", "two")
        puts: list[Callable[[], object]] = [
            lambda: c.put(b"3"), lambda: c.put_unique(b"3", "three"),
            lambda: c.put_after(b"3", [first]),
        ]
        for put in puts:
            with pytest.raises(TubeFull):
                put()
        with pytest.raises(BatchError) as info:
            c.put_many([b"3"])
        assert info.value.results == [TubeFull()]
        assert limits_of(c, tube) == TubeLimits(tube, 0, 2, 0.0, 0, 2)
        c.delete(c.reserve(timeout=WAIT))
        assert c.put(b"room again") > first
        c.tube_limits(tube)  # all 0: the limits are gone
        assert limits_of(c, tube) is None


def test_max_reserved_and_rate(tubeserver: procs.RunningServer, tube: str) -> None:
    with connect(tubeserver, use=tube, watch=tube) as c, connect(tubeserver, watch=tube) as d:
        c.tube_limits(tube, max_reserved=1, rate=0.5)
        assert limits_of(c, tube) == TubeLimits(tube, 1, 0, 0.5, 0, 0)
        c.put_many([b"a", b"b"])
        held = c.reserve(timeout=WAIT)
        with pytest.raises(TimedOut):
            d.reserve(timeout=0)  # a job is ready, but the tube is at max-reserved
        limits = limits_of(c, tube)
        assert limits is not None
        assert (limits.current_jobs_reserved, limits.current_jobs) == (1, 2)
        assert d.reserve_job(held.id + 1).body == b"b"  # reserve-job is not held back
        c.tube_limits(tube, rate=1_000_000)  # replaces all three: max-reserved is 0 again
        assert limits_of(c, tube) == TubeLimits(tube, 0, 0, 1_000_000.0, 2, 2)


def test_bad_limits_are_refused_before_the_wire(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    with connect(tubeserver) as c:
        for bad in (-1, 1_000_001, float("nan")):
            with pytest.raises(ValueError):
                c.tube_limits(tube, rate=bad)
        with pytest.raises(ValueError):
            c.tube_limits("-bad")
        with pytest.raises(ValueError):
            c.put_unique(b"x", "bad key")
        assert c.list_tube_limits() is not None  # nothing was sent; the connection is fine


def test_schedule_every_second_puts_jobs(tubeserver: procs.RunningServer, tube: str) -> None:
    name = "sched." + tube
    with connect(tubeserver, watch=tube, serializer="msgpack") as c:
        c.schedule(name, tube, {"report": "daily"}, "every 1", priority=7, ttr=30)
        before = schedule_named(c, name)
        assert (before.tube, before.spec, before.priority, before.ttr) == (tube, "every 1", 7, 30)
        assert before.next is not None and before.next.tzinfo is not None
        job = c.reserve(timeout=WAIT)
        assert job.body == {"report": "daily"}
        c.unschedule(name)
        with pytest.raises(NotFound):
            c.unschedule(name)
        status = c.status(job)
        assert (status.priority, status.ttr) == (7, 30)
        c.delete(job)


def test_schedule_listing_after_a_firing(tubeserver: procs.RunningServer, tube: str) -> None:
    name = "sched." + tube
    with connect(tubeserver, watch=tube) as c:
        c.schedule(name, tube, b"tick", "single every 1")
        job = c.reserve(timeout=WAIT)
        fired = schedule_named(c, name)
        assert fired.jobs >= 1 and fired.last_job is not None and fired.last_job >= job.id
        assert fired.last is not None and fired.next is not None and fired.next > fired.last
        assert fired.spec == "single every 1" and fired.body_bytes == 4
        c.unschedule(name)
        c.delete(job)


def test_schedule_declared_twice_keeps_its_next_firing(
    tubeserver: procs.RunningServer, tube: str
) -> None:
    name = "sched." + tube
    with connect(tubeserver) as c:
        c.schedule(name, tube, b"go", "30  2 * * *")
        first = schedule_named(c, name)
        c.schedule(name, tube, b"go", "30 2 * * *")
        again = schedule_named(c, name)
        assert again == first and again.spec == "30 2 * * *"
        assert (again.jobs, again.last, again.last_job) == (0, None, None)
        c.unschedule(name)
        assert all(s.name != name for s in c.schedules())


@pytest.mark.parametrize("spec", ["0 0 30 2 *", "every 0", "61 * * * *", "* * * *", "often"])
def test_a_spec_the_server_rejects_is_bad_format(
    tubeserver: procs.RunningServer, tube: str, spec: str
) -> None:
    with connect(tubeserver) as c:
        with pytest.raises(BadFormat):
            c.schedule("bad." + tube, tube, b"x", spec)  # the first flow command here
        assert all(s.name != "bad." + tube for s in c.schedules())
        assert not c.closed


# --------------------------------------------------------------------------- trio, tubeserver


async def test_trio_every_method(tubeserver: procs.RunningServer, tube: str) -> None:
    name = "sched." + tube
    with trio.fail_after(IO):
        async with trio_client(tubeserver, use=tube, watch=tube) as c:
            first = await c.put_unique(b"a", "k")
            assert await c.put_unique(b"a", "k") == Unique(first.id, False)
            child = await c.put_after(b"b", [first.id])
            assert (await c.status(child)).parents == (first.id,)
            with pytest.raises(NotFound):
                await c.put_after(b"b", [NO_SUCH_JOB])
            await c.tube_limits(tube, max_jobs=2, rate=100)
            assert TubeLimits(tube, 0, 2, 100.0, 0, 2) in await c.list_tube_limits()
            with pytest.raises(TubeFull):
                await c.put_unique(b"c", "other")
            await c.tube_limits(tube)
            with pytest.raises(BadFormat):
                await c.schedule(name, tube, b"x", "0 0 30 2 *")
            await c.schedule(name, tube, b"tick", "every 1")
            assert name in [s.name for s in await c.schedules()]
            assert (await c.reserve(timeout=WAIT)).body == b"a"  # the ready one first
            tick = await c.reserve(timeout=WAIT)
            assert tick.body == b"tick"
            await c.unschedule(name)
            with pytest.raises(NotFound):
                await c.unschedule(name)


def test_sync_and_trio_clients_have_the_same_methods() -> None:
    # Only `async` differs (and close / aclose, and TrioClient.connect).
    sync = {n for n in dir(Client) if not n.startswith("_")} - {"close"}
    trio_side = {n for n in dir(TrioClient) if not n.startswith("_")} - {"aclose", "connect"}
    assert sync == trio_side
    for name in sorted(sync):
        s, t = getattr(Client, name), getattr(TrioClient, name)
        if callable(s):
            assert inspect.signature(s).parameters.keys() == inspect.signature(t).parameters.keys()
            assert inspect.iscoroutinefunction(t), name


def test_a_rate_finer_than_the_listing_is_refused(tubeserver: procs.RunningServer,
                                                   tube: str) -> None:
    """list-tube-limits shows six decimals: a finer rate would list as another (0.000000
    reads as no limit), so the client refuses it (the server answers BAD_FORMAT)."""
    with connect(tubeserver) as c:
        with pytest.raises(ValueError, match=r"at least 0\.000001"):
            c.tube_limits(tube, rate=1e-7)
        c.tube_limits(tube, rate=0.000001)
        limits = limits_of(c, tube)
        assert limits is not None and limits.rate == 0.000001
