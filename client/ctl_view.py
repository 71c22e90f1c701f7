"""How tubectl shows what servers said: aligned tables for people, JSON for scripts.

JSON uses the protocol's own keys (protocol.md: `pri`, `time-left`, `current-jobs-ready`,
...), as the server's HTTP JSON API does, plus `server` in every object: `record_json` turns
a tubeclient record into them (attribute `priority` is `pri`, `body_size` is `body-size`;
times are ISO 8601 UTC strings ending in Z, None is null). Job bodies, results and reasons
are `{"encoding": "text"|"hex", "data": ..., "size": ...}`: text when they decode as UTF-8,
else hex; whole in JSON, cut at PREVIEW_MAX bytes for people, with control characters
escaped so that a body cannot drive the terminal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from attrs import AttrsInstance

PREVIEW_MAX: Final = 4096  # bytes of a body shown to people
CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"  # cursor home, erase the screen: top's redraw
_KEEP: Final = frozenset("\n\t")


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return time_text(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _key(name: str) -> str:
    return "pri" if name == "priority" else name.replace("_", "-")


def record_keys(cls: type[AttrsInstance]) -> tuple[str, ...]:
    """The JSON keys of an attrs record class, in order."""
    return tuple(_key(field.name) for field in attrs.fields(cls))


def record_json(record: AttrsInstance) -> dict[str, Any]:
    """An attrs record (TubeInfo, JobSummary, JobStatus, Schedule) as the protocol's keys."""
    return {_key(field.name): _json_value(getattr(record, field.name))
            for field in attrs.fields(type(record))}


def time_text(value: dt.datetime | None, *, micro: bool = True) -> str | None:
    """A UTC time as the server writes it (2026-12-08T02:30:00.000000Z); None stays."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def body_json(data: bytes) -> dict[str, Any]:
    """Bytes for scripts: whole, as text when they decode as UTF-8, else as hex."""
    try:
        return {"encoding": "text", "data": data.decode("utf-8"), "size": len(data)}
    except UnicodeDecodeError:
        return {"encoding": "hex", "data": data.hex(), "size": len(data)}


def _escape(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in _KEEP else ascii(ch)[1:-1] for ch in text)


def body_text(data: bytes) -> str:
    """Bytes for people: text (control characters escaped) or hex, cut at PREVIEW_MAX."""
    cut = data[:PREVIEW_MAX]
    more = len(data) - len(cut)
    try:
        text = _escape(cut.decode("utf-8"))
    except UnicodeDecodeError as e:
        if more and e.start >= PREVIEW_MAX - 3:  # a character cut in two at the bound
            text = _escape(cut[: e.start].decode("utf-8"))
            more = len(data) - e.start
        else:
            text = "(not UTF-8; hex) " + cut.hex()
    if more:
        text += f"\n... {more} more bytes (--json shows all)"
    return text


def duration(seconds: int | None) -> str:
    """Seconds for people: 45s, 3m05s, 2h07m, 4d03h; "-" for none."""
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def cell(value: object) -> str:
    """A table cell: None is "-", a bool is yes/no, a time is ISO 8601 to the second, a
    list is comma-separated ("-" when empty)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return time_text(value, micro=False) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[object]],
          left: Sequence[str] = ("server",)) -> str:
    """Columns aligned: those named in `left` to the left, the others (figures) to the
    right; the header in capitals."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    right = [h not in left for h in header]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w)
                 for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line([h.upper() for h in header]), *(line(r) for r in cells)])


def pairs(items: Sequence[tuple[str, object]]) -> str:
    """`key: value` lines, values as table cells."""
    return "\n".join(f"{key}: {cell(value)}" for key, value in items)


def dumps(document: object, *, compact: bool = False) -> str:
    """The JSON text of a document: indented, or one line (top's stream)."""
    if compact:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(document, indent=1, ensure_ascii=False)
