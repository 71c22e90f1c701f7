"""Differential protocol tests: replay raw sessions on beanstalkd and tubeserver, compare replies.

Each session (tests/diff_sessions.py) runs on a fresh beanstalkd and a fresh tubeserver in
lockstep; replies are compared byte for byte after normalising job ids and volatile stats keys
(`total-connections` is shown as the connections since the session's first `stats`, since the
start-up check may connect more than once).
Intended deviations are checked against their written expectations on one server only.

TUBESERVER_DIFF_SELFTEST=1 puts beanstalkd on both sides (and checks the deviation sessions
against beanstalkd's documented behaviour): the harness must then report no difference.
Run ``python tests/test_differential.py [session ...]`` to print beanstalkd's transcripts.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import attrs
import procs
import pytest
from diff_sessions import (
    ALL_COMMANDS,
    BUG_DEVIATIONS,
    DEVIATIONS,
    SESSIONS,
    Close,
    Deviation,
    ExpectClose,
    HalfClose,
    Quiet,
    Read,
    Send,
    Session,
    Signal,
    Sleep,
    Step,
)

from tubeserver.stats import ADMIN_COMMAND_KEYS, FLOW_COMMAND_KEYS

SELFTEST = os.environ.get("TUBESERVER_DIFF_SELFTEST") == "1"
READ_TIMEOUT = 4.0  # per reply; the slowest legitimate reply (TTR expiry) takes ~1-2 s
MAX_LINE = 64 * 1024  # a reply line longer than this is a framing failure, not a wait
BYTEWISE_PAUSE = 0.001
FINAL_SETTLE = 0.02  # how long to look for stray bytes at the end of a session
PREFETCH = 2  # server pairs started ahead of use (startup dominates the wall time)

Kind = Literal["beanstalkd", "tubeserver"]
ReadKind = Literal["reply", "eof"]

# --------------------------------------------------------------------------- normalisation

SERVER_VOLATILE = frozenset(
    {
        "pid",
        "version",
        "rusage-utime",
        "rusage-stime",
        "uptime",
        "id",
        "hostname",
        "os",
        "platform",
        "binlog-oldest-index",
        "binlog-current-index",
        "binlog-records-migrated",
        "binlog-records-written",
        "binlog-max-size",
        # tubeserver's own keys, after beanstalkd's (test_stats checks their place).
        "cmd-finish",
        "cmd-fail",
        "cmd-result",
        "cmd-job-status",
        "cmd-checkpoint",
        "cmd-peek-checkpoint",
        "current-result-waiters",
        "kept-records",
        "kept-record-bytes",
        "kept-records-expired",
        "kept-records-evicted",
        *FLOW_COMMAND_KEYS,
        "current-dependent-jobs",
        "current-unique-keys",
        "unique-duplicates",
        "current-schedules",
        "schedule-firings",
        "current-tube-limits",
        *ADMIN_COMMAND_KEYS,
        "jobs-cleared",
        "max-jobs",
        "max-memory",
        "current-job-memory",
        "puts-refused",
        "schedule-firings-refused",
        "connections-refused",
        "connections-stalled",
        "build",
    }
)
JOB_FRAMES = (b"RESERVED", b"FOUND")
ID_LINES = (b"INSERTED", b"BURIED")
PLACEHOLDER = re.compile(rb"\{id(\d+)\}")


def show(data: bytes) -> str:
    """Printable ASCII as text, anything else as a bytes repr."""
    if all(32 <= c < 127 for c in data):
        return data.decode("ascii")
    return repr(data)


def parse_yaml_mapping(payload: bytes) -> dict[str, str] | None:
    """The flat `key: value` YAML of the stats commands, or None when it is not that shape."""
    if not payload.startswith(b"---\n") or not payload.endswith(b"\n"):
        return None
    pairs: dict[str, str] = {}
    for line in payload[4:-1].split(b"\n"):
        key, sep, value = line.decode("latin-1").partition(": ")
        if not sep or not key or key in pairs:
            return None
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]  # 1.13 and tubeserver quote strings, Debian's 1.12 does not
        pairs[key] = value
    return pairs


def is_yaml_list(payload: bytes) -> bool:
    if not payload.startswith(b"---\n") or not payload.endswith(b"\n"):
        return False
    return all(line.startswith(b"- ") for line in payload[4:-1].split(b"\n"))


def drop_volatile(pairs: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Classify a stats mapping and remove the keys that legitimately differ between runs."""
    if "state" in pairs:
        kind = "stats-job"
        volatile = {"age"}
        if pairs["state"] in ("reserved", "delayed"):
            volatile.add("time-left")
    elif "pause-time-left" in pairs:
        kind = "stats-tube"
        volatile = set() if pairs.get("pause") == "0" else {"pause-time-left"}
    else:
        kind = "stats"
        volatile = set(SERVER_VOLATILE)
    return kind, {k: v for k, v in pairs.items() if k not in volatile}


