"""The fuzz target: an input is a short program of clients' bytes, hang-ups, slow readers and
clock steps, run in process through the epoll hub's own round code (rounds.py: parser,
dispatcher, engine) over fake sockets, with no trio and no real time.

An input's bytes are data for the current connection, except that 0xFF starts an operation:

    \\xff a .. \\xff d   what follows goes to connection slot 0-3 (slot 0 at the start); a slot
                       whose client hung up gets a new connection when it is sent to again
    \\xff /            a split point: run 2 delivers the slot's bytes before and after it in
                       separate recvs of the same round
    \\xff .            the round ends: the hub reads what each client sent, runs it, replies
    \\xff t N          the round ends, then the clock moves on STEPS[N % 10] seconds, the
                       ticker firing at each deadline on the way (delays, TTRs, timeouts)
    \\xff x            the slot's client hangs up after what it sent
    \\xff w N          the slot's client reads slowly: its socket takes N % 64 * 16 bytes a
                       send (0: all)
    \\xff \\xff         a data byte 0xFF

`check` runs the program twice: run 1 hands the hub each client's bytes of a round as one
recv and parses with the build's parser path, run 2 splits them at the split points and
parses with the other path (the hot path is compiled-only by default). The properties:
  1. no exception escapes the hub, the dispatcher or the engine (the protocol's own errors
     become error replies inside the dispatcher; with no bug handler, anything else is raised);
  2. after every round of run 1 (and at the end of run 2) the engine's invariants hold
     (`check_invariants`), and the hub, the server and the engine agree on the connections;
  3. every reply stream frames as protocol replies, and none is INTERNAL_ERROR;
  4. both runs send every client the same bytes (stats' rusage values aside) and count the
     same commands;
  5. when every client has hung up, every session is gone with nothing left reserved.
"""

from __future__ import annotations

import math
import re
import select
import socket
from collections import deque
from collections.abc import Sequence
from typing import cast

import attrs

from tubeserver.caps import NO_CAPS
from tubeserver.dispatch import Dispatcher
from tubeserver.engine import Engine
from tubeserver.invariants import check_invariants
from tubeserver.parser import COMPILED
from tubeserver.rounds import GONE, IN, OUT, RECV_SIZE, Client, Rounds
from tubeserver.server import Server
from tubeserver.stats import ProcessInfo
from tubeserver.tracking import Tracker

MARK = 0xFF
SLOTS = 4
# Around the 1 s deadline margin and TTR, delays and timeouts; 61 s for cron's minutes.
STEPS = (0.001, 0.25, 0.5, 0.999, 1.0, 1.001, 2.0, 5.0, 10.0, 61.0)
WINDOW_UNIT = 16
# Small, so that data over the limit (JOB_TOO_BIG, skipped) fits in an input.
MAX_JOB_SIZE = 256
# Records of finished jobs expire and get evicted within an input's clock steps and sizes.
RESULT_TTL = 30.0
RESULT_MEMORY = 4096
START = 1000.0  # the engine's clock when a run starts
WALL = 1_700_000_000.0 - START  # the wall clock minus the engine's: cron times in 2023
FIRST_FD = 1000
# Ticks in one run: beyond it the clock still moves but the ticker stops (commands still
# tick when they find a deadline passed), so that no input runs for long (an `every 1`
# schedule ticks 61 times in a 61 s step).
TICK_BUDGET = 2_000
MAX_STUCK = 3  # ticks in a row whose deadline had passed: more, and the ticker would spin
END_ROUNDS = 1_000  # rounds after every client hung up before all must be closed

# Every word a reply line starts with (replies.py, errors.py); those followed by data give
# its length as their last field.
REPLY_WORDS = frozenset({
    b"BAD_FORMAT", b"BURIED", b"CHECKPOINTED", b"DEADLINE_SOON", b"DELETED", b"DRAINING",
    b"DUPLICATE", b"EXPECTED_CRLF", b"FAILED", b"FINISHED", b"FOUND", b"INSERTED",
    b"JOB_TOO_BIG", b"KICKED", b"LIMITED", b"NOT_FOUND", b"NOT_IGNORED", b"OK",
    b"OUT_OF_MEMORY", b"PAUSED", b"RELEASED", b"RESERVED", b"RESERVED-BATCH", b"RESULT",
    b"SCHEDULED", b"TIMED_OUT", b"TOUCHED", b"TUBE_FULL", b"UNKNOWN_COMMAND", b"UNSCHEDULED",
    b"USING", b"WATCHING",
})
WITH_DATA = frozenset({b"OK", b"FOUND", b"RESERVED", b"RESULT", b"FAILED"})
# `stats` reports the process's CPU time, which differs between two runs of one program.
STATS_REPLY = re.compile(rb"OK \d+\r\n(---\ncurrent-jobs-urgent: [^\r]*)\r\n")
RUSAGE = re.compile(rb"(rusage-[us]time): [0-9.]+\n")


