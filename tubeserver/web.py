"""The HTTP endpoint's application: Prometheus metrics, health checks and a JSON API, as an
ASGI app that hypercorn serves inside the server's own trio run (server.py starts it).

Reads (GET) look at the engine directly: the app runs on the same thread as everything else,
between the hub's rounds, so what it reads is consistent, and nothing it does is per job
except a listing, which list-jobs bounds. Actions (POST) are protocol commands run by
`Server.execute` on a session of their own, so they count, log and answer exactly as they do
on a connection; their reply line is returned with it. Errors are JSON `{"error": ...}` with
a fitting status. Bodies, results and reasons are shown as text when they decode as UTF-8,
else as hex, cut at PREVIEW_MAX bytes. Routes match the path as sent (percent-encoded), so a
tube name with a `/` in it is one %2F-encoded segment. A POST that a browser marks as coming
from another site is refused: a web page must not drive the actions through its visitor's
browser.

Access. Each route has a guard. With an auth file, every request but /healthz, /readyz, the
login page and the dashboard's static files needs a token, as `Authorization: Bearer` or the
cookie the dashboard's login sets; reads need INSPECT (server-wide ones on some tube, a
tube's on that tube, a job's on its tube, as the protocol's commands), and actions run with
the token's rights, so the dispatcher allows or refuses them exactly as on a connection. A
wrong token is answered after AUTH_DELAY, as `auth` is. Without an auth file, the Host
header must name this machine (an IP address, localhost, or an --http-allow-host name):
otherwise a web page could reach the endpoint by DNS rebinding, a name of the attacker's that
resolves to 127.0.0.1, and its requests would count as same-origin.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlencode

from . import commands as c
from .access import CONSUME, INSPECT, PRODUCE, Rights
from .errors import BadFormat, NotFound
from .limits import CLEAR_STATES, LIST_MAX, LIST_STATES, OFFSET_MAX, U32_MAX
from .parser import parse_name
from .stats import job_status, jobs_list, limits_list, schedules_list, server_stats, tube_info

if TYPE_CHECKING:
    from .server import Server
    from .tube import Tube

PREVIEW_MAX = 4096  # bytes of a body, result or reason shown
BODY_MAX = 8192  # bytes of a POST body read (the login form's); more is refused
COOKIE = "tubeserver_token"  # the dashboard's login keeps the token here (HttpOnly)
# Route guards: who may ask (see the module's docstring). TUBE and JOB look at the route's
# first group.
OPEN, SERVER, TUBE, JOB, ACTION = "open", "server", "tube", "job", "action"
# The rights of the request being served, for the actions `Server.execute` runs, and
# whether it came over TLS (the login cookie is then marked Secure).
_rights: ContextVar[Rights | None] = ContextVar("rights", default=None)
FOLLOW = INSPECT | PRODUCE | CONSUME  # who may look at one job (as job-status)
_secure: ContextVar[bool] = ContextVar("secure", default=False)


def current_rights() -> Rights | None:
    """The token of the request being served (None without an auth file)."""
    return _rights.get()


def request_secure() -> bool:
    return _secure.get()
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Json = dict[str, Any] | list[Any]


class HttpError(Exception):
    def __init__(self, status: int, message: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# A protocol error line -> the HTTP status an action answers with.
_REPLY_STATUS = {b"NOT_FOUND": 404, b"BAD_FORMAT": 400, b"DRAINING": 503,
                 b"OUT_OF_MEMORY": 503, b"INTERNAL_ERROR": 500, b"UNAUTHORIZED": 403}


class App:
    """The ASGI application. `add_route` lets the dashboard (dashboard.py) add pages."""

    def __init__(self, server: Server, allowed_hosts: tuple[str, ...] = ()) -> None:
        from .metrics import exposition, registry  # prometheus-client: only with --http

        self.server = server
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        # Where a browser without a token is sent (the dashboard's login page), if anywhere.
        self.login_path: str | None = None
        self._registry = registry(server)
        self._exposition = exposition
        Handler = Callable[..., Awaitable[Any]]
        get: list[tuple[str, Handler, str]] = [
            (r"/metrics", self.metrics, SERVER),
            (r"/healthz", self.healthz, OPEN),
            (r"/readyz", self.readyz, OPEN),
            (r"/api/stats", self.stats, SERVER),
            (r"/api/tubes", self.tubes, SERVER),
            (r"/api/tubes/([^/]+)", self.tube, TUBE),
            (r"/api/tubes/([^/]+)/jobs", self.jobs, TUBE),
            (r"/api/jobs/(\d+)", self.job, JOB),
            (r"/api/schedules", self.schedules, SERVER),
            (r"/api/limits", self.limits, SERVER),
            (r"/api/connections", self.connections, SERVER),
        ]
        post: list[tuple[str, Handler, str]] = [
            (r"/api/jobs/(\d+)/kick", self.kick_job, ACTION),
            (r"/api/jobs/(\d+)/delete", self.delete_job, ACTION),
            (r"/api/tubes/([^/]+)/kick", self.kick_tube, ACTION),
            (r"/api/tubes/([^/]+)/clear", self.clear_tube, ACTION),
            (r"/api/tubes/([^/]+)/pause", self.pause_tube, ACTION),
        ]
        self.routes: dict[str, list[tuple[re.Pattern[str], Handler, str]]] = {
            "GET": [(re.compile(p + "$"), h, g) for p, h, g in get],
            "POST": [(re.compile(p + "$"), h, g) for p, h, g in post],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = scope["path"] if raw_path is None else raw_path.decode("latin-1")
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        _secure.set(scope.get("scheme") == "https")
        try:
            if method == "POST":
                _same_origin(headers)
                query.update(await _form(receive, headers))
            handler, args, guard = self._route(method, path)
            if guard != OPEN:
                if self.server.tokens is None:
                    self._check_host(headers)
                else:
                    _rights.set(await self._admit(method, path, headers, guard, args))
            result = await handler(query, *args)
        except HttpError as e:
            await _send(send, e.status, "application/json", _dumps({"error": e.message}),
                        e.headers)
            return
        if isinstance(result, Response):
            await _send(send, result.status, result.content_type, result.body, result.headers)
        else:
            await _send(send, 200, "application/json", _dumps(result))

    def _route(self, method: str, path: str
               ) -> tuple[Callable[..., Awaitable[Any]], list[str], str]:
        found = None
        for verb in ("GET", "POST"):
            for pattern, handler, guard in self.routes[verb]:
                m = pattern.match(path)
                if m is None:
                    continue
                if verb == method or (method == "HEAD" and verb == "GET"):
                    return handler, [unquote(g) for g in m.groups()], guard
                found = verb
        if found is not None:
            raise HttpError(405, f"{path} takes {found}")
        raise HttpError(404, f"no such page: {path}")

    def add_route(self, method: str, pattern: str, handler: Callable[..., Awaitable[Any]],
                  guard: str = SERVER) -> None:
        self.routes[method].append((re.compile(pattern + "$"), handler, guard))

    # --- access ------------------------------------------------------------------------

    def _check_host(self, headers: dict[bytes, str]) -> None:
        host = headers.get(b"host")
        if host is None or _local_host(host, self.allowed_hosts):
            return
        raise HttpError(421, f"this endpoint does not answer to Host: {host} (use an IP "
                        "address or localhost, or name it with --http-allow-host)")

    def token_rights(self, token: str | None) -> Rights | None:
        tokens = self.server.tokens
        return None if tokens is None or not token else tokens.check(token)

    async def _admit(self, method: str, path: str, headers: dict[bytes, str], guard: str,
                     args: list[str]) -> Rights:
        """The request's rights, or HttpError: 401 without a token (a browser asking for a
        page is sent to the login page instead), 403 when its rights do not cover it."""
        token = _bearer(headers)
        from_cookie = token is None
        if from_cookie:
            token = _cookie(headers)
        if token is None:
            if (self.login_path is not None and method == "GET"
                    and "text/html" in headers.get(b"accept", "")):
                where = f"{self.login_path}?{urlencode({'next': path})}"
                raise HttpError(303, "log in first", [(b"location", where.encode("latin-1"))])
            raise HttpError(401, "this endpoint needs a token: Authorization: Bearer <token>",
                            [(b"www-authenticate", b'Bearer realm="tubeserver"')])
        rights = self.token_rights(token)
        if rights is None:
            await self.server.slow_down()  # as a failed `auth`: guessing stays slow
            if from_cookie and self.login_path is not None and method == "GET":
                raise HttpError(303, "log in again",
                                [(b"location", self.login_path.encode("latin-1")),
                                 (b"set-cookie", clear_cookie())])
            raise HttpError(401, "unknown token",
                            [(b"www-authenticate", b'Bearer realm="tubeserver", '
                              b'error="invalid_token"')])
        if not self._allowed(rights, guard, args):
            raise HttpError(403, f"token {rights.name!r} may not see {path}")
        return rights

    def _allowed(self, rights: Rights, guard: str, args: list[str]) -> bool:
        if guard == SERVER:
            return bool(rights.some & INSPECT)
        if guard == TUBE:
            return rights.allows(INSPECT, args[0])
        if guard == JOB:
            # As job-status: its producer and worker may follow it; a job that is not there
            # is the handler's to answer 404, for those who may look at some tube.
            try:
                job = self.server.engine.results.job_status(int(args[0]))
            except NotFound:
                return bool(rights.some & FOLLOW)
            return rights.allows(FOLLOW, job.tube.name)
        return True  # ACTION: the dispatcher checks the command itself

    # --- health and metrics ----------------------------------------------------------------

    async def metrics(self, query: dict[str, str]) -> Response:
        return Response(200, "text/plain; version=0.0.4; charset=utf-8",
                        self._exposition(self._registry, self.server))

    async def healthz(self, query: dict[str, str]) -> Json:
        return {"status": "ok"}

    async def readyz(self, query: dict[str, str]) -> Json:
        """Ready once the log is recovered and clients are served (this app runs only then),
        and not in drain mode: a draining server refuses puts."""
        if self.server.engine.draining:
            raise HttpError(503, "draining (SIGUSR1): put answers DRAINING")
        wal = self.server.wal
        if wal is not None and wal.failed is not None:
            raise HttpError(503, f"the write-ahead log failed: {wal.failed}")
        return {"status": "ready"}

    # --- reads -------------------------------------------------------------------------

    async def stats(self, query: dict[str, str]) -> Json:
        d = self.server.dispatcher
        return dict(server_stats(self.server.engine, d.counts, d.info, self.server.now(),
                                 d.log_stats()))

    async def tubes(self, query: dict[str, str]) -> Json:
        return [self._tube_json(t) for t in sorted(self.server.engine.tube_list,
                                                       key=_tube_name)]

    async def tube(self, query: dict[str, str], name: str) -> Json:
        return self._tube_json(self._find_tube(name))

    async def jobs(self, query: dict[str, str], name: str) -> Json:
        state = query.get("state", "ready")
        if state not in LIST_STATES:
            raise HttpError(400, f"state must be one of {', '.join(LIST_STATES)}")
        offset = _int(query, "offset", 0, 0, OFFSET_MAX)
        limit = _int(query, "limit", 100, 1, LIST_MAX)
        self._find_tube(name)
        engine = self.server.engine
        found = engine.admin.list_jobs(name, state, offset, limit)
        items: list[dict[str, Any]] = [dict(p) for p in jobs_list(found, self.server.now())]
        for item, job in zip(items, found, strict=True):
            item["body"] = preview(job.body)
        return {"tube": name, "state": state, "offset": offset, "limit": limit,
                "total": engine.tubes[name].count(state), "jobs": items}

    async def job(self, query: dict[str, str], job_id: str) -> Json:
        engine = self.server.engine
        try:
            job = engine.results.job_status(int(job_id))
        except NotFound:
            raise HttpError(404, f"no job {job_id} (never made, or deleted and not kept)"
                            ) from None
        item: dict[str, Any] = dict(job_status(job, engine.tracker,
                                               self.server.dispatcher.wall))
        extra = job.extra
        finished = item["state"] == "finished"
        item["body"] = None if finished else preview(job.body)
        item["result"] = preview(job.body) if finished else None
        item["reason"] = None if extra is None or extra.reason is None else preview(extra.reason)
        return item

    async def schedules(self, query: dict[str, str]) -> Json:
        return [dict(p) for p in schedules_list(self.server.engine.flow.schedules.table.values())]

    async def limits(self, query: dict[str, str]) -> Json:
        return [dict(p) for p in limits_list(self.server.engine)]

    async def connections(self, query: dict[str, str]) -> Json:
        server = self.server
        now = server.now()
        out = []
        for s in sorted(server.engine.sessions, key=_session_id):
            peer = server.conns.get(s)
            buffered_in, buffered_out = (0, 0) if peer is None else peer.buffered()
            out.append({
                "id": s.id,
                "peer": getattr(peer, "peer", "?"),
                "using": s.used.name,
                "watching": [t.name for t in s.watched],
                "reserved": len(s.reserved),
                "waiting": "reserve" if s.waiter is not None
                else "result" if s.result_wait is not None else "",
                "producer": s.producer,
                "worker": s.worker,
                "idle": round(max(0.0, now - getattr(peer, "active_at", now)), 3),
                "tls": bool(getattr(peer, "tls", False)),
                # Bytes received and not parsed yet, and replies not sent yet: each at most
                # --max-connection-buffer.
                "buffered-in": buffered_in,
                "buffered-out": buffered_out,
            })
        return out

    def _tube_json(self, t: Tube) -> dict[str, Any]:
        """tube-info's figures (the protocol's own), with a null age when none is ready."""
        item: dict[str, Any] = dict(tube_info(t, self.server.now()))
        if item["oldest-ready-age"] < 0:
            item["oldest-ready-age"] = None
        return item

    def _find_tube(self, name: str) -> Tube:
        tube = self.server.engine.tubes.get(name)
        if tube is None:
            raise HttpError(404, f"no tube {name!r}")
        return tube

    # --- actions: protocol commands -----------------------------------------------------

    async def kick_job(self, query: dict[str, str], job_id: str) -> Json:
        return await self._run(c.KickJob(int(job_id)))

    async def delete_job(self, query: dict[str, str], job_id: str) -> Json:
        return await self._run(c.Delete(int(job_id)))

    async def kick_tube(self, query: dict[str, str], name: str) -> Json:
        bound = _int(query, "bound", U32_MAX, 0, 2**63 - 1)
        return await self._run(c.KickTube(_name(name), bound))

    async def clear_tube(self, query: dict[str, str], name: str) -> Json:
        state = query.get("state", "")
        if state not in CLEAR_STATES:
            raise HttpError(400, f"state must be one of {', '.join(CLEAR_STATES)}")
        return await self._run(c.ClearTube(_name(name), state))

    async def pause_tube(self, query: dict[str, str], name: str) -> Json:
        return await self._run(c.PauseTube(_name(name), _int(query, "delay", 0, 0, U32_MAX)))

    async def _run(self, command: c.Command) -> Json:
        reply = await self.server.execute(command, _rights.get())
        line = reply.split(b"\r\n", 1)[0]
        word = line.split(b" ", 1)[0]
        status = _REPLY_STATUS.get(word)
        if status is not None:
            raise HttpError(status, line.decode("ascii"))
        return {"reply": line.decode("ascii")}


class Response:
    """A reply that is not JSON (the metrics, the dashboard's pages), with any headers of its
    own."""

    def __init__(self, status: int, content_type: str, body: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = headers or []


def preview(data: bytes) -> dict[str, Any]:
    """Bytes for people: text when they decode as UTF-8, else hex; cut at PREVIEW_MAX."""
    cut = data[:PREVIEW_MAX]
    try:
        text, encoding = cut.decode("utf-8"), "text"
    except UnicodeDecodeError as e:
        if len(data) > PREVIEW_MAX and e.start >= PREVIEW_MAX - 3:  # a character cut in two
            text, encoding = cut[:e.start].decode("utf-8"), "text"
        else:
            text, encoding = cut.hex(), "hex"
    return {"encoding": encoding, "data": text, "size": len(data),
            "truncated": len(data) > PREVIEW_MAX}


async def _send(send: Send, status: int, content_type: str, body: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode("latin-1")),
                            (b"content-length", str(len(body)).encode("ascii")),
                            (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _same_origin(headers: dict[bytes, str]) -> None:
    """Refuse a POST a browser sent for a page of another site: its Sec-Fetch-Site says so,
    or its Origin is not this host. Clients that are not browsers send neither header."""
    site = headers.get(b"sec-fetch-site")
    origin = headers.get(b"origin")
    host = headers.get(b"host")
    if site is not None and site not in ("same-origin", "none"):
        raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        raise HttpError(403, f"cross-origin request refused (Origin: {origin})")


async def _form(receive: Receive, headers: dict[bytes, str]) -> dict[str, str]:
    """A POST's form fields (the login page's); other bodies are read and ignored."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > BODY_MAX:
            raise HttpError(413, f"request bodies here are at most {BODY_MAX} bytes")
        if not message.get("more_body", False):
            break
    if not headers.get(b"content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return {k: v[-1] for k, v in parse_qs(body.decode("latin-1")).items()}


def _bearer(headers: dict[bytes, str]) -> str | None:
    scheme, _, token = headers.get(b"authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _cookie(headers: dict[bytes, str]) -> str | None:
    raw = headers.get(b"cookie")
    if raw is None:
        return None
    try:
        morsel = SimpleCookie(raw).get(COOKIE)
    except CookieError:
        return None
    return None if morsel is None else morsel.value or None


def login_cookie(token: str, secure: bool) -> bytes:
    # A token is printable ASCII without spaces, `;` or `,` aside (tokens.py makes
    # [A-Za-z0-9_-]); the login page refuses others before this.
    """The dashboard's session: the token itself, out of scripts' reach (HttpOnly) and never
    sent with a request another site starts (SameSite=Strict)."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{flags}".encode("latin-1")


def clear_cookie() -> bytes:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict".encode("latin-1")


def _local_host(host: str, allowed: frozenset[str]) -> bool:
    """Whether a Host header names this machine: an IP address, localhost, or an allowed
    name (any port)."""
    name = host.strip().lower()
    if name.startswith("["):  # [IPv6]:port
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name in allowed or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _dumps(value: Json) -> bytes:
    return json.dumps(value, indent=1).encode("utf-8")


def _int(query: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpError(400, f"{key} must be a whole number from {low} to {high}")
    return int(raw)


def _name(raw: str) -> str:
    try:
        return parse_name(raw.encode("latin-1"))
    except (BadFormat, UnicodeEncodeError):
        raise HttpError(400, f"not a tube name: {raw!r}") from None


def _tube_name(t: Tube) -> str:
    return t.name


def _session_id(s: Any) -> int:
    return int(s.id)