# --------------------------------------------------------------------------- one server's side


@attrs.define
class Conn:
    sock: socket.socket
    buf: bytearray = attrs.field(factory=bytearray)
    closed: bool = False  # by the client, or seen EOF from the server
    broken: str | None = None  # framing lost: further reads are not attempted


@attrs.frozen
class Entry:
    step: int
    conn: str
    reply: str


@attrs.define
class Side:
    """One server under test with its connections, id map and transcript."""

    label: str
    server: procs.RunningServer
    normalise_ids: bool = True
    conns: dict[str, Conn] = attrs.field(factory=dict)
    to_placeholder: dict[int, int] = attrs.field(factory=dict)
    from_placeholder: dict[int, int] = attrs.field(factory=dict)
    connections_before: int | None = None  # total-connections at the first `stats`
    transcript: list[Entry] = attrs.field(factory=list)
    aborted: str | None = None

    # ---- ids
    def placeholder(self, real: bytes) -> str:
        number = int(real)
        if number not in self.to_placeholder:
            index = len(self.to_placeholder) + 1
            self.to_placeholder[number] = index
            self.from_placeholder[index] = number
        return f"{{id{self.to_placeholder[number]}}}" if self.normalise_ids else str(number)

    def substitute(self, data: bytes) -> bytes:
        def repl(match: re.Match[bytes]) -> bytes:
            index = int(match.group(1))
            if index not in self.from_placeholder:
                raise LookupError(f"{{id{index}}} used before this server showed that many ids")
            return str(self.from_placeholder[index]).encode()

        return PLACEHOLDER.sub(repl, data)

    # ---- connections
    def conn(self, name: str) -> Conn:
        if name not in self.conns:
            sock = socket.create_connection(self.server.addr, timeout=READ_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[name] = Conn(sock)
        return self.conns[name]

    def send(self, name: str, data: bytes) -> None:
        conn = self.conn(name)
        if conn.closed or conn.broken:
            return
        try:
            conn.sock.sendall(data)
        except OSError as exc:
            conn.broken = f"send failed: {exc!r}"

    def close(self, name: str) -> None:
        conn = self.conn(name)
        conn.closed = True
        conn.sock.close()

    def half_close(self, name: str) -> None:
        conn = self.conn(name)
        if not conn.closed:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)

    def close_all(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(OSError):
                conn.sock.close()

    # ---- reading
    def _fill(self, conn: Conn, deadline: float) -> bool:
        """Append what arrives before the deadline; False on EOF. Raises TimeoutError."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        conn.sock.settimeout(remaining)
        try:
            chunk = conn.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return False
        conn.buf += chunk
        return True

    def _take_line(self, conn: Conn, deadline: float) -> bytes | None:
        while True:
            end = conn.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(conn.buf[:end])
                del conn.buf[: end + 2]
                return line
            if len(conn.buf) > MAX_LINE:
                raise ValueError(f"no CRLF within {MAX_LINE} bytes: {bytes(conn.buf[:80])!r}")
            if not self._fill(conn, deadline):
                return None

    def _take_exact(self, conn: Conn, size: int, deadline: float) -> bytes | None:
        while len(conn.buf) < size:
            if not self._fill(conn, deadline):
                return None
        data = bytes(conn.buf[:size])
        del conn.buf[:size]
        return data

    def read_reply(self, name: str) -> str:
        """One reply as the protocol frames it, normalised; errors become marker strings."""
        conn = self.conn(name)
        if conn.broken:
            return f"<not read: {conn.broken}>"
        if conn.closed:
            return "<EOF>"
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            line = self._take_line(conn, deadline)
            if line is None:
                conn.closed = True
                return "<EOF>" if not conn.buf else f"<EOF mid-line {bytes(conn.buf)!r}>"
            return self._normalise(conn, line, deadline)
        except TimeoutError:
            conn.broken = "an earlier read timed out"
            return f"<TIMEOUT: no complete reply within {READ_TIMEOUT:.1f} s>"
        except ValueError as exc:
            conn.broken = "framing lost"
            return f"<FRAMING: {exc}>"

    def _normalise(self, conn: Conn, line: bytes, deadline: float) -> str:
        words = line.split(b" ")
        if words[0] in ID_LINES and len(words) == 2 and words[1].isdigit():
            return f"{show(words[0])} {self.placeholder(words[1])}"
        framed = words[0] in (*JOB_FRAMES, b"OK") and words[-1].isdigit() and len(words) >= 2
        if not framed:
            return show(line)
        size = int(words[-1])
        chunk = self._take_exact(conn, size + 2, deadline)
        if chunk is None:
            conn.closed = True
            return f"<EOF inside the {size}-byte payload of {show(line)!r}>"
        payload, trailer = chunk[:-2], chunk[-2:]
        if trailer != b"\r\n":
            conn.broken = "framing lost"
            return (
                f"<FRAMING: {show(line)!r}: the {size} payload bytes are not followed by "
                f"CRLF (got {trailer!r}; payload starts {payload[:60]!r})>"
            )
        if words[0] in JOB_FRAMES:
            if len(words) != 3 or not words[1].isdigit():
                return f"{show(line)} {payload!r}"
            return f"{show(words[0])} {self.placeholder(words[1])} {size} {payload!r}"
        if len(words) != 2:
            return f"{show(line)} {payload!r}"
        if is_yaml_list(payload):
            return f"OK {payload!r}"
        pairs = parse_yaml_mapping(payload)
        if pairs is None:
            return f"OK <not flat YAML> {payload!r}"
        if "state" in pairs and pairs.get("id", "").isdigit():
            pairs["id"] = self.placeholder(pairs["id"].encode())
        kind, kept = drop_volatile(pairs)
        total = kept.get("total-connections", "")
        if kind == "stats" and total.isdigit():
            if self.connections_before is None:
                self.connections_before = int(total)
            kept["total-connections"] = f"+{int(total) - self.connections_before}"
        return "OK " + kind + "".join(f"\n  {k}: {kept[k]}" for k in sorted(kept))

    def read_eof(self, name: str) -> str:
        """The server must close the connection without sending anything more."""
        conn = self.conn(name)
        if conn.broken:
            return f"<not read: {conn.broken}>"
        if conn.closed:
            return "<EOF>"
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            while self._fill(conn, deadline):
                pass
        except TimeoutError:
            conn.broken = "connection stayed open"
            extra = f" after {bytes(conn.buf)!r}" if conn.buf else ""
            return f"<still open{extra}>"
        conn.closed = True
        if conn.buf:
            data, conn.buf = bytes(conn.buf), bytearray()
            return f"<data before EOF: {data!r}>"
        return "<EOF>"

    def pending(self, name: str) -> str:
        """Non-blocking: what has already arrived on the connection ("<quiet>" if nothing)."""
        conn = self.conn(name)
        if conn.closed or conn.broken:
            return "<quiet>"
        got = bytes(conn.buf)
        conn.buf.clear()
        conn.sock.setblocking(False)
        try:
            while len(got) < MAX_LINE:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    conn.closed = True
                    return f"<unexpected EOF after {got!r}>" if got else "<unexpected EOF>"
                got += chunk
        except (BlockingIOError, ConnectionResetError):
            pass
        finally:
            conn.sock.setblocking(True)
        if got:
            conn.broken = "unexpected data"
            return f"<unexpected data: {got!r}>"
        return "<quiet>"

    def record(self, step: int, conn: str, reply: str) -> None:
        self.transcript.append(Entry(step, conn, reply))


# --------------------------------------------------------------------------- running sessions

Plan = Callable[[int, Side], Sequence[ReadKind]]


def reads_of(step: Step) -> list[ReadKind]:
    """Replies a main-corpus step reads."""
    if isinstance(step, Send | Read):
        return ["reply"] * step.replies
    if isinstance(step, ExpectClose):
        return ["eof"]
    return []


def step_conn(step: Step) -> str | None:
    if isinstance(step, Send | Read | ExpectClose | Close | HalfClose | Quiet):
        return step.conn
    return None


def run_steps(sides: Sequence[Side], steps: Sequence[Step], plan: Plan) -> None:
    """Run the steps on all sides in lockstep: send everywhere first, then read everywhere."""
    for index, step in enumerate(steps):
        live = [side for side in sides if side.aborted is None]
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            continue
        if isinstance(step, Signal):
            for side in live:
                side.server.proc.send_signal(step.signum)
            continue
        if isinstance(step, Close | HalfClose):
            for side in live:
                if isinstance(step, Close):
                    side.close(step.conn)
                else:
                    side.half_close(step.conn)
            continue
        if isinstance(step, Quiet):
            time.sleep(step.seconds)
            for side in live:
                side.record(index, step.conn, side.pending(step.conn))
            continue
        if isinstance(step, Send):
            _send_step(index, step, live)
        conn = step_conn(step)
        assert conn is not None
        for side in live:
            if side.aborted is not None:
                continue
            for kind in plan(index, side):
                reply = side.read_reply(conn) if kind == "reply" else side.read_eof(conn)
                side.record(index, conn, reply)


def _send_step(index: int, step: Send, sides: Sequence[Side]) -> None:
    payloads: list[tuple[Side, bytes]] = []
    for side in sides:
        try:
            payloads.append((side, side.substitute(step.data)))
        except LookupError as exc:
            side.aborted = f"step {index}: {exc}"
            side.record(index, step.conn, f"<aborted: {exc}>")
    if not step.bytewise:
        for side, data in payloads:
            side.send(step.conn, data)
        return
    for offset in range(max((len(data) for _, data in payloads), default=0)):
        for side, data in payloads:
            if offset < len(data):
                side.send(step.conn, data[offset : offset + 1])
        time.sleep(BYTEWISE_PAUSE)


def finish(sides: Sequence[Side], last_step: int) -> None:
    """Look for stray bytes on every open connection, then check the servers are alive."""
    open_socks = [
        c.sock for side in sides for c in side.conns.values() if not c.closed and not c.broken
    ]
    if open_socks:
        select.select(open_socks, [], [], FINAL_SETTLE)
    for side in sides:
        for name, conn in side.conns.items():
            if conn.closed or conn.broken:
                continue
            stray = side.pending(name)
            if stray != "<quiet>":
                side.record(last_step, name, stray)
        code = side.server.proc.poll()
        if code is not None:
            side.record(last_step, "-", f"<server process exited with code {code}>")
        side.close_all()


def replay(sides: Sequence[Side], steps: Sequence[Step], plan: Plan) -> None:
    try:
        run_steps(sides, steps, plan)
        finish(sides, len(steps))
    finally:
        for side in sides:
            side.close_all()


# --------------------------------------------------------------------------- comparing


def describe_step(step: Step | None) -> str:
    if step is None:
        return "(end of session)"
    if isinstance(step, Send):
        data = step.data if len(step.data) <= 120 else step.data[:117] + b"..."
        return f"[{step.conn}] send {data!r}" + (" byte by byte" if step.bytewise else "")
    return repr(step)


def explain(a: str, b: str, label_a: str, label_b: str) -> list[str]:
    """Two differing replies, with a key-by-key diff for stats mappings."""
    if a.startswith("OK stats") and b.startswith("OK stats") and "\n" in a + b:
        keys_a = dict(line.strip().split(": ", 1) for line in a.splitlines()[1:])
        keys_b = dict(line.strip().split(": ", 1) for line in b.splitlines()[1:])
        out = [f"      {a.splitlines()[0]} differs:"]
        for key in sorted(keys_a.keys() | keys_b.keys()):
            va, vb = keys_a.get(key, "<missing>"), keys_b.get(key, "<missing>")
            if va != vb:
                out.append(f"        {key}: {label_a}={va!r} {label_b}={vb!r}")
        return out
    return [f"      {label_a}: {a}", f"      {label_b}: {b}"]


def compare(
    name: str,
    steps: Sequence[Step],
    got: Side,
    want: Sequence[Entry],
    want_label: str,
) -> list[str]:
    """Differences between ``got``'s transcript and ``want``, grouped by step."""
    problems: list[str] = []
    by_step_got: dict[int, list[Entry]] = {}
    by_step_want: dict[int, list[Entry]] = {}
    for entry in got.transcript:
        by_step_got.setdefault(entry.step, []).append(entry)
    for entry in want:
        by_step_want.setdefault(entry.step, []).append(entry)
    for index in sorted(by_step_got.keys() | by_step_want.keys()):
        a = [(e.conn, e.reply) for e in by_step_want.get(index, [])]
        b = [(e.conn, e.reply) for e in by_step_got.get(index, [])]
        if a == b:
            continue
        step = steps[index] if index < len(steps) else None
        problems.append(f"  step {index}: {describe_step(step)}")
        for i in range(max(len(a), len(b))):
            ra = a[i][1] if i < len(a) else "<no reply expected>"
            rb = b[i][1] if i < len(b) else "<no reply read>"
            if ra != rb:
                problems.extend(explain(ra, rb, want_label, got.label))
    if problems:
        problems.insert(0, f"session {name!r}: {got.label} differs from {want_label}")
    return problems


# --------------------------------------------------------------------------- servers


@attrs.define
class Started:
    servers: list[procs.RunningServer]
    stack: contextlib.ExitStack


def _start(kinds: Sequence[Kind], args: tuple[str, ...]) -> Started:
    stack = contextlib.ExitStack()
    try:
        servers = [
            stack.enter_context(procs.server(kind, *args))
            for kind in kinds
        ]
    except BaseException:
        stack.close()
        raise
    return Started(servers, stack)


class ServerPool:
    """Starts fresh server sets ahead of use on worker threads (startup dominates wall time)."""

    def __init__(self, kinds: Sequence[Kind], wanted: Counter[tuple[str, ...]]) -> None:
        self._kinds = tuple(kinds)
        self._remaining = wanted
        self._executor = ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="servers")
        self._queued: dict[tuple[str, ...], list[Future[Started]]] = {}

    def _top_up(self, args: tuple[str, ...]) -> None:
        queue = self._queued.setdefault(args, [])
        while len(queue) < min(PREFETCH, self._remaining[args]):
            queue.append(self._executor.submit(_start, self._kinds, args))

    @contextlib.contextmanager
    def take(self, args: tuple[str, ...]) -> Iterator[list[procs.RunningServer]]:
        self._remaining[args] = max(self._remaining[args], 1)
        self._top_up(args)
        future = self._queued[args].pop(0)
        self._remaining[args] -= 1
        self._top_up(args)
        started = future.result(timeout=60)
        with started.stack:
            yield started.servers

    def close(self) -> None:
        for queue in self._queued.values():
            for future in queue:
                if not future.cancel():
                    with contextlib.suppress(BaseException):
                        future.result(timeout=60).stack.close()
        self._executor.shutdown(wait=True)


