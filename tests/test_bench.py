"""tubebench: the report arithmetic, the generator's reply counting and connection logic, the
null responder, the command line, and one tiny end-to-end run. No timing assertions anywhere.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import procs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tubebench import cli, loadgen, null, summary, workloads
from tubebench.loadgen import ConnPlan
from tubebench.summary import Spread, Target
from tubebench.wire import LineCounter, ReplyScanner, StampedPut, put_command

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- summary


def test_spread_is_median_min_max() -> None:
    assert summary.spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert summary.spread([4.0, 1.0, 3.0, 2.0]) == Spread(2.5, 1.0, 4.0, 4)
    assert summary.spread([]) is None


def test_ratio_is_ours_over_theirs_and_blank_without_both() -> None:
    ours, theirs = Spread(50.0, 40, 60, 3), Spread(100.0, 90, 110, 3)
    assert summary.ratio(ours, theirs) == 0.5
    assert summary.ratio(ours, None) is None
    assert summary.ratio(None, theirs) is None
    assert summary.ratio(ours, Spread(0.0, 0, 0, 1)) is None


def test_targets_in_both_directions() -> None:
    assert Target(">=", 1.0).met(1.0) and not Target(">=", 1.0).met(0.99)
    assert Target("<=", 2.0).met(2.0) and not Target("<=", 2.0).met(2.01)
    assert summary.status(Target(">=", 0.5), 0.6) == "pass"
    assert summary.status(Target(">=", 0.5), 0.4) == "MISS"
    assert summary.status(None, 0.4) == ""
    assert summary.status(Target("<=", 2.0), None) == ""
    with pytest.raises(ValueError):
        Target(">", 1.0)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert summary.percentile(values, 50) == 50
    assert summary.percentile(values, 99) == 99
    assert summary.percentile(values, 100) == 100
    assert summary.percentile(values, 0) == 1
    assert summary.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        summary.percentile([], 50)


def test_near_ceiling_flags_rates_within_80_percent() -> None:
    ceiling = Spread(100.0, 90, 110, 3)
    assert summary.near_ceiling(Spread(80.0, 80, 80, 1), ceiling)
    assert not summary.near_ceiling(Spread(79.0, 79, 79, 1), ceiling)
    assert not summary.near_ceiling(Spread(79.0, 79, 79, 1), None)


@given(st.integers(0, 10_000), st.integers(1, 64))
def test_shares_add_up_and_differ_by_at_most_one(total: int, parts: int) -> None:
    got = summary.shares(total, parts)
    assert len(got) == parts and sum(got) == total and max(got) - min(got) <= 1


def test_human_numbers() -> None:
    assert summary.human(12_345) == "12.3k"
    assert summary.human(1_234) == "1.23k"
    assert summary.human(1_500_000) == "1.50M"
    assert summary.human(0.5) == "0.50"
    assert summary.human(None) == "-"


# ---------------------------------------------------------------- reply counting


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.integers(0, 50), st.lists(st.integers(0, 10_000), max_size=20))
def test_line_counter_counts_replies_however_split(n: int, cuts: list[int]) -> None:
    stream = b"".join(b"INSERTED %d\r\n" % i for i in range(n))
    counter = LineCounter()
    assert sum(counter.feed(c) for c in _chunks(stream, cuts)) == n


def test_line_counter_joins_a_crlf_split_across_chunks() -> None:
    counter = LineCounter()
    assert counter.feed(b"INSERTED 1\r") == 0
    assert counter.feed(b"\nINSERTED 2\r\n") == 2
    assert counter.feed(b"\r") == 0 and counter.feed(b"x") == 0 and counter.feed(b"\n") == 0


def _reply_stream() -> tuple[bytes, list[bytes], list[int]]:
    stamp = StampedPut(100)
    body = stamp.commands(1, 123)[len(b"put 100 0 600 100\r\n"):-2]
    parts = [
        b"RESERVED 7 100\r\n" + body + b"\r\n",
        b"DELETED\r\n",
        b"RESERVED-BATCH 2\r\n",
        b"RESERVED 8 100\r\n" + body + b"\r\n",
        b"RESERVED 9 100\r\n" + body + b"\r\n",
        b"TIMED_OUT\r\n",
        b"DEADLINE_SOON\r\n",
        b"NOT_FOUND\r\n",
    ]
    return b"".join(parts), [b"7", b"8", b"9"], [123, 123, 123]


@given(st.lists(st.integers(0, 10_000), max_size=30))
def test_reply_scanner_same_result_however_split(cuts: list[int]) -> None:
    stream, ids, stamps = _reply_stream()
    scanner = ReplyScanner(stamps=True)
    got_ids: list[bytes] = []
    got_stamps: list[int] = []
    deleted = timed_out = headers = batch_jobs = other = 0
    for chunk in _chunks(stream, cuts):
        r = scanner.feed(chunk)
        got_ids += r.ids
        got_stamps += list(r.stamps)
        deleted += r.deleted
        timed_out += r.timed_out
        headers += r.batch_headers
        batch_jobs += r.batch_jobs
        other += r.other
    assert (got_ids, got_stamps) == (ids, stamps)
    assert (deleted, timed_out, headers, batch_jobs, other) == (1, 2, 1, 2, 1)
    assert scanner.pending == 0


def test_reply_scanner_reads_bodies_by_length_not_by_line() -> None:
    scanner = ReplyScanner()
    r = scanner.feed(b"RESERVED 3 6\r\na\r\nb\r\n\r\nDELETED\r\n")
    assert r.ids == [b"3"] and r.deleted == 1 and r.other == 0


# ---------------------------------------------------------------- connection logic


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    a, b = socket.socketpair()
    yield a
    a.close()
    b.close()


def test_put_driver_keeps_depth_in_flight_and_stops_at_count(sock: socket.socket) -> None:
    d = loadgen.PutDriver(sock, ConnPlan("put", 5, depth=2, body_size=3))
    one = put_command(b"xxx")
    assert d.start() == one * 2
    assert d.feed(b"INSERTED 1\r\n") == one
    assert d.feed(b"INSERTED 2\r\nINSERTED 3\r\n") == one * 2
    assert not d.finished
    assert d.feed(b"INSERTED 4\r\nINSERTED 5\r\n") == b""
    assert d.finished and d.done == 5


def test_drain_driver_deletes_first_and_stops_on_timed_out(sock: socket.socket) -> None:
    d = loadgen.DrainDriver(sock, ConnPlan("drain", 100, depth=2))
    assert d.start() == b"reserve-with-timeout 0\r\n" * 2
    # One job back: its delete takes the freed slot.
    assert d.feed(b"RESERVED 4 1\r\nx\r\n") == b"delete 4\r\n"
    assert d.feed(b"TIMED_OUT\r\n") == b""  # drained: no more reserves
    assert not d.finished
    assert d.feed(b"DELETED\r\n") == b""
    assert d.finished and d.done == 1


def test_consumer_never_pipelines_a_blocking_reserve(sock: socket.socket) -> None:
    producing = [True]
    d = loadgen.DrainDriver(sock, ConnPlan("consume", 100, depth=4),
                            keep_going=lambda: producing[0])
    wait, poll = b"reserve-with-timeout 1\r\n", b"reserve-with-timeout 0\r\n"
    assert d.start() == wait
    # A job: delete it and poll 3 deep while jobs come.
    assert d.feed(b"RESERVED 1 1\r\nx\r\n") == b"delete 1\r\n" + poll * 3
    # Dry: wait until everything in flight is answered, then one blocking reserve alone.
    assert d.feed(b"TIMED_OUT\r\nTIMED_OUT\r\n") == b""
    assert d.feed(b"TIMED_OUT\r\n") == b""
    assert d.feed(b"DELETED\r\n") == wait
    producing[0] = False
    assert d.feed(b"TIMED_OUT\r\n") == b""
    assert d.finished and d.done == 1


def test_batch_driver_pipelines_deletes_and_the_next_batch(sock: socket.socket) -> None:
    d = loadgen.BatchDriver(sock, ConnPlan("batch", 100, batch=2))
    assert d.start() == b"reserve-batch 2 0\r\n"
    assert d.feed(b"RESERVED-BATCH 2\r\nRESERVED 1 1\r\nx\r\n") == b"delete 1\r\n"
    assert d.feed(b"RESERVED 2 1\r\nx\r\n") == b"delete 2\r\nreserve-batch 2 0\r\n"
    assert d.feed(b"DELETED\r\nDELETED\r\nTIMED_OUT\r\n") == b""
    assert d.finished and d.done == 2


def test_null_responder_answers_each_command_once() -> None:
    put = put_command(b"x" * 100)
    assert null.replies(put * 3) == b"INSERTED 1\r\n" * 3
    out = null.replies(b"delete 1\r\ndelete 2\r\nreserve-with-timeout 0\r\n")
    assert ReplyScanner().feed(out).deleted == 2
    batch = ReplyScanner().feed(null.replies(b"reserve-batch 5 0\r\n"))
    assert batch.batch_jobs == 5 and len(batch.ids) == 5
    assert null.replies(b"use bench\r\n") == b"USING bench\r\n"


# ---------------------------------------------------------------- catalogue and command line


def test_catalogue_names_are_unique_and_batch_brings_drain() -> None:
    variants = workloads.catalogue(quick=True)
    assert len({v.name for v in variants}) == len(variants)
    assert {v.workload for v in variants} == set(workloads.WORKLOADS)
    picked = {v.workload for v in workloads.select(variants, ["batch"])}
    assert picked == {"batch", "drain"}
    assert all(v.params["jobs"] == 7 for v in workloads.catalogue(quick=False, jobs=7))


@pytest.mark.parametrize("argv", [["--bogus"], ["--only", "nope"], ["--rounds", "0"],
                                  ["--limit", "-1"]])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "usage: tubebench" in capsys.readouterr().err


def test_missing_beanstalkd_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--beanstalkd", "/nonexistent/beanstalkd"]) == 2
    assert "--no-beanstalkd" in capsys.readouterr().err


def _run(tmp_path: Path, *argv: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tubebench", "--rounds", "1", "--jobs", "200",
         "--no-progress", "--limit", "20", "--out", str(tmp_path), *argv],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "tubeserver" in done.stdout
    (path,) = tmp_path.glob("tubebench-*.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_end_to_end_tiny_run(tmp_path: Path) -> None:
    bs = procs.require_beanstalkd()
    data = _run(tmp_path, "--only", "put,batch", "--beanstalkd", bs)
    machine = data["machine"]
    assert isinstance(machine, dict)
    assert {"nproc", "python", "beanstalkd_version", "tubeserver_version", "date",
            "git_commit"} <= set(machine)
    rows = data["rows"]
    assert isinstance(rows, list)
    by_name = {r["variant"]: r for r in rows}
    assert {"put c10 d1", "put c10 d16", "drain c10 d1", "drain c10 d16",
            "batch100 c10"} == set(by_name)
    for row in rows:
        for kind in ("tubeserver", "beanstalkd", "ceiling"):
            cell = row[kind]
            assert cell["error"] is None, (row["variant"], kind, cell["error"])
            assert len(cell["samples"]) == 1 and cell["median"] > 0
        assert row["ratio"] > 0 and row["status"] in ("pass", "MISS")
    assert by_name["batch100 c10"]["beanstalkd"]["note"].startswith("best: drain")
    runs = data["runs"]
    assert isinstance(runs, list)
    assert {(r["variant"], r["server"]) for r in runs} >= {("put c10 d1", "tubeserver"),
                                                           ("put c10 d1", "beanstalkd"),
                                                           ("put c10 d1", "null")}
    pytest.importorskip("matplotlib")  # the chart needs the `bench` extra
    assert data["chart"] and (tmp_path / str(data["chart"])).stat().st_size > 0
    assert (tmp_path / "latest-full.png").exists()


def test_tubeserver_alone_leaves_ratios_blank(tmp_path: Path) -> None:
    data = _run(tmp_path, "--only", "put", "--no-beanstalkd", "--no-ceiling", "--jobs", "50")
    rows = data["rows"]
    assert isinstance(rows, list) and rows
    for row in rows:
        assert row["beanstalkd"] is None and row["ratio"] is None and row["status"] is None
        assert row["tubeserver"]["median"] > 0


def test_a_worker_that_cannot_connect_reports_why() -> None:
    port = procs.free_port()  # nothing listens there
    plans = loadgen.split([ConnPlan("put", 10) for _ in range(4)], 2, port, 5.0)
    with pytest.raises(loadgen.LoadError, match="ConnectionRefused"):
        loadgen.run(plans)


def test_a_server_that_fails_becomes_an_error_row(tmp_path: Path) -> None:
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    data = _run(tmp_path, "--only", "put", "--no-beanstalkd", "--no-ceiling",
                "--tubeserver", failing)
    rows = data["rows"]
    assert isinstance(rows, list) and rows
    for row in rows:
        assert "exited with 3" in row["tubeserver"]["error"]
        assert row["tubeserver"]["median"] is None
