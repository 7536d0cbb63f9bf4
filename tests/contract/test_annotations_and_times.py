"""Per-entry append times (``Chunk.appended_ms``) and stream annotations.

Both exist for observability: a reader's delivery span records how long an entry waited since
it was appended, and links to the trace context the writing generation stored as an annotation.
Times are server clock readings, so the only timing checks are "set, non-decreasing, roughly
now" (a generous window); nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from service.log.base import (
    Chunk,
    ChunkLog,
    ForkFrom,
    StreamConfig,
    StreamGone,
    StreamNotFound,
)
from service.log.hub import Follower
from service.log.offsets import ZERO, Offset
from tests.contract._support import BINARY, JSON, TEXT, WAIT, append, make, read_all

pytestmark = pytest.mark.asyncio

WINDOW_MS = 60_000
"""How far from this process's clock an append time may be (clocks of one test machine)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _assert_plausible(chunks: list[Chunk] | tuple[Chunk, ...]) -> None:
    """Every chunk has a time near now, and times never go backwards along the stream."""
    now = _now_ms()
    for chunk in chunks:
        assert chunk.appended_ms > 0, chunk
        assert abs(chunk.appended_ms - now) <= WINDOW_MS, (chunk, now)
    times = [c.appended_ms for c in chunks]
    assert times == sorted(times)


def _triples(chunks: list[Chunk] | tuple[Chunk, ...]) -> list[tuple[bytes, Offset, int]]:
    return [(c.data, c.end, c.appended_ms) for c in chunks]


# -- append times ------------------------------------------------------------------------------


async def test_chunk_constructed_without_a_time_has_zero() -> None:
    assert Chunk(b"x", Offset(1, 1)).appended_ms == 0


async def test_every_entry_has_a_plausible_non_decreasing_append_time(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"initial-1", b"initial-2"])
    await append(log, "/s", b"a")
    await asyncio.sleep(0.005)
    await append(log, "/s", b"b", b"c", b"d")
    await asyncio.sleep(0.005)
    await append(log, "/s", b"e")

    chunks = await read_all(log, "/s")
    assert [c.data for c in chunks] == [b"initial-1", b"initial-2", b"a", b"b", b"c", b"d", b"e"]
    _assert_plausible(chunks)
    # One create or append is one moment: its entries share a time.
    assert chunks[0].appended_ms == chunks[1].appended_ms
    assert chunks[3].appended_ms == chunks[4].appended_ms == chunks[5].appended_ms


async def test_json_batch_entries_share_the_append_time(log: ChunkLog) -> None:
    await make(log, "/j", JSON)
    await log.append("/j", [b"1", b"2", b"3"], content_type=JSON)
    chunks = await read_all(log, "/j")
    _assert_plausible(chunks)
    assert len({c.appended_ms for c in chunks}) == 1


async def test_times_are_the_same_in_small_pages(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"one"])
    for item in (b"two", b"three", b"four"):
        await asyncio.sleep(0.002)
        await append(log, "/s", item)
    whole = await read_all(log, "/s")
    paged = await read_all(log, "/s", max_bytes=1)
    assert _triples(paged) == _triples(whole)
    # Reading from the middle gives the same times as reading from the start.
    assert _triples(await read_all(log, "/s", whole[1].end)) == _triples(whole[2:])


async def test_live_delivery_carries_the_same_times_as_a_read(
    log: ChunkLog, peer: ChunkLog
) -> None:
    """``peer`` appends (for Redis: another process), so chunks reach ``log`` via pub/sub."""
    tail = (await make(log, "/s", TEXT, [b"history"])).next_offset
    got: list[Chunk] = []
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, tail, 1 << 16)
        assert await follower.next(0.05) is None  # at the tail, now waiting on the hub
        await append(peer, "/s", b"one")
        await append(peer, "/s", b"two", b"three")
        await append(peer, "/s", b"four")
        while len(got) < 4:
            result = await follower.next(WAIT)
            assert result is not None, f"follower stalled after {len(got)} chunks"
            got.extend(result.chunks)

    assert [c.data for c in got] == [b"one", b"two", b"three", b"four"]
    _assert_plausible(got)
    assert _triples(got) == _triples(await read_all(log, "/s", tail))


