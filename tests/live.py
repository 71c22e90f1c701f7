"""Shared by the client tests of the extensions against real servers on loopback.

Clients whose every command is bounded by IO seconds, a thread that runs beside a block, and
a scripted one-connection server that checks the exact bytes a client sends. The servers
and tube names they use come from conftest.py's fixtures.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import procs
from tubeclient import Client, TrioClient

IO = 10.0  # seconds any command may take before the test fails instead of hanging
WAIT = 5  # seconds a wait may last for something that is known to come


def connect(srv: procs.RunningServer, **kw: Any) -> Client[Any]:
    kw.setdefault("io_timeout", IO)
    kw.setdefault("connect_timeout", IO)
    client: Client[Any] = Client(srv.addr, **kw)
    return client


def trio_client(srv: procs.RunningServer, **kw: Any) -> TrioClient[Any]:
    kw.setdefault("io_timeout", IO)
    kw.setdefault("connect_timeout", IO)
    client: TrioClient[Any] = TrioClient(srv.addr, **kw)
    return client


@contextlib.contextmanager
def in_thread(work: Callable[[], None]) -> Iterator[Future[None]]:
    """Run `work` in a thread for the duration of the block; its exception is re-raised."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(work)
        yield future
        future.result(timeout=IO)


@contextlib.contextmanager
def scripted_server(
    script: list[tuple[bytes, float, bytes]],
) -> Iterator[tuple[tuple[str, int], list[bytes]]]:
    """Accepts one connection; for each (expected, delay, reply) step reads exactly
    len(expected) bytes, records them, waits `delay` seconds and sends `reply`. Yields the
    address and the list of what was read (compare it to the script after the block)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO)
    received: list[bytes] = []

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(IO)
                for expected, delay, reply in script:
                    data = b""
                    while len(data) < len(expected):
                        chunk = conn.recv(len(expected) - len(data))
                        if not chunk:
                            return
                        data += chunk
                    received.append(data)
                    time.sleep(delay)
                    conn.sendall(reply)
                while conn.recv(65536):  # until the client hangs up
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        host, port = listener.getsockname()[:2]
        yield (host, port), received
    finally:
        listener.close()
        thread.join(IO)
