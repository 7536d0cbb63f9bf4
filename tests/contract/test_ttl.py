"""Retention: a sliding TTL renewed by reads and writes (not by ``info``), absolute Expires-At.

All expiry scenarios share one timeline so the suite sleeps about 2.6 s per backend, not per
case: everything is created at t=0 with a 2 s TTL (or an Expires-At of t+2 s), some streams are
used at t=1.3 s, and every stream is inspected at t=2.6 s. Renewed streams then have 0.7 s to
spare, expired ones expired 0.6 s ago.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from service.log.base import (
    ChunkLog,
    ForkFrom,
    Producer,
    StreamConfig,
    StreamGone,
    StreamNotFound,
)
from service.log.offsets import ZERO
from tests.contract._support import JSON, TEXT, append, content, make

pytestmark = pytest.mark.asyncio

TTL = 2
MIDPOINT = 1.3


async def _state(log: ChunkLog, path: str) -> str:
    try:
        await log.info(path)
    except StreamNotFound:
        return "not-found"
    except StreamGone:
        return "gone"
    return "alive"


async def test_ttl_timeline(log: ChunkLog) -> None:
    renewed_by = ["read", "append", "touch", "close", "producer-close", "producer-append"]
    for name in [*renewed_by, "info", "untouched", "fork-source"]:
        await make(log, f"/{name}", TEXT, [b"data"], ttl=TTL)
    untouched = Producer("p", 0, 0)
    await log.append("/untouched", [b"!"], content_type=TEXT, producer=untouched, stream_seq="5")
    await make(log, "/fork-reader", None, fork=ForkFrom("/fork-source"))
    await make(log, "/long-source", TEXT, [b"long"], ttl=3600)
    await make(log, "/short-fork", None, fork=ForkFrom("/long-source"), ttl=TTL)
    await make(log, "/doomed-source", TEXT, [b"doomed"])
    await make(log, "/doomed-fork", None, fork=ForkFrom("/doomed-source"), ttl=TTL)
    await log.delete("/doomed-source")
    expires_at = int(time.time() * 1000) + TTL * 1000
    await make(log, "/absolute", TEXT, [b"data"], expires_at_ms=expires_at)

    ttl_info = await log.info("/info")
    assert (ttl_info.ttl_seconds, (await log.info("/fork-reader")).ttl_seconds) == (TTL, TTL)
    absolute_info = await log.info("/absolute")
    assert (absolute_info.ttl_seconds, absolute_info.expires_at_ms) == (None, expires_at)

    await asyncio.sleep(MIDPOINT)

    await log.read("/read", ZERO, 1024)
    await append(log, "/append", b"more")
    touched = await log.touch("/touch")
    await log.append("/close", [], content_type=None, close=True)
    await log.append(
        "/producer-close", [], content_type=None, producer=Producer("p", 0, 0), close=True
    )
    await log.append("/producer-append", [b"x"], content_type=TEXT, producer=Producer("p", 0, 0))
    still = await log.info("/info")
    await log.read("/fork-reader", ZERO, 1024)
    # An absolute expiry is used like any stream but never pushed back.
    await log.read("/absolute", ZERO, 1024)
    await log.touch("/absolute")
    await append(log, "/absolute", b"more")

    assert touched.ttl_seconds == TTL
    assert still.ttl_seconds == TTL

    await asyncio.sleep(MIDPOINT)

    names = [*renewed_by, "info", "untouched", "fork-reader", "short-fork", "absolute"]
    names += ["doomed-fork", "doomed-source"]  # fork first: its expiry frees the source
    states = {name: await _state(log, f"/{name}") for name in names}
    assert states == {
        **dict.fromkeys(renewed_by, "alive"),
        "info": "not-found",
        "untouched": "not-found",
        "fork-reader": "alive",
        "short-fork": "not-found",
        "absolute": "not-found",
        "doomed-fork": "not-found",
        "doomed-source": "not-found",
    }

    # Reading inherited data renewed the fork only. The expired source may linger as gone
    # (its data still serves the fork) but can't be used.
    assert await _state(log, "/fork-source") in {"gone", "not-found"}
    assert await content(log, "/fork-reader") == b"data"
    assert (await log.info("/close")).closed is True
    assert (await log.info("/producer-close")).closed is True
    assert await content(log, "/append") == b"datamore"

    # The expired fork gave back its reference: deleting its source removes it outright.
    await log.delete("/long-source")
    assert await _state(log, "/long-source") == "not-found"

    # An expired stream is exactly a missing one.
    with pytest.raises(StreamNotFound):
        await log.read("/untouched", ZERO, 1024)
    with pytest.raises(StreamNotFound):
        await log.touch("/untouched")
    with pytest.raises(StreamNotFound):
        await log.append("/untouched", [b"x"], content_type=TEXT)
    with pytest.raises(StreamNotFound):
        await log.append("/absolute", [], content_type=None, close=True)
    with pytest.raises(StreamNotFound):
        await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/untouched")))
    with pytest.raises(StreamNotFound):
        await log.delete("/info")

    info, created = await log.create("/untouched", StreamConfig(JSON, ttl_seconds=3600))
    assert (created, info.content_type, info.next_offset, info.ttl_seconds) == (
        True,
        JSON,
        ZERO,
        3600,
    )
    # Producer and Stream-Seq state expired with the stream.
    fresh = await log.append(
        "/untouched", [b"1"], content_type=JSON, producer=untouched, stream_seq="1"
    )
    assert (fresh.duplicate, fresh.producer_seq) == (False, 0)
    info, created = await log.create("/absolute", StreamConfig(TEXT), [b"new data"])
    assert created is True
    assert await content(log, "/absolute") == b"new data"
