"""The dashboard (dashboard.py, static/dashboard.js) in a real headless Chromium against a real
server process: every page is loaded, its figures are checked against what the server itself
answers on the protocol (stats-tube, stats, list-jobs, job-status), the buried view's buttons
are clicked (the confirm dialog accepted, or dismissed) and the server's change is seen, and
the overview's live table follows puts and deletes.

Every wait is bounded (WAIT_MS per wait). A page that raises a JavaScript error or logs a
console error (a script or style sheet refused by the Content-Security-Policy, say) fails its
test. Tests share one server and use tubes of their own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import browser
import pytest
import yaml
from test_http import conn, with_http
from test_wal_process import Conn, Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Response

_names = itertools.count(1)

# Reads the overview table as the page shows it: per tube, per column heading, the cell's
# text and its data-value (the raw figure behind the text).
READ_TABLE = """(table) => {
  const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  return [...table.tBodies[0].rows].map((tr) => Object.fromEntries(
    [...tr.cells].map((td, i) => [heads[i], [td.textContent, td.dataset.value]])));
}"""


def unique(prefix: str) -> str:
    return f"{prefix}.{next(_names)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    with with_http(tmp_path_factory.mktemp("dashboard")) as pair:
        yield pair


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    browser.require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(browser.CHROMIUM), args=browser.ARGS,
                              headless=True)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """One page in a fresh browser context, with the errors it reported."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.posts: list[str] = []
        self.accept = True
        self.expected: set[str] = set()  # URLs goto was told would answer an error
        page.set_default_timeout(browser.WAIT_MS)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("console", self._console)
        page.on("response", self._response)
        page.on("dialog", self._dialog)
        page.on("request", lambda r: self.posts.append(r.url) if r.method == "POST" else None)

    def _console(self, message: ConsoleMessage) -> None:
        # A failed load is logged without its URL: _response reports it with one.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.url not in self.expected:
            self.errors.append(f"{response.status} from {response.url}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        if self.accept:
            dialog.accept()
        else:
            dialog.dismiss()

    def goto(self, path: str, status: int = 200) -> Response:
        if status >= 400:
            self.expected.add(self.base + path)
        response = self.page.goto(self.base + path)
        assert response is not None
        assert response.status == status, (path, response.status)
        headers = response.headers
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in headers["content-security-policy"]
        return response

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def overview(self) -> dict[str, dict[str, list[str]]]:
        rows = self.page.eval_on_selector("#tubes", READ_TABLE)
        return {row["tube"][0]: row for row in rows}

    def wait_for_poll(self) -> None:
        """Until the live table has been drawn from /api/tubes at least once."""
        self.page.wait_for_function("() => document.getElementById('updated').textContent")

    def wait_for_text(self, selector: str, text: str) -> None:
        """Until the element `selector` shows exactly `text` (the live table redraws)."""
        self.page.wait_for_function(
            "([selector, text]) => document.querySelector(selector)?.textContent === text",
            arg=[selector, text])


@pytest.fixture
def tab(chromium: Browser, server: tuple[Server, str]) -> Iterator[Tab]:
    context = chromium.new_context(viewport=browser.VIEWPORT)
    try:
        t = Tab(context.new_page(), server[1])
        yield t
        assert t.errors == [], t.errors
    finally:
        context.close()


def protocol(server: tuple[Server, str]) -> Conn:
    return conn(server[0])


def list_jobs(c: Conn, tube: str, state: str, offset: int, limit: int) -> list[dict[str, Any]]:
    reply = c.cmd(f"list-jobs {tube} {state} {offset} {limit}".encode())
    assert reply.startswith(b"OK "), reply
    items = yaml.safe_load(reply.split(b"\r\n", 1)[1][:-2])
    assert isinstance(items, list)
    return items


def bury(c: Conn, tube: str, count: int) -> list[int]:
    """Reserve and bury `count` jobs of `tube` (watched alone on `c` for the moment)."""
    c.cmd(f"watch {tube}".encode())
    c.cmd(b"ignore default")
    ids = []
    for _ in range(count):
        job = int(c.cmd(b"reserve-with-timeout 0").split()[1])
        assert c.cmd(b"bury %d 0" % job) == b"BURIED\r\n"
        ids.append(job)
    c.cmd(b"watch default")
    c.cmd(f"ignore {tube}".encode())
    return ids


# --- overview --------------------------------------------------------------------------------


def test_overview_shows_the_servers_counts(tab: Tab, chromium: Browser,
                                           server: tuple[Server, str]) -> None:
    a, b = unique("counts"), unique("idle")
    with protocol(server) as c, protocol(server) as held, protocol(server) as blocked:
        c.cmd(f"use {a}".encode())
        for pri in range(6):
            c.put_id(b"job %d" % pri, pri=pri)
        c.put_id(b"later", delay=3600)
        bury(c, a, 2)
        held.cmd(f"watch {a}".encode())
        parent = int(held.cmd(b"reserve-with-timeout 0").split()[1])
        body = b"child"
        reply = c.cmd(b"put-after %d 0 0 60 %d\r\n%b" % (parent, len(body), body))
        assert reply.startswith(b"INSERTED"), reply
        blocked.cmd(f"watch {b}".encode())
        blocked.cmd(b"ignore default")
        blocked.send(b"reserve-with-timeout 60")  # waits: a reserver on b

        def expected(name: str) -> dict[str, str]:
            s = c.yaml(f"stats-tube {name}".encode())
            info = c.yaml(f"tube-info {name}".encode())
            return {**s, "waiting": info["current-jobs-waiting"],
                    "oldest": info["oldest-ready-age"]}

        # Wait until the blocked reserve is registered; both tubes' figures are then steady.
        for _ in range(200):
            if expected(b)["current-waiting"] == "1":
                break
            time.sleep(0.01)
        want = {a: expected(a), b: expected(b)}
        stats = c.stats()
        assert (want[a]["current-jobs-ready"], want[a]["current-jobs-buried"],
                want[a]["current-jobs-reserved"], want[a]["waiting"],
                want[b]["current-waiting"]) == ("3", "2", "1", "1", "1")

        # Once as the server renders it (no script), once as the live script redraws it.
        bare = chromium.new_context(java_script_enabled=False, viewport=browser.VIEWPORT)
        try:
            static = Tab(bare.new_page(), tab.base)
            static.goto("/")
            assert static.text("#updated") == ""  # the script did not run
            rendered = static.overview()
            static_stats = {k: static.text(f"[data-stat='{k}']")
                            for k in ("current-jobs-ready", "current-jobs-buried", "total-jobs")}
        finally:
            bare.close()
        tab.goto("/")
        tab.wait_for_poll()
        live = tab.overview()
        for shown in (rendered, live):
            for name in (a, b):
                row, s = shown[name], want[name]
                assert row["ready"][0] == s["current-jobs-ready"]
                assert row["reserved"][0] == s["current-jobs-reserved"]
                assert row["buried"][0] == s["current-jobs-buried"]
                # stats-tube counts jobs waiting on parents as delayed, as beanstalkd would.
                assert int(row["delayed"][0]) + int(row["waiting"][0]) == int(
                    s["current-jobs-delayed"])
                assert row["waiting"][0] == s["waiting"]
                assert row["reservers"][0] == s["current-waiting"]
                assert row["paused"][0] == ""
                assert row["puts/s"][0] in ("–", "0.0")
            assert shown[b]["oldest ready"] == ["–", ""]
            age = int(shown[a]["oldest ready"][1])
            assert 0 <= age <= int(want[a]["oldest"]) + 60
            assert shown[a]["oldest ready"][0] == f"{age} s"
        for key, value in static_stats.items():
            assert value == stats[key], key
        assert tab.text("[data-stat='current-jobs-buried']") == stats["current-jobs-buried"]
        # The tube's link leads to its page.
        tab.page.click(f"#tubes tr[data-tube='{a}'] a")
        tab.page.wait_for_url(f"**/tubes/{a}")
        assert tab.text("h1") == f"Tube {a}"


def test_overview_updates_live(tab: Tab, server: tuple[Server, str]) -> None:
    name = unique("live")
    with protocol(server) as c:
        tab.goto("/")
        tab.wait_for_poll()
        assert name not in tab.overview()
        c.cmd(f"use {name}".encode())
        c.put_id(b"first")
        row = f"#tubes tr[data-tube='{name}']"
        tab.page.wait_for_selector(row)
        assert tab.overview()[name]["ready"][0] == "1"
        for i in range(3):
            c.put_id(b"more %d" % i)
        # The poll that shows 4 follows one that showed fewer: its puts/s is above zero.
        ready = f"{row} td:nth-child(2)"
        tab.wait_for_text(ready, "4")
        shown = tab.overview()[name]
        assert shown["ready"][0] == "4"
        assert float(shown["puts/s"][1]) > 0, shown
        c.cmd(f"watch {name}".encode())
        c.cmd(b"ignore default")
        for _ in range(2):
            job = int(c.cmd(b"reserve-with-timeout 0").split()[1])
            assert c.cmd(b"delete %d" % job) == b"DELETED\r\n"
        tab.wait_for_text(ready, "2")
        shown = tab.overview()[name]
        assert float(shown["deletes/s"][1]) > 0, shown
        total = c.stats()["total-jobs"]
        tab.wait_for_text("[data-stat='total-jobs']", total)


# --- tube page: states, paging, the buried view ---------------------------------------------


def listed_ids(tab: Tab) -> list[int]:
    return [int(x) for x in tab.page.eval_on_selector_all(
        "#jobs tbody tr", "(rows) => rows.map((tr) => tr.dataset.job)")]


def test_tube_page_lists_jobs_by_state_with_paging(tab: Tab, server: tuple[Server, str]) -> None:
    name = unique("paging")
    with protocol(server) as c:
        c.cmd(f"use {name}".encode())
        for i in range(7):
            c.put_id(b"x" * (i + 1), pri=100 - i)  # reserve order is the reverse of ids
        delayed = [c.put_id(b"later", delay=3600 + i) for i in range(2)]
        tab.goto(f"/tubes/{name}?limit=3")
        stats = c.yaml(f"stats-tube {name}".encode())
        for state in ("ready", "delayed", "buried", "reserved"):
            assert tab.text(f".tabs a[data-state='{state}'] .count") == stats[
                f"current-jobs-{state}"]
        assert tab.text(".tabs a.active") == "ready 7"

        def page_matches(offset: int, showing: str) -> None:
            want = list_jobs(c, name, "ready", offset, 3)
            assert listed_ids(tab) == [j["id"] for j in want]
            cells = tab.page.eval_on_selector_all(
                "#jobs tbody tr", "(rows) => rows.map((tr) => [...tr.cells].map("
                "(td) => td.textContent))")
            assert [(int(r[1]), int(r[5]), r[6]) for r in cells] == [
                (j["pri"], j["body-size"], "x" * j["body-size"]) for j in want]
            assert tab.text("#showing") == showing

        page_matches(0, "1–3 of 7")
        assert tab.page.locator(".pager span.off").all_inner_texts() == ["« first",
                                                                         "‹ previous"]
        tab.page.click(".pager a[rel=next]")
        tab.page.wait_for_url("**offset=3**")
        page_matches(3, "4–6 of 7")
        tab.page.click(".pager a[rel=last]")
        tab.page.wait_for_url("**offset=6**")
        page_matches(6, "7–7 of 7")
        assert tab.page.locator(".pager span.off").all_inner_texts() == ["next ›", "last »"]
        tab.page.click(".pager a[rel=prev]")
        tab.page.wait_for_url("**offset=3**")
        page_matches(3, "4–6 of 7")
        tab.page.click(".pager a[rel=first]")
        tab.page.wait_for_url(lambda url: "offset" not in url)
        page_matches(0, "1–3 of 7")
        tab.page.click(".pager a.size:text-is('20')")
        tab.page.wait_for_url("**limit=20**")
        assert listed_ids(tab) == [j["id"] for j in list_jobs(c, name, "ready", 0, 20)]
        assert len(listed_ids(tab)) == 7
        tab.page.click(".tabs a[data-state='delayed']")
        tab.page.wait_for_url("**state=delayed**")
        assert tab.text(".tabs a.active") == "delayed 2"
        assert listed_ids(tab) == delayed == [j["id"] for j in list_jobs(c, name, "delayed",
                                                                          0, 10)]
        assert tab.page.locator("#jobs button").count() == 0  # actions only on buried jobs
        tab.page.click(".tabs a[data-state='buried']")
        tab.page.wait_for_url("**state=buried**")
        assert tab.text("#jobs") == "No buried jobs."
        assert tab.page.locator("#kick-all, #delete-all").count() == 0
        # Bad paging is a page that says so, not a traceback.
        tab.goto(f"/tubes/{name}?state=lost", status=400)
        assert "state must be one of" in tab.text("p.error")
        tab.goto(f"/tubes/{name}?offset=-1", status=400)
        tab.goto("/tubes/no.such.tube", status=404)
        assert tab.text("h1") == "Not found"


def test_buried_view_kicks_and_deletes(tab: Tab, server: tuple[Server, str]) -> None:
    # A name with a slash and parentheses: one %2F-encoded path segment in every URL.
    name = f"dead/letters({next(_names)})"
    page = tab.page

    def flash(text: str) -> None:
        from playwright.sync_api import expect

        expect(page.locator("#flash")).to_have_text(text, timeout=browser.WAIT_MS)

    def click(selector: str) -> None:
        with page.expect_navigation():  # the page reloads after the action
            page.click(selector)

    with protocol(server) as c:
        c.cmd(f"use {name}".encode())
        ids = [c.put_id(b"failed %d" % i) for i in range(4)]
        later = c.put_id(b"not yet", delay=3600)
        assert bury(c, name, 4) == ids
        tab.goto(f"/tubes/{quote(name, safe='')}?state=buried")
        assert tab.text("h1") == f"Tube {name}"
        assert listed_ids(tab) == ids
        assert tab.text("#kick-all") == "Kick all 4"

        # Dismissed: nothing is sent, nothing changes.
        tab.accept = False
        page.click(f"#jobs tr[data-job='{ids[0]}'] button.delete")
        page.evaluate("0")  # the click's handler has run by now
        assert tab.dialogs == [f"Delete job {ids[0]}? This cannot be undone."]
        assert tab.posts == []
        assert c.yaml(b"stats-job %d" % ids[0])["state"] == "buried"
        tab.accept = True

        click(f"#jobs tr[data-job='{ids[0]}'] button.kick")
        flash(f"Kick job {ids[0]}: KICKED")
        assert c.yaml(b"stats-job %d" % ids[0])["state"] == "ready"
        assert listed_ids(tab) == ids[1:]

        click(f"#jobs tr[data-job='{ids[1]}'] button.delete")
        flash(f"Delete job {ids[1]}: DELETED")
        assert c.cmd(b"peek %d" % ids[1]) == b"NOT_FOUND\r\n"
        assert listed_ids(tab) == ids[2:]
        assert tab.text(".tabs a[data-state='buried'] .count") == "2"

        click("#kick-all")
        assert tab.dialogs[-1] == f"Kick all 2 buried jobs of {name} back to ready?"
        flash("Kick all buried jobs: KICKED 2")
        s = c.yaml(f"stats-tube {name}".encode())
        assert (s["current-jobs-buried"], s["current-jobs-ready"], s["current-jobs-delayed"]
                ) == ("0", "3", "1")
        assert c.yaml(b"stats-job %d" % later)["state"] == "delayed"
        assert tab.text("#jobs") == "No buried jobs."

        again = bury(c, name, 3)
        page.reload()
        assert listed_ids(tab) == again
        click("#delete-all")
        assert tab.dialogs[-1] == (f"Delete all 3 buried jobs of {name}? This cannot be "
                                   "undone.")
        flash("Delete all buried jobs: CLEARED 3")
        s = c.yaml(f"stats-tube {name}".encode())
        assert (s["current-jobs-buried"], s["current-jobs-ready"], s["current-jobs-delayed"]
                ) == ("0", "0", "1")
        for job in again:
            assert c.cmd(b"peek %d" % job) == b"NOT_FOUND\r\n"
        assert len(tab.posts) == 4


# --- job, schedules, connections -------------------------------------------------------------


def status_of(tab: Tab) -> dict[str, str]:
    return dict(tab.page.eval_on_selector_all(
        "#status tr", "(rows) => rows.map((tr) => [tr.cells[0].textContent, "
        "tr.cells[1].textContent])"))


def test_job_page_shows_status_body_result_reason_checkpoint(
        tab: Tab, server: tuple[Server, str]) -> None:
    name = unique("jobs")
    text = "café ☕ <script>alert(1)</script> & done".encode()
    binary = bytes([0xFF, 0x00, 0x01, 0x02]) + bytes(range(16, 40))
    with protocol(server) as c:
        c.cmd(f"use {name}".encode())
        c.cmd(f"watch {name}".encode())
        c.cmd(b"ignore default")
        text_id = c.put_id(text, pri=7)
        tab.goto(f"/jobs/{text_id}")
        status = status_of(tab)
        stats = c.yaml(b"stats-job %d" % text_id)
        for key in ("id", "tube", "state", "pri", "ttr", "reserves", "buries"):
            assert status[key] == stats[key], key
        assert tab.text("h1") == f"Job {text_id} ready"
        assert tab.text("#body h2 small") == f"text, {len(text)} bytes"
        assert tab.text("#body pre.text") == text.decode()
        assert tab.page.locator("script").count() == 1  # the dashboard's own, only
        assert tab.page.locator("#result, #reason").count() == 0
        assert tab.text("#checkpoint") == "none"

        binary_id = c.put_id(binary)
        got = {int(c.cmd(b"reserve-with-timeout 0").split()[1]) for _ in range(2)}
        assert got == {text_id, binary_id}
        tab.goto(f"/jobs/{binary_id}")
        assert tab.text("#body h2 small") == f"hex, {len(binary)} bytes"
        lines = tab.text("#body pre.hex").splitlines()
        assert lines[0] == "ff 00 01 02 " + " ".join(f"{b:02x}" for b in range(16, 28))
        assert "".join(lines).replace(" ", "") == binary.hex()

        checkpoint = b"step 3 of 10"
        assert c.cmd(b"checkpoint %d %d\r\n%b" % (binary_id, len(checkpoint), checkpoint)
                     ) == b"CHECKPOINTED\r\n"
        reason = b"smtp: connection refused"
        assert c.cmd(b"fail %d 0 %d\r\n%b" % (binary_id, len(reason), reason)) == b"BURIED\r\n"
        tab.goto(f"/jobs/{binary_id}")
        assert tab.text("#checkpoint") == f"{len(checkpoint)} bytes"
        assert status_of(tab)["checkpoint-bytes"] == str(len(checkpoint))
        assert status_of(tab)["state"] == "buried"
        assert tab.text("#reason pre.text") == reason.decode()

        result = b"\xff\xfe binary result"
        assert c.cmd(b"finish %d %d\r\n%b" % (text_id, len(result), result)
                     ) == b"FINISHED\r\n"
        tab.goto(f"/jobs/{text_id}")
        assert status_of(tab)["state"] == "finished"
        assert tab.page.locator("#body").count() == 0
        assert tab.text("#result h2 small") == f"hex, {len(result)} bytes"
        assert tab.text("#result pre.hex").replace(" ", "") == result.hex()
        # The tube link goes back to the tube.
        tab.page.click("#status td[data-key='tube'] a")
        tab.page.wait_for_url(f"**/tubes/{name}")

        tab.goto("/jobs/99999999", status=404)
        assert tab.text("h1") == "Not found"
        assert "no job 99999999" in tab.text("p.error")


def test_schedules_and_connections_pages(tab: Tab, server: tuple[Server, str]) -> None:
    name = unique("nightly")
    tube = unique("reports")
    data = b"run the report"
    with protocol(server) as c, protocol(server) as worker:
        reply = c.cmd(b"schedule %b %b 5 120 %d every 3600\r\n%b" % (
            name.encode(), tube.encode(), len(data), data))
        assert reply.startswith(b"SCHEDULED"), reply
        tab.goto("/schedules")
        row = tab.page.eval_on_selector(
            f"#schedules tr[data-schedule='{name}']",
            "(tr) => [...tr.cells].map((td) => td.textContent)")
        assert row[:6] == [name, tube, "every 3600", "5", "120", str(len(data))]
        assert row[6].endswith("Z")  # next firing, UTC

        c.cmd(f"use {tube}".encode())
        worker.cmd(f"watch {tube}".encode())
        worker.cmd(b"ignore default")
        job = c.put_id(b"work")
        assert worker.cmd(b"reserve-with-timeout 0").split()[1] == str(job).encode()
        tab.goto("/connections")
        stats = c.stats()
        rows = tab.page.eval_on_selector_all(
            "#connections tbody tr", "(rows) => rows.map((tr) => [...tr.cells].map("
            "(td) => td.textContent))")
        assert len(rows) == int(stats["current-connections"])
        heads = tab.page.locator("#connections th").all_inner_texts()
        table = [dict(zip(heads, r, strict=True)) for r in rows]
        mine = [r for r in table if r["watching"] == tube]
        assert len(mine) == 1 and mine[0]["reserved"] == "1" and mine[0]["worker"] == "yes"
        assert [r["using"] for r in table].count(tube) == 1
        assert c.cmd(b"unschedule " + name.encode()) == b"UNSCHEDULED\r\n"
        tab.goto("/schedules")
        assert tab.page.locator(f"#schedules tr[data-schedule='{name}']").count() == 0


def test_static_files_and_header(tab: Tab, server: tuple[Server, str]) -> None:
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"),
                       ("favicon.svg", "image/svg+xml")):
        response = tab.page.goto(f"{tab.base}/static/{name}")
        assert response is not None and response.status == 200
        assert response.headers["content-type"].startswith(kind)
        assert len(response.body()) > 200
    tab.goto("/schedules")
    with protocol(server) as c:
        stats = c.stats()
    assert tab.text("footer").startswith(f"{stats['version']} · {stats['build']} · pid "
                                         f"{stats['pid']} on {stats['hostname']}")
    assert "no write-ahead log" in tab.text("footer")
    assert "No authentication" in tab.text("footer .warning")
    assert [a.strip() for a in tab.page.locator("header nav a").all_inner_texts()] == [
        "Tubes", "Schedules", "Connections"]



