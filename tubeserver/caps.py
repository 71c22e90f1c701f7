"""The operator's caps (--max-connections, --max-jobs, --max-memory, --max-connection-buffer,
--stall-timeout) as one setting, and the rate-limited log lines of what they refuse.

Every cap is off or generous by default, so that a server started without them answers as
beanstalkd does. The engine applies the job caps (quota.py); the network layer applies the
others to each connection through values it copies onto the connection when it opens (the
hub's Client, a Connection task), so that one connection can be held to tighter values than
the rest.
"""

from __future__ import annotations

import logging
import math

import attrs

from .rounds import RECV_SIZE, SEND_HIGH_WATER

# The default --max-connection-buffer is this plus the largest job: a client that pipelines
# without reading never reaches it (see `buffer_floor` for what the bound is made of).
DEFAULT_BUFFER = 4 << 20


@attrs.frozen
class Caps:
    max_connections: int = 0  # 0: no cap
    max_jobs: int = 0  # 0: no cap
    max_memory: int = 0  # bytes as quota.py counts them; 0: no cap
    connection_buffer: int = 0  # bytes of unparsed input and of unsent output; 0: the default
    stall_timeout: float = 0.0  # seconds; 0: off

    def buffer(self, max_job_size: int) -> int:
        """The bound on each connection's unparsed input and on its unsent output."""
        return self.connection_buffer or DEFAULT_BUFFER + max_job_size

    @property
    def stall_after(self) -> float:
        return self.stall_timeout or math.inf


NO_CAPS = Caps()  # the defaults: as beanstalkd


def buffer_floor(max_job_size: int) -> int:
    """The smallest --max-connection-buffer that serves every command: a put's whole body
    (with its line) as input; as output, the replies of commands parsed while less than
    SEND_HIGH_WATER was pending plus the last one's, which may be a whole job (peek); one
    read's worth of margin on each."""
    return max_job_size + SEND_HIGH_WATER + 2 * RECV_SIZE


class Tally:
    """At most one log line every `every` seconds for an event that may come in floods (a
    refused connection, a stalled one); a line tells how many came since the last."""

    def __init__(self, log: logging.Logger, every: float = 1.0) -> None:
        self.log = log
        self.every = every
        self.since = 0  # events not logged yet
        self.last = -math.inf  # when the last line was written

    def note(self, now: float, message: str, *args: object) -> None:
        self.since += 1
        if now - self.last < self.every:
            return
        if self.since > 1:
            message += " (and %d more since the last such line)"
            args = (*args, self.since - 1)
        self.log.warning(message, *args)
        self.since = 0
        self.last = now
