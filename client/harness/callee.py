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

A forked child starts its own process group, keeps the signal handlers
of a fresh interpreter, moves the descriptors it was sent onto 0/1/2, adds the job's
variables to its environment, reads the body from stdin (msgpack-decoded with
``--msgpack``) and calls the function with it, and with a `Job` as ``job=`` if the function
has a parameter of that name. Returning exits 0; ``sys.exit(n)`` exits n as a script would;
an exception prints its traceback to stderr and exits 1. Where the server keeps results and
checkpoints, the child also gets two pipes (`channels`): ``job.checkpoint`` writes framed
records to the first; at its end it writes the msgpack-encoded return value, or the
traceback, to the second. It always leaves through ``os._exit``, so nothing of one job (a
crash, a leak, ``sys.exit``, changed globals) reaches the next.
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


def pack(value: Any) -> bytes:
    """One protocol message (a msgpack map), or a --call job's result or checkpoint."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
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


class Target:
    """The function to call per job, how its body is decoded, and whether it takes `job`."""

    __slots__ = ("func", "takes_job", "use_msgpack")

    def __init__(self, func: Any, use_msgpack: bool) -> None:
        self.func = func
        self.use_msgpack = use_msgpack
        self.takes_job = _takes_job(func)


def _takes_job(func: Any) -> bool:
    """Whether `func` has a parameter `job` that can be passed by keyword."""
    code = getattr(func, "__code__", None)
    if code is not None:
        named = code.co_varnames[code.co_posonlyargcount:
                                 code.co_argcount + code.co_kwonlyargcount]
        return "job" in named
    import inspect  # only for other callables: it adds a dozen modules to every fork

    try:
        param = inspect.signature(func).parameters.get("job")
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind is not param.POSITIONAL_ONLY


def frame(data: bytes) -> bytes:
    """One checkpoint record: its length in ASCII decimal, a newline, the bytes."""
    return b"%d\n%b" % (len(data), data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a blocking pipe: each write takes some bytes or raises
        view = view[os.write(fd, view):]


class Job:
    """The `job` argument of a --call function that asks for one: its id, its attempt,
    the checkpoint it resumes from, and a way to leave a new one."""

    def __init__(self, checkpoint_fd: int) -> None:
        self._fd = checkpoint_fd
        self.id = int(os.environ.get("TUBEWORKER_JOB_ID", "0"))
        self.attempt = int(os.environ.get("TUBEWORKER_ATTEMPT", "1"))
        self._last: Any = None
        self._read = False

    @property
    def last_checkpoint(self) -> Any:
        """The job's last checkpoint (msgpack-decoded), None when it has none."""
        if not self._read:
            self._read = True
            path = os.environ.get("TUBEWORKER_CHECKPOINT")
            if path:
                with open(path, "rb") as f:
                    data = f.read()
                self._last = unpack(data) if data else None
        return self._last

    def checkpoint(self, data: Any) -> None:
        """Leave `data` (msgpack-encodable; None is empty) as the job's checkpoint: the
        harness sends it to the server, which restarts the job's TTR; a retry of the job
        finds it as `last_checkpoint`. Does nothing against a server without checkpoints."""
        if self._fd >= 0:
            _write_all(self._fd, frame(b"" if data is None else pack(data)))
        self._last, self._read = data, True


def _outcome(fd: int, message: dict[str, Any]) -> None:
    if fd >= 0:
        try:
            _write_all(fd, pack(message))
        except OSError:
            pass  # the harness is gone; nobody to tell


def _child(target: Target, env: dict[str, str], fds: Sequence[int],
           keep: Sequence[int]) -> None:
    """The forked child: never returns. `fds` are stdin, stdout, stderr, then (where the
    server keeps results and checkpoints) the checkpoint and outcome pipes."""
    code = 1
    try:
        # Its own process group, not its own session: setsid also gives the child a new
        # scheduler autogroup, and moving into it cost 3-4 ms per job here (the child waited
        # a scheduler tick); the forkserver's session has no terminal anyway.
        os.setpgid(0, 0)
        for fd in keep:
            os.close(fd)
        for where, fd in enumerate(fds[:3]):
            os.dup2(fd, where)
        for fd in fds[:3]:
            if fd > 2:
                os.close(fd)
        checkpoint_fd, outcome_fd = (fds[3], fds[4]) if len(fds) >= 5 else (-1, -1)
        os.environ.update(env)
        try:
            raw = sys.stdin.buffer.read()
            arg = unpack(raw) if target.use_msgpack else raw
            if target.takes_job:
                value = target.func(arg, job=Job(checkpoint_fd))
            else:
                value = target.func(arg)
            if outcome_fd >= 0:
                result = b"" if value is None else pack(value)  # may raise: not encodable
                _outcome(outcome_fd, {"result": result})
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except BaseException as e:  # everything the job raises fails, with its traceback
            # From the function's frame on: this one is the harness's, not the job's.
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            text = "".join(traceback.format_exception(type(e), e, tb))
            sys.stderr.write(text)
            _outcome(outcome_fd, {"error": text})
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    finally:
        os._exit(code)


def serve(sock: socket.socket, target: Target) -> None:
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
                        _child(target, message["env"], fds, keep)
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
    # The handlers every child starts with, set once here rather than in each child (they
    # are inherited by fork; seven signal.signal calls cost a child ~0.4 ms of page faults).
    # Whatever the harness inherited as ignored (nohup's SIGHUP) is not passed on.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sock.send(pack({"op": "ready", "pid": os.getpid()}))
    serve(sock, Target(func, use_msgpack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