# --- with an auth file ---------------------------------------------------------------------


def test_login_then_pages_by_the_tokens_rights(chromium: Browser,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    from test_auth import TOKENS, write_auth
    from test_auth import server as auth_server

    folder = tmp_path_factory.mktemp("dashboard-auth")
    with auth_server(folder, auth=write_auth(folder / "auth.toml"), http=True) as s:
        assert s.http is not None
        with s.conn("producer") as p:
            assert p.cmd(b"use emails") == b"USING emails\r\n"
            p.put_id(b"hello")
        context = chromium.new_context(viewport=browser.VIEWPORT)
        try:
            tab = Tab(context.new_page(), s.http)
            page = tab.page
            # No token yet: any page leads to the login form, which remembers where to go.
            tab.goto("/tubes/emails")
            assert page.url == s.http + "/login?next=%2Ftubes%2Femails"
            assert tab.text("h1") == "Log in"
            # A wrong token: the form again, with a message (answered late, as `auth`).
            tab.expected.add(s.http + "/login")
            page.fill("input[name=token]", "tbs_wrong")
            with page.expect_navigation():
                page.click("form.login button")
            assert tab.text("p.error") == "Unknown token."
            # The viewer's token: on to the page asked for, its name in the header.
            page.fill("input[name=token]", TOKENS["viewer"][0])
            with page.expect_navigation():
                page.click("form.login button")
            assert page.url == s.http + "/tubes/emails"
            assert tab.text("h1") == "Tube emails"
            assert tab.text("header form.logout code") == "viewer"
            assert page.locator("footer .warning").count() == 0
            # The overview's live table reads the JSON API with the same cookie.
            tab.goto("/")
            tab.wait_for_poll()
            assert "emails" in tab.overview()
            # The script cannot read the token: the cookie is HttpOnly.
            assert page.evaluate("document.cookie") == ""
            # Logging out forgets it.
            with page.expect_navigation():
                page.click("header form.logout button")
            assert page.url == s.http + "/login"
            tab.goto("/")
            assert page.url == s.http + "/login?next=%2F"
            assert tab.errors == [], tab.errors
        finally:
            context.close()
