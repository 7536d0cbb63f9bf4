"""After Redis restarts, the first request on every pool works: no 503 for a stale connection.

Regression for a red CI run: with redis-py 8.1 (RESP3 + hiredis) an idle pooled connection the
server had closed was handed out as healthy, so the first append, create, enqueue or limit
check after a Redis restart failed once per idle connection ("Connection closed by server")
and the API answered 503 while /readyz said ready. See service/log/redis_pool.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from service.generation.queue_redis import RedisJobQueue
from service.log import StreamConfig
from service.log.counters import RedisLimitStore
from service.log.redis import RedisChunkLog
from tests.conftest import _start, _stop

if TYPE_CHECKING:
    from pathlib import Path

IDLE = 8  # idle connections left in each pool before the restart


async def _exercise(tmp_path: Path) -> list[str]:
    proc, port = _start("redis-server", tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    log = RedisChunkLog(url, max_connections=IDLE)
    queue = RedisJobQueue(url, max_connections=IDLE)
    limits = RedisLimitStore(url, max_connections=IDLE)
    failures: list[str] = []
    try:
        for part in (log, queue, limits):
            await part.start()
        cfg = StreamConfig(content_type="application/json")
        # Fill every pool with idle connections (concurrent calls each take one).
        await asyncio.gather(*(log.create(f"/warm/{i}", cfg) for i in range(IDLE)))
        await asyncio.gather(*(queue.enqueue(f"warm-{i}", b"{}") for i in range(IDLE)))
        await asyncio.gather(*(limits.hit(f"warm-{i}", 100, 60) for i in range(IDLE)))
        assert len(log._pool._available_connections) >= 2  # the pools really hold idle ones

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        proc, _ = _start("redis-server", tmp_path, port)
        await asyncio.sleep(0.2)  # the closed sockets' EOF has reached the event loop

        # One call at a time, so each takes a different idle connection from its pool.
        calls = (
            [lambda i=i: log.create(f"/after/{i}", cfg) for i in range(IDLE)]
            + [lambda i=i: queue.enqueue(f"after-{i}", b"{}") for i in range(IDLE)]
            + [lambda i=i: limits.hit(f"after-{i}", 100, 60) for i in range(IDLE)]
        )
        for call in calls:
            try:
                await call()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        for part in (log, queue, limits):
            await part.stop()
        _stop(proc)
    return failures


def test_every_pool_reconnects_after_a_redis_restart(tmp_path: Path) -> None:
    failures = asyncio.run(_exercise(tmp_path))
    assert failures == [], failures
