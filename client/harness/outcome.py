"""Pure decisions of the worker harness: what to do with a job once its child has ended.

Theory of operation. Nothing here does I/O, reads a clock or draws random numbers: callers
pass the job's counters (from `stats-job` at reserve time), how the child ended, the policy
and a uniform random number in [0, 1), and get back an `Action`.

* exit 0 -> delete.
* exit code listed as permanent -> bury at once.
* any other end (non-zero exit, death by a signal, killed at the deadline, killed by USR1)
  is a *failure*. The job's failures so far are ``releases + timeouts + buries`` (every
  release and bury the harness makes follows a failure; a timeout is a worker that died
  holding the job). The attempt budget is ``max_attempts * (kicks + 1)``: while this failure
  keeps the total under the budget the job is released with backoff, else it is buried.
  A kick therefore grants exactly `max_attempts` fresh attempts (cmdstalk#2 avoided).
* a bug in the harness while handling the job counts as a failure like any other.
* a child interrupted because the harness is shutting down -> release, delay 0 (the
  supervisor gives the job back by closing its connection, so no attempt is counted).
* a child killed because its connection was lost has no action: the server already took the
  job back (it will come back with `timeouts` or `reserves` bumped).

Backoff for the n-th failure: ``d = min(cap, base * 2**(n-1))``; with equal jitter the
delay is ``d/2 + u*d/2``; it is rounded *up* to whole seconds (beanstalkd delays are
integers) and never exceeds ``ceil(cap)``.
"""

from __future__ import annotations

import enum
import math

import attrs

#: Upper bound of a beanstalkd delay (u32 seconds).
DELAY_MAX = 2**32 - 1


class End(enum.Enum):
    """How a child's run ended, as far as the decision is concerned."""

    EXITED = "exited"  # exited on its own with `code`
    SIGNALLED = "signalled"  # died of a signal nobody in the harness sent
    DEADLINE = "deadline"  # killed by the harness at its deadline
    ABORTED = "aborted"  # killed by the harness on SIGUSR1
    SHUTDOWN = "shutdown"  # killed because the harness is stopping
    LOST = "lost"  # killed because the connection that reserved the job is gone
    BUG = "bug"  # the harness itself failed while handling the job: a failed attempt


@attrs.frozen
class ChildEnd:
    """The end of one child: `kind`, plus the exit `code` or the `signal` that killed it."""

    kind: End
    code: int | None = None
    signal: int | None = None

    @property
    def failed(self) -> bool:
        return not (self.kind is End.EXITED and self.code == 0)


@attrs.frozen
class Counters:
    """The counters of `stats-job` that the decision needs."""

    releases: int = 0
    timeouts: int = 0
    buries: int = 0
    kicks: int = 0

    @property
    def failures(self) -> int:
        return self.releases + self.timeouts + self.buries

    @property
    def attempt(self) -> int:
        """The 1-based number of the attempt about to run (counted over the job's life)."""
        return self.failures + 1


def _non_negative(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


@attrs.frozen
class Policy:
    """Retry policy: attempts per kick, backoff base and cap (seconds), jitter, and the exit
    codes that mean "permanent failure, bury now"."""

    max_attempts: int = 5
    backoff_base: float = attrs.field(default=15.0, validator=_non_negative)
    backoff_cap: float = attrs.field(default=3600.0, validator=_non_negative)
    jitter: bool = True
    bury_exit_codes: frozenset[int] = frozenset()

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.backoff_cap > DELAY_MAX:
            raise ValueError(f"backoff_cap must be <= {DELAY_MAX}")


class Verb(enum.Enum):
    DELETE = "delete"
    RELEASE = "release"
    BURY = "bury"


@attrs.frozen
class Action:
    """What to send for the job: `verb`, with `delay` whole seconds for a release."""

    verb: Verb
    delay: int = 0
    reason: str = ""


def backoff(failure: int, policy: Policy, rand: float) -> int:
    """The release delay in whole seconds after the `failure`-th failure (1-based)."""
    if failure < 1:
        raise ValueError(f"failure must be >= 1, not {failure}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), not {rand}")
    cap = policy.backoff_cap
    # 2**exponent overflows a float long after the cap is reached: clamp the exponent.
    raw = policy.backoff_base * 2.0 ** min(failure - 1, 1000)
    d = min(cap, raw)
    if policy.jitter:
        d = d / 2 + rand * d / 2
    return min(math.ceil(d), math.ceil(cap))


def decide(end: ChildEnd, counters: Counters, policy: Policy, rand: float) -> Action:
    """The action for a job whose child ended with `end` (see the module docstring)."""
    if end.kind is End.LOST:
        raise ValueError("a job whose connection is lost cannot be answered")
    if end.kind is End.SHUTDOWN:
        return Action(Verb.RELEASE, 0, "shutdown")
    if not end.failed:
        return Action(Verb.DELETE, 0, "success")
    if end.kind is End.EXITED and end.code in policy.bury_exit_codes:
        return Action(Verb.BURY, 0, f"permanent exit code {end.code}")
    failures = counters.failures + 1
    budget = policy.max_attempts * (counters.kicks + 1)
    if failures >= budget:
        return Action(Verb.BURY, 0, f"attempt budget spent ({failures}/{budget})")
    # The backoff restarts with each kick's fresh budget.
    nth = max(1, failures - counters.kicks * policy.max_attempts)
    return Action(Verb.RELEASE, backoff(nth, policy, rand), "retry")


def run_limit(ttr: int, kill_grace: float, timeout: float | None, touch: bool,
              margin: float = 1.0, floor: float = 0.1) -> float:
    """Seconds a child may run, counted from a fresh TTR (the harness touches the job just
    before starting the child).

    Without touching, the child must be dead and the job answered before the TTR runs out:
    ``ttr - margin - kill_grace``, capped by `timeout`. With touching, only `timeout` limits
    it (None: no limit). Never below `floor`, so a tiny TTR still lets the child start.
    """
    if touch:
        return math.inf if timeout is None else max(floor, timeout)
    limit = ttr - margin - kill_grace
    if timeout is not None:
        limit = min(limit, timeout)
    return max(floor, limit)


def deadline_after_checkpoint(sent_at: float, ttr: int, kill_grace: float,
                              hard_deadline: float) -> float:
    """The child's new deadline once a checkpoint sent at `sent_at` was stored: storing it
    restarted the TTR (when the server read it, after `sent_at`), so the run limit counts
    again from `sent_at`, but never past `hard_deadline` (--timeout from the start)."""
    return min(hard_deadline, sent_at + run_limit(ttr, kill_grace, None, False))


def touch_interval(ttr: int) -> float:
    """How often to touch a job with this TTR while its child runs: well before it expires."""
    return max(0.5, min(ttr / 2, ttr - 1.0))


def next_batch_target(target: int, asked: int, got: int, most: int) -> int:
    """The next reserve-batch size goal after asking for `asked` and getting `got` jobs.

    Grows (doubling, up to `most`) while batches come back full, follows the supply when
    one comes back partial, and drops to 1 when nothing came. The size actually asked for
    is also capped by the free slots, so reserved jobs never wait for a slot.
    """
    if got <= 0:
        return 1
    if got >= asked:
        return max(1, min(most, max(target, asked) * 2))
    return max(1, min(most, got))
