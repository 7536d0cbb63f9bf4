"""Small helpers the contract tests share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.log.base import StreamConfig
from service.log.offsets import ZERO, Offset

if TYPE_CHECKING:
    from collections.abc import Sequence

    from service.log.base import Chunk, ChunkLog, ForkFrom, StreamInfo

TEXT = "text/plain"
JSON = "application/json"
BINARY = "application/octet-stream"

WAIT = 5.0
"""Upper bound on any wait for something that should happen promptly."""


async def make(
    log: ChunkLog,
    path: str,
    content_type: str | None = TEXT,
    initial: Sequence[bytes] = (),
    *,
    ttl: int | None = None,
    expires_at_ms: int | None = None,
    closed: bool = False,
    fork: ForkFrom | None = None,
) -> StreamInfo:
    """Create a stream that must be new; return its info."""
    config = StreamConfig(
        content_type=content_type,
        ttl_seconds=ttl,
        expires_at_ms=expires_at_ms,
        closed=closed,
        fork=fork,
    )
    info, created = await log.create(path, config, initial)
    assert created, f"{path} already existed"
    return info


async def read_all(
    log: ChunkLog, path: str, after: Offset = ZERO, max_bytes: int = 1 << 20
) -> list[Chunk]:
    """Every chunk after ``after``, following pagination to the tail."""
    chunks: list[Chunk] = []
    pos = after
    for _ in range(100_000):
        result = await log.read(path, pos, max_bytes)
        chunks.extend(result.chunks)
        if result.up_to_date:
            return chunks
        assert result.chunks, "a read short of the tail must return at least one chunk"
        assert result.next_offset > pos
        pos = result.next_offset
    raise AssertionError("pagination did not reach the tail")


async def entries(log: ChunkLog, path: str, after: Offset = ZERO) -> list[bytes]:
    """The data of every entry after ``after``."""
    return [c.data for c in await read_all(log, path, after)]


async def content(log: ChunkLog, path: str, after: Offset = ZERO) -> bytes:
    """The concatenated payload after ``after``."""
    return b"".join(await entries(log, path, after))


async def append(log: ChunkLog, path: str, *items: bytes, content_type: str = TEXT) -> Offset:
    """A plain append; return the new tail."""
    result = await log.append(path, list(items), content_type=content_type)
    assert not result.duplicate
    return result.next_offset
