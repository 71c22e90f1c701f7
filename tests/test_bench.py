"""tubebench: the report arithmetic, the C generator and null responder (built into a test
cache, run end to end on 127.0.0.1 for a few jobs), the Python fallback, the command line and
tiny end-to-end runs. No timing assertions anywhere.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import procs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tubebench import (
    cli,
    flow,
    instrument,
    loadgen,
    native,
    null,
    ops,
    report,
    servers,
    soak,
    summary,
    workloads,
)
from tubebench.instrument import CGenerator, Load, PyGenerator
from tubebench.loadgen import ConnPlan
from tubebench.summary import Spread, Target
from tubebench.wire import LineCounter, ReplyScanner, StampedPut, put_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The C programs build into a cache of this test session (and so do the tubebench
    processes the tests start), never into the user's own cache."""
    path = tmp_path_factory.mktemp("tubebench-cache")
    before = os.environ.get("TUBEBENCH_CACHE")
    os.environ["TUBEBENCH_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("TUBEBENCH_CACHE", None)
    else:
        os.environ["TUBEBENCH_CACHE"] = before


def _needs_cc() -> None:
    if native.compiler() is None:
        pytest.skip("no C compiler")


@pytest.fixture
def gen() -> CGenerator:
    _needs_cc()
    return CGenerator(native.binary("tubegen"))

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


def test_near_floor_flags_latencies_the_generator_alone_nearly_reaches() -> None:
    floor = Spread(0.085, 0.07, 0.09, 3)  # put -> INSERTED against the null, ms
    assert summary.near_ceiling(Spread(0.1, 0.1, 0.1, 1), floor, higher_is_better=False)
    assert not summary.near_ceiling(Spread(0.11, 0.1, 0.1, 1), floor, higher_is_better=False)


@pytest.mark.parametrize(("ratio", "ours", "theirs", "want"), [
    (2.0, False, False, "pass"),
    (0.5, False, False, "MISS"),
    (2.0, True, False, "generator-bound"),
    (2.0, False, True, "generator-bound"),
    (0.5, True, True, "generator-bound"),
    (0.5, False, True, "MISS"),  # beanstalkd bound: its true number is better still
    (None, True, True, ""),
])
def test_a_generator_bound_row_cannot_pass(ratio: float | None, ours: bool, theirs: bool,
                                           want: str) -> None:
    assert summary.judge(Target(">=", 1.0), ratio, ours, theirs) == want
    assert summary.judge(None, ratio, ours, theirs) == ""


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
    assert all(v.params["jobs"] == 7 for v in workloads.catalogue(quick=False, jobs=7)
               if v.run is not None and v.workload != "soak")  # the soak is timed
    names = {v.name for v in variants}
    for v in variants:
        assert set(v.best_of) <= names
        assert (v.run is None) == bool(v.best_of)


def test_catalogue_carries_issue_10_targets() -> None:
    targets = {(v.name, m.key): m.target.text for v in workloads.catalogue(quick=False)
               for m in v.metrics if m.target is not None}
    assert targets == {
        ("put c10 d1", "rate"): ">= 0.6", ("put c10 d16", "rate"): ">= 1.5",
        ("drain c10 d1", "rate"): ">= 0.6", ("drain c10 d16", "rate"): ">= 1.5",
        ("batch100 best", "rate"): ">= 2.5", ("paced 2000/s", "p99"): "<= 1.5",
        ("memory", "bytes_per_job"): "<= 1.3", ("restart", "seconds"): "<= 1",
        ("restart", "rss_mb"): "<= 1.5", ("durable c10", "rate"): ">= 5",
        ("tracking drain c10 d16", "rate"): ">= 0.85",
        ("worker --call c1", "rate"): ">= 3",  # issue 15: tubeworker --call over RQ
    }


def test_tracking_rows_compare_tubeserver_with_itself() -> None:
    variants = {v.name: v for v in workloads.catalogue(quick=False)}
    drain, mem = variants["tracking drain c10 d16"], variants["tracking memory"]
    assert drain.params["jobs"] == variants["drain c10 d16"].params["jobs"]
    assert [(c.server, c.flags) for c in drain.columns] == [
        ("tubeserver", ()), ("tubeserver", ("--result-ttl", "0"))]
    assert drain.kinds == ("tracking on", "tracking off") and drain.ceiling is not None
    assert [c.name for c in mem.columns] == ["tracking on"] and mem.ceiling is None
    # Every record must fit in the default --result-memory, or eviction skews the numbers.
    assert int(str(mem.params["jobs"])) * workloads.RECORD_COST <= 64 * 1024 * 1024
    assert {v.name for v in workloads.select(list(variants.values()), ["tracking"])} == {
        "tracking drain c10 d16", "tracking memory"}


def test_a_variant_runs_only_its_own_columns() -> None:
    with pytest.raises(ValueError, match="columns"):
        workloads.Variant("v", "put", {}, (workloads.RATE,), None, kinds=("nope",))
    with pytest.raises(ValueError, match="columns"):
        workloads.Variant("v", "put", {}, (workloads.RATE,), None,
                          columns=(workloads.TUBESERVER, workloads.TUBESERVER))
    with pytest.raises(ValueError, match="one or two"):
        workloads.Variant("v", "put", {}, (workloads.RATE,), None, columns=())


def test_a_column_starts_its_server_with_its_flags() -> None:
    v = next(v for v in workloads.catalogue(quick=True) if v.name == "tracking drain c10 d16")
    kinds = {"tubeserver": servers.ServerKind("tubeserver", ("ts", "-x")),
             "beanstalkd": servers.ServerKind("beanstalkd", ("bs",))}
    off = cli.column_kind(v, "tracking off", kinds)
    assert off == servers.ServerKind("tracking off", ("ts", "-x", "--result-ttl", "0"))
    assert off.command(7) == ["ts", "-x", "--result-ttl", "0", "-l", "127.0.0.1", "-p", "7"]
    assert cli.column_kind(v, "tracking on", kinds).argv == ("ts", "-x")
    # Both columns are tubeserver: they run without beanstalkd too, the null after them.
    assert cli._order(v, ["tubeserver"], ceiling=True) == ["tracking on", "tracking off",
                                                           report.NULL]


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
    (tmp_path / "stdout.txt").write_text(done.stdout)
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
    generator = data["generator"]
    assert isinstance(generator, dict) and generator["kind"] == "c"
    by_name = {r["variant"]: r for r in rows}
    assert {"put c10 d1", "put c10 d16", "drain c10 d1", "drain c10 d16",
            "batch100 c1", "batch100 c10", "batch100 best"} == set(by_name)
    for row in rows:
        for kind in ("tubeserver", "beanstalkd", "ceiling"):
            cell = row[kind]
            if kind == "ceiling" and row["variant"] == "batch100 best":
                assert cell is None  # derived: each batch row has its own ceiling
                continue
            assert cell["error"] is None, (row["variant"], kind, cell["error"])
            assert len(cell["samples"]) == 1 and cell["median"] > 0
        assert row["ratio"] > 0 and isinstance(row["generator_bound"], bool)
        if row["target"] is not None:
            assert row["status"] in ("pass", "MISS", "generator-bound")
    assert by_name["batch100 c10"]["beanstalkd"]["note"].startswith("best: drain")
    assert by_name["batch100 best"]["tubeserver"]["note"].startswith("best: batch100 c")
    runs = data["runs"]
    assert isinstance(runs, list)
    assert {(r["variant"], r["server"]) for r in runs} >= {("put c10 d1", "tubeserver"),
                                                           ("put c10 d1", "beanstalkd"),
                                                           ("put c10 d1", "null")}
    pytest.importorskip("matplotlib")  # the chart needs the `bench` extra
    assert data["chart"] and (tmp_path / str(data["chart"])).stat().st_size > 0
    assert (tmp_path / "latest-full.png").exists()


def test_end_to_end_tracking_run(tmp_path: Path) -> None:
    # Without beanstalkd: both columns of the tracking rows are tubeserver.
    data = _run(tmp_path, "--only", "tracking", "--no-beanstalkd")
    rows = data["rows"]
    assert isinstance(rows, list)
    by = {(r["variant"], r["metric"]): r for r in rows}
    assert set(by) == {("tracking drain c10 d16", "rate"),
                       ("tracking memory", "bytes_per_record"),
                       ("tracking memory", "accounted_per_record")}
    drain = by[("tracking drain c10 d16", "rate")]
    assert [c["name"] for c in drain["columns"]] == ["tracking on", "tracking off"]
    assert drain["columns"][1]["flags"] == ["--result-ttl", "0"]
    assert "tubeserver" not in drain and "beanstalkd" not in drain
    for key in ("tracking on", "tracking off", "ceiling"):
        cell = drain[key]
        assert cell["error"] is None, (key, cell["error"])
        assert len(cell["samples"]) == 1 and cell["median"] > 0
    assert drain["ratio"] == drain["tracking on"]["median"] / drain["tracking off"]["median"]
    assert drain["target"] == ">= 0.85"
    assert drain["status"] in ("pass", "MISS", "generator-bound")
    for metric in ("bytes_per_record", "accounted_per_record"):
        row = by[("tracking memory", metric)]
        assert [c["name"] for c in row["columns"]] == ["tracking on"]
        assert row["tracking on"]["error"] is None, row["tracking on"]["error"]
        assert len(row["tracking on"]["samples"]) == 1
        assert row["ratio"] is None and row["target"] is None and row["ceiling"] is None
    # The server's own count: 300 bytes a record with an empty result (protocol.md).
    accounted = by[("tracking memory", "accounted_per_record")]["tracking on"]["median"]
    assert accounted == workloads.RECORD_COST
    runs = data["runs"]
    assert isinstance(runs, list)
    info = {(r["variant"], r["server"]): [s["info"] for s in r["samples"]] for r in runs}
    assert [i["kept_records"] for i in info[("tracking drain c10 d16", "tracking on")]] == [200]
    assert [i["kept_records"] for i in info[("tracking drain c10 d16", "tracking off")]] == [0]
    assert len(info[("tracking drain c10 d16", "null")]) == 1
    (mem,) = info[("tracking memory", "tracking on")]
    assert mem["kept_records"] == 200
    assert mem["kept_record_bytes_per_record"] == workloads.RECORD_COST
    assert {"rss_before", "rss_filled", "rss_after"} <= set(mem)


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


# ---------------------------------------------------------------- building the C programs


def test_build_is_cached_by_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    _needs_cc()
    monkeypatch.setenv("TUBEBENCH_CACHE", str(tmp_path / "cache"))
    first = native.binary("tubenull")
    assert first.parent == tmp_path / "cache" and os.access(first, os.X_OK)
    built_at = first.stat().st_mtime_ns
    assert native.binary("tubenull") == first and first.stat().st_mtime_ns == built_at
    edited = tmp_path / "null.c"
    edited.write_bytes(native.source("tubenull").read_bytes() + b"\n/* an edit */\n")
    monkeypatch.setattr(native, "source", lambda name: edited)
    second = native.binary("tubenull")
    assert second != first and os.access(second, os.X_OK)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [first.name, second.name])  # no temporary files left behind


