"""Prometheus metrics of the server, read from its state at scrape time.

Nothing is counted twice: the engine already keeps every figure (tubes' counts and counters,
histograms of time in queue and run time, the oldest ready job per tube in `ages.py`) and the
server the fsync histogram; a scrape turns them into text. The cost is per tube and per
command kind, never per job.

prometheus-client (the optional `http` extra, imported only with the HTTP endpoint on) holds
the registry, the process metrics and the server-wide families, and renders them. The
per-tube families, which grow with the tubes, are written here in the same text format:
prometheus-client's generic renderer escapes and validates every sample, about 10 us each
on the test machine, and 100 tubes make some 4,000 samples, where the bound is 10 ms a scrape.
Tube names need no escaping (limits.py allows none of `\\`, `"` or a newline), and the tests
read the whole output back with prometheus-client's own parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import accumulate
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

from .histogram import JOB_BOUNDS, Histogram
from .limits import LIST_STATES

if TYPE_CHECKING:
    from .server import Server
    from .tube import Tube

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
        yield _counter("tubeserver_auth_failures", "Failed `auth` commands (with an auth file).",
                       server.auth_failures)
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


_LES = [*(repr(b) for b in JOB_BOUNDS), "+Inf"]  # the histograms' `le` labels
# The per-tube families: (name, type, help).
_TUBE_FAMILIES = (
    ("tubeserver_tube_jobs", "gauge", "Jobs in the tube by state."),
    ("tubeserver_tube_waiting_connections", "gauge",
     "Connections blocked in a reserve that watch the tube."),
    ("tubeserver_tube_oldest_ready_age_seconds", "gauge",
     "Age of the tube's oldest ready job (second resolution; 0 when none is ready)."),
    ("tubeserver_tube_paused", "gauge", "1 while the tube is paused (pause-tube)."),
    *((f"tubeserver_tube_{name}_total", "counter", text) for name, text, _ in TUBE_COUNTERS),
    ("tubeserver_tube_queue_time_seconds", "histogram",
     "Seconds from a job's put to its first reserve."),
    ("tubeserver_tube_run_time_seconds", "histogram",
     "Seconds from a job's reserve to its delete or finish by that worker."),
)


def tube_metrics(server: Server) -> str:
    """The per-tube families in the text exposition format, tubes by name."""
    now = server.now()
    tubes = sorted(server.engine.tube_list, key=_name)
    lines: dict[str, list[str]] = {name: [] for name, _, _ in _TUBE_FAMILIES}
    jobs = lines["tubeserver_tube_jobs"]
    waiting = lines["tubeserver_tube_waiting_connections"]
    oldest = lines["tubeserver_tube_oldest_ready_age_seconds"]
    paused = lines["tubeserver_tube_paused"]
    counters = [(lines[f"tubeserver_tube_{name}_total"], f"tubeserver_tube_{name}_total", attr)
                for name, _, attr in TUBE_COUNTERS]
    histograms = (("tubeserver_tube_queue_time_seconds", "queue_time"),
                  ("tubeserver_tube_run_time_seconds", "run_time"))
    for t in tubes:
        label = f'tube="{t.name}"'
        jobs.extend([f'tubeserver_tube_jobs{{state="{state}",{label}}} {t.count(state)}'
                     for state in LIST_STATES])
        waiting.append(f"tubeserver_tube_waiting_connections{{{label}}} {len(t.waiters)}")
        second = t.ages.oldest()
        age = 0.0 if second is None else max(0.0, now - second)
        oldest.append(f"tubeserver_tube_oldest_ready_age_seconds{{{label}}} {age!r}")
        paused.append(f"tubeserver_tube_paused{{{label}}} {1 if t.paused else 0}")
        for out, name, attr in counters:
            out.append(f"{name}{{{label}}} {getattr(t, attr)}")
        for name, attr in histograms:
            h: Histogram = getattr(t, attr)
            head = f'{name}_bucket{{{label},le="'
            cumulative = list(accumulate(h.counts))
            out = lines[name]
            out.extend([f'{head}{le}"}} {n}' for le, n in zip(_LES, cumulative, strict=True)])
            out.append(f"{name}_count{{{label}}} {cumulative[-1]}")
            out.append(f"{name}_sum{{{label}}} {h.sum!r}")
    text: list[str] = []
    for name, kind, help_text in _TUBE_FAMILIES:
        text.append(f"# HELP {name} {help_text}")
        text.append(f"# TYPE {name} {kind}")
        text.extend(lines[name])
    return "\n".join(text) + "\n"


def registry(server: Server) -> CollectorRegistry:
    """A registry of its own (not the global one): the server's metrics plus the process's
    (CPU, memory, descriptors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(server))
    ProcessCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry, server: Server) -> bytes:
    data: bytes = generate_latest(reg)
    return data + tube_metrics(server).encode("ascii")


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

