"""The dashboard: server-rendered HTML pages over web.py's JSON API, added to its App.

Each page asks the App's own read handlers for its figures, so a page shows exactly what
/api/... answers at that moment, and renders them with markup.py (escaped by construction).
static/dashboard.js does the little that needs a browser: the overview polls /api/tubes and
/api/stats every 2 s, redraws the table and computes puts/s and deletes/s from two polls'
counters; the buried view's buttons confirm, then POST the JSON API's actions. The columns
of the overview are declared once, here, in the table head the script reads them from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from .limits import LIST_MAX, LIST_STATES
from .markup import Html, el, join, raw
from .web import (
    JOB,
    OPEN,
    SERVER,
    TUBE,
    App,
    HttpError,
    Response,
    clear_cookie,
    current_rights,
    login_cookie,
    request_secure,
)

PAGE_SIZES = (20, 50, 100, 500)
DEFAULT_LIMIT = 50
BODY_CELL = 60  # characters of a body shown in a listing; the job page shows the preview
HEX_ROW = 16  # bytes per line of a hex dump
ASSETS = {"dashboard.css": "text/css; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
# The pages load nothing but their own script and style sheet.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
     b"img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
]
# The overview's columns: (tube-info key or rate source, heading, format, tooltip).
# Formats: name, count, age, rate (per second, from two polls of a counter), pause.
COLUMNS = [
    ("name", "tube", "name", ""),
    ("current-jobs-ready", "ready", "count", ""),
    ("current-jobs-reserved", "reserved", "count", ""),
    ("current-jobs-delayed", "delayed", "count", ""),
    ("current-jobs-buried", "buried", "count", "failed jobs kept for a look (dead letters)"),
    ("current-jobs-waiting", "waiting", "count", "jobs waiting for their parents (put-after)"),
    ("oldest-ready-age", "oldest ready", "age", "how long the oldest ready job has waited"),
    ("total-jobs", "puts/s", "rate", "jobs put per second between the last two polls"),
    ("total-deletes", "deletes/s", "rate", "jobs deleted per second between the last two polls"),
    ("current-waiting", "reservers", "count", "connections blocked in reserve on this tube"),
    ("pause-time-left", "paused", "pause", ""),
]
STATUS_HINTS = {"checkpoint-bytes": "size of the job's last checkpoint; -1: none"}

Handler = Callable[..., Awaitable[Response]]


class Dashboard:
    """The pages, registered on `app` as GET routes next to its JSON API."""

    def __init__(self, app: App) -> None:
        self.app = app
        folder = resources.files("tubeserver") / "static"
        self.assets = {name: (kind, (folder / name).read_bytes())
                       for name, kind in ASSETS.items()}
        routes: list[tuple[str, Handler, str]] = [
            (r"/", self.overview, SERVER),
            (r"/tubes/([^/]+)", self.tube, TUBE),
            (r"/jobs/(\d+)", self.job, JOB),
            (r"/schedules", self.schedules, SERVER),
            (r"/connections", self.connections, SERVER),
            (r"/static/([a-z]+\.[a-z]+)", self.asset, OPEN),
            (r"/login", self.login_page, OPEN),
        ]
        for pattern, handler, guard in routes:
            app.add_route("GET", pattern, handler, guard)
        app.add_route("POST", r"/login", self.login, OPEN)
        app.add_route("POST", r"/logout", self.logout, OPEN)
        app.login_path = "/login"

    async def asset(self, query: dict[str, str], name: str) -> Response:
        if name not in self.assets:
            raise HttpError(404, f"no such file: {name}")
        kind, body = self.assets[name]
        return Response(200, kind, body, SECURITY_HEADERS)

    # --- pages -----------------------------------------------------------------------------

    async def overview(self, query: dict[str, str]) -> Response:
        tubes = await self.app.tubes({})
        assert isinstance(tubes, list)
        head = el("tr", [el("th", heading, data_key=key, data_format=kind, title=tip or None)
                         for key, heading, kind, tip in COLUMNS])
        rows = [el("tr", [el("td", *_cell(t, key, kind), class_=kind,
                             data_value="" if kind == "rate" else _value(t.get(key)))
                          for key, _, kind, _ in COLUMNS], data_tube=t["name"])
                for t in tubes]
        body = join([
            el("h1", "Tubes"),
            el("table", el("thead", head), el("tbody", rows), id="tubes", class_="grid",
               data_live="2000"),
            el("p", "Updated every 2 s; rates need two polls. ", el("span", id="updated"),
               class_="note"),
        ])
        return await self._page("Tubes", body)

    async def tube(self, query: dict[str, str], name: str) -> Response:
        try:
            info = await self.app.tube({}, name)
            state = query.get("state", "ready")
            limit = query.get("limit", str(DEFAULT_LIMIT))
            listing = await self.app.jobs({**query, "state": state, "limit": limit}, name)
        except HttpError as e:
            return await self._error(e)
        assert isinstance(info, dict) and isinstance(listing, dict)
        counts = {s: info[f"current-jobs-{s}"] for s in LIST_STATES}
        tabs = el("nav", [
            el("a", f"{s} ", el("span", counts[s], class_="count"), href=_tube_url(name, s),
               class_="tab active" if s == state else "tab", data_state=s)
            for s in LIST_STATES], class_="tabs")
        body = join([
            el("h1", "Tube ", el("code", name)),
            _tube_figures(info),
            tabs,
            _actions_all(name, counts["buried"]) if state == "buried" else "",
            _job_table(listing, name),
            _pager(name, listing),
        ])
        return await self._page(f"Tube {name}", body)

    async def job(self, query: dict[str, str], job_id: str) -> Response:
        try:
            item = await self.app.job({}, job_id)
        except HttpError as e:
            return await self._error(e)
        assert isinstance(item, dict)
        previews = [(title, item[key]) for key, title in
                    (("body", "Body"), ("result", "Result"), ("reason", "Reason"))
                    if item[key] is not None]
        checkpoint = item["checkpoint-bytes"]
        body = join([
            el("h1", f"Job {item['id']} ", el("span", item["state"],
                                              class_=f"state {item['state']}")),
            el("div", _status_table(item),
               el("div", el("p", "Checkpoint: ", el("span", "none" if checkpoint < 0 else
                                                    f"{checkpoint} bytes", id="checkpoint")),
                  [_preview(title, p) for title, p in previews]),
               class_="job"),
        ])
        return await self._page(f"Job {item['id']}", body)

    async def schedules(self, query: dict[str, str]) -> Response:
        items = await self.app.schedules({})
        assert isinstance(items, list)
        keys = ("name", "tube", "spec", "pri", "ttr", "body-bytes", "next", "last",
                "last-job", "jobs", "skipped")
        rows = [el("tr", [el("td", _link_value(k, s[k])) for k in keys], data_schedule=s["name"])
                for s in items]
        body = join([el("h1", "Schedules"), _table(keys, rows, "schedules", "No schedules.")])
        return await self._page("Schedules", body)

    async def connections(self, query: dict[str, str]) -> Response:
        items = await self.app.connections({})
        assert isinstance(items, list)
        keys = ("id", "peer", "using", "watching", "reserved", "waiting", "producer", "worker",
                "idle")
        rows = [el("tr", [el("td", _conn_value(k, c[k])) for k in keys], data_conn=c["id"])
                for c in items]
        body = join([el("h1", "Connections"),
                     _table(keys, rows, "connections", "No connections.")])
        return await self._page("Connections", body)

    # --- login (only with an auth file) --------------------------------------------------

    async def login_page(self, query: dict[str, str], error: str = "",
                         status: int = 200) -> Response:
        if self.app.server.tokens is None:
            raise HttpError(404, "no login here: the server has no --auth-file")
        form = el("form",
                  el("label", "Token ", el("input", type="password", name="token",
                                           autocomplete="current-password", required=True,
                                           autofocus=True)),
                  el("input", type="hidden", name="next", value=_next_page(query)),
                  el("button", "Log in", type="submit"),
                  method="post", action="/login", class_="login")
        body = join([el("h1", "Log in"),
                     el("p", error, class_="error") if error else "",
                     el("p", "A token from the server's auth file with inspect rights; the "
                        "dashboard keeps it in a cookie until you log out.", class_="note"),
                     form])
        return self._document("Log in", el("main", body), status)

    async def login(self, query: dict[str, str]) -> Response:
        if self.app.server.tokens is None:
            raise HttpError(404, "no login here: the server has no --auth-file")
        token = query.get("token", "")
        rights = self.app.token_rights(token) if _plain(token) else None
        if rights is None:
            await self.app.server.slow_down()  # as a failed `auth`
            return await self.login_page(query, "Unknown token.", 401)
        return Response(303, "text/plain; charset=utf-8", b"logged in\n",
                        [(b"location", _next_page(query).encode("latin-1")),
                         (b"set-cookie", login_cookie(token, request_secure()))])

    async def logout(self, query: dict[str, str]) -> Response:
        return Response(303, "text/plain; charset=utf-8", b"logged out\n",
                        [(b"location", b"/login"), (b"set-cookie", clear_cookie())])

    # --- frame -----------------------------------------------------------------------------

    async def _page(self, title: str, content: Html, status: int = 200) -> Response:
        stats = await self.app.stats({})
        assert isinstance(stats, dict)
        rights = current_rights()
        header = el("header",
                    el("a", "tubeserver", href="/", class_="brand"),
                    el("nav", el("a", "Tubes", href="/"), el("a", "Schedules", href="/schedules"),
                       el("a", "Connections", href="/connections")),
                    _header_stats(stats),
                    "" if rights is None else el(
                        "form", el("span", "token ", el("code", rights.name)),
                        el("button", "Log out", type="submit"),
                        method="post", action="/logout", class_="logout"))
        log = (f"write-ahead log: segments {stats['binlog-oldest-index']}–"
               f"{stats['binlog-current-index']}, {stats['binlog-records-written']} records "
               "written" if stats["binlog-max-size"] else "no write-ahead log: jobs are in "
               "memory only")
        footer = el("footer",
                    el("p", f"{stats['version']} · {stats['build']} · pid {stats['pid']} on ",
                       stats["hostname"], f" · up {_age(stats['uptime'])} · {log}"),
                    el("p", "No authentication: whoever can reach this address can kick and "
                       "delete jobs. The endpoint listens on loopback unless told otherwise.",
                       class_="warning") if rights is None else "")
        return self._document(title, join([header, el("div", id="flash", role="status"),
                                           el("main", content), footer]), status)

    def _document(self, title: str, body: Html, status: int) -> Response:
        document = join([
            raw("<!doctype html>\n"),
            el("html",
               el("head", el("meta", charset="utf-8"),
                  el("meta", name="viewport", content="width=device-width, initial-scale=1"),
                  el("title", title, " · tubeserver"),
                  el("link", rel="stylesheet", href="/static/dashboard.css"),
                  el("link", rel="icon", href="/static/favicon.svg"),
                  el("script", src="/static/dashboard.js", defer=True)),
               el("body", body),
               lang="en"),
        ])
        return Response(status, "text/html; charset=utf-8", document.encode("utf-8"),
                        SECURITY_HEADERS)

    async def _error(self, e: HttpError) -> Response:
        body = join([el("h1", "Not found" if e.status == 404 else "Bad request"),
                     el("p", e.message, class_="error")])
        return await self._page("Error", body, e.status)


# --- pieces ------------------------------------------------------------------------------


def _next_page(query: dict[str, str]) -> str:
    """Where the login goes on to: a path of this site, never another site's address."""
    target = query.get("next", "/")
    return target if target.startswith("/") and not target.startswith("//") \
        and "\\" not in target and target.isprintable() else "/"


