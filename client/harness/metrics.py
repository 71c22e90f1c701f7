"""Prometheus metrics of the worker harness (``--metrics-port``), served by prometheus-client.

Theory of operation. The supervisor reports what happens to a `Metrics`: a job's outcome, a
child's start and end, each reserve and how long it waited for its reply, each reconnect.
Without --metrics-port that is `Metrics` itself, whose methods do nothing, so prometheus-client
is needed (and imported) only when metrics are asked for. `Prometheus` keeps its metrics in a
private ``CollectorRegistry``, not the library's global one, so two harnesses in one process
(as tests run them) never share a counter, and serves it with prometheus-client's own HTTP
server on a thread. That thread is safe here because the harness never forks itself: commands
start through fork+exec (``subprocess``), and ``--call`` children are forked by the
forkserver, a fresh interpreter started the same way, so no fork copies a process that has
the server's thread (or the output writer threads) in it.

Outcomes, one per job reserved (the ``event=job`` line's ``action`` and the other events):
``succeeded`` (delete / finish), ``retried`` (release with backoff after a failure),
``buried`` (bury / fail), ``released`` (given back uncounted at shutdown), ``lost`` (its
connection was lost; the server re-queues it), ``error`` (the server refused the answer,
``event=job-error``), ``bug`` (a bug in the harness, ``event=bug``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

OUTCOMES = ("succeeded", "retried", "buried", "released", "lost", "error", "bug")
# A child's run time: milliseconds for no-op jobs up to an hour for batch work.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
               600, 1800, 3600)
# A reserve's wait: a reply within milliseconds when jobs are ready; an empty reserve waits
# the reserve timeout (1 s) and lands at 1.5.
RESERVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 5)
INSTALL_HINT = "pip install 'tubeserver[metrics]'"


def available() -> bool:
    """Whether prometheus-client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Metrics:
    """What the supervisor reports; this base class keeps nothing (no --metrics-port)."""

    def job(self, outcome: str) -> None:
        """A reserved job is done with: `outcome` is one of OUTCOMES."""

    def child_started(self) -> None:
        """A job's child is being started."""

    def child_ended(self, seconds: float | None) -> None:
        """That child has ended after `seconds` (the log's ``duration``: start to end, kill
        grace included); None when the harness failed to run it (a bug, a cancellation)."""

    def reserved(self, waited: float, jobs: int) -> None:
        """A reserve (or reserve-batch) was answered after `waited` seconds with `jobs`."""

    def reconnect(self, server: str) -> None:
        """A connection to `server` was refused or broke; the reserver connects again."""


class Prometheus(Metrics):
    """The metrics in a private registry, served over HTTP by `serve`."""

    def __init__(self, servers: Sequence[str], concurrency: int) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # No *_created series (each counter's creation time, which Prometheus would store as
        # one more gauge apiece). A process-wide switch; the harness owns its process.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped upstream)
        self.registry = CollectorRegistry()
        r = self.registry
        self._jobs = Counter("tubeworker_jobs", "Jobs done with, by outcome",
                             ["outcome"], registry=r)
        for outcome in OUTCOMES:  # every series from the start, at 0
            self._jobs.labels(outcome)
        self._run = Histogram("tubeworker_job_run_seconds",
                              "Run time of a job's child, from its start to its end",
                              buckets=RUN_BUCKETS, registry=r)
        self._running = Gauge("tubeworker_children_running", "Children running now",
                              registry=r)
        Gauge("tubeworker_concurrency", "Children allowed at once (-c)",
              registry=r).set(concurrency)
        self._reserves = Counter("tubeworker_reserves", "Reserves answered, by whether "
                                 "they brought jobs", ["result"], registry=r)
        for result in ("jobs", "empty"):
            self._reserves.labels(result)
        self._reserved = Counter("tubeworker_jobs_reserved", "Jobs reserved", registry=r)
        self._wait = Histogram("tubeworker_reserve_wait_seconds",
                               "Time a reserve waited for its answer",
                               buckets=RESERVE_BUCKETS, registry=r)
        self._reconnects = Counter("tubeworker_reconnects",
                                   "Connections refused or broken, each followed by a "
                                   "new connection", ["server"], registry=r)
        for server in servers:
            self._reconnects.labels(server)
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def job(self, outcome: str) -> None:
        self._jobs.labels(outcome).inc()

    def child_started(self) -> None:
        self._running.inc()

    def child_ended(self, seconds: float | None) -> None:
        self._running.dec()
        if seconds is not None:
            self._run.observe(seconds)

    def reserved(self, waited: float, jobs: int) -> None:
        self._reserves.labels("jobs" if jobs else "empty").inc()
        self._reserved.inc(jobs)
        self._wait.observe(waited)

    def reconnect(self, server: str) -> None:
        self._reconnects.labels(server).inc()

    def serve(self, addr: str, port: int) -> tuple[str, int]:
        """Serve /metrics on `addr`:`port` (0: any free port); the address and port bound.
        OSError when it cannot listen there."""
        from prometheus_client import start_http_server

        self._httpd, self._thread = start_http_server(port, addr, registry=self.registry)
        host, bound = self._httpd.server_address[:2]
        return str(host), int(bound)

    def close(self) -> None:
        """Stop serving (waits up to the server's 0.5 s poll interval)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


__all__ = ["INSTALL_HINT", "OUTCOMES", "Metrics", "Prometheus", "available"]
