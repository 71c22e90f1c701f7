"""Reply lines as bytes: fixed words, and the formatted ones built in one place.

Replies are bytes rather than values because they are built once and written at once; this
module is the only place that knows their spelling. Errors spell themselves (errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from .job import Job
from .tracking import Outcome

DELETED: Final = b"DELETED\r\n"
AUTHORIZED: Final = b"OK\r\n"
RELEASED: Final = b"RELEASED\r\n"
BURIED: Final = b"BURIED\r\n"
TOUCHED: Final = b"TOUCHED\r\n"
KICKED: Final = b"KICKED\r\n"
PAUSED: Final = b"PAUSED\r\n"
FINISHED: Final = b"FINISHED\r\n"
CHECKPOINTED: Final = b"CHECKPOINTED\r\n"
SCHEDULED: Final = b"SCHEDULED\r\n"
UNSCHEDULED: Final = b"UNSCHEDULED\r\n"
LIMITED: Final = b"LIMITED\r\n"


def inserted(job_id: int) -> bytes:
    return b"INSERTED %d\r\n" % job_id


def duplicate(job_id: int) -> bytes:
    return b"DUPLICATE %d\r\n" % job_id


def reserved(job: Job) -> bytes:
    return b"RESERVED %d %d\r\n%b\r\n" % (job.id, len(job.body), job.body)


def reserved_batch(jobs: Sequence[Job]) -> bytes:
    """`RESERVED-BATCH <n>` and then n ordinary RESERVED frames (a tubeserver extension)."""
    return b"RESERVED-BATCH %d\r\n" % len(jobs) + b"".join(map(reserved, jobs))


def found(job: Job) -> bytes:
    return b"FOUND %d %d\r\n%b\r\n" % (job.id, len(job.body), job.body)


def found_data(job_id: int, data: bytes) -> bytes:
    return b"FOUND %d %d\r\n%b\r\n" % (job_id, len(data), data)


def outcome(result: Outcome) -> bytes:
    """`result`'s answer: RESULT with a finished job's result, FAILED with a buried job's
    reason."""
    word = b"FAILED" if result.failed else b"RESULT"
    return b"%b %d %d\r\n%b\r\n" % (word, result.job_id, len(result.data), result.data)


def using(name: str) -> bytes:
    return b"USING %b\r\n" % name.encode("ascii")


def watching(count: int) -> bytes:
    return b"WATCHING %d\r\n" % count


def kicked(count: int) -> bytes:
    return b"KICKED %d\r\n" % count


def cleared(count: int) -> bytes:
    return b"CLEARED %d\r\n" % count


def ok(payload: bytes) -> bytes:
    return b"OK %d\r\n%b\r\n" % (len(payload), payload)


def yaml_list(names: Iterable[str]) -> bytes:
    """A YAML sequence as beanstalkd writes it for list-tubes (names are not quoted)."""
    return ("---\n" + "".join(f"- {n}\n" for n in names)).encode("ascii")
