"""Pure parts of tubeworker: outcome decisions, backoff, attempt budget, run limit, CLI parsing.

No processes, no servers, no clock: `decide` and `backoff` take the random number as an
argument, and the budget is checked by simulating a job's stats-job counters through many
failures and kicks.
"""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tubeclient.harness.cli import DEFAULTS, UsageError, build_parser, parse
from tubeclient.harness.outcome import (
    Action,
    ChildEnd,
    Counters,
    End,
    Policy,
    Verb,
    backoff,
    decide,
    next_batch_target,
    run_limit,
    touch_interval,
)

OK = ChildEnd(End.EXITED, code=0)
FAIL = ChildEnd(End.EXITED, code=1)
rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
failure_ends = st.one_of(
    st.integers(1, 255).map(lambda c: ChildEnd(End.EXITED, code=c)),
    st.integers(1, 64).map(lambda s: ChildEnd(End.SIGNALLED, signal=s)),
    st.just(ChildEnd(End.DEADLINE, signal=9)),
    st.just(ChildEnd(End.ABORTED, signal=15)),
)
policies = st.builds(
    Policy,
    max_attempts=st.integers(1, 8),
    backoff_base=st.floats(0, 100, allow_nan=False),
    backoff_cap=st.floats(0, 10_000, allow_nan=False),
    jitter=st.booleans(),
)


# --------------------------------------------------------------------------- decide


def test_exit_zero_deletes() -> None:
    assert decide(OK, Counters(releases=9), Policy(max_attempts=1), 0.5) == Action(
        Verb.DELETE, 0, "success")


def test_permanent_exit_code_buries_at_once_even_with_budget_left() -> None:
    policy = Policy(max_attempts=5, bury_exit_codes=frozenset({3, 4}))
    assert decide(ChildEnd(End.EXITED, code=3), Counters(), policy, 0.0).verb is Verb.BURY
    # The same code from a signal number, or another exit code, is an ordinary failure.
    assert decide(ChildEnd(End.EXITED, code=2), Counters(), policy, 0.0).verb is Verb.RELEASE
    assert decide(ChildEnd(End.SIGNALLED, signal=3), Counters(), policy,
                  0.0).verb is Verb.RELEASE


@given(failure_ends)
def test_every_kind_of_failure_is_released_on_the_first_attempt(end: ChildEnd) -> None:
    action = decide(end, Counters(), Policy(max_attempts=2, backoff_base=4, jitter=False),
                    0.0)
    assert action == Action(Verb.RELEASE, 4, "retry")


def test_shutdown_releases_with_no_delay_whatever_the_counters() -> None:
    action = decide(ChildEnd(End.SHUTDOWN, signal=15), Counters(releases=100),
                    Policy(max_attempts=1), 0.9)
    assert action == Action(Verb.RELEASE, 0, "shutdown")


def test_lost_connection_has_no_action() -> None:
    with pytest.raises(ValueError):
        decide(ChildEnd(End.LOST, signal=15), Counters(), Policy(), 0.0)


def test_timeouts_count_as_failures() -> None:
    # A worker that died holding the job (server-side TTR expiry) used up an attempt.
    policy = Policy(max_attempts=3)
    assert decide(FAIL, Counters(timeouts=1, releases=1), policy, 0.0).verb is Verb.BURY
    assert decide(FAIL, Counters(timeouts=1), policy, 0.0).verb is Verb.RELEASE


def _life(policy: Policy, kicks: int, end: ChildEnd, rand: float) -> list[Action]:
    """Every action of a job that always fails, kicked `kicks` times after being buried."""
    c = Counters()
    actions: list[Action] = []
    while len(actions) < 10_000:
        action = decide(end, c, policy, rand)
        actions.append(action)
        if action.verb is Verb.RELEASE:
            c = Counters(c.releases + 1, c.timeouts, c.buries, c.kicks)
        else:
            assert action.verb is Verb.BURY
            if c.kicks == kicks:
                return actions
            c = Counters(c.releases, c.timeouts, c.buries + 1, c.kicks + 1)
    raise AssertionError("the job was never buried for good")


@given(policies, st.integers(0, 4), failure_ends, rands)
def test_each_kick_grants_exactly_max_attempts_fresh_attempts(
    policy: Policy, kicks: int, end: ChildEnd, rand: float
) -> None:
    actions = _life(policy, kicks, end, rand)
    assert len(actions) == policy.max_attempts * (kicks + 1)
    buries = [i for i, a in enumerate(actions) if a.verb is Verb.BURY]
    assert buries == [policy.max_attempts * (k + 1) - 1 for k in range(kicks + 1)]


