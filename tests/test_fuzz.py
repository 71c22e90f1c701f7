"""The fuzz target (tests/fuzz/target.py): its corpus replayed without atheris, its checks
shown to fail when what they guard breaks, and a bounded atheris run (about a minute) that
fails on any crash. `make fuzz` runs the fuzzer longer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz import target
from fuzz.seeds import SEEDS
from fuzz.target import EndRound, HangUp, Send, Window, World, check, decode, encode, replies
from hypothesis import given
from hypothesis import strategies as st

from tubeserver.engine import BURIED, READY
from tubeserver.invariants import check_invariants

FUZZ = Path(__file__).resolve().parent / "fuzz"
CORPUS = FUZZ / "corpus"
# The bounded run in `make test`: about a minute on a loaded 2-core machine, and at most
# this many inputs, whichever ends first.
FUZZ_SECONDS = 60
FUZZ_RUNS = 200_000


# --------------------------------------------------------------------------- the corpus

@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_input_keeps_every_property(name: str) -> None:
    check((CORPUS / name).read_bytes())


def test_the_seeds_on_disk_are_the_ones_seeds_py_writes() -> None:
    for name, steps in SEEDS.items():
        assert (CORPUS / f"seed-{name}").read_bytes() == encode(steps), (
            f"seed-{name} is stale: run python tests/fuzz/seeds.py")


def test_every_command_is_in_the_seeds() -> None:
    verbs = {line.split(b" ")[0] for name in SEEDS
             for line in (CORPUS / f"seed-{name}").read_bytes().split(b"\r\n")}
    for verb in (b"put", b"use", b"reserve", b"reserve-with-timeout", b"reserve-batch",
                 b"delete", b"release", b"bury", b"touch", b"watch", b"ignore", b"peek",
                 b"peek-ready", b"peek-delayed", b"peek-buried", b"kick", b"kick-job",
                 b"stats", b"stats-job", b"stats-tube", b"list-tubes", b"list-tube-used",
                 b"list-tubes-watched", b"pause-tube", b"quit", b"finish", b"fail",
                 b"result", b"job-status", b"checkpoint", b"peek-checkpoint", b"put-unique",
                 b"put-after", b"tube-limits", b"list-tube-limits", b"schedule",
                 b"unschedule", b"list-schedules"):
        assert verb in verbs, verb


# --------------------------------------------------------------------------- the format

def test_decode_reads_each_operation() -> None:
    data = (b"put\xff/ 1\xffbx\xff\xffy\xff.\xfft\x03\xffx\xffw\x02\xffz\xffa\xfft")
    assert decode(data) == [
        Send(0, b"put", False), Send(0, b" 1", True), Send(1, b"x\xffy", False), EndRound(0.0),
        EndRound(target.STEPS[3]), HangUp(1), Window(1, 2 * target.WINDOW_UNIT),
    ]


@given(st.binary(max_size=300))
def test_any_bytes_decode_and_encode_back(data: bytes) -> None:
    steps = decode(data)
    assert decode(encode(steps)) == steps


# --------------------------------------------------------------------------- the checks

def test_replies_frame_or_fail() -> None:
    assert replies(b"OK 3\r\nabc\r\nINSERTED 1\r\nRESERVED-BATCH 1\r\nRESERVED 2 0\r\n\r\n") \
        == [b"OK 3", b"INSERTED 1", b"RESERVED-BATCH 1", b"RESERVED 2 0"]
    for bad in (b"OK 3\r\nabcd\r\n", b"HELLO\r\n", b"INTERNAL_ERROR\r\n", b"INSERTED  1\r\n",
                b"FOUND 1 5\r\nab"):
        with pytest.raises(AssertionError):
            replies(bad)
    assert replies(b"FOUND 1 5\r\nab", cut=True) == [b"FOUND 1 5"]


def test_normalise_blanks_cpu_times_only() -> None:
    def stats(ready: int, utime: str) -> bytes:
        body = (f"---\ncurrent-jobs-urgent: 0\ncurrent-jobs-ready: {ready}\n"
                f"rusage-utime: {utime}\nrusage-stime: 0.010000\n").encode()
        return b"OK %d\r\n%b\r\n" % (len(body), body)

    assert target.normalise(stats(1, "0.5")) == target.normalise(stats(1, "12.250000"))
    assert target.normalise(stats(1, "0.5")) != target.normalise(stats(2, "0.5"))


def test_replies_that_depend_on_the_split_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    program = encode([Send(0, b"put 0 0 10 3\r\na", False), Send(0, b"bc\r\n", True)])
    check(program)
    queue = target.Peer.queue

    def lossy(self: target.Peer, data: bytes, new_recv: bool) -> None:
        # A hub that loses a byte where a recv boundary falls.
        queue(self, data[1:] if new_recv else data, new_recv)

    monkeypatch.setattr(target.Peer, "queue", lossy)
    with pytest.raises(AssertionError, match="differ when the input is split"):
        check(program)


def test_the_engine_invariants_are_checked_after_every_round(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rounds: list[int] = []

    def no_buried_jobs(engine: Any) -> None:  # a stand-in invariant that a bury breaks
        check_invariants(engine)
        rounds.append(len(engine.jobs))
        assert all(j.state is not BURIED for j in engine.jobs.values()), "a buried job"

    monkeypatch.setattr(target, "check_invariants", no_buried_jobs)
    check(encode([Send(0, b"put 0 0 10 1\r\nx\r\n", False), EndRound(0.0),
                  Send(0, b"reserve\r\n", False), EndRound(1.0)]))
    assert len(rounds) >= 5  # run 1: three rounds, the hang-ups, the end; run 2: the end
    with pytest.raises(AssertionError, match="a buried job"):
        check(encode([Send(0, b"put 0 0 10 1\r\nx\r\nreserve\r\nbury 1 0\r\n", False)]))


class _Buggy:
    """A journal whose every call fails: a stand-in for a bug inside the engine."""

    def __getattr__(self, name: str) -> Any:
        def broken(*args: object) -> None:
            raise RuntimeError("boom")
        return broken


def test_an_exception_in_the_server_escapes_the_target() -> None:
    world = World(target.INFO, split=False, hot_path=False)
    world.host.engine.journal = _Buggy()
    with pytest.raises(RuntimeError, match="boom"):
        world.run(decode(b"put 0 0 10 1\r\nx\r\n"))


def test_a_client_that_hangs_up_holding_a_job_gives_it_back() -> None:
    world = World(target.INFO, split=False, hot_path=False)
    world.run([Send(0, b"put 0 0 10 1\r\nx\r\n", False), EndRound(0.0),
               Send(1, b"reserve\r\n", False), EndRound(0.0), HangUp(1),
               Send(2, b"put 0 0 10 9\r\nhalf", False), HangUp(2)])
    assert [j.state for j in world.host.engine.jobs.values()] == [READY]
    assert [replies(t) for t in world.transcripts()] == [
        [b"INSERTED 1"], [b"RESERVED 1 1"], []]


def test_a_slow_reader_gets_every_reply_whole() -> None:
    world = World(target.INFO, split=False, hot_path=False)
    world.run([Send(0, b"put 0 0 10 200\r\n" + b"p" * 200 + b"\r\n", False), Window(0, 16),
               Send(0, b"peek 1\r\n" * 5, False), EndRound(0.0),
               Send(1, b"peek 1\r\n", False), EndRound(0.0)])
    slow, other = world.transcripts()
    assert replies(slow) == [b"INSERTED 1"] + [b"FOUND 1 200"] * 5
    assert replies(other) == [b"FOUND 1 200"]


# --------------------------------------------------------------------------- atheris

def _fuzz(tmp_path: Path, *flags: str, selftest: bool = False, timeout: float = 60
          ) -> tuple[subprocess.CompletedProcess[str], Path]:
    pytest.importorskip("atheris")
    found, crashes = tmp_path / "found", tmp_path / "crashes"
    found.mkdir()
    crashes.mkdir()
    env = {**os.environ, "TUBESERVER_FUZZ_SELFTEST": "1" if selftest else "0"}
    done = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), *flags, "-max_len=4096", "-timeout=30",
         f"-dict={FUZZ / 'protocol.dict'}", f"-artifact_prefix={crashes}/", str(found),
         str(CORPUS)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env=env)
    return done, crashes


def test_bounded_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    done, crashes = _fuzz(tmp_path, f"-max_total_time={FUZZ_SECONDS}", f"-runs={FUZZ_RUNS}",
                          timeout=FUZZ_SECONDS + 120)
    log = done.stdout
    found = sorted(p.name for p in crashes.iterdir())
    assert done.returncode == 0 and not found, (
        f"the fuzzer found a crash ({found}):\n{log[-4000:]}\nreproduce with: python "
        "tests/fuzz/run.py FILE, where FILE holds the input printed above")
    last = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", log)
    assert last, log[-2000:]
    runs, cov, ft = map(int, last[-1])
    # The core is instrumented: a handful of its branches would be far fewer.
    assert runs > 0 and cov > 500 and ft > cov, log[-2000:]


def test_a_crash_fails_the_fuzz_run(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "crash").write_bytes(b"put 0 0 10 19\r\nfuzz-selftest-crash\r\n")
    done, crashes = _fuzz(tmp_path, "-runs=10", str(seed), selftest=True)
    assert done.returncode != 0
    assert "the self-test's crash" in done.stdout
    assert [p.name[:6] for p in crashes.iterdir()] == ["crash-"]
