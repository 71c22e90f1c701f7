"""`tubebench` and `python -m bench` (from a checkout) start here."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
