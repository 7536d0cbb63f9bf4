"""Reading: offsets, suffixes, pagination by ``max_bytes`` and offset validation."""

from __future__ import annotations

import pytest

from service.log.base import ChunkLog, InvalidOffset
from service.log.offsets import ZERO, Offset
from tests.contract._support import BINARY, JSON, TEXT, append, content, make, read_all

pytestmark = pytest.mark.asyncio


async def test_empty_stream_reads_empty_at_the_zero_offset(log: ChunkLog) -> None:
    await make(log, "/s", JSON)
    result = await log.read("/s", ZERO, 1024)

    assert result.chunks == ()
    assert result.next_offset == ZERO
    assert result.tail == ZERO
    assert result.up_to_date is True
    assert result.closed is False
    assert result.at_end is False
    assert result.content_type == JSON


async def test_read_returns_every_entry_with_its_end_offset(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"chunk1"])
    await append(log, "/s", b"chunk2")
    await append(log, "/s", b"chunk3!")

    result = await log.read("/s", ZERO, 1 << 20)

    assert [(c.data, c.end) for c in result.chunks] == [
        (b"chunk1", Offset(1, 6)),
        (b"chunk2", Offset(2, 12)),
        (b"chunk3!", Offset(3, 19)),
    ]
    assert (result.next_offset, result.tail, result.up_to_date) == (
        Offset(3, 19),
        Offset(3, 19),
        True,
    )
    assert result.content_type == TEXT


async def test_read_from_an_offset_returns_exactly_what_came_after(log: ChunkLog) -> None:
    await make(log, "/s")
    x = await append(log, "/s", b"chunk1")
    await append(log, "/s", b"chunk2")
    await append(log, "/s", b"chunk3")

    assert await content(log, "/s", x) == b"chunk2chunk3"


async def test_read_your_writes(log: ChunkLog) -> None:
    await make(log, "/s")
    pos = ZERO
    for i in range(10):
        data = f"item-{i}".encode() * (i + 1)
        tail = await append(log, "/s", data)
        result = await log.read("/s", pos, 1 << 20)
        assert [(c.data, c.end) for c in result.chunks] == [(data, tail)]
        pos = result.next_offset
    assert pos == (await log.info("/s")).next_offset


async def test_read_at_the_tail_is_empty_and_up_to_date(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"abc"])
    result = await log.read("/s", Offset(1, 3), 1024)
    assert (result.chunks, result.next_offset, result.tail) == ((), Offset(1, 3), Offset(1, 3))
    assert result.up_to_date is True


async def test_reads_are_repeatable(log: ChunkLog) -> None:
    await make(log, "/s", BINARY, [b"\x00\x01", b"\xff"])
    first = await log.read("/s", ZERO, 1024)
    second = await log.read("/s", ZERO, 1024)
    assert first == second


async def test_pagination_respects_max_bytes(log: ChunkLog) -> None:
    items = [bytes([65 + i]) * 100 for i in range(10)]
    await make(log, "/s", TEXT, items)

    pages = []
    pos = ZERO
    while True:
        result = await log.read("/s", pos, 250)
        pages.append(result)
        if result.up_to_date:
            break
        pos = result.next_offset

    assert len(pages) >= 4
    for page in pages:
        assert page.chunks, "every page makes progress"
        assert sum(len(c.data) for c in page.chunks) <= 250
        assert page.tail == Offset(10, 1000)
        assert page.next_offset == page.chunks[-1].end
    assert all(not p.up_to_date for p in pages[:-1])
    assert [c.data for p in pages for c in p.chunks] == items


async def test_an_entry_larger_than_max_bytes_is_still_returned_alone(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"x" * 1000, b"y"])
    first = await log.read("/s", ZERO, 10)
    assert [c.data for c in first.chunks] == [b"x" * 1000]
    assert first.next_offset == Offset(1, 1000)
    assert first.up_to_date is False
    second = await log.read("/s", first.next_offset, 10)
    assert [c.data for c in second.chunks] == [b"y"]
    assert second.up_to_date is True


async def test_one_byte_pages_return_one_entry_each(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"aa", b"bb", b"cc"])
    ends = [c.end for c in await read_all(log, "/s", max_bytes=1)]
    assert ends == [Offset(1, 2), Offset(2, 4), Offset(3, 6)]


async def test_partial_page_of_a_closed_stream_is_not_at_end(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"first", b"second"], closed=True)
    partial = await log.read("/s", ZERO, 5)
    assert [c.data for c in partial.chunks] == [b"first"]
    assert partial.closed is True
    assert partial.up_to_date is False
    assert partial.at_end is False
    last = await log.read("/s", partial.next_offset, 5)
    assert [c.data for c in last.chunks] == [b"second"]
    assert last.at_end is True


@pytest.mark.parametrize(
    "bad",
    [
        Offset(9_999_999_999_999_999, 9_999_999_999_999_999),
        Offset(3, 15),  # one entry past the tail
        Offset(2, 11),  # the tail's entry count, more bytes
        Offset(2, 9),  # the tail's entry count, fewer bytes
        Offset(1, 4),  # an entry's count, wrong byte count
        Offset(1, 6),
        Offset(1, 10),
        Offset(0, 5),
    ],
    ids=str,
)
async def test_offsets_that_are_not_positions_are_invalid(log: ChunkLog, bad: Offset) -> None:
    await make(log, "/s", TEXT, [b"hello", b"world"])
    with pytest.raises(InvalidOffset):
        await log.read("/s", bad, 1024)


async def test_offsets_of_one_stream_are_checked_against_another(log: ChunkLog) -> None:
    await make(log, "/a", TEXT, [b"12345"])
    await make(log, "/b", TEXT, [b"123", b"45"])
    with pytest.raises(InvalidOffset):
        await log.read("/b", Offset(1, 5), 1024)
    assert await content(log, "/b", Offset(1, 3)) == b"45"
