"""The YAML subset of stats and list replies, parsed without PyYAML, into typed dicts.

Servers write a flat mapping (``key: value`` lines) or a flat sequence (``- item`` lines)
after ``---``. Values are typed by how they look: digits -> int, digits.digits -> float,
true/false -> bool, "..." -> str with quotes stripped and backslash escapes undone, anything
else -> str. tubeserver and beanstalkd 1.13 quote strings, beanstalkd 1.12 does not, so keys
that are always strings (a tube named ``123``, a hex server id that happens to be all digits,
a version like ``1.12``) are forced to str per reply kind whatever they look like.
"""

from __future__ import annotations

from typing import Literal, TypedDict

StatValue = int | float | bool | str


class StatsFormatError(ValueError):
    """The payload is not the YAML subset servers send (the codec turns this into
    UnexpectedReply)."""


Stats = TypedDict(
    "Stats",
    {
        "current-jobs-urgent": int,
        "current-jobs-ready": int,
        "current-jobs-reserved": int,
        "current-jobs-delayed": int,
        "current-jobs-buried": int,
        "cmd-put": int,
        "cmd-peek": int,
        "cmd-peek-ready": int,
        "cmd-peek-delayed": int,
        "cmd-peek-buried": int,
        "cmd-reserve": int,
        "cmd-reserve-with-timeout": int,
        "cmd-delete": int,
        "cmd-release": int,
        "cmd-use": int,
        "cmd-watch": int,
        "cmd-ignore": int,
        "cmd-bury": int,
        "cmd-kick": int,
        "cmd-touch": int,
        "cmd-stats": int,
        "cmd-stats-job": int,
        "cmd-stats-tube": int,
        "cmd-list-tubes": int,
        "cmd-list-tube-used": int,
        "cmd-list-tubes-watched": int,
        "cmd-pause-tube": int,
        "job-timeouts": int,
        "total-jobs": int,
        "max-job-size": int,
        "current-tubes": int,
        "current-connections": int,
        "current-producers": int,
        "current-workers": int,
        "current-waiting": int,
        "total-connections": int,
        "pid": int,
        "version": str,
        "rusage-utime": float,
        "rusage-stime": float,
        "uptime": int,
        "binlog-oldest-index": int,
        "binlog-current-index": int,
        "binlog-records-migrated": int,
        "binlog-records-written": int,
        "binlog-max-size": int,
        "draining": bool,
        "id": str,
        "hostname": str,
        "os": str,
        "platform": str,
    },
)

StatsTube = TypedDict(
    "StatsTube",
    {
        "name": str,
        "current-jobs-urgent": int,
        "current-jobs-ready": int,
        "current-jobs-reserved": int,
        "current-jobs-delayed": int,
        "current-jobs-buried": int,
        "total-jobs": int,
        "current-using": int,
        "current-watching": int,
        "current-waiting": int,
        "cmd-delete": int,
        "cmd-pause-tube": int,
        "pause": int,
        "pause-time-left": int,
    },
)

StatsJob = TypedDict(
    "StatsJob",
    {
        "id": int,
        "tube": str,
        "state": Literal["ready", "reserved", "delayed", "buried"],
        "pri": int,
        "age": int,
        "delay": int,
        "ttr": int,
        "time-left": int,
        "file": int,
        "reserves": int,
        "timeouts": int,
        "releases": int,
        "buries": int,
        "kicks": int,
    },
)

Stats.__doc__ = "The reply to `stats`: server-wide counters and facts."
StatsTube.__doc__ = "The reply to `stats-tube`: one tube's counters."
StatsJob.__doc__ = "The reply to `stats-job`: one job's state and counters."

# Keys whose values are strings whatever they look like, per reply kind.
STRING_KEYS: dict[str, frozenset[str]] = {
    "stats": frozenset({"version", "id", "hostname", "os", "platform"}),
    "stats-tube": frozenset({"name"}),
    "stats-job": frozenset({"tube", "state"}),
    "job-status": frozenset(
        {"tube", "state", "created", "reserved", "finished", "expires", "key", "parents"}
    ),
    "list-schedules": frozenset({"name", "tube", "spec", "next", "last"}),
    "list-tube-limits": frozenset({"tube"}),
    "tube-info": frozenset({"name"}),
}
# Keys whose values are floats even when written without a decimal point.
FLOAT_KEYS = frozenset({"rusage-utime", "rusage-stime", "rate"})


