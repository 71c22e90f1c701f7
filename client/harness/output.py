"""Pass-through of the children's output to the harness's own stdout and stderr, never
blocking the event loop: a bounded buffer per stream, emptied by a writer thread.

Theory of operation. A child that writes faster than whoever reads the harness's stdout
(a full pipe, a stopped terminal) must not stall the other jobs, so the trio tasks that read
the children's pipes only ever append to a `Sink`; a daemon thread does the blocking
``os.write``. Setting the descriptor non-blocking instead would change the open file that
the harness shares with its parent (a terminal, a shell's pipe). At most `limit` bytes wait;
a chunk that does not fit is dropped whole and counted, and the job's log line says how
many bytes of its output were dropped. The harness's own log lines go through the stderr
sink too (so they stay in order with the children's stderr) and are never dropped.
"""

from __future__ import annotations

import collections
import os
import threading

#: Bytes of output that may wait for a slow reader, per stream.
BUFFER_BYTES = 1 << 20


class Sink:
    """Bytes bound for file descriptor `fd`, written by a daemon thread."""

    def __init__(self, fd: int, limit: int = BUFFER_BYTES) -> None:
        self.fd = fd
        self.limit = limit
        self.dropped = 0  # bytes dropped over the sink's life
        self._queue: collections.deque[bytes] = collections.deque()
        self._pending = 0
        self._closed = False
        self._broken = False  # the reader is gone (EPIPE, EBADF): discard from now on
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"tubeworker-fd{fd}",
                                        daemon=True)
        self._thread.start()

    def write(self, data: bytes, must: bool = False) -> bool:
        """Queue `data`; False when it was dropped because the buffer is full (`must`: queue
        it anyway, for the harness's own log lines)."""
        if not data:
            return True
        with self._cond:
            if self._broken:
                return True  # nobody reads: not a drop worth reporting per job
            if not must and self._pending + len(data) > self.limit:
                self.dropped += len(data)
                return False
            self._queue.append(data)
            self._pending += len(data)
            self._cond.notify()
        return True

    def close(self, timeout: float) -> bool:
        """Stop accepting, wait up to `timeout` seconds for the queue to be written; True
        when everything was written."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                data = self._queue.popleft()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError:
                with self._cond:
                    self._broken = True
                    self._queue.clear()
                    self._pending = 0
                    return
            with self._cond:
                self._pending -= len(data)


__all__ = ["BUFFER_BYTES", "Sink"]
