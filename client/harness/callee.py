"""The process side of ``tubeworker --call``: the forkserver, and the child it forks per job.

Run by the harness (`forkserver.ForkServer.start`) with ``--fd N [--msgpack] [--preload
MODULE ...] module:function`` in a new session, with one end of a SOCK_SEQPACKET socketpair
as descriptor N. It is run by its path, not imported from its package, and imports nothing
but the standard library and msgpack: tubeclient's package pulls in trio, and a process
with trio loaded takes about three times as long to fork (2.8 ms against 1.0 ms here). It
imports the preloads and the target once (resolved with `pkgutil.resolve_name`, the standard
library's ``pkg.mod:attr`` resolver), says ``ready`` (or ``error`` with the traceback, then
exits 2), and serves the harness's requests until the socket closes; the protocol is
described in `forkserver`.

A forked child starts its own process group, puts back the signal handlers
of a fresh interpreter, moves the descriptors it was sent onto 0/1/2, adds the job's
variables to its environment, reads the body from stdin (msgpack-decoded with
``--msgpack``) and calls the function with it. Returning exits 0; ``sys.exit(n)`` exits n as
a script would; an exception prints its traceback to stderr and exits 1. It always leaves
through ``os._exit``, so nothing of one job (a crash, a leak, ``sys.exit``, changed globals)
reaches the next.
"""

from __future__ import annotations

import gc
import importlib
import os
import pkgutil
import selectors
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import msgpack  # type: ignore[import-untyped]

MAX_PACKET = 1 << 16
MAX_FDS = 8




def pack(message: dict[str, Any]) -> bytes:
    """One protocol message (a msgpack map)."""
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """A protocol message, or a body with --msgpack (decoded as `tubeclient.Msgpack` does)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)



def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, MAX_FDS)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return unpack(data), list(fds)


def _say(fd: int, text: str) -> None:
    """Best effort: a note on a child's stderr pipe, which the harness may have closed."""
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def _exit_code(error: SystemExit) -> int:
    """The status `sys.exit(code)` gives a script."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(func: Any, use_msgpack: bool, env: dict[str, str], fds: Sequence[int],
           keep: Sequence[int]) -> None:
    """The forked child: never returns."""
    code = 1
    try:
        # Its own process group, not its own session: setsid also gives the child a new
        # scheduler autogroup, and moving into it cost 3-4 ms per job here (the child waited
        # a scheduler tick); the forkserver's session has no terminal anyway.
        os.setpgid(0, 0)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in keep:
            os.close(fd)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.environ.update(env)
        try:
            raw = sys.stdin.buffer.read()
            if use_msgpack:
                func(unpack(raw))
            else:
                func(raw)
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except BaseException:  # everything the job raises is a failure, with its traceback
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    finally:
        os._exit(code)


def serve(sock: socket.socket, func: Any, use_msgpack: bool) -> None:
    """The forkserver's loop, until the harness closes the socket."""
    children: dict[int, tuple[int, int]] = {}  # pidfd -> (id, pid)
    by_id: dict[int, int] = {}  # id -> pid, until reaped
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    try:
        while True:  # one pass per request or child exit; ends with the socket
            for key, _ in selector.select():
                if key.fileobj is sock:
                    message, fds = _recv(sock)
                    if message is None:
                        return
                    op, ident = message["op"], message["id"]
                    if op == "kill":
                        pid = by_id.get(ident)
                        if pid is not None:
                            try:
                                os.killpg(pid, message["signal"])
                            except (ProcessLookupError, PermissionError):
                                pass
                        continue
                    sys.stdout.flush()
                    sys.stderr.flush()
                    try:
                        pid = os.fork()
                    except OSError as e:
                        # The harness does not wait for "started": the reason goes where a
                        # child's own would, to its stderr, and "exited" says 126.
                        if len(fds) > 2:
                            _say(fds[2], f"tubeworker: cannot fork: {e}\n")
                        for fd in fds:
                            os.close(fd)
                        sock.send(pack({"op": "exited", "id": ident, "code": 126}))
                        continue
                    if pid == 0:
                        keep = [sock.fileno(), selector.fileno(), *children]  # to close
                        _child(func, use_msgpack, message["env"], fds, keep)
                    for fd in fds:
                        os.close(fd)
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = (ident, pid)
                    by_id[ident] = pid
                    selector.register(pidfd, selectors.EVENT_READ)
                    sock.send(pack({"op": "started", "id": ident, "pid": pid}))
                else:
                    pidfd = int(key.fd)
                    ident, pid = children.pop(pidfd)
                    selector.unregister(pidfd)
                    os.close(pidfd)
                    # The zombie leader still holds the group id: leftovers die now.
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    _, status = os.waitpid(pid, 0)
                    del by_id[ident]
                    sock.send(pack({"op": "exited", "id": ident,
                                     "code": os.waitstatus_to_exitcode(status)}))
    finally:
        for pid in by_id.values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    fd, use_msgpack, preload, target = -1, False, [], ""
    it = iter(args)
    for arg in it:
        if arg == "--fd":
            fd = int(next(it))
        elif arg == "--msgpack":
            use_msgpack = True
        elif arg == "--preload":
            preload.append(next(it))
        else:
            target = arg
    sock = socket.socket(fileno=fd)
    try:
        for name in preload:
            pkgutil.resolve_name(name)  # a dotted name without ":" imports the module
        func = pkgutil.resolve_name(target)
        if not callable(func):
            raise TypeError(f"{target} is not callable")
        # What is imported now is shared by every child: keep the collector off it, so
        # that a child's collections do not copy those pages.
        gc.freeze()
    except BaseException as e:
        # The traceback only helps when the user's code raised (a module failing at import),
        # not when the name simply does not resolve.
        mine = {__file__, pkgutil.__file__, importlib.__file__}
        theirs = [f for f in traceback.extract_tb(e.__traceback__)
                  if f.filename not in mine and not f.filename.startswith("<frozen")]
        text = "".join(traceback.format_exception(e)) if theirs else ""
        sock.send(pack({"op": "error", "error": f"{type(e).__name__}: {e}",
                        "traceback": text}))
        return 2
    sock.send(pack({"op": "ready", "pid": os.getpid()}))
    serve(sock, func, use_msgpack)
    return 0




if __name__ == "__main__":
    sys.exit(main())