def test_cc_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_cc()
    monkeypatch.setenv("TUBEBENCH_CACHE", str(tmp_path))
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    monkeypatch.setenv("CC", f"{cc} -DTUBEBENCH_TEST")
    assert native.compiler() == [cc, "-DTUBEBENCH_TEST"]
    flagged = native.binary("tubenull")
    monkeypatch.setenv("CC", cc)
    assert native.binary("tubenull") != flagged  # the compiler is part of the key
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert native.compiler() is None
    with pytest.raises(native.NoCompiler):
        native.binary("tubenull")


def test_a_compiler_that_fails_is_an_error_not_a_fallback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_cc()
    monkeypatch.setenv("TUBEBENCH_CACHE", str(tmp_path))
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return }\n")
    monkeypatch.setattr(native, "source", lambda name: broken)
    with pytest.raises(native.BuildError, match="failed"):
        native.binary("tubegen")
    with pytest.raises(native.BuildError):
        instrument.choose("auto")


# ---------------------------------------------------------------- the fallback


def test_without_a_compiler_the_python_generator_says_so(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    choice = instrument.choose("auto", workers=1)
    assert isinstance(choice.generator, PyGenerator)
    assert choice.warning == instrument.FALLBACK
    assert "not trustworthy" in choice.warning and choice.info["kind"] == "python"
    with pytest.raises(native.NoCompiler):
        instrument.choose("c")


def test_python_generator_against_the_python_null() -> None:
    gen = PyGenerator(workers=1)
    with instrument.null_server(gen) as srv:
        out = gen.run(Load("put", srv.port, 300, conns=2, depth=4, limit_s=20))
        assert (out.done, out.errors, out.timed_out) == (300, 0, False)
        out = gen.run(Load("batch", srv.port, 300, conns=1, batch=50, limit_s=20))
        assert (out.done, out.errors) == (300, 0)


def test_fallback_run_warns_on_stderr_stdout_and_in_the_json(tmp_path: Path) -> None:
    env = dict(os.environ, CC="/nonexistent/cc")
    done = subprocess.run(
        [sys.executable, "-m", "tubebench", "--rounds", "1", "--jobs", "50", "--no-progress",
         "--limit", "20", "--out", str(tmp_path), "--only", "put", "--no-beanstalkd",
         "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert instrument.FALLBACK in done.stderr and instrument.FALLBACK in done.stdout
    assert "NOT a ceiling" in done.stdout
    (path,) = tmp_path.glob("tubebench-*.json")
    data = json.loads(path.read_text())
    assert data["generator"]["kind"] == "python"
    assert data["generator"]["warning"] == instrument.FALLBACK


# ---------------------------------------------------------------- the C generator, end to end


def _kind(name: str) -> servers.ServerKind:
    if name == "beanstalkd":
        return servers.ServerKind("beanstalkd", (procs.require_beanstalkd(),))
    return servers.ServerKind("tubeserver", (sys.executable, "-m", "tubeserver"))


@pytest.mark.parametrize("name", ["tubeserver", "beanstalkd"])
def test_c_generator_drives_a_real_server(gen: CGenerator, name: str) -> None:
    with servers.running(_kind(name)) as srv:
        port = srv.port
        out = gen.run(Load("put", port, 500, conns=3, depth=8, limit_s=30))
        assert (out.done, out.errors, out.timed_out) == (500, 0, False)
        assert srv.stats()["current-jobs-ready"] == "500"
        out = gen.run(Load("drain", port, 200, conns=3, depth=4, limit_s=30))
        assert (out.done, out.errors) == (200, 0)
        if name == "tubeserver":  # reserve-batch is tubeserver's extension
            out = gen.run(Load("batch", port, 300, conns=2, batch=7, limit_s=30))
            assert (out.done, out.errors) == (300, 0)
        else:
            out = gen.run(Load("drain", port, 300, conns=1, depth=16, limit_s=30))
        stats = srv.stats()
        assert (stats["current-jobs-ready"], stats["current-jobs-reserved"]) == ("0", "0")
        assert stats["total-jobs"] == "500" and stats["cmd-delete"] == "500"
        out = gen.run(Load("cycle", port, 400, conns=2, depth=4, consumers=2, limit_s=30))
        assert (out.done, out.errors) == (400, 0)
        assert out.latency is not None and out.latency.n == 400
        out = gen.run(Load("paced", port, 40, consumers=2, rate=2000, limit_s=30))
        assert (out.done, out.errors, out.timed_out) == (40, 0, False)
        assert out.latency is not None and out.latency.n == 40
        assert out.latency.p50_ns <= out.latency.p99_ns <= out.latency.p999_ns
        assert out.sent_rate is not None and out.sent_rate > 0
        assert srv.stats()["current-jobs-ready"] == "0"


def test_tracking_drain_fails_when_a_column_does_not_do_what_it_says(gen: CGenerator) -> None:
    settings = workloads.Settings(gen, limit_s=20)
    run, _ = workloads.drain(2, 4, 50, kept={"tracking on": 50, "tracking off": 0})
    tubeserver = (sys.executable, "-m", "tubeserver")
    assert run(servers.ServerKind("tracking on", tubeserver), settings).info["kept_records"] == 50
    # Named "off" but started without --result-ttl 0: it keeps records, and the run says so.
    with pytest.raises(workloads.BenchError, match="kept-records is 50, expected 0"):
        run(servers.ServerKind("tracking off", tubeserver), settings)
    with pytest.raises(workloads.BenchError, match="no kept-records expected"):
        run(servers.ServerKind("tubeserver", tubeserver), settings)


def test_kept_memory_checks_the_servers_count(gen: CGenerator) -> None:
    settings = workloads.Settings(gen, limit_s=20)
    tubeserver = (sys.executable, "-m", "tubeserver")
    sample = workloads.kept_memory(300)(servers.ServerKind("tracking on", tubeserver), settings)
    assert sample.values["accounted_per_record"] == workloads.RECORD_COST
    assert sample.info["kept_records"] == 300
    # Records off: none kept, and no number comes out.
    off = servers.ServerKind("tracking off", (*tubeserver, "--result-ttl", "0"))
    with pytest.raises(workloads.BenchError, match="kept-records is 0, expected 300"):
        workloads.kept_memory(300)(off, settings)


def test_c_generator_on_the_null_responder(gen: CGenerator) -> None:
    with instrument.null_server(gen) as srv:
        for load in (Load("put", srv.port, 1000, conns=4, depth=16),
                     Load("drain", srv.port, 500, conns=2, depth=8),
                     Load("batch", srv.port, 1000, conns=3, batch=100),
                     Load("cycle", srv.port, 500, conns=2, depth=8, consumers=2)):
            out = gen.run(load)
            assert (out.done, out.errors, out.timed_out) == (load.jobs, 0, False), load
        out = gen.run(Load("paced", srv.port, 50, rate=5000))
        assert (out.done, out.errors) == (50, 0)
        assert out.ack_latency is not None and out.ack_latency.n == 50


def test_null_responder_answers_in_order(gen: CGenerator) -> None:
    with instrument.null_server(gen) as srv, procs.Conn.tcp(srv.port) as c:
        c.send(b"use bench")
        c.send(b"watch bench")
        c.raw(put_command(b"y" * 100))
        c.send(b"reserve-with-timeout 0")
        c.send(b"delete 7")
        c.send(b"bogus")
        assert c.reply() == b"USING bench\r\n"
        assert c.reply() == b"WATCHING 1\r\n"
        assert c.reply().startswith(b"INSERTED ")
        frame = c.reply()
        head, body = frame.split(b"\r\n", 1)
        assert head.startswith(b"RESERVED ") and head.endswith(b" 100")
        assert body[:20].isdigit() and body[20:] == b"x" * 80 + b"\r\n"
        assert c.reply() == b"DELETED\r\n"
        assert c.reply() == b"UNKNOWN_COMMAND\r\n"
        c.send(b"reserve-batch 3 0")
        assert c.reply() == b"RESERVED-BATCH 3\r\n"
        ids = {c.reply().split(b" ")[1] for _ in range(3)}
        assert len(ids) == 3


@contextlib.contextmanager
def _fake_server(answer: Callable[[bytes], bytes]) -> Iterator[int]:
    """A one-connection-at-a-time server on 127.0.0.1 that answers each command line with
    `answer(line)` (a put's body is skipped); for checking the generator's checks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve_one(sock: socket.socket) -> None:
        sock.settimeout(10)
        buf = b""
        with sock:
            for _ in range(10_000):
                while b"\r\n" not in buf:
                    try:
                        chunk = sock.recv(65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                if line.startswith(b"put "):
                    buf = buf[int(line.split()[-1]) + 2:]
                with contextlib.suppress(OSError):
                    sock.sendall(answer(line))

    def serve() -> None:
        for _ in range(600):  # 30 s at most
            if stop.is_set():
                return
            try:
                sock, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            serve_one(sock)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        t.join(15)
        listener.close()


def test_c_generator_counts_error_replies_and_bad_ids(gen: CGenerator) -> None:
    def same_id(line: bytes) -> bytes:
        return b"USING bench\r\n" if line.startswith(b"use ") else b"INSERTED 5\r\n"

    with _fake_server(same_id) as port:
        out = gen.run(Load("put", port, 20, limit_s=10))
    assert out.errors >= 1 and "ids do not grow" in out.first_error

    def full(line: bytes) -> bytes:
        return b"USING bench\r\n" if line.startswith(b"use ") else b"OUT_OF_MEMORY\r\n"

    with _fake_server(full) as port:
        out = gen.run(Load("put", port, 5, depth=5, limit_s=10))
    assert out.errors == 5 and "OUT_OF_MEMORY" in out.first_error


def test_c_generator_checks_reserved_bodies(gen: CGenerator) -> None:
    def wrong_body(line: bytes) -> bytes:
        if line.startswith((b"watch", b"ignore")):
            return b"WATCHING 1\r\n"
        if line.startswith(b"delete"):
            return b"DELETED\r\n"
        return b"RESERVED 1 100\r\n" + b"z" * 100 + b"\r\n"

    with _fake_server(wrong_body) as port:
        out = gen.run(Load("drain", port, 3, limit_s=10))
    assert out.errors >= 1 and "body" in out.first_error


def test_c_generator_reports_a_refused_connection(gen: CGenerator) -> None:
    with pytest.raises(loadgen.LoadError, match=r"connect 127\.0\.0\.1"):
        gen.run(Load("put", procs.free_port(), 10, limit_s=5))


@pytest.mark.parametrize("argv", [[], ["--port", "1"], ["--port", "1", "--mode", "nope"],
                                  ["--port", "0", "--mode", "put"],
                                  ["--port", "1", "--mode", "paced"],
                                  ["--port", "1", "--mode", "put", "--stamped", "--body", "5"],
                                  ["--port", "1", "--mode", "drain", "--unique", "5"],
                                  ["--port", "1", "--mode", "put", "--unique", "5", "--stamped"]])
def test_c_generator_rejects_bad_arguments(gen: CGenerator, argv: list[str]) -> None:
    done = subprocess.run([str(gen.path), *argv], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "usage: tubegen" in done.stderr


def test_parse_reads_the_c_generators_line() -> None:
    line = json.dumps({"done": 10, "elapsed_s": 0.5, "timed_out": False, "errors": 0,
                       "first_error": "", "cpu_s": 0.25, "sent_rate": 99.5,
                       "latency_ns": {"n": 10, "p50": 1e5, "p99": 2e5, "p999": 3e5,
                                      "max": 4e5},
                       "ack_latency_ns": None})
    out = instrument.parse("noise\n" + line + "\n")
    assert out.rate == 20 and out.gen_cores == 0.5 and out.ack_latency is None
    assert out.latency is not None and out.latency.ms() == {"p50": 0.1, "p99": 0.2,
                                                            "p999": 0.3}
    with pytest.raises(loadgen.LoadError):
        instrument.parse("")


# ---------------------------------------------------------------- generator-bound rows


def _results(ts: float, bs: float, ceiling: float, metric: str = "rate"
             ) -> tuple[report.Results, workloads.Variant]:
    higher = metric == "rate"
    m = workloads.Metric(metric, metric, higher, Target(">=" if higher else "<=", 1.0))

    def run(kind: servers.ServerKind, settings: workloads.Settings) -> workloads.Sample:
        raise AssertionError("not run")

    def ceil(port: int, settings: workloads.Settings) -> workloads.Sample:
        raise AssertionError("not run")

    v = workloads.Variant("v", "put", {}, (m,), run, ceil)
    res = report.Results([v])
    for kind, value in (("tubeserver", ts), ("beanstalkd", bs), (report.NULL, ceiling)):
        res.add(v, kind, workloads.Sample({metric: value}))
    return res, v


def test_rows_mark_a_server_near_the_generator_ceiling() -> None:
    res, _ = _results(ts=170.0, bs=100.0, ceiling=200.0)  # tubeserver at 85% of the ceiling
    (row,) = report.rows(res)
    assert row.generator_bound and row.ours.generator_bound
    assert row.theirs is not None and not row.theirs.generator_bound
    assert row.status == "generator-bound"  # 1.7 would pass: it cannot
    text = report.table([row])
    assert "generator-bound" in text and "170*" in text
    js = report.to_json(res, [row], {})["rows"][0]
    assert js["generator_bound"] is True and js["status"] == "generator-bound"
    assert js["tubeserver"]["generator_bound"] is True

    res, _ = _results(ts=120.0, bs=100.0, ceiling=1000.0)
    (row,) = report.rows(res)
    assert not row.generator_bound and row.status == "pass"


def test_rows_mark_a_latency_near_the_generator_floor() -> None:
    res, _ = _results(ts=0.2, bs=0.1, ceiling=0.09, metric="p99")  # floor 90% of beanstalkd's
    (row,) = report.rows(res)
    assert row.theirs is not None and row.theirs.generator_bound
    assert row.status == "MISS"  # 2.0 > 1.0, and beanstalkd is better still than measured
    res, _ = _results(ts=0.1, bs=0.1, ceiling=0.09, metric="p99")
    (row,) = report.rows(res)
    assert row.status == "generator-bound"


def test_best_of_row_takes_the_better_variant() -> None:
    variants = [v for v in workloads.catalogue(quick=True, jobs=10)
                if v.workload in ("batch", "drain")]
    res = report.Results(variants)
    by = {v.name: v for v in variants}
    for name, value in (("batch100 c1", 300.0), ("batch100 c10", 250.0)):
        res.add(by[name], "tubeserver", workloads.Sample({"rate": value}))
        res.add(by[name], report.NULL, workloads.Sample({"rate": 10_000.0}))
    for name, value in (("drain c10 d1", 50.0), ("drain c10 d16", 100.0)):
        res.add(by[name], "beanstalkd", workloads.Sample({"rate": value}))
        res.add(by[name], report.NULL, workloads.Sample({"rate": 110.0}))
    best = next(r for r in report.rows(res) if r.variant.name == "batch100 best")
    assert best.ours.note == "best: batch100 c1" and best.ratio == 3.0
    assert best.theirs is not None and best.theirs.note == "best: drain c10 d16"
    # beanstalkd's best drain ran at 91% of its ceiling: 3.0 would pass, it cannot.
    assert best.status == "generator-bound"


def test_tracking_rows_print_under_their_own_columns() -> None:
    variants = workloads.tracking(quick=True, jobs=10)
    drain, mem = variants
    res = report.Results([*workloads.catalogue(quick=True, jobs=10)[:1], *variants])
    put = res.variants[0]
    res.add(put, "tubeserver", workloads.Sample({"rate": 300.0}))
    res.add(put, "beanstalkd", workloads.Sample({"rate": 100.0}))
    for kind, value in (("tracking on", 90.0), ("tracking off", 100.0), (report.NULL, 1e6)):
        res.add(drain, kind, workloads.Sample({"rate": value}))
    res.add(mem, "tracking on", workloads.Sample({"bytes_per_record": 260.0,
                                                  "accounted_per_record": 200.0}))
    rs = report.rows(res, with_beanstalkd=False)
    by = {(r.variant.name, r.metric.key): r for r in rs}
    row = by[("tracking drain c10 d16", "rate")]
    # --no-beanstalkd blanks beanstalkd's column, not a second tubeserver.
    assert by[("put c10 d1", "rate")].theirs is None
    assert row.theirs is not None and row.ratio == 0.9 and row.status == "pass"
    assert by[("tracking memory", "bytes_per_record")].theirs is None
    lines = report.table(rs).splitlines()
    headings = [line.split() for line in lines if line.startswith("workload")]
    assert [h[2:6] for h in headings] == [["tubeserver", "beanstalkd", "ratio", "target"],
                                          ["tracking", "on", "tracking", "off"]]
    second = lines.index(next(x for x in lines if "tracking on" in x and "workload" in x))
    assert all("tracking" not in x for x in lines[:second])  # nothing under beanstalkd
    body = [x for x in lines[second:] if x.startswith("tracking ")]
    assert "90.0" in body[0] and "100" in body[0] and "0.90" in body[0]
    assert body[1].split()[-2:] == ["n/a", "-"] and "260" in body[1]
    assert "columns: tracking on = tubeserver; tracking off = tubeserver --result-ttl 0; " \
           "n/a: nothing to compare with." in lines
    js = {(r["variant"], r["metric"]): r for r in report.to_json(res, rs, {})["rows"]}
    assert js[("tracking drain c10 d16", "rate")]["tracking off"]["samples"] == [100.0]
    assert js[("put c10 d1", "rate")]["beanstalkd"] is None
    assert "tracking off" not in js[("tracking memory", "bytes_per_record")]


def test_a_round_that_fell_behind_is_noted_under_the_table() -> None:
    res, v = _results(ts=0.2, bs=0.1, ceiling=0.05, metric="p99")
    why = "consumed slower than the offered rate"
    res.add(v, "tubeserver", workloads.Sample({"p99": 0.3}, {"warning": why}))
    (row,) = report.rows(res)
    assert row.ours.warnings == (why,)
    assert f"note: v, tubeserver: {why}" in report.table([row]).splitlines()
    assert report.to_json(res, [row], {})["rows"][0]["tubeserver"]["warnings"] == [why]


# ---------------------------------------------------------------- flow control


def test_flow_rows_compare_put_unique_with_tubeserver_itself() -> None:
    variants = workloads.select(workloads.catalogue(quick=False), ["flow"])
    by = {v.name: v for v in variants}
    assert list(by) == ["put-unique c10 d16", "put-unique dup100 c10 d16", "limited tube"]
    distinct, dup, limited = by.values()
    for v in (distinct, dup):
        assert [(c.name, c.server, c.flags) for c in v.columns] == [
            ("put-unique", "tubeserver", ()), ("plain put", "tubeserver", ())]
        assert v.max_rounds == 3
    assert distinct.params["keys"] == distinct.params["jobs"] and distinct.ceiling is not None
    assert dup.params["keys"] == 100 and dup.ceiling is None  # the same load for the null
    assert [c.name for c in limited.columns] == ["tube-limits 4 0 200"]
    assert limited.ceiling is None and limited.params["seconds"] == 10.0
    assert not [m for v in variants for m in v.metrics if m.target is not None]  # reported
    smoke = {v.name: v for v in flow.flow(quick=True, jobs=7)}
    assert smoke["limited tube"].params["seconds"] == 1.0


def test_c_generator_put_unique(gen: CGenerator) -> None:
    with servers.running(_kind("tubeserver")) as srv:
        out = gen.run(Load("put", srv.port, 300, conns=3, depth=8, unique=300, limit_s=30))
        assert (out.done, out.duplicates, out.errors) == (300, 0, 0)
        stats = srv.stats()
        assert (stats["total-jobs"], stats["cmd-put-unique"]) == ("300", "300")
        # Keys k0..k9 are held by live jobs: every put of a 10-key run is a DUPLICATE ...
        out = gen.run(Load("put", srv.port, 200, conns=2, depth=4, unique=10, limit_s=30))
        assert (out.done, out.duplicates, out.errors) == (200, 200, 0)
        assert srv.stats()["unique-duplicates"] == "200"
        # ... which a run of distinct keys does not accept.
        out = gen.run(Load("put", srv.port, 5, unique=5, limit_s=30))
        assert out.errors >= 1 and "DUPLICATE" in out.first_error
    with instrument.null_server(gen) as null_srv:
        out = gen.run(Load("put", null_srv.port, 100, conns=2, depth=8, unique=100))
        assert (out.done, out.errors) == (100, 0)
    with pytest.raises(loadgen.LoadError, match="put-unique"):
        PyGenerator().run(Load("put", 1, 10, unique=10))
    with pytest.raises(ValueError, match="put mode"):
        Load("drain", 1, 10, unique=10)


def test_put_unique_workload_checks_the_servers_counts(gen: CGenerator) -> None:
    settings = workloads.Settings(gen, limit_s=20)
    run, _ = flow.unique_put(2, 4, 200, 20)
    tubeserver = (sys.executable, "-m", "tubeserver")
    sample = run(servers.ServerKind("put-unique", tubeserver), settings)
    assert sample.info["duplicates"] == 180 and sample.values["rate"] > 0
    assert sample.info["warning"] == flow.NO_BEANSTALKD
    plain = run(servers.ServerKind("plain put", tubeserver), settings)
    assert plain.info["duplicates"] == 0 and "warning" not in plain.info


def test_limited_tube_never_shows_more_reserved_than_its_limit(gen: CGenerator) -> None:
    settings = workloads.Settings(gen, limit_s=20)
    tubeserver = (sys.executable, "-m", "tubeserver")
    sample = flow.limited(1.0)(servers.ServerKind("tube-limits 4 0 200", tubeserver), settings)
    assert 0 <= sample.values["held"] <= flow.MAX_RESERVED
    assert 0 <= sample.values["sampled"] <= flow.MAX_RESERVED
    assert int(str(sample.info["samples"])) >= 1 and "python" in str(sample.info["warning"])


# ---------------------------------------------------------------- operations


def test_ops_rows_are_tubeservers_alone() -> None:
    variants = workloads.select(workloads.catalogue(quick=False), ["ops"])
    assert [v.name for v in variants] == ["scrape 100 tubes", "clear-tube 1000000 jobs"]
    assert all(len(v.columns) == 1 and v.columns[0].server == "tubeserver" for v in variants)
    assert [v.params["jobs"] for v in ops.ops(quick=True, jobs=500)] == [500, 500]


def test_ops_workloads_run_and_report(gen: CGenerator) -> None:
    settings = workloads.Settings(gen, limit_s=20)
    tubeserver = servers.ServerKind("tubeserver", (sys.executable, "-m", "tubeserver"))
    sample = ops.scrape(3, 4, 2)(tubeserver, settings)
    assert sample.values["scrape_ms"] >= 0 and int(str(sample.info["bytes"])) > 1000
    sample = ops.clear(3000)(tubeserver, settings)  # three slices
    assert sample.values["stall_ms"] > 0 and sample.values["alone_ms"] > 0
    assert int(str(sample.info["round_trips_during"])) >= 1


# ---------------------------------------------------------------- soak


def test_soak_runs_only_when_named() -> None:
    variants = workloads.catalogue(quick=True)
    assert "soak" not in {v.workload for v in workloads.select(variants, [])}
    assert [v.name for v in workloads.select(variants, ["soak"])] == ["soak"]


@given(st.lists(st.integers(0, 200), max_size=8))
def test_soak_frames_count_replies_however_split(cuts: list[int]) -> None:
    stream = b"INSERTED 1\r\nFOUND 7 4\r\nab\r\n\r\nOK 3\r\n---\r\nDELETED\r\n" * 3
    frames = soak.Frames((b"INSERTED ", b"FOUND ", b"OK ", b"DELETED"))
    assert sum(frames.feed(chunk) for chunk in _chunks(stream, cuts)) == 12
    assert frames.buf == b"" and frames.odd is None
    picky = soak.Frames((b"INSERTED ", b"FOUND "))
    picky.feed(stream)
    assert picky.odd == b"OK 3"


def test_soak_end_to_end_reports_rss_over_time_and_the_longest_stall(tmp_path: Path) -> None:
    data = _run(tmp_path, "--only", "soak", "--soak-seconds", "3", "--no-beanstalkd")
    rows = data["rows"]
    assert isinstance(rows, list)
    by_metric = {r["metric"]: r["tubeserver"] for r in rows if r["variant"] == "soak"}
    assert set(by_metric) == {"max_stall_ms", "p99_ms", "rss_first_mb", "rss_max_mb",
                              "rss_last_mb", "rss_growth_second_half_mb"}
    for metric, cell in by_metric.items():
        assert cell["error"] is None and len(cell["samples"]) == 1, metric
    values = {m: c["median"] for m, c in by_metric.items()}
    assert 0 < values["p99_ms"] <= values["max_stall_ms"] < 10_000
    assert 1 < values["rss_first_mb"] <= values["rss_max_mb"] < 2_000
    assert values["rss_last_mb"] <= values["rss_max_mb"]
    runs = data["runs"]
    assert isinstance(runs, list)
    (run,) = [r for r in runs if r["variant"] == "soak"]
    info = run["samples"][0]["info"]
    timeline = info["timeline"]
    assert len(timeline) >= 3 and timeline[0]["t"] < 1  # sampled at the start
    assert all(row["rss_mb"] > 1 and row["connections"] >= 1 for row in timeline)
    assert [row["t"] for row in timeline] == sorted(row["t"] for row in timeline)
    assert 0 < timeline[-1]["cycles"] <= info["cycles"]
    assert info["mixed_commands"] > 0 and info["slow_reader_bytes"] > 0
    assert sum(info["hangups"].values()) > 0
    assert info["after"]["connections"] == 1 and info["after"]["jobs_reserved"] == 0
    assert "RSS MB" in (tmp_path / "stdout.txt").read_text()


def test_soak_fails_when_a_client_cannot_do_its_work() -> None:
    # beanstalkd has no finish, put-unique, ...: a mixed worker fails, and the run says so.
    kind = _kind("beanstalkd")
    settings = workloads.Settings(PyGenerator(1), limit_s=20, soak_s=2)
    with pytest.raises(workloads.BenchError, match="client failures"):
        soak.run_soak(kind, settings)
