"""Abuse limits that hold across replicas: request rate, concurrent generations, SSE connections.

State lives where the replicas share it (Redis; in-process on the memory backend):

- **rate**: a fixed one-minute window counter per identity (``INCR`` + ``PEXPIRE`` in one
  script); over the limit → 429 with ``Retry-After`` = the window's remaining time;
- **concurrency**: a sorted set of holders per identity, each with an expiry, so a crashed
  replica's slots free themselves (``ZREMRANGEBYSCORE`` before counting, in one script).

The identity is the API key's fingerprint when the request carried a valid key, else the
client address (which, behind a proxy, is only meaningful if uvicorn trusts its
``X-Forwarded-For`` — ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException

from service.log.redis_errors import unavailable

__all__ = ["LimitStore", "Limits", "MemoryLimitStore", "RedisLimitStore", "identity_of"]

_WINDOW = 60.0


class LimitStore(Protocol):
    """Shared counters for limits."""

    async def hit(self, bucket: str, limit: int, window: float) -> float | None:
        """Count one event; ``None`` if within ``limit``, else seconds until the window ends."""
        ...

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> bool:
        """Take one of ``limit`` slots for ``ttl`` seconds; False if all are taken."""
        ...

    async def release(self, bucket: str, member: str) -> None:
        """Give a slot back."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Disconnect."""


@dataclass(slots=True)
class MemoryLimitStore:
    """In-process counters (the memory backend is one process anyway)."""

    _counts: dict[str, tuple[float, int]] = field(default_factory=dict)
    _slots: dict[str, dict[str, float]] = field(default_factory=dict)

    async def hit(self, bucket: str, limit: int, window: float) -> float | None:
        now = time.monotonic()
        ends, count = self._counts.get(bucket, (now + window, 0))
        if ends <= now:
            ends, count = now + window, 0
        count += 1
        self._counts[bucket] = (ends, count)
        if len(self._counts) > 100_000:  # bounded: forget finished windows
            self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
        return None if count <= limit else ends - now

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> bool:
        now = time.monotonic()
        slots = {m: t for m, t in self._slots.get(bucket, {}).items() if t > now}
        if len(slots) >= limit:
            self._slots[bucket] = slots
            return False
        slots[member] = now + ttl
        self._slots[bucket] = slots
        return True

    async def release(self, bucket: str, member: str) -> None:
        slots = self._slots.get(bucket)
        if slots is not None:
            slots.pop(member, None)
            if not slots:
                del self._slots[bucket]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


# KEYS[1] counter. ARGV: limit, window ms. -1 when allowed, else ms left in the window.
_HIT: Final = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then left = tonumber(ARGV[2]) end
  return left
end
return -1
"""

# KEYS[1] holders zset. ARGV: member, limit, now ms, ttl ms. 1 when a slot was taken.
_ACQUIRE: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class RedisLimitStore:
    """Counters in Redis, so every replica enforces the same limits."""

    def __init__(self, url: str, prefix: str = "rivulet", max_connections: int = 4) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis

        self._pool = BlockingConnectionPool.from_url(url, max_connections=max_connections)
        self._redis = Redis(connection_pool=self._pool)
        self._prefix = f"{prefix}:limit:"
        self._hit = self._redis.register_script(_HIT)
        self._acquire = self._redis.register_script(_ACQUIRE)

    async def _call(self, awaitable: Any) -> Any:
        # Limits live in the same Redis as the log: unreachable means 503, like every write.
        try:
            return await awaitable
        except Exception as exc:
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def hit(self, bucket: str, limit: int, window: float) -> float | None:
        script = self._hit(keys=[self._prefix + bucket], args=[limit, int(window * 1000)])
        left = int(await self._call(script))
        return None if left < 0 else left / 1000

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> bool:
        now_ms = int(time.time() * 1000)
        script = self._acquire(
            keys=[self._prefix + "c:" + bucket], args=[member, limit, now_ms, int(ttl * 1000)]
        )
        return bool(await self._call(script))

    async def release(self, bucket: str, member: str) -> None:
        await self._call(self._redis.zrem(self._prefix + "c:" + bucket, member))

    async def start(self) -> None:
        await self._call(self._redis.ping())

    async def stop(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()


def identity_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Whom a limit counts: the API key (hashed) when one was sent, else the client address."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip() and not value.startswith("v1."):
        return "key:" + hashlib.sha256(value.strip().encode()).hexdigest()[:16]
    client = connection.client
    return "ip:" + (client.host if client else "unknown")


@dataclass(slots=True)
class Limits:
    """The configured limits and where their counters live."""

    store: LimitStore
    rate_per_minute: int
    max_generations: int
    max_sse: int
    generation_ttl: float
    sse_ttl: float
    max_streams: int = 0

    async def check_rate(self, identity: str) -> None:
        """Count a write request; 429 past ``rate_per_minute``."""
        if self.rate_per_minute <= 0:
            return
        window = int(time.time() // _WINDOW)
        left = await self.store.hit(f"r:{identity}:{window}", self.rate_per_minute, _WINDOW)
        if left is not None:
            raise _too_many(f"more than {self.rate_per_minute} requests a minute", left)

    async def take_generation(self, identity: str, gen_id: str) -> None:
        """Hold a concurrent-generation slot until the worker finishes (or it expires)."""
        if self.max_generations <= 0:
            return
        ok = await self.store.acquire(
            f"g:{identity}", gen_id, self.max_generations, self.generation_ttl
        )
        if not ok:
            raise _too_many(f"more than {self.max_generations} generations at once", 5.0)

    async def end_generation(self, identity: str, gen_id: str) -> None:
        if self.max_generations > 0:
            await self.store.release(f"g:{identity}", gen_id)

    async def take_stream(self, identity: str, stream: str, ttl: float | None) -> None:
        """Hold a slot for a newly created stream (until deleted, or its TTL, else a day)."""
        if self.max_streams <= 0:
            return
        ok = await self.store.acquire(f"st:{identity}", stream, self.max_streams, ttl or 86400.0)
        if not ok:
            raise _too_many(f"more than {self.max_streams} streams for this key", 60.0)

    async def end_stream(self, identity: str, stream: str) -> None:
        if self.max_streams > 0:
            await self.store.release(f"st:{identity}", stream)

    async def take_connection(self, identity: str, conn_id: str) -> None:
        """Hold one of ``max_sse`` live-reader connections."""
        if self.max_sse <= 0:
            return
        ok = await self.store.acquire(f"s:{identity}", conn_id, self.max_sse, self.sse_ttl)
        if not ok:
            raise _too_many(f"more than {self.max_sse} open streaming connections", 5.0)

    async def end_connection(self, identity: str, conn_id: str) -> None:
        if self.max_sse > 0:
            await self.store.release(f"s:{identity}", conn_id)


def _too_many(detail: str, retry_after: float) -> TooManyRequestsException:
    return TooManyRequestsException(
        detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}
    )
