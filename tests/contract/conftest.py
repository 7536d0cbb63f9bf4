"""The ``log`` fixture: one started ChunkLog per test, for each backend.

The Redis backend gets a key prefix of its own per test, so tests share one server but never
each other's streams. ``peer`` is a second handle on the same storage: for Redis a second
``RedisChunkLog`` (as another replica would hold), for memory the same instance (one process
is all the memory backend can span).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from service.log.memory import MemoryChunkLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from service.log.base import ChunkLog


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """How to open (another) handle on the storage a test's ``log`` uses."""

    kind: str
    url: str | None = None
    prefix: str = ""
    retention: int = 0

    def build(self) -> ChunkLog:
        if self.kind == "memory":
            return MemoryChunkLog(retention_max_entries=self.retention)
        from service.log.redis import RedisChunkLog

        assert self.url is not None
        return RedisChunkLog(
            self.url, prefix=self.prefix, max_connections=16, retention_max_entries=self.retention
        )


_SPEC = pytest.StashKey[BackendSpec]()


RETENTION_MARK = "retention"


@pytest_asyncio.fixture(params=["memory", "redis"], ids=["memory", "redis"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[ChunkLog]:
    """A started ChunkLog of the parametrized backend, stopped after the test.

    ``@pytest.mark.retention(n)`` builds it with ``retention_max_entries=n``.
    """
    mark = request.node.get_closest_marker(RETENTION_MARK)
    retention = int(mark.args[0]) if mark else 0
    if request.param == "memory":
        spec = BackendSpec("memory", retention=retention)
    else:
        url = request.getfixturevalue("redis_server")
        spec = BackendSpec(
            "redis", url, f"rivulet-test-{uuid.uuid4().hex[:16]}", retention=retention
        )
    request.node.stash[_SPEC] = spec
    instance = spec.build()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest_asyncio.fixture
async def peer(log: ChunkLog, request: pytest.FixtureRequest) -> AsyncIterator[ChunkLog]:
    """Another handle on ``log``'s storage, as a second process would have."""
    spec = request.node.stash[_SPEC]
    if spec.kind == "memory":
        yield log
        return
    other = spec.build()
    await other.start()
    try:
        yield other
    finally:
        await other.stop()