def _plain(token: str) -> bool:
    """A token as tokens.py makes them could go in a cookie as is."""
    return 0 < len(token) <= 200 and all(ch.isalnum() or ch in "-_" for ch in token)


def _header_stats(stats: dict[str, Any]) -> Html:
    shown = [("current-jobs-ready", "ready"), ("current-jobs-reserved", "reserved"),
             ("current-jobs-delayed", "delayed"), ("current-jobs-buried", "buried"),
             ("total-jobs", "jobs put"), ("current-connections", "connections"),
             ("current-workers", "workers")]
    items = [el("span", el("b", stats[k], data_stat=k), " ", label) for k, label in shown]
    if stats["draining"]:
        items.append(el("span", "draining: puts refused", class_="warning"))
    return el("div", items, class_="stats")


def _cell(tube: dict[str, Any], key: str, kind: str) -> list[object]:
    value = tube.get(key)
    if kind == "name":
        return [el("a", value, href=_tube_url(str(value)))]
    if kind == "age":
        return [_age(value)]
    if kind == "rate":
        return ["–"]  # needs two polls: the script fills it in
    if kind == "pause":
        return [f"{value} s left" if tube["paused"] else ""]
    return [value]


def _value(value: object) -> str:
    return "" if value is None else str(value)


def _age(seconds: int | None) -> str:
    """A duration for people; dashboard.js's age() writes the same."""
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _tube_url(name: str, state: str | None = None, offset: int = 0,
              limit: int = DEFAULT_LIMIT) -> str:
    url = "/tubes/" + quote(name, safe="")
    if state is None:
        return url
    query = {"state": state}
    if offset:
        query["offset"] = str(offset)
    if limit != DEFAULT_LIMIT:
        query["limit"] = str(limit)
    return url + "?" + urlencode(query)