def test_backoff_restarts_after_a_kick() -> None:
    policy = Policy(max_attempts=3, backoff_base=2, jitter=False)
    delays = [a.delay for a in _life(policy, 1, FAIL, 0.0)]
    assert delays == [2, 4, 0, 2, 4, 0]


def test_permanent_bury_then_kick_leaves_a_full_budget() -> None:
    policy = Policy(max_attempts=2, bury_exit_codes=frozenset({7}))
    # Buried once with code 7, kicked once: budget 4, one failure (the bury) used.
    after_kick = Counters(buries=1, kicks=1)
    assert decide(FAIL, after_kick, policy, 0.0).verb is Verb.RELEASE
    assert decide(FAIL, Counters(releases=1, buries=1, kicks=1), policy, 0.0).verb is Verb.RELEASE
    assert decide(FAIL, Counters(releases=2, buries=1, kicks=1), policy, 0.0).verb is Verb.BURY


def test_kick_of_a_delayed_job_does_not_break_backoff() -> None:
    # kick-job on a delayed job bumps `kicks` without a bury: the backoff index stays >= 1.
    action = decide(FAIL, Counters(releases=1, kicks=2), Policy(backoff_base=3, jitter=False),
                    0.0)
    assert action == Action(Verb.RELEASE, 3, "retry")


def test_attempt_number_counts_over_the_jobs_life() -> None:
    assert Counters().attempt == 1
    assert Counters(releases=2, timeouts=1, buries=1, kicks=1).attempt == 5


# --------------------------------------------------------------------------- backoff


def test_backoff_without_jitter_doubles_and_is_capped() -> None:
    policy = Policy(backoff_base=15, backoff_cap=100, jitter=False)
    assert [backoff(n, policy, 0.0) for n in range(1, 7)] == [15, 30, 60, 100, 100, 100]


def test_backoff_rounds_up_to_whole_seconds() -> None:
    policy = Policy(backoff_base=0.3, backoff_cap=3600, jitter=False)
    assert [backoff(n, policy, 0.0) for n in range(1, 5)] == [1, 1, 2, 3]


def test_backoff_equal_jitter_endpoints() -> None:
    policy = Policy(backoff_base=10, backoff_cap=3600, jitter=True)
    assert backoff(1, policy, 0.0) == 5  # half fixed
    assert backoff(1, policy, 0.999999) == 10  # up to the full delay
    assert backoff(3, policy, 0.5) == 30  # 40/2 + 0.5*20


@given(st.integers(1, 5000), policies, rands)
def test_backoff_bounds(failure: int, policy: Policy, rand: float) -> None:
    d = min(policy.backoff_cap, policy.backoff_base * 2.0 ** min(failure - 1, 1000))
    delay = backoff(failure, policy, rand)
    assert isinstance(delay, int)
    assert 0 <= delay <= math.ceil(policy.backoff_cap)
    if policy.jitter:
        assert math.ceil(d / 2) <= delay <= math.ceil(d)
    else:
        assert delay == math.ceil(d)


@given(st.integers(1, 60), policies)
def test_backoff_never_shrinks_without_jitter(failure: int, policy: Policy) -> None:
    policy = Policy(policy.max_attempts, policy.backoff_base, policy.backoff_cap, jitter=False)
    assert backoff(failure, policy, 0.0) <= backoff(failure + 1, policy, 0.0)


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"backoff_base": -1.0},
                                 {"backoff_cap": float("inf")}, {"backoff_cap": 2.0**33}])
def test_policy_rejects_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**bad)  # type: ignore[arg-type]


def test_backoff_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        backoff(0, Policy(), 0.0)
    with pytest.raises(ValueError):
        backoff(1, Policy(), 1.0)


# --------------------------------------------------------------------------- run limit


def test_run_limit_without_touch_ends_before_the_ttr() -> None:
    assert run_limit(ttr=10, kill_grace=2, timeout=None, touch=False) == 7
    assert run_limit(ttr=10, kill_grace=2, timeout=3, touch=False) == 3
    assert run_limit(ttr=1, kill_grace=5, timeout=None, touch=False) == 0.1  # floor


def test_run_limit_with_touch_is_the_timeout() -> None:
    assert run_limit(ttr=2, kill_grace=1, timeout=30, touch=True) == 30
    assert run_limit(ttr=2, kill_grace=1, timeout=None, touch=True) == math.inf


@given(st.integers(1, 100_000))
def test_touch_interval_is_well_inside_the_ttr(ttr: int) -> None:
    interval = touch_interval(ttr)
    assert interval >= 0.5
    assert interval <= ttr / 2 or ttr == 1


# --------------------------------------------------------------------------- batch sizing