async def test_hub_notices_carry_the_append_time(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/s", TEXT)
    async with log.hub.watch("/s") as watch:
        await append(peer, "/s", b"x", b"y")
        assert await watch.wait(WAIT)
        notices, overflow = watch.drain()
    assert not overflow
    delivered = [c for n in notices for c in (n.chunks or ())]
    assert [c.data for c in delivered] == [b"x", b"y"]
    _assert_plausible(delivered)
    assert _triples(delivered) == _triples(await read_all(log, "/s"))


async def test_fork_inherits_the_sources_append_times(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"a"])
    await asyncio.sleep(0.005)
    mid = await append(log, "/src", b"b")
    await asyncio.sleep(0.005)
    await append(log, "/src", b"c")
    source = await read_all(log, "/src")

    await make(log, "/f", None, fork=ForkFrom("/src", mid))
    await asyncio.sleep(0.005)
    await append(log, "/f", b"own")
    await make(log, "/ff", None, fork=ForkFrom("/f"))

    fork = await read_all(log, "/f")
    assert _triples(fork[:2]) == _triples(source[:2])
    assert fork[2].data == b"own"
    _assert_plausible(fork)
    # A fork of a fork sees the original times too, through both hops.
    assert _triples(await read_all(log, "/ff")) == _triples(fork)
    # Reading inherited entries in small pages from the fork changes nothing.
    assert _triples(await read_all(log, "/f", max_bytes=1)) == _triples(fork)


async def test_source_times_survive_its_deletion_for_the_fork(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"a", b"b"])
    source = await read_all(log, "/src")
    await make(log, "/f", None, fork=ForkFrom("/src"))
    await log.delete("/src")
    assert _triples(await read_all(log, "/f")) == _triples(source)


async def test_binary_sub_offset_prefix_carries_the_fork_time(log: ChunkLog) -> None:
    await make(log, "/src", BINARY, [b"hello", b"world"])
    source = await read_all(log, "/src")
    await asyncio.sleep(0.005)
    info, _ = await log.create("/f", StreamConfig(BINARY, fork=ForkFrom("/src", source[0].end, 3)))
    assert info.next_offset == Offset(2, 8)

    fork = await read_all(log, "/f")
    assert [c.data for c in fork] == [b"hello", b"wor"]
    assert _triples(fork[:1]) == _triples(source[:1])
    # The copied bytes are a new entry of the fork, written when the fork was created.
    _assert_plausible(fork)
    assert fork[1].appended_ms >= source[1].appended_ms


@pytest.mark.retention(2)
async def test_times_stay_with_their_entries_when_retention_trims(log: ChunkLog) -> None:
    await make(log, "/s")
    for item in (b"a", b"b"):
        await append(log, "/s", item)
        await asyncio.sleep(0.005)
    before = await read_all(log, "/s")
    for item in (b"c", b"d"):
        await append(log, "/s", item)
        await asyncio.sleep(0.005)

    after = await read_all(log, "/s", before[1].end)
    assert [c.data for c in after] == [b"c", b"d"]
    _assert_plausible(after)
    assert after[0].appended_ms >= before[1].appended_ms
    await append(log, "/s", b"e")
    again = await read_all(log, "/s", after[0].end)
    assert _triples(again[:1]) == _triples(after[1:])


# -- annotations -------------------------------------------------------------------------------


async def test_annotations_set_get_and_overwrite(log: ChunkLog) -> None:
    await make(log, "/s")
    assert await log.annotation("/s", "trace.parent") is None

    await log.annotate("/s", "trace.parent", "00-aaaa-bbbb-01")
    await log.annotate("/s", "gen_id", "g-1")
    assert await log.annotation("/s", "trace.parent") == "00-aaaa-bbbb-01"
    assert await log.annotation("/s", "gen_id") == "g-1"

    await log.annotate("/s", "trace.parent", "00-cccc-dddd-01")
    assert await log.annotation("/s", "trace.parent") == "00-cccc-dddd-01"
    assert await log.annotation("/s", "gen_id") == "g-1"
    assert await log.annotation("/s", "other") is None


async def test_annotation_values_at_the_limits(log: ChunkLog) -> None:
    await make(log, "/s")
    longest_name = "a" * 64
    await log.annotate("/s", longest_name, "")
    assert await log.annotation("/s", longest_name) == ""
    # The limit counts characters, not bytes.
    wide = "é" * 1024
    await log.annotate("/s", "wide", wide)
    assert await log.annotation("/s", "wide") == wide
    await log.annotate("/s", "x-1_2.3", "v")
    assert await log.annotation("/s", "x-1_2.3") == "v"


