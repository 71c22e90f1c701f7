"""``--call`` at fork speed: a small process imports the target once and forks a child per job.

Theory of operation. Forking the harness itself is unsafe (an event loop, a writer thread),
so `ForkServer.start` runs `callee` in a fresh interpreter, in a new session: a
clean interpreter that imports the ``--preload`` modules and the target, answers ``ready``
and then serves requests on a SOCK_SEQPACKET socketpair (one msgpack map per packet,
descriptors passed with SCM_RIGHTS):

* ``run`` (id, the job's environment variables; descriptors: the child's stdin, stdout,
  stderr, and on tubeserver its checkpoint and outcome pipes) -> fork. The child is run as
  `callee` describes: its own process group, a fresh interpreter's signal handlers, the
  body as the function's argument, ``os._exit`` at the end, so nothing of one job (a crash,
  a leak, ``sys.exit``, modified globals) reaches the next. The server answers ``started``
  (id, pid). When fork itself fails it writes the error to the child's stderr pipe and
  answers ``exited`` with 126 at once. The harness does not wait for ``started`` (the fork
  takes about a millisecond, in which it writes the body and sets up its readers); ``kill``
  and ``exited`` find the child by id.
* ``kill`` (id, signal) -> signal the child's process group, unless already reaped.
* When a child's leader exits (seen on its pidfd), the server SIGKILLs what is left of its
  group while the zombie still holds the group id, reaps it and sends ``exited`` (id, exit
  code or minus the signal).
* End of file on the socket (the harness exited, however it died) -> SIGKILL every child's
  group and exit: the forkserver never outlives the harness.

The harness side turns a child into a `child.Spawned` whose process is a `ForkedProcess`,
so `child.run_child` drives it exactly like a command: same deadline, kill grace, output and
exit-status rules. Retiring a forkserver (SIGHUP, to load changed code) lets its running
children finish, then closes its socket.
"""

from __future__ import annotations

import array
import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from . import callee
from .callee import MAX_PACKET, pack, unpack
from .child import Spawned

# Run callee.py by its path under -c, so that sys.path[0] is the working directory (as with
# -m) and the tubeclient package (with trio) is not imported into the forkserver.
_ENTRY = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"

class ForkServerError(Exception):
    """The forkserver could not start: the target or a preload failed to import."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@attrs.define(eq=False)
class ForkedProcess:
    """A child of the forkserver, as `child.run_child` drives it."""

    server: ForkServer
    ident: int
    pid: int = 0  # 0 until the forkserver's "started" arrives
    code: int | None = None
    exited: trio.Event = attrs.field(factory=trio.Event)

    async def wait_exited(self) -> None:
        await self.exited.wait()

    async def signal_group(self, sig: int) -> None:
        if not self.exited.is_set():
            await self.server.send({"op": "kill", "id": self.ident, "signal": int(sig)})

    async def reap(self) -> int:
        await self.exited.wait()  # the forkserver reaped it before saying so
        assert self.code is not None
        return self.code


class ForkServer:
    """The harness's handle on one forkserver process."""

    def __init__(self, proc: trio.Process, sock: trio.socket.SocketType, pid: int) -> None:
        self.proc = proc
        self.sock = sock
        self.pid = pid
        self.children: dict[int, ForkedProcess] = {}
        self.closed = False
        self.retiring = False
        self._ids = itertools.count(1)
        self._send_lock = trio.Lock()

    @classmethod
    async def start(cls, target: str, use_msgpack: bool,
                    preload: Sequence[str] = ()) -> ForkServer:
        """Start a forkserver and wait until it has imported everything; ForkServerError
        when an import fails."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-c", _ENTRY, callee.__file__, "--fd", str(theirs.fileno())]
        if use_msgpack:
            argv.append("--msgpack")
        for name in preload:
            argv += ["--preload", name]
        argv.append(target)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBEWORKER_")}
        try:
            proc = await trio.lowlevel.open_process(
                argv, pass_fds=(theirs.fileno(),), start_new_session=True, env=env,
                stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        sock = trio.socket.from_stdlib_socket(ours)
        data = await sock.recv(MAX_PACKET)
        hello: dict[str, Any] = unpack(data) if data else {"op": "error",
                                                                    "error": "it exited"}
        if hello["op"] != "ready":
            sock.close()
            await proc.wait()
            raise ForkServerError(f"cannot load {target}: {hello['error']}",
                                  hello.get("traceback", ""))
        return cls(proc, sock, hello["pid"])

    async def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        if self.closed:
            raise OSError("the forkserver has stopped")
        ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                     if fds else [])
        async with self._send_lock:
            await self.sock.sendmsg([pack(message)], ancillary)

    async def serve(self) -> None:
        """Read the forkserver's reports until it exits; then every child still known
        is reported dead, so no job waits forever."""
        try:
            while True:  # one report per pass; ends when the forkserver closes the socket
                data = await self.sock.recv(MAX_PACKET)
                if not data:
                    return
                message = unpack(data)
                child = self.children.get(message["id"])
                if child is None:
                    continue
                if message["op"] == "started":
                    child.pid = message["pid"]
                else:
                    child.code = message["code"]
                    child.exited.set()
                    del self.children[child.ident]
                    if self.retiring and not self.children:
                        return
        except (OSError, trio.ClosedResourceError):
            pass
        finally:
            self.closed = True
            for child in self.children.values():
                child.code = -signal.SIGKILL  # the forkserver died
                child.exited.set()
            self.children.clear()
            self.sock.close()
            with trio.CancelScope(shield=True):
                await self.proc.wait()

    def retire(self) -> None:
        """Start no more children here; the forkserver exits once its children are done."""
        self.retiring = True
        if not self.children:
            self.sock.close()  # wakes `serve`, which waits for the process

    async def spawn(self, env: dict[str, str], extra_fds: Sequence[int] = ()) -> Spawned:
        """Fork a child for one job, with `env` added to its environment; `extra_fds` (the
        checkpoint and outcome pipes, see `callee._child`) are sent along, not closed."""
        pipes = [os.pipe() for _ in range(3)]
        stdin_r, stdin_w = pipes[0]
        stdout_r, stdout_w = pipes[1]
        stderr_r, stderr_w = pipes[2]
        child = ForkedProcess(self, next(self._ids))
        self.children[child.ident] = child
        try:
            await self.send({"op": "run", "id": child.ident, "env": env},
                            [stdin_r, stdout_w, stderr_w, *extra_fds])
        except BaseException:
            self.children.pop(child.ident, None)
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        return Spawned(child, trio.lowlevel.FdStream(stdin_w),
                       trio.lowlevel.FdStream(stdout_r), trio.lowlevel.FdStream(stderr_r))
