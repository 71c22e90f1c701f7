"""The Python null responder, the fallback generator's partner where no C compiler exists
(null.c is the real one): it answers each command with a canned reply and keeps no jobs.

It is slower than beanstalkd, so it is no ceiling; it only shows the fallback works. One process,
one epoll, and counts verbs per chunk with `bytes.count`: as little work per command as a
Python server can do (its rate is a lower bound of the generator's).
"""

from __future__ import annotations

import multiprocessing
import select
import signal
import socket
import ssl
from multiprocessing.process import BaseProcess

from .wire import TUBE

BODY_SIZE = 100
_FRAME = b"RESERVED 1 %d\r\n%b\r\n" % (BODY_SIZE, b"x" * BODY_SIZE)


def replies(complete: bytes) -> bytes:
    """The replies to the whole commands in `complete` (which ends at a line end). Puts'
    bodies hold no verbs, so counting verbs counts commands; the generator counts replies, not
    their order, so they go out grouped by kind."""
    out = b""
    if b"use " in complete:
        out += b"USING " + TUBE + b"\r\n"
    n = complete.count(b"watch ") + complete.count(b"ignore ")
    if n:
        out += b"WATCHING 1\r\n" * n
    n = complete.count(b"delete ")
    if n:
        out += b"DELETED\r\n" * n
    n = complete.count(b"reserve-with-timeout ")
    if n:
        out += _FRAME * n
    n = complete.count(b"reserve-batch ")
    if n:
        at = complete.find(b"reserve-batch ") + 14
        size = int(complete[at : complete.find(b" ", at)])
        out += (b"RESERVED-BATCH %d\r\n" % size + _FRAME * size) * n
    n = complete.count(b"put ")
    if n:
        out += b"INSERTED 1\r\n" * n
    return out


def serve(listener: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    """Serve until killed; with `tls`, every connection speaks TLS (its handshake done at
    accept, before the generator's workers start their clocks)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, list[bytes]]] = {}
    lfd = listener.fileno()
    buffer = bytearray(1 << 18)  # recv_into: no 256 KiB allocation per receive
    view = memoryview(buffer)
    while True:
        for fd, _ in ep.poll():
            if fd == lfd:
                try:
                    sock, _addr = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls is not None:
                    try:
                        sock = tls.wrap_socket(sock, server_side=True)
                    except OSError:
                        sock.close()
                        continue
                conns[sock.fileno()] = (sock, [b""])
                ep.register(sock.fileno(), select.EPOLLIN)
                continue
            sock, held = conns[fd]
            n = sock.recv_into(buffer)
            if not n:
                ep.unregister(fd)
                del conns[fd]
                sock.close()
                continue
            buf = held[0] + view[:n] if held[0] else bytes(view[:n])
            while isinstance(sock, ssl.SSLSocket) and sock.pending():  # unseen by epoll
                n = sock.recv_into(buffer)
                buf += view[:n]
            cut = buf.rfind(b"\r\n") + 2
            if cut < 2:
                held[0] = buf
                continue
            held[0] = buf[cut:]
            out = replies(buf[:cut])
            if out:
                sock.sendall(out)


def start(tls: ssl.SSLContext | None = None) -> tuple[BaseProcess, int]:
    """A null responder in a child process on a free loopback port: (process, port); with
    `tls` (a server context) it speaks TLS."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = int(listener.getsockname()[1])
    proc = multiprocessing.get_context("fork").Process(target=serve, args=(listener, tls),
                                                       daemon=True)
    proc.start()
    listener.close()
    return proc, port


def stop(proc: BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