def _unquote(text: str) -> str | None:
    """The string inside double quotes with \\ escapes undone, or None if not quoted."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    inner = text[1:-1]
    if "\\" not in inner:
        if '"' in inner:
            raise StatsFormatError(f"unescaped quote in {text!r}")
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= len(inner):
                raise StatsFormatError(f"dangling backslash in {text!r}")
            nxt = inner[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(nxt, nxt))
            i += 2
        elif ch == '"':
            raise StatsFormatError(f"unescaped quote in {text!r}")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def scalar(text: str, *, as_string: bool = False, as_float: bool = False) -> StatValue:
    """One YAML scalar as a Python value (see the module docstring for the rules)."""
    quoted = _unquote(text)
    if quoted is not None:
        return quoted
    if as_string:
        return text
    if _is_digits(text):
        return float(text) if as_float else int(text)
    whole, dot, frac = text.partition(".")
    if dot and _is_digits(whole) and _is_digits(frac):
        return float(text)
    if text == "true":
        return True
    if text == "false":
        return False
    return text


def _lines(payload: bytes) -> list[str]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StatsFormatError(f"not UTF-8: {e}") from None
    if not text.startswith("---\n"):
        raise StatsFormatError("does not start with '---\\n'")
    body = text[4:]
    if body and not body.endswith("\n"):
        raise StatsFormatError("last line has no newline")
    return body.split("\n")[:-1] if body else []


def parse_mapping(payload: bytes, kind: str) -> dict[str, StatValue]:
    """A flat YAML mapping (``---\\n`` then ``key: value\\n`` lines) as a dict.

    `kind` ("stats", "stats-tube", "stats-job", "job-status") selects the keys forced to str.
    """
    strings = STRING_KEYS.get(kind, frozenset())
    out: dict[str, StatValue] = {}
    for line in _lines(payload):
        _pair(line, strings, out)
    return out


def _pair(line: str, strings: frozenset[str], out: dict[str, StatValue]) -> None:
    """Add the `key: value` of `line` to `out`; StatsFormatError if it is not one."""
    key, sep, value = line.partition(": ")
    if not sep:
        if line.endswith(":") and ": " not in line:  # `key:` with an empty value
            key, value = line[:-1], ""
        else:
            raise StatsFormatError(f"not a 'key: value' line: {line!r}")
    if not key or key != key.strip() or key in out:
        raise StatsFormatError(f"bad or repeated key in {line!r}")
    out[key] = scalar(value, as_string=key in strings, as_float=key in FLOAT_KEYS)


def parse_records(payload: bytes, kind: str) -> list[dict[str, StatValue]]:
    """A YAML sequence of flat mappings (``---\n`` then ``- key: value\n`` starting each
    item and ``  key: value\n`` continuing it; ``--- []\n`` when empty) as dicts, as the
    flow-control listings write them. `kind` selects the keys forced to str."""
    if payload == b"--- []\n":
        return []
    strings = STRING_KEYS.get(kind, frozenset())
    out: list[dict[str, StatValue]] = []
    for line in _lines(payload):
        if line.startswith("- "):
            out.append({})
        elif not line.startswith("  ") or not out:
            raise StatsFormatError(f"not an item line of a sequence of mappings: {line!r}")
        _pair(line[2:], strings, out[-1])
    if not out:
        raise StatsFormatError("an empty sequence must be written '--- []'")
    return out


def parse_list(payload: bytes) -> list[str]:
    """A flat YAML sequence (``---\\n`` then ``- item\\n`` lines) as a list of str; items
    may be quoted or not."""
    out: list[str] = []
    for line in _lines(payload):
        if not line.startswith("- ") or len(line) < 3:
            raise StatsFormatError(f"not a '- item' line: {line!r}")
        item = line[2:]
        quoted = _unquote(item)
        out.append(item if quoted is None else quoted)
    return out