CANDIDATE: Kind = "beanstalkd" if SELFTEST else "tubeserver"
CANDIDATE_LABEL = "beanstalkd(selftest)" if SELFTEST else "tubeserver"


@pytest.fixture(scope="module")
def pair_pool() -> Iterator[ServerPool]:
    procs.require_beanstalkd()
    pool = ServerPool(("beanstalkd", CANDIDATE), Counter(s.server_args for s in SESSIONS))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def solo_pool() -> Iterator[ServerPool]:
    if SELFTEST:
        procs.require_beanstalkd()
    pool = ServerPool((CANDIDATE,), Counter(d.server_args for d in ALL_DEVIATIONS))
    try:
        yield pool
    finally:
        pool.close()


# --------------------------------------------------------------------------- tests


def run_session(
    session: Session, servers: Sequence[procs.RunningServer], labels: Sequence[str]
) -> list[Side]:
    sides = [Side(label, server) for label, server in zip(labels, servers, strict=True)]
    plans = [reads_of(step) for step in session.steps]
    replay(sides, session.steps, lambda index, _side: plans[index])
    return sides


# Sessions in which beanstalkd 1.12 itself is unreliable under CPU load: a waiting worker
# sometimes never gets the job whose TTR ran out (reproduced 12 of 25 times with three busy
# loops on this 2-core machine, never when idle). Only that outcome is excused, and only on
# beanstalkd's side: its reserve answered TIMED_OUT, or not before the harness's read timeout.
LOSES_TTR_UNDER_LOAD = frozenset({"ttr_expiry_returns_job"})


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_session_matches_beanstalkd(session: Session, pair_pool: ServerPool) -> None:
    with pair_pool.take(session.server_args) as servers:
        reference, candidate = run_session(session, servers, ("beanstalkd", CANDIDATE_LABEL))
    problems = compare(
        session.name, session.steps, candidate, reference.transcript, reference.label
    )
    if problems and session.name in LOSES_TTR_UNDER_LOAD and any(
            e.reply.startswith(("TIMED_OUT", "<TIMEOUT")) for e in reference.transcript):
        pytest.xfail("beanstalkd lost a TTR expiry under CPU load (beanstalkd #262/#380): "
                     + "; ".join(problems))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def expected_transcript(deviation: Deviation, kind: Kind) -> list[Entry]:
    entries: list[Entry] = []
    for index, item in enumerate(deviation.steps):
        conn = step_conn(item.step) or "-"
        replies = item.tubeserver if kind == "tubeserver" else item.beanstalkd
        entries.extend(Entry(index, conn, reply) for reply in replies)
    return entries