async def test_annotations_are_per_stream(log: ChunkLog) -> None:
    await make(log, "/a")
    await make(log, "/b")
    await log.annotate("/a", "k", "on-a")
    assert await log.annotation("/b", "k") is None
    # A fork is a stream of its own: it starts without annotations.
    await make(log, "/f", None, fork=ForkFrom("/a"))
    assert await log.annotation("/f", "k") is None
    await log.annotate("/f", "k", "on-f")
    assert await log.annotation("/a", "k") == "on-a"


async def test_annotations_of_a_missing_stream(log: ChunkLog) -> None:
    with pytest.raises(StreamNotFound):
        await log.annotate("/missing", "k", "v")
    with pytest.raises(StreamNotFound):
        await log.annotation("/missing", "k")
    # Annotating does not create the stream.
    with pytest.raises(StreamNotFound):
        await log.info("/missing")


async def test_annotations_vanish_with_the_stream(log: ChunkLog) -> None:
    await make(log, "/s")
    await log.annotate("/s", "k", "v")
    await log.delete("/s")
    with pytest.raises(StreamNotFound):
        await log.annotation("/s", "k")
    with pytest.raises(StreamNotFound):
        await log.annotate("/s", "k", "v2")
    await make(log, "/s")
    assert await log.annotation("/s", "k") is None


async def test_soft_deleted_stream_is_gone_for_annotations(log: ChunkLog) -> None:
    await make(log, "/src")
    await log.annotate("/src", "k", "v")
    await make(log, "/f", None, fork=ForkFrom("/src"))
    await log.delete("/src")  # the fork keeps it as a husk
    with pytest.raises(StreamGone):
        await log.annotate("/src", "k", "v2")
    with pytest.raises(StreamGone):
        await log.annotation("/src", "k")


@pytest.mark.parametrize(
    "name",
    ["", "A", "Trace", "a" * 65, "has space", "a/b", "a:b", "é", "name\n", "\nname", "a\x00"],
)
async def test_invalid_annotation_names_are_rejected(log: ChunkLog, name: str) -> None:
    await make(log, "/s")
    with pytest.raises(ValueError, match="annotation name"):
        await log.annotate("/s", name, "v")
    with pytest.raises(ValueError, match="annotation name"):
        await log.annotation("/s", name)
    # Validation comes first, whether or not the stream exists.
    with pytest.raises(ValueError, match="annotation name"):
        await log.annotation("/missing", name)


@pytest.mark.parametrize("value", ["x" * 1025, "é" * 1025, "\ud800"])
async def test_invalid_annotation_values_are_rejected(log: ChunkLog, value: str) -> None:
    await make(log, "/s")
    with pytest.raises(ValueError, match="annotation value"):
        await log.annotate("/s", "k", value)
    assert await log.annotation("/s", "k") is None


async def test_annotations_do_not_extend_the_ttl(log: ChunkLog) -> None:
    """1 s TTL: annotating at ~0.6 s must not keep the stream alive past ~1 s."""
    info = await make(log, "/s", ttl=1)
    await asyncio.sleep(0.6)
    await log.annotate("/s", "k", "v")
    assert await log.annotation("/s", "k") == "v"
    assert (await log.info("/s")).expires_at_ms == info.expires_at_ms
    await asyncio.sleep(0.7)  # past the original expiry, well before a renewed one
    with pytest.raises(StreamNotFound):
        await log.annotation("/s", "k")
    with pytest.raises(StreamNotFound):
        await log.annotate("/s", "k", "v")
    with pytest.raises(StreamNotFound):
        await log.info("/s")


async def test_expired_stream_recreated_has_no_annotations(log: ChunkLog) -> None:
    await make(log, "/s", ttl=1)
    await log.annotate("/s", "k", "v")
    await asyncio.sleep(1.2)
    await make(log, "/s")
    assert await log.annotation("/s", "k") is None


async def test_reading_zero_offset_after_annotating_is_unchanged(log: ChunkLog) -> None:
    """Annotations live beside the entries, never among them."""
    await make(log, "/s", TEXT, [b"data"])
    await log.annotate("/s", "k", "v")
    result = await log.read("/s", ZERO, 1024)
    assert [c.data for c in result.chunks] == [b"data"]
    assert result.next_offset == (await log.info("/s")).next_offset
