"""Creating streams: new vs idempotent re-create, conflicts, initial data, any path."""

from __future__ import annotations

import time

import pytest

from service.log.base import (
    ChunkLog,
    Producer,
    SeqConflict,
    StreamConfig,
    StreamConflict,
    StreamNotFound,
)
from service.log.offsets import ZERO, Offset
from tests.contract._support import BINARY, JSON, TEXT, append, content, entries, make

pytestmark = pytest.mark.asyncio


async def test_new_stream_is_empty_and_reported_new(log: ChunkLog) -> None:
    before = int(time.time() * 1000)
    info, created = await log.create("/v1/stream/a", StreamConfig(content_type=TEXT))
    after = int(time.time() * 1000)

    assert created is True
    assert info.path == "/v1/stream/a"
    assert info.content_type == TEXT
    assert info.next_offset == ZERO
    assert str(info.next_offset) == "0000000000000000_0000000000000000"
    assert info.closed is False
    assert info.ttl_seconds is None
    assert info.expires_at_ms is None
    # Clocks of one machine; the slack only absorbs rounding and server-side time sources.
    assert before - 2000 <= info.created_ms <= after + 2000
    assert await log.info("/v1/stream/a") == info


async def test_content_type_is_kept_exactly_as_given(log: ChunkLog) -> None:
    info = await make(log, "/s", "application/json; charset=utf-8")
    assert info.content_type == "application/json; charset=utf-8"
    assert (await log.info("/s")).content_type == "application/json; charset=utf-8"
    result = await log.read("/s", ZERO, 1024)
    assert result.content_type == "application/json; charset=utf-8"


async def test_identical_create_is_idempotent(log: ChunkLog) -> None:
    config = StreamConfig(content_type=TEXT, ttl_seconds=3600)
    first, created = await log.create("/s", config)
    tail = await append(log, "/s", b"data")

    again, created_again = await log.create("/s", config, [b"ignored initial body"])

    assert created is True
    assert created_again is False
    assert again.created_ms == first.created_ms
    assert again.next_offset == tail
    assert again.ttl_seconds == 3600
    assert await content(log, "/s") == b"data"


async def test_content_types_compare_by_media_type_only(log: ChunkLog) -> None:
    await make(log, "/s", JSON)
    for variant in ("APPLICATION/JSON", "application/json; charset=utf-8", " Application/Json "):
        info, created = await log.create("/s", StreamConfig(content_type=variant))
        assert created is False, variant
        assert info.content_type == JSON


@pytest.mark.parametrize(
    "other",
    [
        StreamConfig(content_type=JSON),
        StreamConfig(content_type=TEXT, ttl_seconds=7200),
        StreamConfig(content_type=TEXT),
        StreamConfig(content_type=TEXT, expires_at_ms=4_102_444_800_000),
        StreamConfig(content_type=TEXT, ttl_seconds=3600, closed=True),
    ],
    ids=["content-type", "ttl", "no-ttl", "expires-at-instead", "closed"],
)
async def test_create_with_a_different_config_conflicts(log: ChunkLog, other: StreamConfig) -> None:
    await make(log, "/s", TEXT, [b"kept"], ttl=3600)

    with pytest.raises(StreamConflict):
        await log.create("/s", other)

    info = await log.info("/s")
    assert (info.content_type, info.ttl_seconds, info.closed) == (TEXT, 3600, False)
    assert await content(log, "/s") == b"kept"


async def test_initial_body_becomes_the_first_entries(log: ChunkLog) -> None:
    info = await make(log, "/t", TEXT, [b"hello"])
    assert info.next_offset == Offset(1, 5)
    result = await log.read("/t", ZERO, 1024)
    assert [(c.data, c.end) for c in result.chunks] == [(b"hello", Offset(1, 5))]
    assert result.up_to_date

    messages = [b'{"n":1}', b'{"n":22}']
    info = await make(log, "/j", JSON, messages)
    assert info.next_offset == Offset(2, 15)
    assert await entries(log, "/j") == messages


