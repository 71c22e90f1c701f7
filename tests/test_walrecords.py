"""The log's byte format: records round-trip, frames detect every kind of damage.

Properties: any record list survives encode -> frame -> scan -> decode; a frame cut at any
byte, or with any byte flipped, never scans as data; `next_frame` finds the next intact
frame after damage, which is how recovery tells a torn tail from damage in the middle.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tubeserver.job import Job, JobState
from tubeserver.tube import Tube
from tubeserver.walrecords import (
    BURIED,
    DELAYED,
    DELETE_MAX,
    FIELDS_MAX,
    PAUSE_MAX,
    PREFIX,
    READY,
    UPDATE_MAX,
    WAITING,
    DeleteRec,
    Header,
    JobRec,
    PauseRec,
    Record,
    UpdateRec,
    check_prefix,
    decode,
    encode,
    encode_job,
    frame,
    next_frame,
    scan,
)

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(1, 2**64 - 1)
TIME = st.floats(0, 2e9, allow_nan=False)
NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()", min_size=1, max_size=200)

jobs = st.builds(JobRec, U64, U64, NAME, st.sampled_from([1, 3, 4]), U32, U32, U32, TIME, TIME,
                 U32, U32, U32, U32, U32, st.binary(max_size=300))
updates = st.builds(UpdateRec, U64, U64, st.sampled_from([1, 3, 4]), U32, U32, TIME, U32, U32,
                    U32, U32, U32)
records = st.one_of(jobs, updates, st.builds(DeleteRec, U64),
                    st.builds(PauseRec, NAME, U32, TIME))


def segment(*payloads: bytes, tail: int = 0) -> bytes:
    return PREFIX + b"".join(frame(p) for p in payloads) + b"\0" * tail


@given(st.lists(st.lists(records, min_size=1, max_size=5), max_size=6), st.integers(0, 64))
def test_records_round_trip_through_frames(batches: list[list[Record]], tail: int) -> None:
    data = segment(*(b"".join(encode(r) for r in batch) for batch in batches), tail=tail)
    result = scan(data)
    assert result.damage is None
    assert [list(decode(p)) for _, p in result.frames] == batches
    assert not data[result.end:].strip(b"\0")


@given(updates)
def test_size_bounds_hold_for_the_largest_values(record: UpdateRec) -> None:
    assert len(encode(record)) <= UPDATE_MAX - 8  # a frame head of its own


def test_size_bounds_with_maximal_fields() -> None:
    big = 2**64 - 1
    u32 = 2**32 - 1
    job = JobRec(big, big, "", BURIED, u32, u32, u32, 1e300, 1e300, u32, u32, u32, u32, u32, b"")
    assert len(encode(job)) + 8 <= FIELDS_MAX
    assert len(encode(DeleteRec(big))) + 8 <= DELETE_MAX
    assert len(encode(PauseRec("", 2**32 - 1, 1e300))) + 8 <= PAUSE_MAX
    update = UpdateRec(big, big, BURIED, u32, u32, 1e300, u32, u32, u32, u32, u32)
    assert len(encode(update)) + 8 <= UPDATE_MAX


def sample() -> tuple[bytes, list[int]]:
    """A segment of three frames and the offsets where each starts."""
    header = encode(Header(1, 1, 1, 0.0))
    job = encode(JobRec(1, 1, "default", READY, 0, 0, 60, 0.0, 0.0, 0, 0, 0, 0, 0, b"body"))
    gone = encode(DeleteRec(1))
    offsets = [len(PREFIX)]
    for payload in (header, job):
        offsets.append(offsets[-1] + 8 + len(payload))
    return segment(header, job, gone, tail=100), offsets


def test_a_frame_cut_at_any_byte_is_damage_at_its_start_or_a_clean_end() -> None:
    data, offsets = sample()
    last = offsets[-1]
    end = len(data) - 100
    for cut in range(last, end):
        torn = data[:cut]
        result = scan(torn)
        assert len(result.frames) == 2
        assert result.end == last
        # Nothing but the cut frame's own prefix: clean if nothing was written yet.
        assert (result.damage is None) == (cut == last)
        assert next_frame(torn, last) is None
        # Zeros after the cut (a preallocated tail): the same judgement.
        padded = torn + b"\0" * 64
        again = scan(padded)
        assert again.end == last and len(again.frames) == 2
        assert (again.damage is None) == (cut == last) or cut < last + 4


@pytest.mark.parametrize("index", range(3))
def test_a_flipped_byte_in_any_frame_is_damage_there(index: int) -> None:
    data, offsets = sample()
    start = offsets[index]
    stop = offsets[index + 1] if index + 1 < len(offsets) else len(data) - 100
    for at in range(start, stop):
        bad = bytearray(data)
        bad[at] ^= 0x5A
        result = scan(bytes(bad))
        assert result.damage is not None, at
        assert result.damage.offset == start
        assert len(result.frames) == index
        following = next_frame(bytes(bad), start)
        assert following == (offsets[index + 1] if index + 1 < len(offsets) else None)


def test_damage_reasons_name_the_problem() -> None:
    data, offsets = sample()
    long = bytearray(data)
    struct.pack_into("<I", long, offsets[1], 10**6)
    assert "runs past" in scan(bytes(long)).damage.reason  # type: ignore[union-attr]
    junk = data[: offsets[2]] + b"\0" * 20 + b"junk"
    assert "after the end marker" in scan(junk).damage.reason  # type: ignore[union-attr]


def test_prefix_checks_magic_and_version() -> None:
    assert check_prefix(PREFIX) is None
    assert "magic" in (check_prefix(b"GARBAGE!\1\0\0\0") or "")
    assert "version 7" in (check_prefix(PREFIX[:8] + struct.pack("<I", 7)) or "")
    assert check_prefix(b"") is not None


@pytest.mark.parametrize("payload", [
    b"\xc1",  # never-used msgpack byte
    b"\x92\x09\x01",  # unknown tag 9
    b"\x93\x03\x01\x02",  # delete with two fields
    b"\x05",  # not an array
])
def test_undecodable_payloads_raise_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        list(decode(payload))


LIVE = {JobState.READY: READY, JobState.RESERVED: READY, JobState.DELAYED: DELAYED,
        JobState.BURIED: BURIED, JobState.WAITING: WAITING}  # a reserved job restores ready


@given(U32, st.integers(1, 2**32 - 1), st.sampled_from(list(LIVE)), U32, U32,
       st.integers(1, 2**32 - 1), TIME, TIME, st.lists(st.integers(0, 2**32 - 1), min_size=5,
                                                      max_size=5),
       st.binary(max_size=64), st.floats(-2e9, 2e9, allow_nan=False))
def test_a_put_logs_the_same_bytes_as_encoding_its_whole_record(
        job_id: int, seq: int, state: JobState, pri: int, delay: int, ttr: int,
        deadline: float, created: float, counts: list[int], body: bytes, offset: float
) -> None:
    """`encode_job` (the put path, one compiled step) is `encode(JobRec(...))`, byte for byte,
    with the state as logged and times moved to the wall clock."""
    reserves, timeouts, releases, buries, kicks = counts
    job = Job(job_id, Tube("t"), pri, delay, ttr, body, created, state, deadline,
              reserves=reserves, timeouts=timeouts, releases=releases, buries=buries,
              kicks=kicks, seq=seq)
    record = JobRec(job_id, seq, "t", LIVE[state], pri, delay, ttr,
                    deadline + offset if state is JobState.DELAYED else 0.0, created + offset,
                    reserves, timeouts, releases, buries, kicks, body)
    assert encode_job(job, offset) == encode(record)
