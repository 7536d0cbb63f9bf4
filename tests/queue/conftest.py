"""The ``queue`` and ``peer`` fixtures: started JobQueues of each backend, one storage per test.

The Redis backend gets a key prefix of its own per test, so tests share one server but never
each other's jobs. ``peer`` is a second handle on the same storage: for Redis a second
``RedisJobQueue`` (as another replica would hold), for memory the same instance (one process is
all the memory backend can span).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from service.generation.queue import JobQueue
from service.generation.queue_memory import MemoryJobQueue
from service.generation.queue_redis import RedisJobQueue

LEASE = 0.5
"""Short leases keep lapse tests fast; every wait in the suite is measured against it."""


@pytest_asyncio.fixture(params=["memory", "redis"], ids=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> str:
    """``memory`` or ``redis://...`` (the session's redis-server)."""
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("redis_server")
    return url


@pytest_asyncio.fixture
async def prefix() -> str:
    return f"rivulet-queue-test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def queue(backend: str, prefix: str) -> AsyncIterator[JobQueue]:
    """A started queue with a lease of :data:`LEASE` seconds."""
    instance: JobQueue
    if backend == "memory":
        instance = MemoryJobQueue(lease=LEASE)
    else:
        instance = RedisJobQueue(backend, prefix=prefix, lease=LEASE, max_connections=4)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest_asyncio.fixture
async def peer(queue: JobQueue, backend: str, prefix: str) -> AsyncIterator[JobQueue]:
    """Another handle on ``queue``'s storage, as another replica would hold."""
    if backend == "memory":
        yield queue
        return
    other = RedisJobQueue(backend, prefix=prefix, lease=LEASE, max_connections=4)
    await other.start()
    try:
        yield other
    finally:
        await other.stop()
