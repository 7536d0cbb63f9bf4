"""Appending: offsets, content types, closure, Stream-Seq and idempotent producers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.log.base import (
    ChunkLog,
    ContentTypeMismatch,
    InvalidProducer,
    Producer,
    ProducerSeqGap,
    SeqConflict,
    StaleEpoch,
    StreamClosed,
)
from service.log.offsets import Offset
from tests.contract._support import BINARY, JSON, TEXT, append, content, entries, make

pytestmark = pytest.mark.asyncio

_paths = itertools.count()


def _fresh_path() -> str:
    """A path no earlier hypothesis example used (examples share one ``log``)."""
    return f"/v1/stream/prop-{next(_paths)}"


# -- plain appends ----------------------------------------------------------------------------


async def test_append_advances_offsets_by_entries_and_bytes(log: ChunkLog) -> None:
    await make(log, "/s")
    first = await log.append("/s", [b"hello"], content_type=TEXT)
    second = await log.append("/s", [b"world!"], content_type=TEXT)

    assert first.next_offset == Offset(1, 5)
    assert second.next_offset == Offset(2, 11)
    assert (first.duplicate, first.producer_epoch, first.producer_seq, first.closed) == (
        False,
        None,
        None,
        False,
    )
    assert (await log.info("/s")).next_offset == Offset(2, 11)
    assert str(first.next_offset) < str(second.next_offset)


async def test_batch_append_stores_one_entry_per_item(log: ChunkLog) -> None:
    await make(log, "/j", JSON)
    result = await log.append("/j", [b'{"a":1}', b"[1,2,3]", b"42"], content_type=JSON)

    assert result.next_offset == Offset(3, 16)
    read = await log.read("/j", Offset(0, 0), 1 << 20)
    assert [(c.data, c.end) for c in read.chunks] == [
        (b'{"a":1}', Offset(1, 7)),
        (b"[1,2,3]", Offset(2, 14)),
        (b"42", Offset(3, 16)),
    ]


async def test_content_type_must_match_the_streams(log: ChunkLog) -> None:
    await make(log, "/t", TEXT, [b"a"])
    await make(log, "/j", "application/json; charset=utf-8")

    with pytest.raises(ContentTypeMismatch):
        await log.append("/t", [b"{}"], content_type=JSON)
    with pytest.raises(ContentTypeMismatch):
        await log.append("/t", [b"x"], content_type="text/html")
    with pytest.raises(ContentTypeMismatch):
        await log.append("/t", [b"x"], content_type=None)
    with pytest.raises(ContentTypeMismatch):
        await log.append("/j", [b"1"], content_type=TEXT)
    # Case and parameters don't matter.
    await log.append("/t", [b"b"], content_type="TEXT/PLAIN")
    await log.append("/t", [b"c"], content_type="text/plain; charset=utf-8")
    await log.append("/j", [b"1"], content_type=JSON)
    await log.append("/j", [b"2"], content_type="application/json; charset=utf-8")

    assert await content(log, "/t") == b"abc"
    assert await entries(log, "/j") == [b"1", b"2"]


async def test_binary_payloads_survive_byte_for_byte(log: ChunkLog) -> None:
    await make(log, "/b", BINARY)
    every_byte = bytes(range(256))
    awkward = b"\x00\x01\x02\x7f\x80\xfe\xff\r\n\r\x00"
    big = bytes(i * 7 % 251 for i in range(100_000))

    await append(log, "/b", every_byte, content_type=BINARY)
    await append(log, "/b", awkward, content_type=BINARY)
    tail = await append(log, "/b", big, content_type=BINARY)

    assert await entries(log, "/b") == [every_byte, awkward, big]
    assert tail == Offset(3, 256 + len(awkward) + 100_000)


# -- closure ----------------------------------------------------------------------------------


async def test_close_only_closes_and_is_idempotent(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"data"])

    closed = await log.append("/s", [], content_type=None, close=True)
    again = await log.append("/s", [], content_type=None, close=True)

    assert (closed.next_offset, closed.closed, closed.duplicate) == (Offset(1, 4), True, False)
    assert (again.next_offset, again.closed, again.duplicate) == (Offset(1, 4), True, True)
    info = await log.info("/s")
    assert (info.closed, info.next_offset) == (True, Offset(1, 4))
    read = await log.read("/s", Offset(1, 4), 1024)
    assert (read.chunks, read.closed, read.at_end) == ((), True, True)


async def test_close_only_ignores_content_type(log: ChunkLog) -> None:
    await make(log, "/j", JSON, [b"1"])
    result = await log.append("/j", [], content_type=TEXT, close=True)
    assert result.closed is True
    assert (await log.info("/j")).closed is True


async def test_append_and_close(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"first message"])
    result = await log.append("/s", [b"final message"], content_type=TEXT, close=True)

    assert (result.next_offset, result.closed, result.duplicate) == (Offset(2, 26), True, False)
    assert await content(log, "/s") == b"first messagefinal message"
    assert (await log.info("/s")).closed is True


async def test_appending_to_a_closed_stream_fails_with_the_final_offset(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"data"])
    closed = await log.append("/s", [b"!"], content_type=TEXT, close=True)

    with pytest.raises(StreamClosed) as plain:
        await log.append("/s", [b"more"], content_type=TEXT)
    with pytest.raises(StreamClosed) as and_close:
        await log.append("/s", [b"more"], content_type=TEXT, close=True)
    with pytest.raises(StreamClosed) as with_seq:
        await log.append("/s", [b"more"], content_type=TEXT, stream_seq="1")

    assert closed.next_offset == Offset(2, 5)
    assert plain.value.next_offset == closed.next_offset
    assert and_close.value.next_offset == closed.next_offset
    assert with_seq.value.next_offset == closed.next_offset
    assert await content(log, "/s") == b"data!"


async def test_producer_append_and_close_remembers_the_closing_request(log: ChunkLog) -> None:
    await make(log, "/s")
    p = Producer("writer", 0, 0)

    first = await log.append("/s", [b"body-A"], content_type=TEXT, producer=p, close=True)
    retry = await log.append("/s", [b"body-B"], content_type=TEXT, producer=p, close=True)

    assert (first.closed, first.duplicate, first.producer_epoch, first.producer_seq) == (
        True,
        False,
        0,
        0,
    )
    assert (retry.closed, retry.duplicate, retry.producer_epoch, retry.producer_seq) == (
        True,
        True,
        0,
        0,
    )
    assert retry.next_offset == first.next_offset == Offset(1, 6)
    assert await content(log, "/s") == b"body-A"

    # Anything but the closing request itself is refused.
    with pytest.raises(StreamClosed) as next_seq:
        await log.append("/s", [b"x"], content_type=TEXT, producer=Producer("writer", 0, 1))
    with pytest.raises(StreamClosed) as other:
        await log.append("/s", [b"x"], content_type=TEXT, producer=Producer("other", 0, 0))
    assert next_seq.value.next_offset == Offset(1, 6)
    assert other.value.next_offset == Offset(1, 6)
    assert await content(log, "/s") == b"body-A"


async def test_producer_close_only(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"data"], content_type=TEXT, producer=Producer("p", 0, 0))

    close = await log.append("/s", [], content_type=None, producer=Producer("p", 0, 1), close=True)
    retry = await log.append("/s", [], content_type=None, producer=Producer("p", 0, 1), close=True)

    assert (close.closed, close.duplicate, close.producer_epoch, close.producer_seq) == (
        True,
        False,
        0,
        1,
    )
    assert (retry.closed, retry.duplicate, retry.producer_seq) == (True, True, 1)
    assert close.next_offset == retry.next_offset == Offset(1, 4)
    with pytest.raises(StreamClosed):
        await log.append("/s", [], content_type=None, producer=Producer("p", 0, 2), close=True)
    assert await content(log, "/s") == b"data"


async def test_producer_state_survives_close(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, producer=Producer("A", 0, 0))
    await log.append("/s", [b"b"], content_type=TEXT, producer=Producer("A", 1, 0), close=True)

    # A zombie of epoch 0 is refused either as fenced or as too late; never accepted.
    with pytest.raises((StaleEpoch, StreamClosed)):
        await log.append("/s", [b"c"], content_type=TEXT, producer=Producer("A", 0, 1), close=True)
    assert await content(log, "/s") == b"ab"


# -- Stream-Seq -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "rejected"),
    [
        (["001", "002"], "001"),
        (["001"], "001"),
        (["2"], "10"),
        (["a"], "B"),
        (["b"], "a"),
        (["é"], "z"),
        (["abc"], "ab"),
    ],
)
async def test_stream_seq_must_increase_bytewise(
    log: ChunkLog, accepted: list[str], rejected: str
) -> None:
    await make(log, "/s")
    for seq in accepted:
        await log.append("/s", [seq.encode()], content_type=TEXT, stream_seq=seq)

    with pytest.raises(SeqConflict):
        await log.append("/s", [b"rejected"], content_type=TEXT, stream_seq=rejected)

    assert await entries(log, "/s") == [s.encode() for s in accepted]


@pytest.mark.parametrize(
    "seqs",
    [["09", "10"], ["1", "10", "9"], ["B", "a"], ["z", "é"], ["ab", "abc"], ["A", "Z", "a", "z"]],
)
async def test_increasing_stream_seqs_are_accepted(log: ChunkLog, seqs: list[str]) -> None:
    await make(log, "/s")
    for seq in seqs:
        await log.append("/s", [seq.encode()], content_type=TEXT, stream_seq=seq)
    assert await entries(log, "/s") == [s.encode() for s in seqs]


async def test_appends_without_stream_seq_leave_it_unchanged(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, stream_seq="5")
    await log.append("/s", [b"b"], content_type=TEXT)
    with pytest.raises(SeqConflict):
        await log.append("/s", [b"c"], content_type=TEXT, stream_seq="5")
    await log.append("/s", [b"d"], content_type=TEXT, stream_seq="6")
    assert await content(log, "/s") == b"abd"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seqs=st.lists(st.from_regex(r"\A[0-9a-zA-Z]{1,8}\Z"), min_size=2, max_size=8, unique=True))
async def test_stream_seq_property(log: ChunkLog, seqs: list[str]) -> None:
    """Sorted seqs are all accepted; any seq below the last accepted one is refused."""
    path = _fresh_path()
    await make(log, path)
    ordered = sorted(seqs)
    for seq in ordered[:-1]:
        await log.append(path, [seq.encode()], content_type=TEXT, stream_seq=seq)
    await log.append(path, [b"top"], content_type=TEXT, stream_seq=ordered[-1])
    with pytest.raises(SeqConflict):
        await log.append(path, [b"low"], content_type=TEXT, stream_seq=ordered[0])
    assert await entries(log, path) == [s.encode() for s in ordered[:-1]] + [b"top"]


# -- idempotent producers ---------------------------------------------------------------------


async def test_producer_sequence_is_accepted_in_order(log: ChunkLog) -> None:
    await make(log, "/s")
    for i in range(5):
        result = await log.append(
            "/s", [f"msg-{i}".encode()], content_type=TEXT, producer=Producer("p", 0, i)
        )
        assert (result.duplicate, result.producer_epoch, result.producer_seq) == (False, 0, i)
        assert result.next_offset == Offset(i + 1, 5 * (i + 1))
    assert await content(log, "/s") == b"msg-0msg-1msg-2msg-3msg-4"


async def test_duplicate_reports_the_highest_accepted_seq(log: ChunkLog) -> None:
    await make(log, "/s")
    for i in range(3):
        await log.append("/s", [f"m{i}".encode()], content_type=TEXT, producer=Producer("p", 0, i))

    dup = await log.append("/s", [b"again"], content_type=TEXT, producer=Producer("p", 0, 1))

    assert (dup.duplicate, dup.producer_epoch, dup.producer_seq) == (True, 0, 2)
    assert dup.next_offset == Offset(3, 6)
    assert dup.closed is False
    assert await content(log, "/s") == b"m0m1m2"


async def test_json_duplicate_is_not_stored(log: ChunkLog) -> None:
    await make(log, "/j", JSON)
    p0, p1 = Producer("p", 0, 0), Producer("p", 0, 1)
    await log.append("/j", [b'{"id":1}'], content_type=JSON, producer=p0)
    await log.append("/j", [b'{"id":1}'], content_type=JSON, producer=p0)
    await log.append("/j", [b'{"id":2}', b'{"id":3}'], content_type=JSON, producer=p1)
    dup = await log.append("/j", [b'{"id":2}', b'{"id":3}'], content_type=JSON, producer=p1)
    assert dup.duplicate is True
    assert await entries(log, "/j") == [b'{"id":1}', b'{"id":2}', b'{"id":3}']


async def test_seq_gap_is_refused_without_changing_state(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"0"], content_type=TEXT, producer=Producer("p", 0, 0))

    with pytest.raises(ProducerSeqGap) as gap:
        await log.append("/s", [b"2"], content_type=TEXT, producer=Producer("p", 0, 2))

    assert (gap.value.expected, gap.value.received) == (1, 2)
    ok = await log.append("/s", [b"1"], content_type=TEXT, producer=Producer("p", 0, 1))
    assert (ok.duplicate, ok.producer_seq) == (False, 1)
    assert await content(log, "/s") == b"01"


async def test_new_producer_must_start_at_seq_zero(log: ChunkLog) -> None:
    await make(log, "/s")
    with pytest.raises(ProducerSeqGap) as gap:
        await log.append("/s", [b"x"], content_type=TEXT, producer=Producer("p", 0, 3))
    assert (gap.value.expected, gap.value.received) == (0, 3)
    ok = await log.append("/s", [b"y"], content_type=TEXT, producer=Producer("p", 0, 0))
    assert ok.duplicate is False
    assert await content(log, "/s") == b"y"


async def test_stale_epoch_is_fenced_with_the_current_epoch(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, producer=Producer("p", 0, 0))
    bumped = await log.append("/s", [b"b"], content_type=TEXT, producer=Producer("p", 1, 0))
    assert (bumped.duplicate, bumped.producer_epoch, bumped.producer_seq) == (False, 1, 0)

    with pytest.raises(StaleEpoch) as zombie:
        await log.append("/s", [b"c"], content_type=TEXT, producer=Producer("p", 0, 1))
    with pytest.raises(StaleEpoch) as restart:
        await log.append("/s", [b"c"], content_type=TEXT, producer=Producer("p", 0, 0))

    assert zombie.value.current_epoch == 1
    assert restart.value.current_epoch == 1
    assert await content(log, "/s") == b"ab"


async def test_epoch_rollback_is_fenced(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, producer=Producer("p", 2, 0))
    with pytest.raises(StaleEpoch) as stale:
        await log.append("/s", [b"b"], content_type=TEXT, producer=Producer("p", 1, 0))
    assert stale.value.current_epoch == 2


async def test_new_epoch_must_start_at_seq_zero(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, producer=Producer("p", 0, 0))

    with pytest.raises(InvalidProducer):
        await log.append("/s", [b"b"], content_type=TEXT, producer=Producer("p", 1, 5))

    ok = await log.append("/s", [b"c"], content_type=TEXT, producer=Producer("p", 0, 1))
    assert (ok.duplicate, ok.producer_epoch, ok.producer_seq) == (False, 0, 1)
    assert await content(log, "/s") == b"ac"


async def test_producers_are_independent(log: ChunkLog) -> None:
    await make(log, "/s")
    for seq in range(2):
        for pid in ("A", "B"):
            result = await log.append(
                "/s", [f"{pid}{seq}".encode()], content_type=TEXT, producer=Producer(pid, 0, seq)
            )
            assert (result.duplicate, result.producer_seq) == (False, seq)
    assert await content(log, "/s") == b"A0B0A1B1"


async def test_producer_dedup_runs_before_stream_seq(log: ChunkLog) -> None:
    await make(log, "/s")
    p = Producer("p", 0, 0)
    first = await log.append("/s", [b"x"], content_type=TEXT, producer=p, stream_seq="app-001")
    retry = await log.append("/s", [b"x"], content_type=TEXT, producer=p, stream_seq="app-001")
    assert (first.duplicate, retry.duplicate, retry.producer_seq) == (False, True, 0)
    assert await content(log, "/s") == b"x"


async def test_refused_appends_do_not_advance_producer_state(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.append("/s", [b"a"], content_type=TEXT, stream_seq="m")
    p = Producer("p", 0, 0)

    with pytest.raises(ContentTypeMismatch):
        await log.append("/s", [b"{}"], content_type=JSON, producer=p)
    with pytest.raises(SeqConflict):
        await log.append("/s", [b"b"], content_type=TEXT, producer=p, stream_seq="a")

    accepted = await log.append("/s", [b"c"], content_type=TEXT, producer=p)
    assert (accepted.duplicate, accepted.producer_seq) == (False, 0)
    assert await content(log, "/s") == b"ac"


async def test_producer_duplicate_on_a_closed_stream_reports_closed(log: ChunkLog) -> None:
    await make(log, "/s")
    p = Producer("p", 0, 0)
    await log.append("/s", [b"a"], content_type=TEXT, producer=p, close=True)
    dup = await log.append("/s", [b"a"], content_type=TEXT, producer=p, close=True)
    assert (dup.duplicate, dup.closed, dup.next_offset) == (True, True, Offset(1, 1))
