"""Backend selection from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.log.memory import MemoryChunkLog

if TYPE_CHECKING:
    from service.log.base import ChunkLog
    from service.settings import Settings

__all__ = ["open_log"]


def open_log(settings: Settings) -> ChunkLog:
    """The backend ``settings`` ask for, not yet started."""
    if settings.redis_url is None:
        return MemoryChunkLog(retention_max_entries=settings.retention_max_entries)
    from service.log.redis import RedisChunkLog

    return RedisChunkLog(
        settings.redis_url,
        prefix=settings.redis_key_prefix,
        max_connections=settings.redis_max_connections,
        retention_max_entries=settings.retention_max_entries,
    )