def _tube_figures(info: dict[str, Any]) -> Html:
    figures: list[tuple[str, object]] = [
        ("oldest ready", _age(info["oldest-ready-age"])),
        ("jobs put", info["total-jobs"]), ("reserves", info["total-reserves"]),
        ("deletes", info["total-deletes"]), ("releases", info["total-releases"]),
        ("buries", info["total-buries"]), ("kicks", info["total-kicks"]),
        ("timeouts", info["total-timeouts"]), ("reservers", info["current-waiting"]),
        ("paused", f"{info['pause-time-left']} s left" if info["paused"] else "no"),
    ]
    for key in ("max-reserved", "max-jobs", "rate"):
        if info[key]:
            figures.append((key, info[key]))
    return el("dl", [el("div", el("dt", k), el("dd", v)) for k, v in figures], class_="figures")


def _actions_all(name: str, buried: int) -> Html:
    if not buried:
        return Html("")
    api = "/api/tubes/" + quote(name, safe="")
    return el("div",
              el("button", f"Kick all {buried}", data_post=f"{api}/kick", data_kick_all=api,
                 data_what="Kick all buried jobs",
                 data_confirm=f"Kick all {buried} buried jobs of {name} back to ready?",
                 id="kick-all"),
              el("button", f"Delete all {buried}", data_post=f"{api}/clear?state=buried",
                 data_what="Delete all buried jobs",
                 data_confirm=f"Delete all {buried} buried jobs of {name}? This cannot be "
                 "undone.", id="delete-all", class_="danger"),
              class_="actions")