# --------------------------------------------------------------------------- the program

@attrs.frozen
class Send:
    slot: int
    data: bytes
    split: bool  # run 2 starts a new recv with these bytes


@attrs.frozen
class HangUp:
    slot: int


@attrs.frozen
class Window:
    slot: int
    size: int  # bytes the client's socket takes a send; 0: all


@attrs.frozen
class EndRound:
    step: float  # seconds the clock moves on after the round


Step = Send | HangUp | Window | EndRound


def decode(data: bytes) -> list[Step]:
    """The program an input describes (see the module's docstring); never fails."""
    steps: list[Step] = []
    slot = 0
    split = [False] * SLOTS
    i, n = 0, len(data)
    while i < n:
        j = data.find(MARK, i)
        if j < 0:
            j = n
        if j > i:
            _send(steps, Send(slot, data[i:j], split[slot]))
            split[slot] = False
        if j + 1 >= n:
            break
        op = data[j + 1]
        i = j + 2
        if op == MARK:
            _send(steps, Send(slot, b"\xff", split[slot]))
            split[slot] = False
        elif 0x61 <= op < 0x61 + SLOTS:  # a-d
            slot = op - 0x61
        elif op == 0x2F:  # /
            split[slot] = True
        elif op == 0x2E:  # .
            steps.append(EndRound(0.0))
        elif op == 0x78:  # x
            steps.append(HangUp(slot))
        elif op in (0x74, 0x77) and i < n:  # t N, w N
            arg = data[i]
            i += 1
            if op == 0x74:
                steps.append(EndRound(STEPS[arg % len(STEPS)]))
            else:
                steps.append(Window(slot, arg % 64 * WINDOW_UNIT))
        # Any other operation byte is nothing: mutations make plenty of them.
    return steps


def _send(steps: list[Step], send: Send) -> None:
    """Add `send`, joined to the step before when that sent to the same slot unsplit."""
    last = steps[-1] if steps else None
    if not send.split and isinstance(last, Send) and last.slot == send.slot:
        steps[-1] = Send(send.slot, last.data + send.data, last.split)
    else:
        steps.append(send)


