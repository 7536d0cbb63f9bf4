"""Redis-only fixtures: handles on one real redis-server, as separate processes hold them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from service.log.redis import RedisChunkLog


@pytest_asyncio.fixture
async def prefix() -> str:
    return f"redis-test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def red(redis_server: str, prefix: str) -> AsyncIterator[RedisChunkLog]:
    log = RedisChunkLog(redis_server, prefix=prefix, max_connections=8, sweep_interval=0.2)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


@pytest_asyncio.fixture
async def red2(redis_server: str, prefix: str) -> AsyncIterator[RedisChunkLog]:
    """A second handle on the same keys: another process would hold one."""
    log = RedisChunkLog(redis_server, prefix=prefix, max_connections=4, sweep_interval=0.2)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()
