"""Log lines of the worker harness: one line per event, logfmt text or JSON, on stderr.

Theory of operation. Every line is a flat mapping of fields: `level`, `event` (``job`` for a
job's outcome, else what happened) and event-specific fields. Text format writes
``key=value`` pairs (values with spaces or quotes are JSON-quoted); JSON format writes one
object per line. Lines are written whole: through the stderr `output.Sink` when the
supervisor has one (so they keep their place among the children's stderr and never block the
event loop), else to `stream` and flushed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Literal, TextIO

from .output import Sink

LogFormat = Literal["text", "json"]
Value = str | int | float | bool | None


def _text_value(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = "" if value is None else str(value)
    if text == "" or any(ch in text for ch in ' "=\\\n\t'):
        return json.dumps(text)
    return text


class Logger:
    """Writes log lines to `stream` (stderr by default) in `fmt`."""

    def __init__(self, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream
        self.sink: Sink | None = None

    def emit(self, level: str, event: str, **fields: Value) -> None:
        record: dict[str, Value] = {"ts": round(time.time(), 3), "level": level,
                                    "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        if self.fmt == "json":
            line = json.dumps(record, separators=(",", ":"))
        else:
            line = " ".join(f"{k}={_text_value(v)}" for k, v in record.items())
        if self.sink is not None:
            self.sink.write((line + "\n").encode(), must=True)
            return
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def info(self, event: str, **fields: Value) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields: Value) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields: Value) -> None:
        self.emit("error", event, **fields)
