"""The auth file: tokens, stored as SHA-256 hashes, each with its rights (access.py).

The file is TOML, one `[[token]]` table per token:

    [[token]]
    name = "billing-workers"        # for logs; a token itself is never logged
    sha256 = "9f86d0...(64 hex digits)"
    consume = ["billing", "billing-*"]
    inspect = ["billing*"]

with any of the lists `produce`, `consume`, `inspect`, `admin` (glob patterns over tube names,
as fnmatch: `*`, `?`, `[...]`). `tubeserver --new-token NAME` makes a token and prints its
table. A token is 32 random bytes, so one round of SHA-256 is as good a hash as a slow one
and costs microseconds, which matters in a single-threaded server that must not let failed
guesses eat its time; hashes are compared in constant time, every one of them, whichever
matches. Loading checks everything and names the first problem with its token's position;
a file with a problem is never half used (SIGHUP keeps the tokens it had).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib

from .access import ROLES, Rights
from .limits import NAME_MAX

TOKEN_PREFIX = "tbs_"  # lets secret scanners spot a leaked token
_KEYS = frozenset(ROLES) | {"name", "sha256"}


class AuthFileError(Exception):
    """The auth file cannot be used; the message says where and why."""


class Tokens:
    """The tokens of one auth file, read-only once loaded."""

    def __init__(self, entries: list[tuple[bytes, Rights]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, token: str) -> Rights | None:
        """The token's rights, or None when no entry holds it."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for stored, rights in self._entries:  # no early exit: the time says nothing
            if hmac.compare_digest(stored, digest):
                found = rights
        return found


def load(path: str) -> Tokens:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise AuthFileError(f"cannot read auth file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise AuthFileError(f"auth file {path} is not valid TOML: {e}") from None
    return parse(data, path)


def parse(data: dict[str, object], path: str = "auth file") -> Tokens:
    extra = set(data) - {"token"}
    if extra:
        raise AuthFileError(f"{path}: unknown key {sorted(extra)[0]!r} (expected [[token]] "
                            "tables)")
    tables = data.get("token", [])
    if not isinstance(tables, list):
        raise AuthFileError(f"{path}: 'token' must be an array of tables ([[token]])")
    entries: list[tuple[bytes, Rights]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, table in enumerate(tables, 1):
        where = f"{path}: token #{number}"
        if not isinstance(table, dict):
            raise AuthFileError(f"{where} is not a table")
        unknown = set(table) - _KEYS
        if unknown:
            raise AuthFileError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected name, "
                                "sha256, produce, consume, inspect, admin)")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise AuthFileError(f"{where}: 'name' must be a non-empty string")
        where = f"{path}: token {name!r}"
        if name in names:
            raise AuthFileError(f"{where} appears twice")
        names.add(name)
        digest = _digest(table.get("sha256"), where)
        if digest in digests:
            raise AuthFileError(f"{where} has the same sha256 as an earlier token")
        digests.add(digest)
        grants: list[tuple[int, str]] = []
        for role, bit in ROLES.items():
            patterns = table.get(role, [])
            if not isinstance(patterns, list) or not all(
                    isinstance(p, str) and 0 < len(p) <= NAME_MAX for p in patterns):
                raise AuthFileError(f"{where}: {role!r} must be a list of tube names or glob "
                                    f"patterns (1-{NAME_MAX} characters each)")
            grants.extend((bit, p) for p in patterns)
        if not grants:
            raise AuthFileError(f"{where} grants nothing (give it produce, consume, inspect "
                                "or admin patterns)")
        entries.append((digest, Rights(name, grants)))
    return Tokens(entries)


def _digest(value: object, where: str) -> bytes:
    if isinstance(value, str) and len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise AuthFileError(f"{where}: 'sha256' must be 64 hex digits (the SHA-256 of the token, "
                        "as `tubeserver --new-token` prints or `printf %s TOKEN | sha256sum`)")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def entry(name: str, token: str) -> str:
    """The auth file table for `token`, with every role empty, to be filled in."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return (f"[[token]]\nname = {_toml_string(name)}\nsha256 = \"{digest}\"\n"
            "produce = []\nconsume = []\ninspect = []\nadmin = []\n")


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in escaped):
        raise ValueError(f"token name {text!r} has control characters")
    return f'"{escaped}"'
