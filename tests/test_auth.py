"""Authentication end to end: real tubeserver processes with an auth file (tokens.py,
access.py, the dispatcher's gate, server.py's refusal delay and SIGHUP reload, web.py's bearer
tokens and Host check), and the auth file's loader and the command line on their own."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procs
import pytest
from test_wal_process import EXIT_LIMIT, START_LIMIT, Conn, argv, clean_env, run

from tubeserver import tokens as tk
from tubeserver.access import ADMIN, CONSUME, INSPECT, PRODUCE

HOST = "127.0.0.1"
HTTP_TIMEOUT = 5.0

# name -> (token, rights table lines)
TOKENS = {
    "producer": ("tbs_producer-token-0123456789abcdef", 'produce = ["emails", "reports-*"]'),
    "worker": ("tbs_worker-token-0123456789abcdef", 'consume = ["emails"]'),
    "viewer": ("tbs_viewer-token-0123456789abcdef", 'inspect = ["*"]'),
    "root": ("tbs_root-token-0123456789abcdef", 'admin = ["*"]'),
}


def table(name: str, token: str, rights: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f'[[token]]\nname = "{name}"\nsha256 = "{digest}"\n{rights}\n\n'


def write_auth(path: Path, names: tuple[str, ...] = tuple(TOKENS)) -> Path:
    path.write_text("".join(table(n, *TOKENS[n]) for n in names))
    return path


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], port: int, log: Path,
                 http: str | None) -> None:
        self.popen = popen
        self.port = port
        self.log = log
        self.http = http

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def conn(self, name: str | None = None) -> Conn:
        c = Conn(socket.create_connection((HOST, self.port), timeout=5))
        if name is not None:
            assert c.cmd(b"auth " + TOKENS[name][0].encode()) == b"OK\r\n"
        return c


@contextlib.contextmanager
def server(tmp_path: Path, *args: str, auth: Path | None = None,
           http: bool = False) -> Iterator[Proc]:
    """A tubeserver on a free port, ready once it logs its own listening line (its `stats`
    needs a token, so procs.wait_listening cannot ask it)."""
    extra = [] if auth is None else ["--auth-file", str(auth)]
    for _ in range(3):
        port = procs.free_port()
        http_port = procs.free_port() if http else None
        log = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        http_args = [] if http_port is None else ["--http", f"{HOST}:{http_port}"]
        with log.open("wb") as err:
            popen = subprocess.Popen(argv("-l", HOST, "-p", str(port), *extra, *http_args,
                                          *args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, env=clean_env())
        proc = Proc(popen, port, log, None if http_port is None else
                    f"http://{HOST}:{http_port}")
        try:
            ready = f"listening on {HOST}:{port} (pid {popen.pid})"
            if http_port is not None:
                ready = f"HTTP on {proc.http}"
            deadline = time.monotonic() + START_LIMIT
            while ready not in proc.stderr() and popen.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            if "already in use" in proc.stderr():
                continue
            assert ready in proc.stderr(), proc.stderr()
            yield proc
            return
        finally:
            procs.stop(popen, EXIT_LIMIT)
    pytest.fail("no free port")


# --- the protocol ---------------------------------------------------------------------------


def test_before_auth_only_auth_and_quit(tmp_path: Path) -> None:
    with server(tmp_path, auth=write_auth(tmp_path / "auth.toml")) as s, s.conn() as c:
        for line in (b"stats", b"list-tubes", b"use emails", b"watch emails", b"reserve-job 1",
                     b"peek-ready", b"list-tube-used", b"bogus", b"auth"):
            assert c.cmd(line) == b"UNAUTHORIZED\r\n", line
        # A put is answered once, after its body, and stores nothing.
        c.raw(b"put 0 0 60 5\r\nhello\r\n")
        assert c.reply() == b"UNAUTHORIZED\r\n"
        assert c.cmd(b"auth " + TOKENS["viewer"][0].encode()) == b"OK\r\n"
        stats = c.stats()
        assert stats["current-jobs-ready"] == "0" and stats["total-jobs"] == "0"
        assert stats["cmd-put"] == "0" and stats["current-producers"] == "0"
        c.send(b"quit")
        assert c.at_eof()
    with server(tmp_path, auth=write_auth(tmp_path / "auth.toml")) as s, s.conn() as c:
        c.send(b"quit")  # quit before auth
        assert c.at_eof()


def test_rights_by_role_and_tube(tmp_path: Path) -> None:
    with server(tmp_path, auth=write_auth(tmp_path / "auth.toml")) as s, \
            s.conn("producer") as p, s.conn("worker") as w, s.conn("viewer") as v, \
            s.conn("root") as r:
        # The default tube counts as a tube like any other.
        assert p.put(b"x") == b"UNAUTHORIZED\r\n"
        assert p.cmd(b"use default") == b"UNAUTHORIZED\r\n"
        assert p.cmd(b"use emails") == b"USING emails\r\n"
        job = p.put_id(b"mail")
        assert p.cmd(b"use reports-daily") == b"USING reports-daily\r\n"
        report = p.put_id(b"report")
        assert p.cmd(b"use other") == b"UNAUTHORIZED\r\n"
        assert p.cmd(b"list-tube-used") == b"USING reports-daily\r\n"
        assert p.cmd(b"stats") == b"UNAUTHORIZED\r\n"  # no inspect right anywhere
        assert p.cmd(b"peek %d" % job) == b"UNAUTHORIZED\r\n"
        # A producer may follow the jobs it put.
        assert p.yaml(b"job-status %d" % job)["state"] == "ready"
        assert p.cmd(b"reserve-with-timeout 0") == b"UNAUTHORIZED\r\n"
        # A worker: watch only its tube, and reserve only once default is ignored.
        assert w.cmd(b"watch reports-daily") == b"UNAUTHORIZED\r\n"
        assert w.cmd(b"watch emails") == b"WATCHING 2\r\n"
        assert w.cmd(b"reserve-with-timeout 0") == b"UNAUTHORIZED\r\n"
        assert w.cmd(b"ignore default") == b"WATCHING 1\r\n"
        assert w.cmd(b"reserve-with-timeout 0") == b"RESERVED %d 4\r\nmail\r\n" % job
        assert w.cmd(b"delete %d" % report) == b"UNAUTHORIZED\r\n"  # another tube's job
        assert w.cmd(b"bury %d 0" % job) == b"BURIED\r\n"
        assert w.cmd(b"kick-job %d" % job) == b"UNAUTHORIZED\r\n"  # admin's
        assert w.cmd(b"delete 999") == b"NOT_FOUND\r\n"  # no such job: not a secret
        # An inspector reads everything and changes nothing.
        assert v.cmd(b"peek %d" % report).startswith(b"FOUND")
        assert v.yaml(b"stats-tube emails")["current-jobs-buried"] == "1"
        assert v.cmd(b"list-tubes").startswith(b"OK")
        assert v.cmd(b"use emails") == b"USING emails\r\n"
        assert v.cmd(b"peek-buried") == b"FOUND %d 4\r\nmail\r\n" % job
        assert v.put(b"x") == b"UNAUTHORIZED\r\n"
        assert v.cmd(b"kick 10") == b"UNAUTHORIZED\r\n"
        assert v.cmd(b"delete %d" % report) == b"UNAUTHORIZED\r\n"
        assert v.cmd(b"pause-tube emails 10") == b"UNAUTHORIZED\r\n"
        assert v.cmd(b"clear-tube emails buried") == b"UNAUTHORIZED\r\n"
        # Admin may do anything.
        assert r.cmd(b"kick-job %d" % job) == b"KICKED\r\n"
        assert r.cmd(b"pause-tube emails 0") == b"PAUSED\r\n"
        assert r.cmd(b"clear-tube reports-daily ready") == b"CLEARED 1\r\n"
        assert r.put(b"anything") == b"INSERTED 3\r\n"
        # Refused commands changed nothing and were not counted.
        stats = r.stats()
        assert stats["cmd-kick"] == "0" and stats["cmd-pause-tube"] == "1"
        assert stats["total-jobs"] == "3" and stats["current-jobs-ready"] == "2"


def test_failed_auth_is_answered_late_then_closed(tmp_path: Path) -> None:
    with server(tmp_path, "-VV", auth=write_auth(tmp_path / "auth.toml")) as s, \
            s.conn() as c:
        start = time.monotonic()
        c.raw(b"auth tbs_not-a-token\r\nstats\r\n")
        assert c.reply() == b"UNAUTHORIZED\r\n"
        assert time.monotonic() - start >= 0.9  # the server holds it AUTH_DELAY at least
        assert c.at_eof()  # closed; the pipelined stats was never run
        # An authenticated connection that sends a wrong token loses its rights, too.
        with s.conn("root") as r:
            r.raw(b"auth tbs_wrong\r\n")
            assert r.reply() == b"UNAUTHORIZED\r\n"
            assert r.at_eof()
        with s.conn("root") as r:
            assert r.stats()["cmd-stats"] == "1"  # this one only
        log = s.stderr()
        assert "auth failed from 127.0.0.1:" in log
        # -VV logs every command, but never a token.
        assert "Auth(<token>)" in log
        for token, _ in TOKENS.values():
            assert token not in log
        assert "tbs_not-a-token" not in log and "tbs_wrong" not in log


def test_auth_command_without_an_auth_file_is_unknown(tmp_path: Path) -> None:
    with server(tmp_path) as s, s.conn() as c:
        assert c.cmd(b"auth " + TOKENS["root"][0].encode()) == b"UNKNOWN_COMMAND\r\n"
        assert c.put(b"x") == b"INSERTED 1\r\n"


def test_sighup_reloads_and_keeps_existing_rights(tmp_path: Path) -> None:
    auth = write_auth(tmp_path / "auth.toml", ("producer", "viewer"))
    with server(tmp_path, auth=auth) as s, s.conn("producer") as old:
        write_auth(auth, ("viewer",))  # the producer's token is withdrawn
        s.popen.send_signal(signal.SIGHUP)
        _wait_for(s, "SIGHUP: reloaded")
        assert "reloaded" in s.stderr() and "1 tokens" in s.stderr()
        # The connection that authenticated keeps its rights until it authenticates again.
        assert old.cmd(b"use emails") == b"USING emails\r\n"
        assert old.put(b"still") == b"INSERTED 1\r\n"
        with s.conn() as new:
            new.raw(b"auth " + TOKENS["producer"][0].encode() + b"\r\n")
            assert new.reply() == b"UNAUTHORIZED\r\n"
        # A broken file is refused whole: the tokens stay as they were.
        auth.write_text("[[token]]\nname = 'x'\n")
        s.popen.send_signal(signal.SIGHUP)
        _wait_for(s, "keeping the 1 tokens")
        with s.conn("viewer") as v:
            assert v.stats()["total-jobs"] == "1"
        assert s.popen.poll() is None


def _wait_for(s: Proc, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in s.stderr() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert text in s.stderr(), s.stderr()


def test_start_up_warns_when_reachable_without_auth(tmp_path: Path) -> None:
    # 0.0.0.0 is reachable beyond loopback: the warning must name it; with auth it is quiet.
    port = procs.free_port()
    for auth, warned in ((None, True), (write_auth(tmp_path / "auth.toml"), False)):
        log = tmp_path / f"warn-{warned}.txt"
        extra = [] if auth is None else ["--auth-file", str(auth)]
        with log.open("wb") as err:
            popen = subprocess.Popen(argv("-l", "0.0.0.0", "-p", str(port), *extra),
                                     stdin=subprocess.DEVNULL, stderr=err, env=clean_env())
        try:
            deadline = time.monotonic() + START_LIMIT
            while "listening on" not in log.read_text() and time.monotonic() < deadline \
                    and popen.poll() is None:
                time.sleep(0.02)
            time.sleep(0.2)
            text = log.read_text()
            assert "listening on" in text, text
            assert ("without authentication" in text) is warned, text
        finally:
            procs.stop(popen, EXIT_LIMIT)


# --- the auth file and the command line -------------------------------------------------------


def test_new_token_makes_a_usable_entry(tmp_path: Path) -> None:
    made = run("--new-token", "billing workers")
    assert made.returncode == 0, made.stderr
    token = made.stderr.strip().splitlines()[-1]
    assert token.startswith("tbs_") and len(token) > 40
    assert token not in made.stdout
    text = made.stdout.replace("consume = []", 'consume = ["billing"]')
    (tmp_path / "auth.toml").write_text(text)
    loaded = tk.load(str(tmp_path / "auth.toml"))
    rights = loaded.check(token)
    assert rights is not None and rights.name == "billing workers"
    assert rights.allows(CONSUME, "billing") and not rights.allows(PRODUCE, "billing")
    assert loaded.check(token + "x") is None and loaded.check("") is None
    # Two tokens made are never the same.
    assert run("--new-token", "b").stderr.splitlines()[-1] != token


@pytest.mark.parametrize(("text", "message"), [
    ("[[token]\n", "not valid TOML"),
    ("tokens = 1\n", "unknown key 'tokens'"),
    ("[[token]]\nsha256 = '" + "0" * 64 + "'\nadmin = ['*']\n", "'name' must be"),
    ("[[token]]\nname = 'a'\nsha256 = 'abc'\nadmin = ['*']\n", "'sha256' must be 64 hex"),
    ("[[token]]\nname = 'a'\nsha256 = '" + "0" * 64 + "'\n", "grants nothing"),
    ("[[token]]\nname = 'a'\nsha256 = '" + "0" * 64 + "'\nadmin = '*'\n", "must be a list"),
    ("[[token]]\nname = 'a'\nsha256 = '" + "0" * 64 + "'\nadmin = ['*']\nwrite = ['x']\n",
     "unknown key 'write'"),
    ("[[token]]\nname = 'a'\nsha256 = '" + "0" * 64 + "'\nadmin = ['*']\n"
     "[[token]]\nname = 'a'\nsha256 = '" + "1" * 64 + "'\nadmin = ['*']\n", "appears twice"),
    ("[[token]]\nname = 'a'\nsha256 = '" + "0" * 64 + "'\nadmin = ['*']\n"
     "[[token]]\nname = 'b'\nsha256 = '" + "0" * 64 + "'\nadmin = ['*']\n", "same sha256"),
])
def test_bad_auth_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    result = run("--auth-file", str(path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    missing = run("--auth-file", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "cannot read auth file" in missing.stderr
    env = clean_env(TUBESERVER_AUTH_FILE=str(path))
    assert run(env=env).returncode == 2


def test_token_check_compares_every_entry(tmp_path: Path) -> None:
    loaded = tk.parse({"token": [
        {"name": n, "sha256": hashlib.sha256(t.encode()).hexdigest(),
         **{role: ["*"] for role in ("inspect",)}} for n, (t, _) in TOKENS.items()]})
    assert len(loaded) == 4
    for name, (token, _) in TOKENS.items():
        rights = loaded.check(token)
        assert rights is not None and rights.name == name
    assert loaded.check("tbs_viewer-token-0123456789abcdeF") is None


def test_globs_and_admin_imply_everything() -> None:
    rights = tk.parse({"token": [{"name": "x", "sha256": "0" * 64,
                                  "produce": ["reports-*", "a?c"], "admin": ["ops"]}]})
    r = rights._entries[0][1]
    assert r.allows(PRODUCE, "reports-2026") and not r.allows(PRODUCE, "reports")
    assert r.allows(PRODUCE, "abc") and not r.allows(PRODUCE, "abbc")
    assert all(r.allows(role, "ops") for role in (PRODUCE, CONSUME, INSPECT, ADMIN))
    assert not r.allows(CONSUME, "reports-1") and not r.allows(ADMIN, "reports-1")


# --- HTTP -----------------------------------------------------------------------------------


def http(base: str, path: str, method: str = "GET", token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(base + path, method=method,
                                 data=b"" if method == "POST" else None,
                                 headers=dict(headers or {}))
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT) as resp:
            status, body, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, body, hdrs = e.code, e.read(), dict(e.headers)
    kind = hdrs.get("content-type", "")
    return status, json.loads(body) if kind == "application/json" else body.decode(), hdrs


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_http_takes_bearer_tokens(tmp_path: Path) -> None:
    pytest.importorskip("hypercorn")
    with server(tmp_path, auth=write_auth(tmp_path / "auth.toml"), http=True) as s:
        assert s.http is not None
        base = s.http
        with s.conn("producer") as p:
            assert p.cmd(b"use emails") == b"USING emails\r\n"
            job = p.put_id(b"mail")
        # Health checks stay open; everything else needs a token.
        assert http(base, "/healthz")[0] == 200 and http(base, "/readyz")[0] == 200
        status, body, hdrs = http(base, "/api/stats")
        assert status == 401 and "Bearer" in hdrs["www-authenticate"]
        assert http(base, "/metrics")[0] == 401
        start = time.monotonic()
        assert http(base, "/api/stats", token="tbs_wrong")[0] == 401
        assert time.monotonic() - start >= 0.9
        # A browser without a token is sent to the login page.
        status, _, hdrs = http(base, "/tubes/emails", headers={"Accept": "text/html"})
        assert status == 303 and hdrs["location"] == "/login?next=%2Ftubes%2Femails"
        assert http(base, "/login")[0] == 200
        # Reads need inspect: on some tube for the server's, on the tube for a tube's.
        assert http(base, "/api/stats", token=TOKENS["viewer"][0])[0] == 200
        assert http(base, "/metrics", token=TOKENS["viewer"][0])[0] == 200
        assert http(base, "/api/tubes", token=TOKENS["producer"][0])[0] == 403
        assert http(base, "/api/tubes/emails", token=TOKENS["worker"][0])[0] == 403
        assert http(base, f"/api/jobs/{job}", token=TOKENS["producer"][0])[0] == 200
        assert http(base, f"/api/jobs/{job}", token=TOKENS["worker"][0])[0] == 200
        assert http(base, f"/api/jobs/{job}", token=TOKENS["viewer"][0])[0] == 200
        with s.conn("root") as r:
            assert r.cmd(b"use other") == b"USING other\r\n"
            other = r.put_id(b"elsewhere")
        assert http(base, f"/api/jobs/{other}", token=TOKENS["worker"][0])[0] == 403
        # Actions run with the token's rights, through the protocol's own check.
        status, body, _ = http(base, "/api/tubes/emails/kick", "POST", TOKENS["viewer"][0])
        assert status == 403 and body["error"] == "UNAUTHORIZED"
        status, body, _ = http(base, f"/api/jobs/{job}/delete", "POST",
                               TOKENS["producer"][0])
        assert status == 403
        status, body, _ = http(base, f"/api/jobs/{job}/delete", "POST", TOKENS["root"][0])
        assert status == 200 and body["reply"] == "DELETED"


def test_dashboard_login_sets_a_strict_cookie(tmp_path: Path) -> None:
    pytest.importorskip("hypercorn")
    with server(tmp_path, auth=write_auth(tmp_path / "auth.toml"), http=True) as s:
        assert s.http is not None
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        req = urllib.request.Request(
            s.http + "/login", method="POST", headers=form,
            data=f"token={TOKENS['viewer'][0]}&next=/tubes/default".encode())
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as got:
            opener.open(req, timeout=HTTP_TIMEOUT)
        assert got.value.code == 303
        assert got.value.headers["location"] == "/tubes/default"
        cookie = got.value.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        value = re.match(r"tubeserver_token=([^;]+);", cookie)
        assert value is not None and value.group(1) == TOKENS["viewer"][0]
        status, page, _ = http(s.http, "/", headers={"Cookie": cookie.split(";")[0],
                                                     "Accept": "text/html"})
        assert status == 200 and "viewer" in page and "Log out" in page
        assert "No authentication" not in page
        # Another site's address is never where a login leads.
        for target in ("//evil.example/", "https://evil.example/", "/\\evil"):
            req = urllib.request.Request(
                s.http + "/login", method="POST", headers=form,
                data=f"token={TOKENS['viewer'][0]}&next={target}".encode())
            with pytest.raises(urllib.error.HTTPError) as got:
                opener.open(req, timeout=HTTP_TIMEOUT)
            assert got.value.headers["location"] == "/"
        # A wrong token gets the form again, late.
        req = urllib.request.Request(s.http + "/login", method="POST", headers=form,
                                     data=b"token=tbs_nope")
        with pytest.raises(urllib.error.HTTPError) as got:
            opener.open(req, timeout=HTTP_TIMEOUT)
        assert got.value.code == 401 and "set-cookie" not in got.value.headers


def test_http_without_auth_answers_only_local_host_names(tmp_path: Path) -> None:
    pytest.importorskip("hypercorn")
    with server(tmp_path, "--http-allow-hosts", "queue.internal", http=True) as s:
        assert s.http is not None
        for host, status in (("127.0.0.1:1", 200), ("localhost:8", 200), ("[::1]:9", 200),
                             ("queue.internal:80", 200), ("evil.example:11301", 421),
                             ("127.0.0.1.evil.example", 421)):
            assert http(s.http, "/api/stats", headers={"Host": host})[0] == status, host
        # Health checks answer whatever the name (load balancers use their own).
        assert http(s.http, "/healthz", headers={"Host": "evil.example"})[0] == 200
        # A rebinding page's POST is same-origin by its name, and still refused.
        status, _, _ = http(s.http, "/api/tubes/default/kick", "POST",
                            headers={"Host": "evil.example:11301",
                                     "Origin": "http://evil.example:11301"})
        assert status == 421


# --- before auth: a deadline and a small buffer ---------------------------------------------


def test_connections_that_never_authenticate_are_closed(tmp_path: Path) -> None:
    pytest.importorskip("hypercorn")
    with server(tmp_path, "--auth-deadline", "1.5", auth=write_auth(tmp_path / "auth.toml"),
                http=True) as s:
        assert s.http is not None
        idle = s.conn()
        authed = s.conn("root")
        # A put before auth: its body is not read past the small pre-auth buffer.
        flood = s.conn()
        flood.raw(b"put 0 0 60 60000\r\n")
        try:
            flood.raw(b"x" * 60000 + b"\r\n")
        except OSError:
            pass  # the server stopped reading: the kernel's buffers may fill
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, conns, _ = http(s.http, "/api/connections", token=TOKENS["root"][0])
            assert status == 200
            ins = sorted(c["buffered-in"] for c in conns)
            if ins[-1] > 0:
                break
            time.sleep(0.05)
        assert 0 < ins[-1] <= 4096, conns
        # Idle or flooding, neither authenticated in time: both are closed; the
        # authenticated one, idle all along, is not.
        assert idle.at_eof() and flood.at_eof()
        assert authed.cmd(b"list-tube-used") == b"USING default\r\n"
        # Once authenticated, a connection may buffer as much as any (a 60,000-byte put).
        with s.conn("root") as big:
            assert big.put(b"y" * 60000).startswith(b"INSERTED")
        assert "no good auth within" in s.stderr()
        idle.close()
        flood.close()
        authed.close()
