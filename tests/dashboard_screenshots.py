"""Screenshots of every dashboard page from a real run, for the README.

Starts a tubeserver with --http on free loopback ports, gives it some work (tubes with jobs in
every state, failures with reasons, a checkpoint, schedules, connected workers, a producer and
a consumer running so the rates move), and saves a 1200x800 PNG of each page with Debian's
Chromium. Run it from the repository:

    .venv/bin/python tests/dashboard_screenshots.py [--out tests/screenshots]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import browser
from test_http import conn, with_http
from test_wal_process import Conn, Server

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

OUT = Path(__file__).resolve().parent / "screenshots"
SHOTS = [
    ("overview", "/"),
    ("tube", "/tubes/emails"),
    ("buried", "/tubes/emails?state=buried"),
    ("job", "/jobs/{failed}"),
    ("job-hex", "/jobs/{binary}"),
    ("schedules", "/schedules"),
    ("connections", "/connections"),
]


def fill(server: Server, keep: list[Conn]) -> dict[str, int]:
    """Jobs in every state; returns the ids worth a page of their own."""
    c = conn(server)
    keep.append(c)
    c.cmd(b"use emails")
    for i in range(14):
        body = json.dumps({"to": f"user{i}@example.com", "template": "welcome",
                           "locale": "de-DE" if i % 3 else "fr-FR"}).encode()
        c.put_id(body, pri=100 + i % 4)
    for i in range(3):
        c.put_id(b'{"to": "later@example.com", "template": "reminder"}', delay=600 + 300 * i)
    c.cmd(b"watch emails")
    c.cmd(b"ignore default")
    failed: list[int] = []
    for reason in (b"smtp: 421 too many connections", b"smtp: 550 mailbox unavailable",
                   b"template 'welcome' missing locale fr-FR", b"smtp: connection timed out"):
        job = int(c.cmd(b"reserve-with-timeout 0").split()[1])
        if not failed:
            step = b'{"sent": 1, "of": 3}'
            c.cmd(b"checkpoint %d %d\r\n%b" % (job, len(step), step))
        c.cmd(b"fail %d 0 %d\r\n%b" % (job, len(reason), reason))
        failed.append(job)
    worker = conn(server)
    keep.append(worker)
    worker.cmd(b"watch emails")
    for _ in range(2):
        worker.cmd(b"reserve-with-timeout 0")

    r = conn(server)
    keep.append(r)
    r.cmd(b"use reports")
    for day in range(5):
        r.put_id(b"monthly report for 2024-%02d" % (day + 1), pri=10)
    first = r.put_id(b"monthly report for 2024-06", pri=10)
    summary = b"half-year summary"  # waits for its parent (put-after)
    r.cmd(b"put-after %d 10 0 600 %d\r\n%b" % (first, len(summary), summary))
    binary = r.put_id(bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) + bytes(range(56)))
    r.cmd(b"pause-tube reports 900")
    spec = b"30 2 * * *"
    data = b"nightly export"
    r.cmd(b"schedule nightly-export reports 50 600 %d %b\r\n%b" % (len(data), spec, data))
    data = b"ping"
    r.cmd(b"schedule heartbeat monitoring 0 30 %d every 60\r\n%b" % (len(data), data))

    idle = conn(server)
    keep.append(idle)
    idle.cmd(b"watch videos")
    idle.cmd(b"ignore default")
    idle.send(b"reserve-with-timeout 3600")  # a worker waiting for work
    return {"failed": failed[0], "binary": binary}


@contextlib.contextmanager
def traffic(server: Server) -> Iterator[None]:
    """A producer and a consumer on `thumbnails`, so the overview's rates are not zero."""
    stop = threading.Event()

    def run() -> None:
        with conn(server) as p, conn(server) as w:
            p.cmd(b"use thumbnails")
            w.cmd(b"watch thumbnails")
            w.cmd(b"ignore default")
            n = 0
            while not stop.is_set() and n < 20_000:
                for _ in range(8):
                    p.put_id(b"resize photo-%d.jpg" % n)
                    n += 1
                for _ in range(6):
                    job = w.cmd(b"reserve-with-timeout 0").split()
                    if job[0] == b"RESERVED":
                        w.cmd(b"delete " + job[1])
                time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args()
    reason = browser.missing()
    if reason is not None:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    keep: list[Conn] = []
    with tempfile.TemporaryDirectory() as tmp, with_http(Path(tmp), "-b", tmp) as (
            server, base):
        ids = fill(server, keep)
        with traffic(server), sync_playwright() as p:
            shoot(p, base, ids, args.out)
        for c in keep:
            c.close()
    return 0


def shoot(p: Playwright, base: str, ids: dict[str, int], out: Path) -> None:
    b = p.chromium.launch(executable_path=str(browser.CHROMIUM), args=browser.ARGS,
                          headless=True)
    try:
        page = b.new_context(viewport=browser.VIEWPORT).new_page()
        page.set_default_timeout(browser.WAIT_MS)
        for name, path in SHOTS:
            page.goto(base + path.format(**ids))
            if name == "overview":  # rates need two polls
                page.wait_for_function("() => document.querySelector("
                                       "\"tr[data-tube='thumbnails'] td.rate\")"
                                       "?.dataset.value")
            target = out / f"{name}.png"
            page.screenshot(path=str(target))
            print(f"{target} ({target.stat().st_size} bytes) <- {path.format(**ids)}")
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
