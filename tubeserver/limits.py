"""Protocol constants shared by the parser, the engine and the CLI.

The numbers are beanstalkd's, so that every client's assumptions about limits still hold.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PORT: Final = 11300
DEFAULT_LISTEN: Final = "127.0.0.1"

# A command line including its CRLF; sized by beanstalkd for the longest legal command,
# `pause-tube <200-char name> 4294967295\r\n`.
LINE_MAX: Final = 224

NAME_MAX: Final = 200
NAME_CHARS: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()"
)

DEFAULT_MAX_JOB_SIZE: Final = 65535
JOB_SIZE_CAP: Final = 1 << 30  # 1 GiB: larger -z values are clamped

U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF
# reserve-with-timeout is a u32 no larger than INT_MAX since beanstalkd 1.13.
RESERVE_TIMEOUT_MAX: Final = 0x7FFFFFFF

# reserve-batch (a tubeserver extension) hands out at most this many jobs per reply.
BATCH_MAX: Final = 1000
# The most a reply frame adds to a job's body: `RESERVED <id> <bytes>\r\n` and the CRLF after
# the body, with a 20-digit id and a 10-digit size.
FRAME_OVERHEAD: Final = 44

URGENT_PRIORITY: Final = 1024  # ready jobs with a priority below this count as urgent
DEADLINE_MARGIN: Final = 1.0  # seconds before a TTR deadline when reserve answers DEADLINE_SOON
# pause-tube 0 pauses for one nanosecond in beanstalkd: effectively an immediate unpause.
MIN_PAUSE: Final = 1e-9

DEFAULT_TUBE: Final = "default"
# put-after: parents a job may wait on.
PARENTS_MAX: Final = 100
# tube-limits: the highest rate, in jobs per second.
RATE_MAX: Final = 1_000_000.0

# Admin commands (admin.py): jobs in one list-jobs reply, its deepest offset (a walk of
# O(offset log offset) through a heap), and the states each command takes (a reserved job
# belongs to its worker: clear-tube leaves it alone).
LIST_MAX: Final = 1000
OFFSET_MAX: Final = 10_000
LIST_STATES: Final = ("ready", "reserved", "delayed", "buried", "waiting")
CLEAR_STATES: Final = ("ready", "delayed", "buried", "waiting")

# Seconds before a failed `auth` is answered UNAUTHORIZED and its connection closed: it slows
# guessing down (with an auth file only).
AUTH_DELAY: Final = 1.0
# Before a good `auth` (with an auth file): the seconds a connection has to send one (from
# accept, idle or not; --auth-deadline), and the bytes of input it may have buffered.
AUTH_DEADLINE: Final = 10.0
PREAUTH_BUFFER: Final = 4096