async def test_create_closed(log: ChunkLog) -> None:
    empty = await make(log, "/empty", TEXT, closed=True)
    assert empty.closed is True
    assert empty.next_offset == ZERO

    info = await make(log, "/full", TEXT, [b"initial content"], closed=True)
    assert info.closed is True
    assert info.next_offset == Offset(1, 15)
    result = await log.read("/full", ZERO, 1024)
    assert b"".join(c.data for c in result.chunks) == b"initial content"
    assert result.closed is True
    assert result.at_end is True


async def test_recreate_after_delete_starts_fresh(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"old data"])
    await log.append("/s", [b"x"], content_type=TEXT, stream_seq="5")
    await log.append("/s", [b"y"], content_type=TEXT, producer=Producer("p", 3, 0))
    await log.append("/s", [], content_type=None, close=True)
    await log.delete("/s")

    info, created = await log.create("/s", StreamConfig(content_type=BINARY), [b"new data"])

    assert created is True
    assert info.content_type == BINARY
    assert info.closed is False
    assert info.next_offset == Offset(1, 8)
    assert await content(log, "/s") == b"new data"
    # Stream-Seq and producer state went with the old stream.
    ok = await log.append("/s", [b"1"], content_type=BINARY, stream_seq="1")
    assert ok.next_offset == Offset(2, 9)
    fresh = await log.append("/s", [b"2"], content_type=BINARY, producer=Producer("p", 0, 0))
    assert fresh.duplicate is False
    assert await content(log, "/s") == b"new data12"
    with pytest.raises(SeqConflict):
        await log.append("/s", [b"3"], content_type=BINARY, stream_seq="0")


async def test_missing_stream_is_not_found_everywhere(log: ChunkLog) -> None:
    with pytest.raises(StreamNotFound):
        await log.info("/nope")
    with pytest.raises(StreamNotFound):
        await log.touch("/nope")
    with pytest.raises(StreamNotFound):
        await log.read("/nope", ZERO, 1024)
    with pytest.raises(StreamNotFound):
        await log.append("/nope", [b"x"], content_type=TEXT)
    with pytest.raises(StreamNotFound):
        await log.append("/nope", [], content_type=None, close=True)
    with pytest.raises(StreamNotFound):
        await log.append("/nope", [b"x"], content_type=TEXT, producer=Producer("p", 0, 0))
    with pytest.raises(StreamNotFound):
        await log.delete("/nope")


async def test_delete_then_everything_is_not_found(log: ChunkLog) -> None:
    await make(log, "/s", TEXT, [b"data"], closed=True)
    await log.delete("/s")
    with pytest.raises(StreamNotFound):
        await log.info("/s")
    with pytest.raises(StreamNotFound):
        await log.read("/s", ZERO, 1024)
    with pytest.raises(StreamNotFound):
        await log.append("/s", [b"x"], content_type=TEXT)
    with pytest.raises(StreamNotFound):
        await log.delete("/s")


# Paths chosen to trip up key schemes: separators, hash-tag braces, prefixes of each other,
# non-ASCII, whitespace and glob characters.
_AWKWARD_PATHS = [
    "/v1/stream/a",
    "/v1/stream/a/b",
    "/v1/stream/a:meta",
    "/v1/stream/a:data",
    "/v1/stream/a}",
    "/v1/stream/{a}",
    "/v1/stream/{a}b",
    "/v1/stream/{a}c",
    "/v1/stream/a b",
    "/v1/stream/ü/日本",
    "/v1/stream/*",
    "/v1/stream/a?x=1&y=%20",
    "v1/stream/a",
]


async def test_any_path_is_its_own_stream(log: ChunkLog) -> None:
    for i, path in enumerate(_AWKWARD_PATHS):
        await make(log, path, TEXT, [f"data-{i}".encode()])
    for i, path in enumerate(_AWKWARD_PATHS):
        await append(log, path, f"+{i}".encode())

    for i, path in enumerate(_AWKWARD_PATHS):
        assert await content(log, path) == f"data-{i}+{i}".encode(), path
        assert (await log.info(path)).path == path

    await log.delete("/v1/stream/{a}")
    for path in _AWKWARD_PATHS:
        if path != "/v1/stream/{a}":
            assert (await log.info(path)).content_type == TEXT, path
    with pytest.raises(StreamNotFound):
        await log.info("/v1/stream/{a}")
