"""Server choice for pools, without I/O: strategies, failure backoff, rendezvous hashing.

The pools (sync and trio) ask a `Balancer` which servers to try for one command and in what
order, and report each outcome. Time comes in as an argument and randomness as a
`random.Random`, so the policy is tested without sockets or clocks.

* round_robin: servers in turn; a server that failed sits out a backoff window.
* random: a random order of the healthy servers each time.
* hash: rendezvous (highest random weight) hashing on the caller's key. Every process with
  the same server names picks the same server for a key, and removing one server moves only
  its own keys. There is no failover: moving a key silently would break the affinity the
  caller asked for.

Backoff after the n-th consecutive failure is `min(cap, base * 2**(n-1))` with equal jitter
(half fixed, half random). When every server is backing off, they are tried anyway, soonest
first: a command fails only when every server fails now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from .job import Address, check_address, server_name

if TYPE_CHECKING:
    import random

Strategy = Literal["round_robin", "random", "hash"]
STRATEGIES: tuple[Strategy, ...] = ("round_robin", "random", "hash")
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0


@attrs.define
class Backoff:
    """Consecutive failures of one server and when it may be tried again."""

    base: float = DEFAULT_BACKOFF
    cap: float = DEFAULT_MAX_BACKOFF
    failures: int = 0
    retry_at: float = float("-inf")

    def failed(self, now: float, rng: random.Random) -> float:
        """Record a failure at `now`; returns the delay before the next attempt."""
        self.failures += 1
        full = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 60))
        delay = full / 2 + rng.uniform(0, full / 2)
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        """Record a success: the server is healthy again."""
        self.failures = 0
        self.retry_at = float("-inf")

    def ready(self, now: float) -> bool:
        """Whether the server may be tried at `now`."""
        return now >= self.retry_at


def hash_key(key: str | bytes) -> bytes:
    """A key as bytes (str keys are UTF-8)."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def rendezvous(names: Sequence[str], key: str | bytes) -> int:
    """Index of the server that owns `key`: the highest blake2b(name, key) score."""
    k = hash_key(key)

    def score(i: int) -> tuple[bytes, str]:
        data = names[i].encode("utf-8") + b"\0" + k
        digest = hashlib.blake2b(data, digest_size=8).digest()
        return digest, names[i]

    return max(range(len(names)), key=score)


def check_addresses(addresses: Sequence[Address]) -> list[Address]:
    """Validated, non-empty, duplicate-free list of addresses."""
    if isinstance(addresses, str) or (
        isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int)
    ):
        raise TypeError("addresses must be a list of addresses, e.g. [('127.0.0.1', 11300)]")
    out = [check_address(a) for a in addresses]
    if not out:
        raise ValueError("a pool needs at least one server address")
    names = [server_name(a) for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate server addresses: {names}")
    return out


class Balancer:
    """Picks the servers to try for one command and keeps their health."""

    def __init__(
        self,
        names: Sequence[str],
        strategy: Strategy,
        rng: random.Random,
        *,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if not names:
            raise ValueError("no servers")
        self.names = list(names)
        self.strategy = strategy
        self.rng = rng
        self.health = [Backoff(backoff, max_backoff) for _ in names]
        self._next = 0

    def order(self, now: float, key: str | bytes | None = None) -> list[int]:
        """Indexes of the servers to try, best first (exactly one for "hash")."""
        if self.strategy == "hash":
            if key is None:
                raise ValueError("strategy 'hash' needs put(..., key=...)")
            return [rendezvous(self.names, key)]
        if key is not None:
            raise ValueError("key= is only used with strategy='hash'")
        n = len(self.names)
        if self.strategy == "round_robin":
            turn = [(self._next + k) % n for k in range(n)]
        else:
            turn = list(range(n))
            self.rng.shuffle(turn)
        ready = [i for i in turn if self.health[i].ready(now)]
        if self.strategy == "round_robin":
            # The next turn starts after the server chosen now, so the healthy servers
            # alternate evenly while one is sidelined.
            self._next = ((ready[0] if ready else self._next) + 1) % n
        waiting = sorted((i for i in turn if not self.health[i].ready(now)),
                         key=lambda i: self.health[i].retry_at)
        return ready + waiting

    def failed(self, index: int, now: float) -> float:
        """Record a failure of server `index`; returns its backoff delay."""
        return self.health[index].failed(now, self.rng)

    def failover(self, index: int, now: float, error: BaseException,
                 errors: dict[str, BaseException]) -> None:
        """Server `index` failed one command with `error`: record it, then re-raise it under
        "hash" (no failover), else note it in `errors` so the caller tries the next server.
        Called from the caller's `except` block, so the re-raise keeps the traceback."""
        self.failed(index, now)
        if self.strategy == "hash":
            raise error
        errors[self.names[index]] = error

    def succeeded(self, index: int) -> None:
        """Record a success of server `index`."""
        self.health[index].succeeded()
