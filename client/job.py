"""Values shared by every client: the Job record, addresses, protocol defaults and limits.

A Job names the server it came from, because job ids are only unique per server: a pool
routes delete/release/bury/touch by `Job.server` to the connection that reserved the job.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

T = TypeVar("T")

# A TCP address (host, port) or the path of a UNIX socket, as in greenstalk.
Address = tuple[str, int] | str

DEFAULT_TUBE = "default"
# greenstalk's defaults, so code moving over keeps its behaviour.
DEFAULT_PRIORITY = 2**16
DEFAULT_DELAY = 0
DEFAULT_TTR = 60
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_IO_TIMEOUT = 30.0

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
RESERVE_TIMEOUT_MAX = 2**31 - 1
# reserve-batch: tubeserver answers BAD_FORMAT to a larger count, so it is refused here
# rather than being mistaken for "extension not supported".
BATCH_MAX = 1000
NAME_MAX = 200
NAME_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()"
)


@attrs.frozen
class Job(Generic[T]):
    """A job as the server handed it out.

    `id` is unique only on `server` ("host:port", or the UNIX socket path); `body` is decoded
    by the client's encoding/serializer (bytes by default).
    """

    id: int
    body: T
    server: str | None = None


@attrs.frozen
class PutOptions:
    """Per-item options for put_many: ``client.put_many([(body, PutOptions(delay=5)), ...])``."""

    priority: int = DEFAULT_PRIORITY
    delay: int = DEFAULT_DELAY
    ttr: int = DEFAULT_TTR


def server_name(address: Address) -> str:
    """The name a Job carries for `address`: "host:port" ("[v6]:port"), or the socket path."""
    if isinstance(address, str):
        return address
    host, port = address
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def check_address(address: object) -> Address:
    """`address` if it is a (host, port) tuple or a UNIX socket path, else TypeError."""
    if isinstance(address, str):
        if not address:
            raise ValueError("empty UNIX socket path")
        return address
    if (
        isinstance(address, tuple)
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
    ):
        return (address[0], address[1])
    raise TypeError(f"address must be (host, port) or a UNIX socket path, not {address!r}")


def job_id(job: Job[object] | int) -> int:
    """The id of a Job, or the int itself."""
    return job.id if isinstance(job, Job) else job
