"""JobHeap: the indexed heap behind each tube's ready and delayed jobs, against a sorted list.

Every job must know its position, any job must leave from anywhere, and the top must always
be the model's first, for ready jobs by (pri, id) and for delayed ones by (deadline, id).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tubeserver.job import Job, JobState
from tubeserver.tube import JobHeap, Tube

TUBE = Tube("t")

# An operation: ("push", key) or ("remove", index into the model).
Ops = st.lists(st.one_of(st.tuples(st.just("push"), st.integers(0, 5)),
                         st.tuples(st.just("remove"), st.integers(0, 1000))), max_size=120)


def run(ops: list[tuple[str, int]], state: JobState) -> None:
    heap = JobHeap(state)
    model: list[Job] = []
    next_id = 1
    for op, arg in ops:
        if op == "push":
            job = Job(next_id, TUBE, arg, 0, 1, b"", 0.0, state, deadline=float(arg))
            next_id += 1
            heap.push(job)
            model.append(job)
        elif model:
            job = model.pop(arg % len(model))
            heap.remove(job)
            assert job.pos == -1
        heap.check()
        key = (lambda j: (j.deadline, j.id)) if state is JobState.DELAYED else (
            lambda j: (j.pri, j.id))
        assert heap.peek() is (min(model, key=key) if model else None)
        assert sorted(j.id for j in heap.jobs()) == sorted(j.id for j in model)


@settings(max_examples=300)
@given(Ops)
def test_ready_heap_matches_a_sorted_model(ops: list[tuple[str, int]]) -> None:
    run(ops, JobState.READY)


@settings(max_examples=300)
@given(Ops)
def test_delayed_heap_matches_a_sorted_model(ops: list[tuple[str, int]]) -> None:
    run(ops, JobState.DELAYED)


def test_bulk_load_then_reorder_gives_a_heap() -> None:
    heap = JobHeap(JobState.READY)
    jobs = [Job(i, TUBE, (i * 7919) % 13, 0, 1, b"", 0.0, JobState.READY)
            for i in range(1, 200)]
    for job in jobs:
        heap.add(job)
    heap.reorder()
    heap.check()
    order = []
    while (top := heap.peek()) is not None:
        heap.remove(top)
        order.append((top.pri, top.id))
    assert order == sorted((j.pri, j.id) for j in jobs)
