"""Retention: a stream keeps its newest N entries; reading behind that is a loud 410, not a gap."""

from __future__ import annotations

import pytest

from service.log.base import ChunkLog, ForkFrom, OffsetGone
from service.log.offsets import ZERO, Offset
from tests.contract._support import JSON, append, content, entries, make

pytestmark = [pytest.mark.asyncio, pytest.mark.retention(3)]


async def test_appends_beyond_the_cap_trim_the_oldest_entries(log: ChunkLog) -> None:
    await make(log, "/s")
    ends = [await append(log, "/s", item) for item in (b"a", b"bb", b"c", b"dd", b"e")]

    with pytest.raises(OffsetGone) as gone:
        await log.read("/s", ZERO, 1024)
    # The earliest readable position is the end of the last trimmed entry.
    assert gone.value.earliest == ends[1] == Offset(2, 3)
    assert await entries(log, "/s", gone.value.earliest) == [b"c", b"dd", b"e"]
    with pytest.raises(OffsetGone):
        await log.read("/s", ends[0], 1024)


async def test_reads_inside_the_retained_window_are_unaffected(log: ChunkLog) -> None:
    await make(log, "/s")
    ends = [await append(log, "/s", bytes([97 + i])) for i in range(6)]
    assert await content(log, "/s", ends[3]) == b"ef"
    assert await content(log, "/s", ends[2]) == b"def"
    result = await log.read("/s", ends[5], 1024)
    assert (result.chunks, result.up_to_date) == ((), True)


async def test_a_batch_larger_than_the_cap_keeps_only_its_newest_entries(log: ChunkLog) -> None:
    await make(log, "/j", JSON)
    result = await log.append("/j", [b"1", b"2", b"3", b"4", b"5"], content_type=JSON)
    assert result.next_offset == Offset(5, 5)
    with pytest.raises(OffsetGone) as gone:
        await log.read("/j", ZERO, 1024)
    assert gone.value.earliest == Offset(2, 2)
    assert await entries(log, "/j", Offset(2, 2)) == [b"3", b"4", b"5"]


async def test_initial_entries_are_trimmed_by_the_next_append(log: ChunkLog) -> None:
    # Create writes what it is given; the cap applies from the first append on.
    await make(log, "/s", initial=[b"a"])
    for item in (b"b", b"c", b"d"):
        await append(log, "/s", item)
    with pytest.raises(OffsetGone) as gone:
        await log.read("/s", ZERO, 1024)
    assert gone.value.earliest == Offset(1, 1)
    assert await content(log, "/s", Offset(1, 1)) == b"bcd"


async def test_forking_below_the_retained_start_is_gone(log: ChunkLog) -> None:
    await make(log, "/s")
    ends = [await append(log, "/s", bytes([97 + i])) for i in range(5)]
    with pytest.raises(OffsetGone):
        await make(log, "/f", fork=ForkFrom("/s", ends[0]))
    # A fork inherits the source's retained start: what the source lost, the fork never had.
    await make(log, "/ok", fork=ForkFrom("/s", ends[3]))
    with pytest.raises(OffsetGone) as gone:
        await log.read("/ok", ZERO, 1024)
    assert gone.value.earliest == ends[1]
    assert await content(log, "/ok", ends[1]) == b"cd"


async def test_a_stream_that_forks_read_from_is_not_trimmed(log: ChunkLog) -> None:
    await make(log, "/s")
    for item in (b"a", b"b"):
        await append(log, "/s", item)
    await make(log, "/f", fork=ForkFrom("/s"))
    for item in (b"c", b"d", b"e", b"f"):
        await append(log, "/s", item)
    # Five newer entries than the cap allows, yet everything is still there for the fork.
    assert await content(log, "/s") == b"abcdef"
    assert await content(log, "/f") == b"ab"
    await log.delete("/f")
    await append(log, "/s", b"g")  # trimming resumes with the next append
    with pytest.raises(OffsetGone) as gone:
        await log.read("/s", ZERO, 1024)
    assert gone.value.earliest == Offset(4, 4)
    assert await content(log, "/s", gone.value.earliest) == b"efg"


async def test_a_fork_trims_only_its_own_entries(log: ChunkLog) -> None:
    await make(log, "/s", initial=[b"a", b"b"])
    await make(log, "/f", fork=ForkFrom("/s"))
    ends = [await append(log, "/f", item) for item in (b"c", b"d", b"e", b"f")]
    with pytest.raises(OffsetGone) as gone:
        await log.read("/f", ZERO, 1024)
    assert gone.value.earliest == ends[0] == Offset(3, 3)
    assert await content(log, "/f", ends[0]) == b"def"
    assert await content(log, "/s") == b"ab"
