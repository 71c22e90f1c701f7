"""Stats YAML: exact key order, and text a real YAML parser reads back as the same values.

Tube names like `123`, `1.5`, `true` or `null`, and an `os` string with `#` and `: ` in it,
must come back as the strings they are (beanstalkd issues #592, #610, #640).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import yaml

from tubeserver import commands as c
from tubeserver.dispatch import Dispatcher
from tubeserver.engine import Engine
from tubeserver.stats import (
    ADMIN_COMMAND_KEYS,
    COMMAND_KEYS,
    FLOW_COMMAND_KEYS,
    TRACKING_COMMAND_KEYS,
    ProcessInfo,
)

TRICKY = ["123", "1.5", "true", "null", "yes", "0x1F", "1e5", "$x", "(a)", "a;b", "a/b+c_d."]


def payload(reply: bytes | object) -> Any:
    assert isinstance(reply, bytes)
    head, _, rest = reply.partition(b"\r\n")
    word, size = head.split(b" ")
    assert word == b"OK" and rest.endswith(b"\r\n") and len(rest) == int(size) + 2
    return yaml.safe_load(rest[:-2])


@pytest.fixture
def d() -> Dispatcher:
    info = attrs.evolve(ProcessInfo.gather(65535, 0.0), hostname="host: #1",
                        os='#22-Ubuntu SMP Fri Nov 5 13:21:36 UTC 2021: "x"', id="1234567890")
    return Dispatcher(Engine(), info)


@pytest.mark.parametrize("name", TRICKY)
def test_tube_and_job_names_come_back_as_strings(d: Dispatcher, name: str) -> None:
    s = d.engine.connect()
    d.handle(s, c.Use(name), 0.0)
    d.handle(s, c.Put(7, 0, 10, b"x"), 0.0)
    tube = payload(d.handle(s, c.StatsTube(name), 0.0))
    assert tube["name"] == name and tube["current-jobs-ready"] == 1
    job = payload(d.handle(s, c.StatsJob(1), 0.0))
    assert (job["tube"], job["state"], job["pri"]) == (name, "ready", 7)


def test_stats_keys_in_order_and_typed(d: Dispatcher) -> None:
    s = d.engine.connect()
    stats = payload(d.handle(s, c.Stats(), 3.0))
    keys = list(stats)
    assert keys[:5] == ["current-jobs-urgent", "current-jobs-ready", "current-jobs-reserved",
                        "current-jobs-delayed", "current-jobs-buried"]
    assert keys[5:5 + len(COMMAND_KEYS)] == list(COMMAND_KEYS)
    # tubeserver's own keys come after all of beanstalkd's
    own = [*TRACKING_COMMAND_KEYS, "current-result-waiters", "kept-records",
           "kept-record-bytes", "kept-records-expired", "kept-records-evicted",
           *FLOW_COMMAND_KEYS, "current-dependent-jobs", "current-unique-keys",
           "unique-duplicates", "current-schedules", "schedule-firings", "current-tube-limits",
           *ADMIN_COMMAND_KEYS, "jobs-cleared", "max-jobs", "max-memory",
           "current-job-memory", "puts-refused", "schedule-firings-refused",
           "connections-refused", "connections-stalled", "build"]
    assert keys[-len(own) - 6:] == ["binlog-max-size", "draining", "id", "hostname", "os",
                                    "platform", *own]
    assert stats["build"] in ("compiled (mypyc)", "interpreted") or stats["build"].startswith(
        "interpreted (")
    assert stats["hostname"] == "host: #1"
    assert stats["os"] == '#22-Ubuntu SMP Fri Nov 5 13:21:36 UTC 2021: "x"'
    assert stats["id"] == "1234567890" and stats["draining"] is False
    assert isinstance(stats["rusage-utime"], float) and stats["uptime"] == 3
    assert stats["cmd-stats"] == 1 and stats["current-connections"] == 1
