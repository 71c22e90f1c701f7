"""tubeclient: sync and trio clients for tubeserver and beanstalkd, over one sans-IO codec.

Theory of operation: `codec.Codec` turns command values into bytes and incoming bytes into
replies, keeping a FIFO of the replies owed so that pipelined commands (put_many,
delete_many, the connect-time use/watch) are matched in order. `core.ClientCore` holds all
the logic that needs no I/O; `Client` (blocking sockets) and `TrioClient` (trio streams) add
only I/O and timeouts, with the same method names, arguments and results. The pools in
`pool`/`trio_pool` spread producers over several servers and let consumers reserve from all
of them, handling each job on the connection that reserved it. The job-tracking extension
(finish with a result, fail with a reason, wait_result, status, checkpoints) is methods of
the same clients, and so are flow control (put_unique, put_after, schedules, tube limits)
and the admin commands (list_jobs, clear_tube, kick_tube, tube_info), which `tubectl`
(ctl.py) is built on; on servers without them they raise ExtensionNotSupported. Every
client and pool takes `ssl=` (TLS) and `token=` (sent with `auth` on each connection).
"""

from typing import TYPE_CHECKING, Any

from .admin import JobSummary, TubeInfo
from .bodies import Msgpack, RawBytes, Serializer, Text
from .codec import NEED_DATA, Codec, RawJob, Reply
from .errors import (
    AuthNotEnabled,
    BadFormat,
    BatchError,
    Buried,
    ConnectFailed,
    ConnectionClosed,
    DeadlineSoon,
    DecodeError,
    Draining,
    ExpectedCRLF,
    ExtensionNotSupported,
    InternalError,
    IOTimeout,
    JobFailed,
    JobTooBig,
    NoServerAvailable,
    NotFound,
    NotIgnored,
    OutOfMemory,
    ServerError,
    TimedOut,
    TooManyConnections,
    TubeError,
    TubeFull,
    Unauthorized,
    UnexpectedReply,
    UnknownCommand,
)
from .flow import Schedule, TubeLimits, Unique
from .job import (
    DEFAULT_DELAY,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    Address,
    Job,
    PutOptions,
)
from .pool import ConsumerPool, ProducerPool
from .stats import Stats, StatsJob, StatsTube
from .status import JobStatus
from .sync import Client

if TYPE_CHECKING:
    from .trio_client import TrioClient
    from .trio_pool import TrioConsumerPool, TrioProducerPool

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The trio side is imported on first use, so that sync-only programs do not pay for
    # importing trio.
    if name == "TrioClient":
        from .trio_client import TrioClient

        return TrioClient
    if name in ("TrioProducerPool", "TrioConsumerPool"):
        from . import trio_pool

        return getattr(trio_pool, name)
    raise AttributeError(f"module 'tubeclient' has no attribute {name!r}")


__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_PRIORITY",
    "DEFAULT_TTR",
    "DEFAULT_TUBE",
    "NEED_DATA",
    "Address",
    "AuthNotEnabled",
    "BadFormat",
    "BatchError",
    "Buried",
    "Client",
    "Codec",
    "ConnectFailed",
    "ConnectionClosed",
    "ConsumerPool",
    "DeadlineSoon",
    "DecodeError",
    "Draining",
    "ExpectedCRLF",
    "ExtensionNotSupported",
    "IOTimeout",
    "InternalError",
    "Job",
    "JobFailed",
    "JobStatus",
    "JobSummary",
    "JobTooBig",
    "Msgpack",
    "NoServerAvailable",
    "NotFound",
    "NotIgnored",
    "OutOfMemory",
    "ProducerPool",
    "PutOptions",
    "RawBytes",
    "RawJob",
    "Reply",
    "Schedule",
    "Serializer",
    "ServerError",
    "Stats",
    "StatsJob",
    "StatsTube",
    "Text",
    "TimedOut",
    "TooManyConnections",
    "TrioClient",
    "TrioConsumerPool",
    "TrioProducerPool",
    "TubeError",
    "TubeFull",
    "TubeInfo",
    "TubeLimits",
    "Unauthorized",
    "UnexpectedReply",
    "Unique",
    "UnknownCommand",
]