def encode(steps: Sequence[Step]) -> bytes:
    """An input for `steps` (the corpus is written with this)."""
    out = bytearray()
    slot = 0
    for step in steps:
        if isinstance(step, EndRound):
            out += b"\xff." if not step.step else b"\xfft" + bytes([STEPS.index(step.step)])
            continue
        if step.slot != slot:
            out += b"\xff" + bytes([0x61 + step.slot])
            slot = step.slot
        if isinstance(step, Send):
            out += (b"\xff/" if step.split else b"") + step.data.replace(b"\xff", b"\xff\xff")
        elif isinstance(step, HangUp):
            out += b"\xffx"
        else:
            out += b"\xffw" + bytes([step.size // WINDOW_UNIT])
    return bytes(out)


# --------------------------------------------------------------------------- the fakes

class Peer:
    """A client's end of one connection, shaped as the socket the hub holds: `recv` hands
    out what the client sent, `send` takes up to `window` bytes a call into `received`."""

    def __init__(self, index: int, epoll: Epoll) -> None:
        self.index = index
        self.fd = FIRST_FD + index
        self.epoll = epoll
        self.inbox: deque[bytes] = deque()
        self.eof = False  # the client hung up (after what is in `inbox`)
        self.answered = False  # and the server sent to it since: its kernel answers RST
        self.reset = False  # that RST came back (from the round after the send on)
        self.window = 0
        self.received = bytearray()
        self.closed = False  # the hub closed its socket

    def queue(self, data: bytes, new_recv: bool) -> None:
        if self.inbox and not new_recv:
            self.inbox[-1] += data
        else:
            self.inbox.append(data)

    def reads(self) -> int:
        """The recvs that would return something now: data, then the end of the stream."""
        return sum(-(-len(b) // RECV_SIZE) for b in self.inbox) + self.eof

    # The socket methods the hub calls.

    def fileno(self) -> int:
        return self.fd

    def recv(self, size: int) -> bytes:
        if self.reset:
            raise ConnectionResetError(104, "Connection reset by peer")
        if self.inbox:
            data = self.inbox.popleft()
            if len(data) > size:
                self.inbox.appendleft(data[size:])
                data = data[:size]
            return data
        if self.eof:
            return b""
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self.reset:
            raise ConnectionResetError(104, "Connection reset by peer")
        if self.eof:
            self.answered = True  # this send is taken; the RST comes back a round trip later
        taken = len(data) if not self.window else min(self.window, len(data))
        self.received += data[:taken]
        return taken

    def close(self) -> None:
        assert not self.closed, f"connection {self.index} closed twice"
        self.closed = True
        del self.epoll.masks[self.fd]  # as closing a socket takes it out of an epoll


class Epoll:
    """What the hub registers: each descriptor's event mask."""

    def __init__(self) -> None:
        self.masks: dict[int, int] = {}

    def register(self, fd: int, mask: int) -> None:
        assert fd not in self.masks, f"fd {fd} registered twice"
        self.masks[fd] = mask

    def modify(self, fd: int, mask: int) -> None:
        assert fd in self.masks, f"fd {fd} modified but never registered"
        self.masks[fd] = mask


class Host(Server):
    """The server as Rounds uses it (engine, dispatcher, connections, after_change), made
    without trio: Server() reads trio's clock and a random instance id, and its dispatcher
    logs a bug and answers INTERNAL_ERROR, where the fuzzer wants the exception raised."""

    def __init__(self, info: ProcessInfo) -> None:  # not Server.__init__, on purpose
        self.max_job_size = MAX_JOB_SIZE
        self.verbose = 0
        self.engine = Engine(Tracker(RESULT_TTL, RESULT_MEMORY))
        self.dispatcher = Dispatcher(self.engine, info)  # no bug handler: bugs raise
        self.dispatcher.wall = WALL
        self.engine.flow.wall_offset = WALL
        self.conns = {}
        self._tick_scope = None
        self.wal = None
        # The caps' defaults (caps.py), as each new Client copies them.
        self.caps = NO_CAPS
        self.buffer = NO_CAPS.buffer(MAX_JOB_SIZE)
        self.stall_after = NO_CAPS.stall_after
        self.tokens = None  # no auth file: `auth` is an unknown command, as in beanstalkd
        self.auth_deadline = math.inf


# --------------------------------------------------------------------------- one run

class World:
    """One run of a program against a fresh server."""

    def __init__(self, info: ProcessInfo, split: bool, hot_path: bool,
                 checks: bool = True) -> None:
        self.split = split
        self.hot_path = hot_path
        self.checks = checks  # check the invariants after every round (else at the end)
        self.host = Host(info)
        self.epoll = Epoll()
        self.rounds = Rounds(self.host, cast(select.epoll, self.epoll), -1)
        self.peers: list[Peer] = []  # every connection made, in order
        self.slots: list[Peer | None] = [None] * SLOTS
        self.now = START
        self.ticks = 0

    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if isinstance(step, Send):
                self._peer(step.slot).queue(step.data, self.split and step.split)
            elif isinstance(step, EndRound):
                self.round()
                if step.step:
                    self.advance(step.step)
            else:
                peer = self.slots[step.slot]
                if peer is None:
                    continue
                if isinstance(step, HangUp):
                    peer.eof = True
                else:
                    peer.window = step.size
        self.round()
        self.finish()

    def _peer(self, slot: int) -> Peer:
        peer = self.slots[slot]
        if peer is None or peer.eof or peer.closed:
            peer = Peer(len(self.peers), self.epoll)
            client: Client = self.rounds.add(cast(socket.socket, peer), f"fuzz-{peer.index}")
            client.parser.hot_path = self.hot_path
            self.peers.append(peer)
            self.slots[slot] = peer
        return peer

    def round(self) -> None:
        """One round of the hub: every client with something to read, or room to write
        into, or gone, in the order they connected."""
        events: list[tuple[int, int]] = []
        for peer in self.peers:
            if peer.closed:
                continue
            peer.reset = peer.answered
            mask = self.epoll.masks[peer.fd]
            if peer.reset:  # EPOLLHUP | EPOLLERR come whatever the mask; one read fails
                events.append((peer.fd, GONE | (mask & (IN | OUT))))
                continue
            reads = peer.reads() if mask & IN else 0
            for k in range(max(reads, 1 if mask & OUT else 0)):
                events.append((peer.fd, (IN if k < reads else 0) | (mask & OUT if k == 0 else 0)))
        others = self.rounds.gather(events, self.now)
        assert not others, f"events for descriptors the hub does not know: {others}"
        self.rounds.settle(False)
        self.check()

    def advance(self, seconds: float) -> None:
        """Move the clock on, as the ticker does: a tick and a round at each deadline."""
        end = self.now + seconds
        engine = self.host.engine
        stuck = 0
        while self.ticks < TICK_BUDGET:
            due = engine.next_deadline()
            if due is None or due > end:
                break
            stuck = stuck + 1 if due <= self.now else 0
            assert stuck <= MAX_STUCK, (
                f"after a tick at {self.now} the next deadline is {due}: the ticker would spin")
            self.now = max(self.now, due)
            engine.tick(self.now)
            self.ticks += 1
            self.host.after_change()
            self.rounds.gather([], self.now)
            self.rounds.settle(False)
            self.check()
        self.now = end

    def finish(self) -> None:
        """Every client hangs up and reads what is left; then no session may remain."""
        for peer in self.peers:
            peer.eof = True
            peer.window = 0
        for _ in range(END_ROUNDS):
            if all(p.closed for p in self.peers):
                break
            self.round()
        else:
            left = [p.index for p in self.peers if not p.closed]
            raise AssertionError(f"connections {left} hung up but were never closed")
        engine = self.host.engine
        check_invariants(engine)
        assert not engine.sessions and not self.host.conns and not self.rounds.clients
        assert all(job.reserver is None for job in engine.jobs.values())

    def check(self) -> None:
        if not self.checks:
            return
        engine = self.host.engine
        check_invariants(engine)
        sessions = {c.session for c in self.rounds.clients.values()}
        assert sessions == set(self.host.conns) == set(engine.sessions), (
            "the hub, the server and the engine disagree on the connections")
        for peer in self.peers:
            assert peer.closed == (peer.fd not in self.rounds.clients), (
                f"connection {peer.index}: socket closed {peer.closed}, client kept "
                f"{peer.fd in self.rounds.clients}")

    def transcripts(self) -> list[bytes]:
        return [bytes(p.received) for p in self.peers]


# --------------------------------------------------------------------------- the checks

def replies(data: bytes, cut: bool = False) -> list[bytes]:
    """The reply lines of one client's stream (data skipped), failing on anything that is
    not a protocol reply; `cut`: the stream may end inside a reply (the client was reset)."""
    lines: list[bytes] = []
    i = 0
    while i < len(data):
        end = data.find(b"\r\n", i)
        if end < 0:
            assert cut, f"a reply without CRLF at the end: {data[i:i + 80]!r}"
            break
        line = data[i:end]
        word, _, rest = line.partition(b" ")
        assert word != b"INTERNAL_ERROR", "INTERNAL_ERROR: the server caught a bug of its own"
        assert word in REPLY_WORDS, f"not a reply: {line[:80]!r}"
        assert rest == rest.strip() and b"  " not in rest and all(32 < b < 127 for b in
                                                                  rest.replace(b" ", b"")), (
            f"odd reply fields: {line[:80]!r}")
        i = end + 2
        lines.append(line)
        if word in WITH_DATA:
            size = int(rest.rsplit(b" ", 1)[-1])
            if len(data) < i + size + 2:
                assert cut, f"{line!r}: its data is cut short"
                break
            assert data[i + size:i + size + 2] == b"\r\n", f"{line!r}: no CRLF after its data"
            i += size + 2
    return lines


def normalise(data: bytes) -> bytes:
    """A stream with each `stats` reply's CPU times (and so its length) blanked."""
    def blank(m: re.Match[bytes]) -> bytes:
        return b"OK ?\r\n" + RUSAGE.sub(rb"\1: ?\n", m.group(1)) + b"\r\n"

    return STATS_REPLY.sub(blank, data)


# One instance (pid, random id, host) for every run: stats must read the same in both.
INFO = ProcessInfo.gather(MAX_JOB_SIZE, START)


def run(data: bytes, split: bool, hot_path: bool, checks: bool = True) -> World:
    world = World(INFO, split, hot_path, checks)
    world.run(decode(data))
    return world


def check(data: bytes) -> None:
    """Run the program of `data` both ways; AssertionError (or the server's own exception)
    when a property fails."""
    first = run(data, split=False, hot_path=COMPILED)
    # Run 2, whose replies must be run 1's, checks the invariants at the end only: checking
    # them after every round costs as much as the rest of a run.
    second = run(data, split=True, hot_path=not COMPILED, checks=False)
    ones, twos = first.transcripts(), second.transcripts()
    assert len(ones) == len(twos)
    for peer, one, two in zip(first.peers, ones, twos, strict=True):
        replies(one, cut=peer.answered)
        if normalise(one) != normalise(two):
            a, b = replies(one, cut=True), replies(two, cut=True)
            k = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                     min(len(a), len(b)))
            raise AssertionError(
                f"connection {peer.index}: the replies differ when the input is split "
                f"differently (reply {k}: {a[k:k + 1]!r} against {b[k:k + 1]!r}; run 1 whole "
                f"chunks, hot path {COMPILED}; run 2 split, hot path {not COMPILED})")
    assert first.host.dispatcher.counts == second.host.dispatcher.counts, (
        "the command counts differ when the input is split differently")