ALL_DEVIATIONS = DEVIATIONS + BUG_DEVIATIONS


@pytest.mark.parametrize("deviation", ALL_DEVIATIONS, ids=[d.name for d in ALL_DEVIATIONS])
def test_intended_deviation(deviation: Deviation, solo_pool: ServerPool) -> None:
    # In self-test mode the session runs on beanstalkd and must show beanstalkd's documented
    # (different) behaviour, which proves the session really exercises the quirk.
    want = expected_transcript(deviation, CANDIDATE)

    def plan(index: int, side: Side) -> list[ReadKind]:
        item = deviation.steps[index]
        replies = item.tubeserver if CANDIDATE == "tubeserver" else item.beanstalkd
        return ["eof" if reply == "<EOF>" else "reply" for reply in replies]

    steps = [item.step for item in deviation.steps]
    with solo_pool.take(deviation.server_args) as servers:
        side = Side(CANDIDATE_LABEL, servers[0], normalise_ids=deviation.normalise_ids)
        replay([side], steps, plan)
    problems = compare(deviation.name, steps, side, want, "expected")
    if problems:
        problems.insert(1, f"  deviation: {deviation.why}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---- static checks on the corpus (no server needed)


def test_corpus_is_well_formed() -> None:
    names = [s.name for s in SESSIONS] + [d.name for d in ALL_DEVIATIONS]
    assert len(names) == len(set(names)), "duplicate session names"
    corpus = b"\n".join(step.data for s in SESSIONS for step in s.steps if isinstance(step, Send))
    missing = [
        c
        for c in ALL_COMMANDS
        if not re.search(rb"(^|\n)" + re.escape(c.encode()) + rb"[ \r]", corpus)
    ]
    assert not missing, f"commands never sent in the main corpus: {missing}"
    slept = sum(
        step.seconds for s in SESSIONS for step in s.steps if isinstance(step, Sleep | Quiet)
    )
    slept += sum(
        item.step.seconds
        for d in ALL_DEVIATIONS
        for item in d.steps
        if isinstance(item.step, Sleep | Quiet)
    )
    assert slept < 5.0, f"the corpus sleeps {slept:.2f} s in total; keep it under 5 s"


def _pair() -> tuple[socket.socket, Side]:
    ours, theirs = socket.socketpair()
    proc = None
    side = Side("fake", procs.RunningServer("127.0.0.1", 0, proc))  # type: ignore[arg-type]
    side.conns["a"] = Conn(theirs)
    return ours, side


def test_normaliser_yaml_quotes_ids_and_volatile_keys() -> None:
    unquoted = b"---\nid: 7\ntube: 123\nstate: reserved\nage: 3\ntime-left: 9\nttr: 10\n"
    quoted = b'---\nid: 12\ntube: "123"\nstate: reserved\nage: 0\ntime-left: 10\nttr: 10\n'
    replies = []
    for payload in (unquoted, quoted):
        server, side = _pair()
        with server:
            server.sendall(b"OK %d\r\n%s\r\n" % (len(payload), payload))
            replies.append(side.read_reply("a"))
        side.close_all()
    assert (
        replies[0] == replies[1] == "OK stats-job\n  id: {id1}\n  state: reserved\n"
        "  ttr: 10\n  tube: 123"
    )


def test_normaliser_catches_a_wrong_ok_byte_count() -> None:
    server, side = _pair()
    with server:
        payload = b"---\n- default\n"
        server.sendall(b"OK %d\r\n%s\r\nUSING default\r\n" % (len(payload) - 1, payload))
        assert side.read_reply("a").startswith("<FRAMING:")
    side.close_all()


def test_reader_times_out_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "READ_TIMEOUT", 0.1)
    server, side = _pair()
    with server:
        server.sendall(b"RESERVED 1 10\r\nabc")
        assert side.read_reply("a").startswith("<TIMEOUT")
        assert side.read_reply("a").startswith("<not read")
    side.close_all()


# --------------------------------------------------------------------------- manual use


def main(argv: Sequence[str]) -> int:
    """Print beanstalkd's normalised transcript for the named sessions (all if none)."""
    chosen = [s for s in SESSIONS if not argv or s.name in argv]
    for session in chosen:
        with procs.beanstalkd(*session.server_args) as server:
            (side,) = run_session(session, [server], ["beanstalkd"])
        print(f"=== {session.name}")
        for entry in side.transcript:
            step = session.steps[entry.step] if entry.step < len(session.steps) else None
            print(f"[{entry.step}] {describe_step(step)}")
            print("    " + entry.reply.replace("\n", "\n    "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
