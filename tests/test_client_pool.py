"""Pools over several servers: the pure balancing policy, then sync and trio pools on loopback.

The `Balancer` (round robin, random, rendezvous hashing, backoff) is tested without sockets or
clocks. The live tests run two real servers (a tubeserver and a beanstalkd where the kind does
not matter, so the pool is also shown to mix them), stop one of them, and check that
producers keep succeeding through failover, that consumers keep draining the live server,
that hashing keeps a key on its server, and that finishing commands go to the connection
that reserved the job (both servers hand out id 1). Loops are bounded in count and time;
backoffs are shortened so reconnects happen within the bounds; no timing assertions.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypedDict

import procs
import pytest
import trio
from tubeclient import (
    Client,
    ConnectionClosed,
    ConsumerPool,
    Job,
    NoServerAvailable,
    NotFound,
    ProducerPool,
    TimedOut,
    TrioConsumerPool,
    TrioProducerPool,
)
from tubeclient.balance import Backoff, Balancer, check_addresses, rendezvous
from tubeclient.job import server_name

IO = 10.0


class Fast(TypedDict):
    """Pool options for tests: short backoffs, bounded I/O."""

    backoff: float
    max_backoff: float
    io_timeout: float
    connect_timeout: float


FAST: Fast = {"backoff": 0.02, "max_backoff": 0.1, "io_timeout": IO, "connect_timeout": IO}


def name(srv: procs.RunningServer) -> str:
    return server_name(srv.addr)


def stop(srv: procs.RunningServer) -> None:
    srv.proc.terminate()
    srv.proc.wait(timeout=5)


@contextlib.contextmanager
def tubeserver_on(port: int) -> Iterator[procs.RunningServer]:
    """A tubeserver on a given port (to bring a stopped server back at its address)."""
    argv = [sys.executable, "-m", "tubeserver", "--listen", procs.HOST, "--port", str(port)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        procs.wait_listening(procs.HOST, port, proc)
        yield procs.RunningServer(procs.HOST, port, proc)
    finally:
        procs.stop(proc)


def ready_in(srv: procs.RunningServer, tube: str) -> int:
    with Client(srv.addr, io_timeout=IO) as c:
        try:
            return c.stats_tube(tube)["current-jobs-ready"]
        except NotFound:
            return 0


# =========================================================================== pure policy


def test_round_robin_rotates_and_sidelines_failed_servers() -> None:
    b = Balancer(["a", "b", "c"], "round_robin", random.Random(0), backoff=10, max_backoff=10)
    assert [b.order(0.0)[0] for _ in range(4)] == [0, 1, 2, 0]
    b.failed(1, now=0.0)
    assert b.order(1.0) == [2, 0, 1]  # b is backing off: last resort
    assert b.order(1.0) == [0, 2, 1]
    assert b.order(100.0) == [1, 2, 0]  # the backoff has passed
    b.succeeded(1)
    assert b.health[1].failures == 0


def test_every_server_failing_still_tries_all_soonest_first() -> None:
    b = Balancer(["a", "b"], "random", random.Random(0), backoff=1, max_backoff=1)
    b.health[0].retry_at = 50.0
    b.health[1].retry_at = 40.0
    assert b.order(0.0) == [1, 0]


def test_random_order_is_a_permutation_and_seeded() -> None:
    one = Balancer(["a", "b", "c", "d"], "random", random.Random(7))
    two = Balancer(["a", "b", "c", "d"], "random", random.Random(7))
    orders = [one.order(0.0) for _ in range(20)]
    assert orders == [two.order(0.0) for _ in range(20)]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len({o[0] for o in orders}) > 1


def test_rendezvous_hashing_is_stable_balanced_and_minimal() -> None:
    names = ["10.0.0.1:11300", "10.0.0.2:11300", "10.0.0.3:11300"]
    keys = [f"user-{i}" for i in range(3000)]
    owners = [names[rendezvous(names, k)] for k in keys]
    assert owners == [names[rendezvous(names, k)] for k in keys]
    # The owner depends on the names, not on their order in the list.
    flipped = names[::-1]
    assert owners == [flipped[rendezvous(flipped, k)] for k in keys]
    counts = Counter(owners)
    assert all(n > 800 for n in counts.values()), counts
    # Removing a server moves only the keys it owned.
    fewer = names[:2]
    for key, owner in zip(keys, owners, strict=True):
        if owner in fewer:
            assert fewer[rendezvous(fewer, key)] == owner
    assert rendezvous(names, b"user-1") == rendezvous(names, "user-1")


def test_hash_strategy_needs_a_key_and_others_refuse_one() -> None:
    h = Balancer(["a", "b"], "hash", random.Random(0))
    assert h.order(0.0, key="k") == [rendezvous(["a", "b"], "k")]
    with pytest.raises(ValueError):
        h.order(0.0)
    with pytest.raises(ValueError):
        Balancer(["a"], "round_robin", random.Random(0)).order(0.0, key="k")
    with pytest.raises(ValueError):
        Balancer(["a"], "sticky", random.Random(0))  # type: ignore[arg-type]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(3)
    backoff = Backoff(base=1.0, cap=8.0)
    delays = [backoff.failed(0.0, rng) for _ in range(6)]
    for n, delay in enumerate(delays, start=1):
        full = min(8.0, 2.0 ** (n - 1))
        assert full / 2 <= delay <= full
    assert not backoff.ready(0.0)
    assert backoff.ready(100.0)
    backoff.succeeded()
    assert backoff.ready(0.0)


def test_address_lists_are_checked() -> None:
    with pytest.raises(TypeError):
        check_addresses(("127.0.0.1", 11300))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_addresses([])
    with pytest.raises(ValueError):
        check_addresses([("h", 1), ("h", 1)])
    assert check_addresses([("h", 1), "/run/t.sock"]) == [("h", 1), "/run/t.sock"]


# =========================================================================== sync pools


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
def test_producer_fails_over_when_a_server_stops(strategy: Any) -> None:
    tube = f"failover-{strategy}"
    with procs.tubeserver() as a, procs.beanstalkd() as b:
        with ProducerPool([a.addr, b.addr], strategy=strategy, use=tube, seed=1,
                          **FAST) as pool:
            assert pool.servers == [name(a), name(b)]
            before = [pool.put(b"%d" % i) for i in range(8)]
            assert {j.server for j in before} == {name(a), name(b)}
            stop(b)
            after = [pool.put(b"after %d" % i, ttr=30) for i in range(20)]
            assert {j.server for j in after} == {name(a)}
            assert all(isinstance(j, Job) and j.body.startswith(b"after") for j in after)
        on_a = sum(1 for j in before if j.server == name(a)) + 20
        assert ready_in(a, tube) == on_a
        with Client(a.addr, io_timeout=IO) as c:
            assert c.stats_job(after[-1].id)["ttr"] == 30  # the caller's ttr got through


def test_producer_with_every_server_down_raises_no_server_available() -> None:
    ports = [procs.free_port(), procs.free_port()]
    with ProducerPool([("127.0.0.1", p) for p in ports], **FAST) as pool:
        with pytest.raises(NoServerAvailable) as info:
            pool.put(b"x")
        assert set(info.value.errors) == set(pool.servers)
        assert all(isinstance(e, ConnectionClosed) for e in info.value.errors.values())


def test_producer_fails_over_from_a_draining_server() -> None:
    with procs.tubeserver() as a, procs.tubeserver() as b:
        with Client(b.addr, io_timeout=IO) as watcher:
            os.kill(b.proc.pid, signal.SIGUSR1)
            for _ in range(200):
                if watcher.stats()["draining"]:
                    break
                time.sleep(0.02)
        with ProducerPool([a.addr, b.addr], use="drain", **FAST) as pool:
            jobs = [pool.put(b"x") for _ in range(6)]
        assert {j.server for j in jobs} == {name(a)}
        assert ready_in(a, "drain") == 6


def test_hash_keeps_a_key_on_its_server_without_failover() -> None:
    with procs.tubeserver() as a, procs.beanstalkd() as b:
        addrs = [a.addr, b.addr]
        with ProducerPool(addrs, strategy="hash", encoding="utf-8", **FAST) as pool, \
                ProducerPool(addrs[::-1], strategy="hash", encoding="utf-8", **FAST) as other:
            where: dict[str, str] = {}
            for i in range(60):  # 30 keys: all on one server has odds 2**-29
                key = f"customer-{i % 30}"
                job = pool.put(f"order {i}", key=key)
                assert where.setdefault(key, job.server or "") == job.server
                assert other.put("again", key=key).server == job.server
            assert set(where.values()) == {name(a), name(b)}
            with pytest.raises(ValueError):
                pool.put("no key")
            stop(b)
            lost = next(k for k, s in where.items() if s == name(b))
            kept = next(k for k, s in where.items() if s == name(a))
            with pytest.raises(ConnectionClosed):
                pool.put("must not move", key=lost)
            assert pool.put("still fine", key=kept).server == name(a)


def test_consumer_drains_both_then_the_live_one_after_a_stop() -> None:
    tube = "drain-both"
    with procs.tubeserver() as a, procs.tubeserver() as b:
        for srv in (a, b):
            with Client(srv.addr, use=tube, io_timeout=IO) as c:
                c.put_many([b"%s-%d" % (name(srv).encode(), i) for i in range(5)])
        with ConsumerPool([a.addr, b.addr], watch=tube, wait=1, **FAST) as pool:
            first = [pool.reserve(timeout=5) for _ in range(4)]
            assert Counter(j.server for j in first) == {name(a): 2, name(b): 2}
            for job in first:
                pool.delete(job)
            stop(b)
            got: list[Job[bytes]] = []
            for _ in range(3):  # 3 jobs are left on a
                got.append(pool.reserve(timeout=5))
                pool.delete(got[-1])
            assert [j.server for j in got] == [name(a)] * 3
            assert pool.connected == [name(a)]
            with pytest.raises(TimedOut):
                pool.reserve(timeout=0)
        assert ready_in(a, tube) == 0


def test_consumer_finishes_each_job_on_its_own_server() -> None:
    tube = "routing"
    with procs.tubeserver() as a, procs.beanstalkd() as b:
        for srv in (a, b):
            with Client(srv.addr, use=tube, io_timeout=IO) as c:
                assert c.put(name(srv).encode()) == 1  # both servers hand out id 1
        with ConsumerPool([a.addr, b.addr], watch=tube, **FAST) as pool:
            jobs = {j.server: j for j in (pool.reserve(timeout=5), pool.reserve(timeout=5))}
            assert set(jobs) == {name(a), name(b)}
            assert all(j.id == 1 and j.body == (j.server or "").encode()
                       for j in jobs.values())
            pool.touch(jobs[name(a)])
            pool.bury(jobs[name(a)], priority=9)
            pool.release(jobs[name(b)], priority=4, delay=60)
            with pytest.raises(ValueError):
                pool.delete(Job(1, b"", "elsewhere:1"))
        with Client(a.addr, io_timeout=IO) as ca, Client(b.addr, io_timeout=IO) as cb:
            sa, sb = ca.stats_job(1), cb.stats_job(1)
            assert (sa["state"], sa["pri"]) == ("buried", 9)
            assert (sb["state"], sb["pri"]) == ("delayed", 4)


def test_consumer_reconnects_a_restarted_server() -> None:
    tube = "comeback"
    port = procs.free_port()
    with procs.tubeserver() as a:
        with tubeserver_on(port) as b:
            pool: ConsumerPool[bytes] = ConsumerPool([a.addr, b.addr], watch=tube, **FAST)
            with pytest.raises(TimedOut):
                pool.reserve(timeout=0)
            assert len(pool.connected) == 2
        # b is gone now; the pool notices on its next reserve and keeps serving a.
        with pytest.raises(TimedOut):
            pool.reserve(timeout=0)
        assert pool.connected == [name(a)]
        with tubeserver_on(port) as b2, pool:
            with Client(b2.addr, use=tube, io_timeout=IO) as c:
                c.put(b"after restart")
            job = None
            for _ in range(10):  # bounded: backoff is at most 0.1 s
                with contextlib.suppress(TimedOut):
                    job = pool.reserve(timeout=1)
                    break
            assert job is not None
            assert (job.server, job.body) == (name(b2), b"after restart")
            pool.delete(job)


def test_consumer_with_every_server_down_times_out() -> None:
    with ConsumerPool([("127.0.0.1", procs.free_port())], **FAST) as pool:
        with pytest.raises(TimedOut):
            pool.reserve(timeout=0.3)
        assert pool.connected == []
    with pytest.raises(ConnectionClosed):
        pool.reserve(timeout=0)


# =========================================================================== trio pools


async def test_trio_producer_fails_over() -> None:
    tube = "trio-failover"
    with procs.tubeserver() as a, procs.beanstalkd() as b:
        with trio.fail_after(30):
            async with TrioProducerPool([a.addr, b.addr], use=tube, serializer="msgpack",
                                        **FAST) as pool:
                before = [await pool.put({"n": i}) for i in range(6)]
                assert {j.server for j in before} == {name(a), name(b)}
                stop(b)
                after: list[Job[Any]] = []

                async def produce(n: int) -> None:
                    for i in range(5):
                        after.append(await pool.put({"task": n, "i": i}))

                async with trio.open_nursery() as nursery:
                    for n in range(4):
                        nursery.start_soon(produce, n)
                assert {j.server for j in after} == {name(a)}
        assert ready_in(a, tube) == 3 + 20


async def test_trio_hash_affinity() -> None:
    with procs.tubeserver() as a, procs.tubeserver() as b:
        with trio.fail_after(30):
            async with TrioProducerPool([a.addr, b.addr], strategy="hash", **FAST) as pool:
                seen: dict[bytes, str | None] = {}
                for i in range(60):  # 30 keys: all on one server has odds 2**-29
                    key = b"k%d" % (i % 30)
                    job = await pool.put(b"x", key=key)
                    assert seen.setdefault(key, job.server) == job.server
                assert len(set(seen.values())) == 2


async def test_trio_consumer_drains_both_then_the_live_one() -> None:
    tube = "trio-drain"
    with procs.tubeserver() as a, procs.beanstalkd() as b:
        for srv, count in ((a, 10), (b, 2)):
            with Client(srv.addr, use=tube, io_timeout=IO) as c:
                c.put_many([b"%d" % i for i in range(count)])
        with trio.fail_after(30):
            async with TrioConsumerPool([a.addr, b.addr], watch=tube, wait=1,
                                        **FAST) as pool:
                first: list[Job[bytes]] = []
                for _ in range(12):  # until b has served once (it has 2 jobs, a has 10)
                    first.append(await pool.reserve(timeout=5))
                    await pool.delete(first[-1])  # one job per server is out at a time
                    if first[-1].server == name(b):
                        break
                assert first[-1].server == name(b)
                stop(b)
                left_on_a = 10 - sum(1 for j in first if j.server == name(a))
                got: list[Job[bytes]] = []
                for _ in range(left_on_a + 1):  # a's jobs, and perhaps one of b's
                    if len(got) == left_on_a:
                        break
                    job = await pool.reserve(timeout=5)
                    if job.server == name(b):
                        # b's reserver had taken its next job before b stopped: that job
                        # cannot be finished any more (b gets it back when it restarts).
                        with pytest.raises(ConnectionClosed):
                            await pool.delete(job)
                        continue
                    got.append(job)
                    await pool.delete(job)
                assert len(got) == left_on_a
                assert {j.server for j in got} <= {name(a)}
        assert ready_in(a, tube) == 0


async def test_trio_consumer_routes_and_returns_unfinished_jobs() -> None:
    tube = "trio-routing"
    with procs.tubeserver() as a, procs.tubeserver() as b:
        for srv in (a, b):
            with Client(srv.addr, use=tube, io_timeout=IO) as c:
                c.put_many([b"one", b"two"])
        with trio.fail_after(30):
            async with TrioConsumerPool([a.addr, b.addr], watch=tube, per_server=2,
                                        **FAST) as pool:
                jobs: list[Job[bytes]] = []
                async for job in pool:
                    jobs.append(job)
                    if len(jobs) == 4:
                        break
                assert Counter(j.server for j in jobs) == {name(a): 2, name(b): 2}
                by = {(j.server, j.body): j for j in jobs}
                await pool.touch(by[name(a), b"one"])
                await pool.bury(by[name(a), b"one"], priority=8)
                await pool.release(by[name(b), b"two"], delay=60)
                await pool.delete(by[name(b), b"one"])
                with pytest.raises(ValueError):
                    await pool.delete(by[name(b), b"one"])  # already finished
                # a's "two" is left reserved: leaving the pool must give it back.
        with Client(a.addr, io_timeout=IO) as ca, Client(b.addr, io_timeout=IO) as cb:
            a_one = next(i for i in (1, 2) if ca.peek(i).body == b"one")
            assert ca.stats_job(a_one)["state"] == "buried"
            assert ca.stats_job(3 - a_one)["state"] == "ready"
            states = sorted(cb.stats_job(i)["state"] for i in (1, 2) if _exists(cb, i))
            assert states == ["delayed"]


def _exists(c: Client[Any], job_id: int) -> bool:
    try:
        c.peek(job_id)
    except NotFound:
        return False
    return True


async def test_trio_consumer_reserve_timeout_and_closed_pool() -> None:
    with procs.tubeserver() as a:
        with trio.fail_after(30):
            pool: TrioConsumerPool[bytes] = TrioConsumerPool([a.addr], watch="empty", wait=1,
                                                             **FAST)
            async with pool:
                with pytest.raises(TimedOut):
                    await pool.reserve(timeout=0.2)
            with pytest.raises(ConnectionClosed):
                await pool.reserve(timeout=1)


def test_failover_policy_records_the_error_or_reraises_under_hash() -> None:
    errors: dict[str, BaseException] = {}
    rr = Balancer(["a:1", "b:2"], "round_robin", random.Random(0))
    rr.failover(1, 0.0, ConnectionError("down"), errors)
    assert list(errors) == ["b:2"] and not rr.health[1].ready(0.0)
    hashed = Balancer(["a:1", "b:2"], "hash", random.Random(0))
    with pytest.raises(ConnectionError, match="down"):
        hashed.failover(0, 0.0, ConnectionError("down"), errors)
    assert list(errors) == ["b:2"] and not hashed.health[0].ready(0.0)
