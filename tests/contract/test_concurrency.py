"""Concurrency: every write rule holds atomically under concurrent writers and readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from service.log.base import (
    ChunkLog,
    ForkFrom,
    Producer,
    SeqConflict,
    StreamClosed,
    StreamConfig,
    StreamNotFound,
)
from service.log.hub import Follower
from service.log.offsets import ZERO, Offset
from tests.contract._support import TEXT, WAIT, content, entries, make, read_all

pytestmark = pytest.mark.asyncio

WRITERS = 20
PER_WRITER = 50


async def test_concurrent_appenders_and_readers(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/s")
    total = WRITERS * PER_WRITER
    writers_done = asyncio.Event()
    snapshots: list[list[bytes]] = []

    async def write(w: int) -> dict[bytes, Offset]:
        # Half the writers go through the second handle (another replica, for Redis).
        target = peer if w % 2 else log
        ends = {}
        for i in range(PER_WRITER):
            item = f"w{w:02d}-{i:03d}".encode()
            result = await target.append("/s", [item], content_type=TEXT)
            ends[item] = result.next_offset
            await asyncio.sleep(0)
        return ends

    async def follow(follower: Follower) -> list[tuple[bytes, Offset]]:
        got: list[tuple[bytes, Offset]] = []
        while len(got) < total:
            result = await follower.next(WAIT)
            assert result is not None, f"follower stalled after {len(got)} of {total}"
            got.extend((c.data, c.end) for c in result.chunks)
        return got

    async def snapshot() -> None:
        while not writers_done.is_set():
            snapshots.append([c.data for c in await read_all(log, "/s")])
            await asyncio.sleep(0)

    async def all_writers() -> list[dict[bytes, Offset]]:
        try:
            return await asyncio.gather(*(write(w) for w in range(WRITERS)))
        finally:
            writers_done.set()

    async with contextlib.AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(log.hub.watch("/s")) for _ in range(3)]
        followers = [Follower(log, w, ZERO, 1 << 20) for w in watches]
        results = await asyncio.wait_for(
            asyncio.gather(all_writers(), *(follow(f) for f in followers), snapshot(), snapshot()),
            30,
        )
    issued: list[dict[bytes, Offset]] = results[0]
    followed: list[list[tuple[bytes, Offset]]] = results[1:4]

    final = await read_all(log, "/s")
    final_pairs = [(c.data, c.end) for c in final]
    assert len(final) == total
    assert final[-1].end == Offset(total, total * 7)
    assert [c.end for c in final] == [Offset(i, 7 * i) for i in range(1, total + 1)]
    # Each writer's entries are all there, once, in its own order, at the offsets it was given.
    for w, ends in enumerate(issued):
        mine = [(d, e) for d, e in final_pairs if d.startswith(f"w{w:02d}-".encode())]
        assert mine == list(ends.items())
    for got in followed:
        assert got == final_pairs
    data = [c.data for c in final]
    for snap in snapshots:
        assert snap == data[: len(snap)]


async def test_concurrent_retries_of_one_producer_request_store_one_copy(log: ChunkLog) -> None:
    await make(log, "/s")
    producers, seqs, retries = 5, 10, 4

    async def produce(pid: str) -> None:
        for seq in range(seqs):
            item = f"{pid}-{seq}".encode()
            outcomes = await asyncio.gather(
                *(
                    log.append("/s", [item], content_type=TEXT, producer=Producer(pid, 0, seq))
                    for _ in range(retries)
                )
            )
            assert sorted(o.duplicate for o in outcomes) == [False] + [True] * (retries - 1)
            assert {(o.producer_epoch, o.producer_seq) for o in outcomes} == {(0, seq)}

    await asyncio.wait_for(asyncio.gather(*(produce(f"p{i}") for i in range(producers))), 30)

    data = await entries(log, "/s")
    assert len(data) == producers * seqs
    for i in range(producers):
        mine = [d for d in data if d.startswith(f"p{i}-".encode())]
        assert mine == [f"p{i}-{seq}".encode() for seq in range(seqs)]


async def test_racing_stream_seq_has_exactly_one_winner_per_seq(log: ChunkLog) -> None:
    await make(log, "/s")
    rounds, racers = 10, 8
    winners = []
    for r in range(rounds):
        seq = f"{r:04d}"
        outcomes = await asyncio.gather(
            *(
                log.append("/s", [f"{seq}:{j}".encode()], content_type=TEXT, stream_seq=seq)
                for j in range(racers)
            ),
            return_exceptions=True,
        )
        won = [j for j, o in enumerate(outcomes) if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(won) == 1, outcomes
        assert all(isinstance(o, SeqConflict) for o in lost), lost
        winners.append(f"{seq}:{won[0]}".encode())
    assert await entries(log, "/s") == winners


async def test_free_running_stream_seq_writers_never_reorder(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/s")
    seqs = [f"{i:04d}" for i in range(30)]
    wins: list[str] = []

    async def writer(j: int) -> None:
        target = peer if j % 2 else log
        for seq in seqs:
            try:
                await target.append(
                    "/s", [f"{seq}:{j}".encode()], content_type=TEXT, stream_seq=seq
                )
            except SeqConflict:
                pass
            else:
                wins.append(seq)
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(writer(j) for j in range(8))), 30)

    counts = Counter(wins)
    assert max(counts.values()) == 1
    assert counts[seqs[-1]] == 1
    stored = [d.split(b":")[0].decode() for d in await entries(log, "/s")]
    assert stored == sorted(wins)


async def test_concurrent_creates_make_one_stream(log: ChunkLog, peer: ChunkLog) -> None:
    config = StreamConfig(TEXT, ttl_seconds=3600)
    outcomes = await asyncio.gather(
        *((log if i % 2 else peer).create("/s", config, [b"init"]) for i in range(10))
    )
    assert sorted(created for _, created in outcomes) == [False] * 9 + [True]
    assert {info.created_ms for info, _ in outcomes} == {outcomes[0][0].created_ms}
    assert await content(log, "/s") == b"init"


async def test_concurrent_forks_and_deletes_leave_nothing_behind(
    log: ChunkLog, peer: ChunkLog
) -> None:
    await make(log, "/src", TEXT, [b"shared"])
    forks = [f"/f{i}" for i in range(10)]
    created = await asyncio.gather(
        *(
            (log if i % 2 else peer).create(path, StreamConfig(None, fork=ForkFrom("/src")))
            for i, path in enumerate(forks)
        )
    )
    assert all(new for _, new in created)
    for path in forks:
        assert await content(log, path) == b"shared"

    everything = ["/src", *forks]
    await asyncio.gather(*((log if i % 2 else peer).delete(p) for i, p in enumerate(everything)))

    for path in everything:
        with pytest.raises(StreamNotFound):
            await log.info(path)


async def test_appends_racing_a_close(log: ChunkLog, peer: ChunkLog) -> None:
    await make(log, "/s")
    accepted: dict[int, list[bytes]] = {}
    refused: list[StreamClosed] = []

    async def writer(w: int) -> None:
        target = peer if w % 2 else log
        mine = accepted.setdefault(w, [])
        for i in range(20):
            item = f"{w}-{i:02d}".encode()
            try:
                await target.append("/s", [item], content_type=TEXT)
            except StreamClosed as exc:
                refused.append(exc)
            else:
                mine.append(item)
            await asyncio.sleep(0)

    async def closer() -> list[bool]:
        for _ in range(15):
            await asyncio.sleep(0)
        outcomes = await asyncio.gather(
            *(log.append("/s", [], content_type=None, close=True) for _ in range(5))
        )
        assert {o.closed for o in outcomes} == {True}
        return sorted(o.duplicate for o in outcomes)

    results = await asyncio.wait_for(asyncio.gather(closer(), *(writer(w) for w in range(8))), 30)

    assert results[0] == [False, True, True, True, True]
    info = await log.info("/s")
    assert info.closed is True
    assert refused, "the close landed after every append; nothing raced"
    assert {exc.next_offset for exc in refused} == {info.next_offset}
    data = await entries(log, "/s")
    assert len(data) == info.next_offset.entries
    for w, mine in accepted.items():
        # A writer's accepted items are a prefix of its attempts, and stored in order.
        assert mine == [f"{w}-{i:02d}".encode() for i in range(len(mine))]
        assert [d for d in data if d.startswith(f"{w}-".encode())] == mine
