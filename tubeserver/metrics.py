"""Prometheus metrics of the server, read from its state at scrape time (prometheus-client).

Nothing is counted twice: the engine already keeps every figure (tubes' counts and counters,
histograms of time in queue and run time, the oldest ready job per tube in `ages.py`) and the
server the fsync histogram; a scrape turns them into metric families. The cost is per tube and
per command kind, never per job. prometheus-client is an optional extra (`http`), imported
only when the HTTP endpoint is on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector as BaseCollector

from .histogram import Histogram

if TYPE_CHECKING:
    from .server import Server
    from .tube import Tube

STATES = ("ready", "reserved", "delayed", "buried", "waiting")
# Per-tube counters: (metric name, help, attribute of Tube).
TUBE_COUNTERS = (
    ("puts", "Jobs put into the tube (put, put-unique, put-after, schedules).", "total_jobs"),
    ("reserves", "Jobs of the tube handed to a worker.", "reserves"),
    ("deletes", "Jobs of the tube deleted (delete, finish, clear-tube).", "cmd_delete"),
    ("releases", "Jobs of the tube released by their worker.", "releases"),
    ("buries", "Jobs of the tube buried (bury, fail).", "buries"),
    ("kicks", "Jobs of the tube kicked.", "kicks"),
    ("timeouts", "Reserved jobs of the tube whose time to run ran out.", "timeouts"),
)


class Collector(BaseCollector):
    """The server's metrics, one `collect` per scrape."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        engine = server.engine
        now = server.now()
        tubes = sorted(engine.tube_list, key=_name)

        jobs = GaugeMetricFamily("tubeserver_tube_jobs", "Jobs in the tube by state.",
                                 labels=["tube", "state"])
        waiting = GaugeMetricFamily(
            "tubeserver_tube_waiting_connections",
            "Connections blocked in a reserve that watch the tube.", labels=["tube"])
        oldest = GaugeMetricFamily(
            "tubeserver_tube_oldest_ready_age_seconds",
            "Age of the tube's oldest ready job (second resolution; 0 when none is ready).",
            labels=["tube"])
        paused = GaugeMetricFamily("tubeserver_tube_paused",
                                   "1 while the tube is paused (pause-tube).", labels=["tube"])
        counters = [(CounterMetricFamily(f"tubeserver_tube_{name}", text, labels=["tube"]),
                     attr) for name, text, attr in TUBE_COUNTERS]
        queue_time = HistogramMetricFamily(
            "tubeserver_tube_queue_time_seconds",
            "Seconds from a job's put to its first reserve.", labels=["tube"])
        run_time = HistogramMetricFamily(
            "tubeserver_tube_run_time_seconds",
            "Seconds from a job's reserve to its delete or finish by that worker.",
            labels=["tube"])
        for t in tubes:
            name = t.name
            counts = (t.ready_count, t.reserved_count, t.delayed_count, len(t.buried),
                      len(t.waiting))
            for state, n in zip(STATES, counts, strict=True):
                jobs.add_metric([name, state], n)
            waiting.add_metric([name], len(t.waiters))
            second = t.ages.oldest()
            oldest.add_metric([name], 0.0 if second is None else max(0.0, now - second))
            paused.add_metric([name], 1.0 if t.paused else 0.0)
            for family, attr in counters:
                family.add_metric([name], getattr(t, attr))
            _histogram(queue_time, [name], t.queue_time)
            _histogram(run_time, [name], t.run_time)
        yield from (jobs, waiting, oldest, paused)
        yield from (family for family, _ in counters)
        yield from (queue_time, run_time)

        commands = CounterMetricFamily("tubeserver_commands", "Commands served, by verb.",
                                       labels=["command"])
        for key, n in server.dispatcher.counts.items():
            commands.add_metric([key.removeprefix("cmd-")], n)
        yield commands
        yield _gauge("tubeserver_connections", "Open client connections.",
                     len(engine.sessions))
        yield _counter("tubeserver_connections", "Client connections accepted.",
                       engine.total_connections)
        yield _gauge("tubeserver_tubes", "Tubes that exist.", len(engine.tube_list))
        yield _counter("tubeserver_jobs", "Jobs made.", engine.total_jobs)
        yield _counter("tubeserver_job_timeouts", "Reserved jobs whose time to run ran out.",
                       engine.job_timeouts)
        yield _counter("tubeserver_jobs_cleared", "Jobs deleted by clear-tube.",
                       engine.admin.cleared)
        tracker = engine.tracker
        yield _gauge("tubeserver_kept_records", "Records of finished jobs kept (job tracking).",
                     len(tracker.records))
        yield _gauge("tubeserver_kept_record_bytes", "Memory the kept records account for.",
                     tracker.bytes)
        flow = engine.flow
        yield _gauge("tubeserver_schedules", "Schedules defined.", len(flow.schedules.table))
        yield _counter("tubeserver_schedule_firings", "Schedule firings that made a job.",
                       flow.fired)
        yield _gauge("tubeserver_dependent_jobs", "Jobs waiting on parents (put-after).",
                     flow.deps.waiting)
        yield _gauge("tubeserver_unique_keys", "Unique keys held (put-unique).",
                     len(flow.keys.holds))
        yield _gauge("tubeserver_draining", "1 in drain mode (SIGUSR1).",
                     1.0 if engine.draining else 0.0)
        yield _gauge("tubeserver_uptime_seconds", "Seconds since the server started.",
                     now - server.dispatcher.info.started)
        build = GaugeMetricFamily("tubeserver_build_info", "The running build, as labels.",
                                  labels=["version", "build"])
        build.add_metric([server.dispatcher.info.version, server.dispatcher.info.build], 1.0)
        yield build
        wal = server.wal
        if wal is not None:
            yield _gauge("tubeserver_wal_bytes", "Bytes in the write-ahead log's files.",
                         wal.total_bytes())
            yield _gauge("tubeserver_wal_live_bytes",
                         "Bytes of the log that still hold live jobs.", wal.live_bytes)
            yield _counter("tubeserver_wal_records", "Records written to the log.",
                           wal.records_written)
            fsync = HistogramMetricFamily("tubeserver_wal_fsync_seconds",
                                          "Seconds each fsync round of the log took.")
            _histogram(fsync, [], server.sync_time)
            yield fsync


def registry(server: Server) -> CollectorRegistry:
    """A registry of its own (not the global one): the server's metrics plus the process's
    (CPU, memory, descriptors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(server))
    ProcessCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    data: bytes = generate_latest(reg)
    return data


def _histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    buckets = [(_le(bound), float(n)) for bound, n in h.cumulative()]
    family.add_metric(labels, buckets, h.sum)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


def _name(tube: Tube) -> str:
    return tube.name

