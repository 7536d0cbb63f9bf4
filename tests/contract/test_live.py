"""Live tail: ``hub.watch`` + ``Follower`` wake on appends, closes and deletes, never polling."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

import pytest

from service.log.base import ChunkLog, ForkFrom, StreamGone, StreamNotFound
from service.log.hub import Follower
from service.log.offsets import ZERO, Offset
from tests.contract._support import TEXT, WAIT, append, make

if TYPE_CHECKING:
    from service.log.base import Chunk, ReadResult

pytestmark = pytest.mark.asyncio


class ReadCounter:
    """Passes everything through to a log, counting ``read`` calls (to catch polling)."""

    def __init__(self, log: ChunkLog) -> None:
        self._log = log
        self.reads = 0

    async def read(self, path: str, after: Offset, max_bytes: int) -> ReadResult:
        self.reads += 1
        return await self._log.read(path, after, max_bytes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


async def _collect(follower: Follower, count: int) -> list[Chunk]:
    """Follow until ``count`` chunks arrived; every wait is bounded."""
    got: list[Chunk] = []
    while len(got) < count:
        result = await follower.next(WAIT)
        assert result is not None, f"follower stalled after {len(got)} of {count} chunks"
        got.extend(result.chunks)
    return got


async def test_reader_at_the_tail_is_woken_by_an_append(log: ChunkLog, peer: ChunkLog) -> None:
    """``peer`` is a second RedisChunkLog on the same server: a write from another process."""
    tail = (await make(log, "/s", TEXT, [b"historical"])).next_offset
    counter = ReadCounter(log)
    async with log.hub.watch("/s") as watch:
        follower = Follower(cast("ChunkLog", counter), watch, tail, 1 << 16)
        # Idle at the tail: one read to find nothing, then only waiting.
        assert await follower.next(0.3) is None
        assert counter.reads == 1
        waiter = asyncio.create_task(follower.next(WAIT))
        new_tail = await append(peer, "/s", b"new data")
        result = await asyncio.wait_for(waiter, WAIT)

    assert result is not None
    assert [(c.data, c.end) for c in result.chunks] == [(b"new data", new_tail)]
    assert result.next_offset == new_tail == Offset(2, 18)
    assert follower.position == new_tail
    assert result.closed is False


async def test_follower_sees_every_append_once_in_order(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/s")
    items = [f"item-{i:03d}".encode() for i in range(60)]

    async def write() -> list[Offset]:
        ends = []
        for item in items:
            ends.append(await append(peer, "/s", item))
            await asyncio.sleep(0)
        return ends

    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, ZERO, 1 << 16)
        got, ends = await asyncio.wait_for(
            asyncio.gather(_collect(follower, len(items)), write()), WAIT * 2
        )

    assert [c.data for c in got] == items
    assert [c.end for c in got] == ends
    assert follower.position == ends[-1]


async def test_follower_that_falls_behind_recovers_from_storage(log: ChunkLog) -> None:
    """More notices than a watch keeps: the follower re-reads instead of losing entries."""
    await make(log, "/s")
    items = [f"{i:04d}".encode() for i in range(200)]
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, ZERO, 1 << 16)
        assert await follower.next(0.05) is None
        for item in items:
            await log.append("/s", [item], content_type=TEXT)
        got = await asyncio.wait_for(_collect(follower, len(items)), WAIT)
    assert [c.data for c in got] == items


async def test_follower_catches_up_a_backlog_larger_than_max_bytes(log: ChunkLog) -> None:
    """Nothing is appended while it reads: it must page through storage by itself."""
    items = [bytes([65 + i]) * 100 for i in range(10)]
    await make(log, "/s", TEXT, items)
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, ZERO, 250)
        got = await _collect(follower, len(items))
    assert [c.data for c in got] == items
    assert follower.position == Offset(10, 1000)


async def test_follower_pages_through_a_burst_of_appends(log: ChunkLog) -> None:
    """A burst of many pages arrives while the follower waits at the tail."""
    await make(log, "/s")
    items = [bytes([97 + i % 26]) * 40 for i in range(50)]
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, ZERO, 100)
        assert await follower.next(0.05) is None
        for item in items:
            await log.append("/s", [item], content_type=TEXT)
        got = await _collect(follower, len(items))
    assert [c.data for c in got] == items
    assert follower.position == Offset(50, 2000)


async def test_append_and_close_ends_the_follower(log: ChunkLog, peer: ChunkLog) -> None:
    tail = (await make(log, "/s", TEXT, [b"hi"])).next_offset
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, tail, 1 << 16)
        assert await follower.next(0.05) is None
        waiter = asyncio.create_task(follower.next(WAIT))
        closed = await peer.append("/s", [b"bye"], content_type=TEXT, close=True)
        result = await asyncio.wait_for(waiter, WAIT)

    assert result is not None
    assert [c.data for c in result.chunks] == [b"bye"]
    assert result.next_offset == closed.next_offset == Offset(2, 5)
    assert (result.closed, result.at_end) == (True, True)


async def test_close_only_ends_the_follower(log: ChunkLog, peer: ChunkLog) -> None:
    tail = (await make(log, "/s", TEXT, [b"hi"])).next_offset
    async with log.hub.watch("/s") as watch:
        follower = Follower(log, watch, tail, 1 << 16)
        assert await follower.next(0.05) is None
        waiter = asyncio.create_task(follower.next(WAIT))
        await peer.append("/s", [], content_type=None, close=True)
        result = await asyncio.wait_for(waiter, WAIT)

    assert result is not None
    assert (result.chunks, result.next_offset) == ((), tail)
    assert (result.closed, result.at_end) == (True, True)


async def test_follower_of_a_closed_stream_ends_at_once(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"all", b"there"], closed=True)
    async with log.hub.watch("/s") as watch:
        from_start = Follower(log, watch, ZERO, 1 << 16)
        at_tail = Follower(log, watch, Offset(2, 8), 1 << 16)
        everything = await asyncio.wait_for(from_start.next(WAIT), WAIT)
        nothing = await asyncio.wait_for(at_tail.next(WAIT), WAIT)

    assert everything is not None
    assert [c.data for c in everything.chunks] == [b"all", b"there"]
    assert everything.at_end is True
    assert nothing is not None
    assert (nothing.chunks, nothing.next_offset, nothing.at_end) == ((), Offset(2, 8), True)


async def test_delete_wakes_every_follower_with_not_found(log: ChunkLog, peer: ChunkLog) -> None:
    tail = (await make(log, "/s", TEXT, [b"x"])).next_offset
    async with contextlib.AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(log.hub.watch("/s")) for _ in range(3)]
        followers = [Follower(log, w, tail, 1 << 16) for w in watches]
        for f in followers:
            assert await f.next(0.01) is None
        waiters = [asyncio.create_task(f.next(WAIT)) for f in followers]
        await peer.delete("/s")
        outcomes = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), WAIT)

    assert [type(o) for o in outcomes] == [StreamNotFound] * 3


async def test_deleting_a_forked_source_wakes_its_followers_with_gone(
    log: ChunkLog, peer: ChunkLog
) -> None:
    tail = (await make(log, "/src", TEXT, [b"x"])).next_offset
    await make(log, "/f", None, fork=ForkFrom("/src"))
    async with log.hub.watch("/src") as watch:
        follower = Follower(log, watch, tail, 1 << 16)
        assert await follower.next(0.01) is None
        waiter = asyncio.create_task(follower.next(WAIT))
        await peer.delete("/src")
        with pytest.raises(StreamGone):
            await asyncio.wait_for(waiter, WAIT)


async def test_fork_follower_sees_only_the_forks_appends(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"inherited data"])
    tail = (await make(log, "/f", None, fork=ForkFrom("/src"))).next_offset
    async with log.hub.watch("/f") as watch:
        follower = Follower(log, watch, tail, 1 << 16)
        assert await follower.next(0.01) is None
        waiter = asyncio.create_task(follower.next(WAIT))
        await append(peer, "/src", b" source new")
        fork_tail = await append(peer, "/f", b" fork new")
        result = await asyncio.wait_for(waiter, WAIT)

    assert result is not None
    assert [(c.data, c.end) for c in result.chunks] == [(b" fork new", fork_tail)]


async def test_followers_of_other_streams_are_not_disturbed(log: ChunkLog) -> None:
    await make(log, "/a")
    await make(log, "/b")
    async with log.hub.watch("/a") as wa, log.hub.watch("/b") as wb:
        fa = Follower(log, wa, ZERO, 1 << 16)
        fb = Follower(log, wb, ZERO, 1 << 16)
        await append(log, "/a", b"for a")
        result = await asyncio.wait_for(fa.next(WAIT), WAIT)
        assert result is not None
        assert [c.data for c in result.chunks] == [b"for a"]
        assert await fb.next(0.2) is None
        await log.delete("/a")
        await append(log, "/b", b"for b")
        result = await asyncio.wait_for(fb.next(WAIT), WAIT)
        assert result is not None
        assert [c.data for c in result.chunks] == [b"for b"]


async def test_hub_counts_live_readers(log: ChunkLog) -> None:
    hub = log.hub
    assert (hub.watch_count, hub.stream_count) == (0, 0)
    async with hub.watch("/a"), hub.watch("/a"), hub.watch("/b"):
        assert (hub.watch_count, hub.stream_count) == (3, 2)
    assert (hub.watch_count, hub.stream_count) == (0, 0)
