"""--max-jobs and --max-memory: how many live jobs the engine holds and the memory they count.

"Memory" is a figure the server keeps, not the process's RSS (CPython's allocator keeps
freed memory, so RSS never drops after a peak and a cap on it would refuse puts for good):
each live job counts JOB_OVERHEAD plus its body's bytes, whatever its state. It drops as
soon as a job is deleted. Kept records of finished jobs have their own bound
(--result-memory, tracking.py); checkpoints and failure reasons are not counted (each is at
most max-job-size, one per job). The engine asks `admits` before it stores a job (every put
variant and a schedule's firing) and answers OUT_OF_MEMORY when it says no; restoring from
the log never asks. Pure, compiled with the core.
"""

from __future__ import annotations

from typing import Final

# What a live job costs beyond its body, measured on the compiled build (RSS growth per ready
# job, less the body: 288-300 bytes with 100k to 1M jobs of 16-1000 byte bodies): the Job
# object, the bytes object's header, its slots in the engine's dict and its tube's heap.
JOB_OVERHEAD: Final = 300


class Quota:
    """The caps (0: none) and what the live jobs count against them."""

    __slots__ = ("body_bytes", "firings_refused", "max_jobs", "max_memory", "puts_refused")

    def __init__(self, max_jobs: int = 0, max_memory: int = 0) -> None:
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        self.body_bytes = 0  # the bodies of every live job; kept whether capped or not
        self.puts_refused = 0  # puts of every kind answered OUT_OF_MEMORY by a cap
        self.firings_refused = 0  # schedule firings that made no job because of a cap

    def admits(self, jobs: int, size: int) -> bool:
        """Whether one more job of `size` body bytes fits beside the `jobs` live ones."""
        if self.max_jobs and jobs >= self.max_jobs:
            return False
        return not self.max_memory or (
            self.body_bytes + size + (jobs + 1) * JOB_OVERHEAD <= self.max_memory)

    def memory(self, jobs: int) -> int:
        """What `jobs` live jobs count against --max-memory."""
        return self.body_bytes + jobs * JOB_OVERHEAD