def _job_table(listing: dict[str, Any], name: str) -> Html:
    state = listing["state"]
    buried = state == "buried"
    keys = ["id", "pri", "age", "time-left", "reserves", "body-size", "body"]
    rows = []
    for job in listing["jobs"]:
        cells = [el("td", el("a", job["id"], href=f"/jobs/{job['id']}"))]
        cells += [el("td", job[k]) for k in keys[1:-1]]
        cells.append(el("td", _short(job["body"]), class_=f"body {job['body']['encoding']}"))
        if buried:
            cells.append(el("td", _actions_one(job["id"]), class_="row-actions"))
        rows.append(el("tr", cells, data_job=job["id"]))
    if buried:
        keys.append("")
    if not rows:
        empty = f"No {state} jobs." if listing["offset"] == 0 or not listing["total"] else (
            f"No {state} jobs from offset {listing['offset']}.")
        return el("p", empty, class_="empty", id="jobs")
    return el("table", el("thead", el("tr", [el("th", k) for k in keys])), el("tbody", rows),
              id="jobs", class_="grid")


def _actions_one(job_id: int) -> Html:
    return join([
        el("button", "Kick", data_post=f"/api/jobs/{job_id}/kick", data_what=f"Kick job {job_id}",
           data_confirm=f"Kick job {job_id} back to ready?", class_="kick"),
        el("button", "Delete", data_post=f"/api/jobs/{job_id}/delete",
           data_what=f"Delete job {job_id}",
           data_confirm=f"Delete job {job_id}? This cannot be undone.", class_="delete danger"),
    ])


