"""A real headless Chromium for the dashboard's tests and screenshots: Debian's `chromium`,
driven by Playwright, never a browser Playwright downloads.

Playwright's `launch` gives each browser a fresh temporary profile (user-data-dir) of its own
and removes it on close. Without /usr/bin/chromium (or Playwright) the browser tests skip with
the reason, except under CI=true, where they fail: CI installs the browser.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches beyond loopback (updates, sync, QUIC probes).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT: ViewportSize = {"width": 1200, "height": 800}
WAIT_MS = 10_000  # the longest a page may take to show what is known to come


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def require() -> None:
    """Skip (or, under CI=true, fail) when the browser cannot run here."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)
