"""The seed corpus: real protocol sessions of every command, extensions included, as fuzz
programs (target.py's format). `python tests/fuzz/seeds.py` writes them to corpus/seed-*;
inputs the fuzzer found and that are kept as regressions are corpus/found-* files beside them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `fuzz`

from fuzz.target import EndRound, HangUp, Send, Step, Window, encode

CORPUS = Path(__file__).resolve().parent / "corpus"


def lines(*commands: str) -> bytes:
    return "".join(c + "\r\n" for c in commands).encode()


def a(*commands: str, split: bool = False) -> Send:
    return Send(0, lines(*commands), split)


def b(*commands: str, split: bool = False) -> Send:
    return Send(1, lines(*commands), split)


def c(*commands: str, split: bool = False) -> Send:
    return Send(2, lines(*commands), split)


def d(*commands: str, split: bool = False) -> Send:
    return Send(3, lines(*commands), split)


ROUND = EndRound(0.0)


def tick(seconds: float) -> EndRound:
    return EndRound(seconds)


SEEDS: dict[str, list[Step]] = {
    # beanstalkd's commands, one connection.
    "basic": [
        a("use emails", "put 10 0 60 5", "hello", "put 5 0 60 0", "", "peek-ready",
          "watch emails", "ignore default", "reserve", "touch 2", "release 2 20 0",
          "reserve-with-timeout 0", "bury 1 30", "peek-buried", "kick 1", "reserve",
          "bury 1 0", "kick-job 1", "peek 1", "stats-job 1", "stats-tube emails", "delete 1",
          "list-tubes", "list-tube-used", "list-tubes-watched", "stats", "pause-tube emails 0",
          "quit"),
    ],
    # Time: delays, TTR expiry and DEADLINE_SOON, pause, reserve timeouts.
    "time": [
        a("put 0 2 1 3", "abc", "put 0 0 2 1", "z", "peek-delayed", "reserve"), ROUND,
        a("reserve-with-timeout 5"), tick(1.001),
        a("stats-job 2"), tick(2.0),
        a("reserve-with-timeout 1", "pause-tube default 3", "reserve-with-timeout 1"),
        tick(1.0), tick(5.0), a("stats-tube default", "reserve-with-timeout 0"), tick(0.999),
    ],
    # A blocked reserve served by another connection's put; pipelined commands behind it.
    "waiting": [
        a("watch jobs", "reserve", "list-tubes-watched", "stats"),
        b("use jobs", "put 1 0 10 4", "data", "put 2 0 10 2"), ROUND,
        b("hi", split=True), ROUND,
        a("delete 1", "reserve-with-timeout 0"), tick(10.0),
        c("watch jobs", "reserve"), tick(0.25), b("put 0 0 5 1", "x"), tick(5.0),
    ],
    # reserve-batch, partial batches, two batch reservers, a waiting single reserve.
    "batch": [
        a("put 0 0 30 1", "a", "put 0 0 30 1", "b", "reserve-batch 5 0"), ROUND,
        b("reserve-batch 3 10"), c("reserve-batch 2 10"), d("reserve"), ROUND,
        a("put 0 0 30 1", "c", "put 0 0 30 1", "d", "put 1 0 30 1", "e"), ROUND,
        a("release 1 0 0", "release 2 0 1"), tick(1.0), tick(10.0),
        a("reserve-batch 1000 0", "reserve-batch 0 1", "reserve-batch 1001 1"),
    ],
    # Job tracking: finish, fail, result (waiting and at once), job-status, checkpoints.
    "tracking": [
        a("put 0 0 10 3", "one", "put 0 0 10 3", "two", "reserve", "checkpoint 1 4", "half",
          "peek-checkpoint 1", "job-status 1"),
        b("result 1 5", "job-status 2"), ROUND,
        a("finish 1 2", "ok", "reserve", "fail 2 7 6", "broken", "job-status 2"), ROUND,
        b("result 2 0", "result 9 0", "kick-job 2", "result 2 3"), tick(0.5),
        c("reserve", "finish 2 0", ""), tick(5.0),
        a("job-status 1", "result 1 0", "finish 9 1", "x", "checkpoint 1 1", "y"), tick(61.0),
        a("job-status 1", "result 1 0"),
    ],
    # Flow control: put-unique, put-after, tube-limits, schedules.
    "flow": [
        a("use mail", "put-unique welcome-7 60 0 0 10 2", "hi",
          "put-unique welcome-7 60 0 0 10 2", "hi", "put-after 1 0 0 10 4", "next",
          "put-after 1,9 0 0 10 1", "x", "tube-limits mail 1 3 0.5", "list-tube-limits",
          "put 0 0 10 1", "y", "put 0 0 10 1", "z", "watch mail", "reserve-with-timeout 0",
          "reserve-with-timeout 0", "job-status 2"),
        ROUND,
        a("delete 1", "reserve-batch 3 2"), tick(2.0),
        b("schedule nightly mail 0 30 5 0 3 * * *", "night",
          "schedule tick default 1 10 1 every 2", "t", "schedule once default 0 10 1 single "
          "every 1", "o", "list-schedules", "schedule bad default 0 10 1 0 0 30 2 *", "x"),
        tick(2.0), tick(1.0), tick(61.0),
        b("unschedule tick", "unschedule tick", "list-schedules", "stats",
          "tube-limits mail 0 0 0", "list-tube-limits"),
    ],
    # Chains: children wait on parents, are buried when a parent is deleted unrun, kicked,
    # taken out of waiting by reserve-job and kick-job.
    "chains": [
        a("use c", "watch c", "put 0 0 10 1", "p", "put 0 0 10 1", "q",
          "put-after 1,2 0 0 10 1", "x", "put-after 3 0 1 10 1", "y", "job-status 3",
          "stats-job 4", "reserve", "delete 1", "delete 2", "job-status 3", "result 3 0",
          "kick-job 3", "reserve-job 4", "release 4 0 0", "put-after 4 0 0 10 1", "z"),
        b("watch c", "result 5 5"), ROUND,
        a("reserve", "finish 4 1", "r", "peek-delayed", "kick 5"), tick(1.001),
        a("reserve-with-timeout 0", "delete 5", "stats-tube c"), tick(5.0),
    ],
    # Tube limits: max-reserved with waiting single and batch reservers, a rate, max-jobs,
    # limits lowered and removed while jobs are out.
    "limits": [
        a("tube-limits l 1 4 0.5", "use l", "put 0 0 5 1", "1", "put 0 0 5 1", "2",
          "put 0 0 5 1", "3", "put 0 0 5 1", "4", "put 0 0 5 1", "5"),
        b("watch l", "ignore default", "reserve-batch 3 10"),
        c("watch l", "reserve-with-timeout 10"), ROUND,
        b("delete 1"), tick(0.5), tick(2.0),
        d("tube-limits l 2 0 1000000", "list-tube-limits", "watch l", "reserve-batch 2 0"),
        tick(5.0), d("tube-limits l 0 0 0", "reserve-job 3", "list-tube-limits"), tick(10.0),
    ],
    # Unique keys: windows that outlive their jobs, keys per tube, a key freed by expiry.
    "keys": [
        a("put-unique k 2 0 0 10 1", "a", "put-unique k 0 0 0 10 1", "b", "use other",
          "put-unique k 0 0 0 10 1", "c", "use default", "reserve", "delete 1",
          "put-unique k 5 0 0 10 1", "d", "job-status 1"), tick(2.0),
        a("put-unique k 0 0 0 10 1", "e", "stats"), tick(1.0), tick(0.25),
        a("put-unique k 0 1 1 10 1", "f"),
    ],
    # Errors: formats, unknown commands, oversized data (skipped), missing CRLF, NUL bytes,
    # lines over the limit.
    "errors": [
        a("put 0 0 10 300", "x" * 300, "put 0 0 10 3", "abcd", "put 0 0 10", "puts",
          "reserve-with-timeout -1", "peek x", "use -bad", "watch " + "t" * 201,
          "stats-tube nothere", "delete 99", "bury 1", "NOSUCH", "list-tubes  ",
          "put 4294967296 0 10 1", "x", "finish 1 300", "y" * 300, "fail 1 0 1", "zz",
          "checkpoint 1 x", "x", "put-unique k 0 0 0 10 300", "u" * 300,
          "stats-job 18446744073709551616", "use " + "u" * 300),
        a("peek 1\x00"), a("pause-tube default 4294967296", "kick -1", "ignore default"),
    ],
    # Bytes split anywhere: inside a verb, a number, a body, the CRLF.
    "splits": [
        Send(0, b"pu", False), Send(0, b"t 0 0 10 5\r", True), Send(0, b"\nhel", True),
        Send(0, b"lo\r", True), Send(0, b"\nreserve\r\nrel", True),
        Send(0, b"ease 1 0 0\r\nres", True), Send(0, b"erve-batch 2 0\r\n", True), ROUND,
        Send(1, b"put 0 0 10 3\r\nabc", False), ROUND, Send(1, b"\r\nstats-job 2\r\n", True),
    ],
    # Clients that go away: mid-reserve, holding a job, mid-body, mid-line, mid-result.
    "hangups": [
        a("watch w", "reserve"), b("use w", "put 0 0 10 3", "job"), ROUND,
        a("reserve"), HangUp(0), ROUND,
        c("watch w", "reserve-with-timeout 10", "reserve-batch 5 10"), ROUND, HangUp(2),
        d("put 0 0 10 100"), Send(3, b"partial body", False), HangUp(3), ROUND,
        b("result 1 10"), HangUp(1), ROUND,
        Send(2, b"stats-tu", False), HangUp(2), tick(1.0),
        a("stats"),
    ],
    # A slow reader: big replies pipelined, its socket taking 16 bytes a send.
    "slowreader": [
        a("put 0 0 60 200", "p" * 200), Window(0, 16),
        a("peek 1", "peek 1", "peek-ready", "stats", "list-tubes"), ROUND, ROUND,
        b("reserve", "delete 1"), ROUND, Window(0, 0), ROUND,
    ],
}


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, steps in SEEDS.items():
        (CORPUS / f"seed-{name}").write_bytes(encode(steps))


if __name__ == "__main__":
    main()
