"""A producer append of nothing claims (epoch, seq) without writing: how a successor fences."""

from __future__ import annotations

import pytest

from service.log.base import ChunkLog, Producer, StaleEpoch, StreamClosed
from tests.contract._support import JSON, content, make

pytestmark = pytest.mark.asyncio


async def test_a_fence_writes_nothing_and_stops_older_epochs(log: ChunkLog) -> None:
    tail = (await make(log, "/g", JSON)).next_offset
    r = await log.append("/g", [b'{"a":1}'], content_type=JSON, producer=Producer("p", 0, 0))
    assert not r.duplicate
    fenced = await log.append("/g", [], content_type=None, producer=Producer("p", 1, 0))
    assert fenced.next_offset == r.next_offset != tail  # nothing written by the fence
    assert (fenced.producer_epoch, fenced.producer_seq) == (1, 0)
    with pytest.raises(StaleEpoch) as stale:
        await log.append("/g", [b'{"b":2}'], content_type=JSON, producer=Producer("p", 0, 1))
    assert stale.value.current_epoch == 1
    # The new epoch carries on after its fence; a repeated fence is an idempotent duplicate.
    again = await log.append("/g", [], content_type=None, producer=Producer("p", 1, 0))
    assert again.duplicate
    await log.append("/g", [b'{"c":3}'], content_type=JSON, producer=Producer("p", 1, 1))
    assert await content(log, "/g") == b'{"a":1}{"c":3}'


async def test_a_fence_on_a_closed_stream_says_closed(log: ChunkLog) -> None:
    await make(log, "/g", JSON, [b"1"], closed=True)
    with pytest.raises(StreamClosed):
        await log.append("/g", [], content_type=None, producer=Producer("p", 1, 0))