def test_batch_target_grows_while_full_follows_partial_and_resets_when_dry() -> None:
    t = 1
    sizes = []
    for _ in range(5):  # always full
        t = next_batch_target(t, t, t, 16)
        sizes.append(t)
    assert sizes == [2, 4, 8, 16, 16]
    assert next_batch_target(16, 16, 5, 16) == 5
    assert next_batch_target(16, 16, 0, 16) == 1


@given(st.integers(1, 1000), st.integers(1, 1000), st.integers(0, 1000), st.integers(1, 1000))
def test_batch_target_stays_within_one_and_the_maximum(
    target: int, asked: int, got: int, most: int
) -> None:
    got = min(got, asked)
    assert 1 <= next_batch_target(target, asked, got, most) <= most


# --------------------------------------------------------------------------- CLI


def test_cli_defaults_and_placeholders_untouched() -> None:
    cfg = parse(["--", "php", "index.php", "{id}"], env={})
    assert cfg.command == ("php", "index.php", "{id}")
    assert cfg.servers == (("127.0.0.1", 11300),)
    assert cfg.tubes == ("default",)
    assert cfg.concurrency == 1 and not cfg.touch and cfg.kill_grace == 5.0
    assert cfg.policy == Policy()
    assert (cfg.shutdown_grace, cfg.log_format, cfg.burst, cfg.shell) == (25.0, "text", False,
                                                                          False)
    assert (cfg.timeout, cfg.max_jobs, cfg.result_tube, cfg.call) == (None, None, None, None)


def test_help_shows_each_default_and_variable_as_parse_uses_them() -> None:
    parser = build_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help" or action.help is None:
            continue
        if action.help == argparse.SUPPRESS:  # --token: named only to be refused
            continue
        if action.option_strings[0].startswith("--no-"):
            continue
        assert f"env TUBEWORKER_{action.dest.upper()}" in action.help, action.dest
        if action.nargs != 0 and action.dest in DEFAULTS:
            assert f"(default: {DEFAULTS[action.dest]};" in action.help, action.dest


def test_cli_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"TUBEWORKER_SERVERS": "10.0.0.1:1,10.0.0.2", "TUBEWORKER_TUBES": "a,b",
           "TUBEWORKER_CONCURRENCY": "3", "TUBEWORKER_JITTER": "0",
           "TUBEWORKER_BURY_EXIT_CODES": "3,4", "TUBEWORKER_BURST": "true",
           "TUBEWORKER_MAX_ATTEMPTS": "7"}
    cfg = parse(["-c", "5", "--", "cat"], env=env)
    assert cfg.servers == (("10.0.0.1", 1), ("10.0.0.2", 11300))
    assert cfg.tubes == ("a", "b")
    assert cfg.concurrency == 5
    assert cfg.burst
    assert cfg.policy == Policy(max_attempts=7, jitter=False, bury_exit_codes=frozenset({3, 4}))
    cfg = parse(["-s", "[::1]:5", "-s", "h", "--jitter", "--", "cat"], env=env)
    assert cfg.servers == (("::1", 5), ("h", 11300))
    assert cfg.policy.jitter


def test_cli_call_mode() -> None:
    cfg = parse(["--call", "pkg.mod:func", "--msgpack"], env={})
    assert cfg.call == "pkg.mod:func" and cfg.msgpack and cfg.command == ()


@pytest.mark.parametrize("argv", [
    [],  # no command
    ["--call", "pkg.mod"],  # no function
    ["--call", "m:f", "--", "cat"],  # both
    ["--msgpack", "--", "cat"],  # msgpack without call
    ["--touch", "--", "cat"],  # touch without timeout
    ["-c", "0", "--", "cat"],
    ["-c", "many", "--", "cat"],
    ["--timeout", "0", "--", "cat"],
    ["--kill-grace", "-1", "--", "cat"],
    ["--max-attempts", "0", "--", "cat"],
    ["--backoff-cap", "nan", "--", "cat"],
    ["--bury-exit-codes", "0", "--", "cat"],
    ["--log-format", "xml", "--", "cat"],
    ["-t", "bad name", "--", "cat"],
    ["-s", "host:99999", "--", "cat"],
    ["--result-tube", "a b", "--", "cat"],
])
def test_cli_rejects_bad_input(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(argv, env={})


@pytest.mark.parametrize(("name", "value"), [
    ("TUBEWORKER_CONCURRENCY", "x"), ("TUBEWORKER_FAILURE_TUBE", "-x"),
    ("TUBEWORKER_TOUCH", "maybe"), ("TUBEWORKER_SERVERS", ":1"),
])
def test_cli_names_the_bad_environment_variable(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        parse(["--", "cat"], env={name: value})
