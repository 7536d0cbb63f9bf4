"""What only the Redis backend has: a bounded connection count, outages, a vanished group."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from service.generation.queue_redis import RedisJobQueue
from service.log.base import BackendUnavailable
from tests.conftest import _start, _stop, free_port

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def raw(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server)
    try:
        yield client
    finally:
        await client.aclose()


async def _others(raw: aioredis.Redis) -> int:
    """Clients connected to the server, besides ``raw`` itself."""
    me = await raw.client_id()
    return sum(1 for c in await raw.client_list() if int(c["id"]) != me)


async def test_connections_stay_at_pool_plus_one_however_many_claim(
    redis_server: str, raw: aioredis.Redis
) -> None:
    before = await _others(raw)
    queue = RedisJobQueue(redis_server, prefix=f"q-{uuid.uuid4().hex[:8]}", max_connections=2)
    await queue.start()
    try:
        waiters = [asyncio.create_task(queue.claim(f"w{i}", 3.0)) for i in range(20)]
        await asyncio.sleep(0.2)
        # With every claim waiting, the pool still serves other calls at once.
        started = time.monotonic()
        await asyncio.gather(*(queue.touch_reader(f"job-{i}", 5) for i in range(50)))
        assert await queue.depth() == 0
        assert time.monotonic() - started < 0.5
        assert await _others(raw) - before <= 2 + 1

        for i in range(20):
            await queue.enqueue(f"job-{i}", b"x")
        jobs = await asyncio.wait_for(asyncio.gather(*waiters), 5.0)

        assert sorted(j.id for j in jobs if j is not None) == sorted(f"job-{i}" for i in range(20))
        assert await _others(raw) - before <= 2 + 1
    finally:
        await queue.stop()
    assert await _others(raw) == before, "stop() must close every connection"


async def test_stop_forgets_idle_consumers_but_keeps_busy_ones(
    redis_server: str, raw: aioredis.Redis
) -> None:
    prefix = f"q-{uuid.uuid4().hex[:8]}"
    queue = RedisJobQueue(redis_server, prefix=prefix)
    await queue.start()
    await queue.enqueue("job", b"x")
    held = await queue.claim("busy", 1.0)
    assert held is not None
    assert await queue.claim("idle", 0) is None
    await queue.stop()

    consumers = await raw.xinfo_consumers(f"{prefix}:jobs", f"{prefix}:workers")

    # "idle" is gone; "busy" still holds the job, which must stay reclaimable.
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"busy", 1)]


async def test_start_fails_loudly_when_redis_is_unreachable() -> None:
    queue = RedisJobQueue(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)
    with pytest.raises(BackendUnavailable, match="is unreachable"):
        await queue.start()
    await queue.stop()


async def test_an_outage_is_backend_unavailable(tmp_path: Path) -> None:
    proc, port = _start("redis-server", tmp_path)
    queue = RedisJobQueue(f"redis://127.0.0.1:{port}/0", connect_timeout=1.0, socket_timeout=1.0)
    try:
        await queue.start()
        await queue.enqueue("job", b"x")
        _stop(proc)

        for call in (
            queue.enqueue("job-2", b"x"),
            queue.claim("w1", 0.2),
            queue.depth(),
            queue.remember_key("k", "job", 5),
        ):
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(call, 5.0)
    finally:
        _stop(proc)
        await queue.stop()


async def test_claims_recreate_a_vanished_group(redis_server: str, raw: aioredis.Redis) -> None:
    """A Redis restart without persistence (here: the stream deleted) loses the group."""
    prefix = f"q-{uuid.uuid4().hex[:8]}"
    queue = RedisJobQueue(redis_server, prefix=prefix)
    await queue.start()
    try:
        await raw.delete(f"{prefix}:jobs")
        assert await queue.claim("w1", 0.1) is None
        # Gone again, and this time a job arrives before the next claim recreates the group.
        await raw.delete(f"{prefix}:jobs")
        await queue.enqueue("job", b"x")
        job = await queue.claim("w1", 1.0)

        assert job is not None
        assert (job.id, job.attempt) == ("job", 1)
    finally:
        await queue.stop()


async def test_a_burst_is_delivered_in_one_read_and_unstarted_jobs_go_back_on_stop(
    redis_server: str, raw: aioredis.Redis
) -> None:
    prefix = f"q-{uuid.uuid4().hex[:8]}"
    queue = RedisJobQueue(redis_server, prefix=prefix)
    other = RedisJobQueue(redis_server, prefix=prefix)
    await queue.start()
    await other.start()
    try:
        for i in range(6):
            await queue.enqueue(f"job-{i}", b"x")
        first = await queue.claim("w1", 1.0, prefetch=4)
        assert first is not None
        # Three more were delivered with it: the next claims need no new read, so the stream
        # has handed exactly four to w1 and two are still new.
        pending = await raw.xpending(f"{prefix}:jobs", f"{prefix}:workers")
        assert pending["pending"] == 4, pending
        second = await queue.claim("w1", 1.0)
        assert second is not None
        assert [first.id, second.id] == ["job-0", "job-1"]
        # Stopping hands the two prefetched-but-unstarted jobs back at once (not after a
        # lease): another worker claims them and the two never-delivered ones.
        await queue.stop()
        got = [await other.claim("w2", 1.0) for _ in range(4)]
        assert sorted(j.id for j in got if j is not None) == [f"job-{i}" for i in range(2, 6)]
    finally:
        await other.stop()