def _short(preview: dict[str, Any]) -> str:
    """A body for one table cell: the first BODY_CELL characters (a third as many bytes of
    hex, spaced), with … when there is more."""
    data: str = preview["data"]
    if preview["encoding"] == "hex":
        cut = data[:2 * (BODY_CELL // 3)]
        text, more = _hex_groups(cut), len(cut) < len(data)
    else:
        text, more = data[:BODY_CELL], len(data) > BODY_CELL
    return text + "…" if more or preview["truncated"] else text


def _hex_groups(digits: str) -> str:
    return " ".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def _pager(name: str, listing: dict[str, Any]) -> Html:
    offset, limit, total, state = (listing["offset"], listing["limit"], listing["total"],
                                   listing["state"])
    if not total:
        return Html("")
    shown = len(listing["jobs"])
    where = (f"{offset + 1}–{offset + shown} of {total}" if shown else f"none of {total}")
    last = max(0, (total - 1) // limit * limit)
    steps = [("« first", "first", 0, offset > 0),
             ("‹ previous", "prev", max(0, offset - limit), offset > 0),
             ("next ›", "next", offset + limit, offset + limit < total),
             ("last »", "last", last, offset < last)]
    links = [el("a", label, href=_tube_url(name, state, to, limit), rel=rel)
             if on else el("span", label, class_="off") for label, rel, to, on in steps]
    sizes = [el("a", n, href=_tube_url(name, state, offset, n),
                class_="size active" if n == limit else "size")
             for n in PAGE_SIZES if n <= LIST_MAX]
    return el("div", el("span", where, id="showing"), links, el("span", "per page:"), sizes,
              class_="pager")


def _status_table(item: dict[str, Any]) -> Html:
    rows = []
    for key, value in item.items():
        if key in ("body", "result", "reason"):
            continue
        rows.append(el("tr", el("th", key, title=STATUS_HINTS.get(key)),
                       el("td", _link_value(key, value), data_key=key)))
    return el("table", rows, class_="status", id="status")


def _preview(title: str, preview: dict[str, Any]) -> Html:
    kind = preview["encoding"]
    size = preview["size"]
    note = f"{kind}, {size} byte{'' if size == 1 else 's'}"
    if preview["truncated"]:
        note += f", the first {len(preview['data']) // (2 if kind == 'hex' else 1)} shown"
    data = preview["data"]
    if kind == "hex":
        data = "\n".join(_hex_groups(data[i:i + 2 * HEX_ROW])
                         for i in range(0, len(data), 2 * HEX_ROW))
    return el("section", el("h2", title, " ", el("small", note)),
              el("pre", data, class_=kind), id=title.lower())


def _link_value(key: str, value: Any) -> object:
    if value in ("", None):
        return ""
    if key == "tube":
        return el("a", value, href=_tube_url(str(value)))
    if key in ("id", "last-job") and isinstance(value, int) and value > 0:
        return el("a", value, href=f"/jobs/{value}")
    if key == "parents":
        return _comma([el("a", p, href=f"/jobs/{p}") for p in str(value).split(",")])
    return value


def _comma(items: list[Html]) -> Html:
    return Html(", ".join(items))


def _conn_value(key: str, value: Any) -> object:
    if key == "watching":
        return _comma([el("a", n, href=_tube_url(n)) for n in value])
    if key == "using":
        return el("a", value, href=_tube_url(value))
    if isinstance(value, bool):
        return "yes" if value else ""
    if key == "idle":
        return f"{value:.1f} s"
    return value


def _table(keys: tuple[str, ...], rows: list[Html], table_id: str, empty: str) -> Html:
    if not rows:
        return el("p", empty, class_="empty", id=table_id)
    return el("table", el("thead", el("tr", [el("th", k) for k in keys])), el("tbody", rows),
              id=table_id, class_="grid")

