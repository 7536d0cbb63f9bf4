"""Shared counters behind the abuse limits: fixed-window rates and expiring slot sets.

Kept beside the log's storage (the HTTP edge makes no Redis calls): Redis when the log is
Redis, so every replica counts the same, in-process otherwise. One Lua call per operation.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from redis.asyncio import Redis

from service.log.redis_errors import unavailable
from service.log.redis_pool import blocking_pool

__all__ = ["LimitStore", "MemoryLimitStore", "RedisLimitStore", "Slot"]


class Slot(enum.IntEnum):
    """What :meth:`LimitStore.acquire` did."""

    FULL = 0
    TAKEN = 1
    RENEWED = 2
    """The member held a slot already; it was renewed, nothing new was taken."""


class LimitStore(Protocol):
    """Shared counters for limits."""

    async def hit(self, bucket: str, limit: int, window: float) -> float | None:
        """Count one event; ``None`` if within ``limit``, else seconds until the window ends."""
        ...

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> Slot:
        """Take one of ``limit`` slots for ``ttl`` seconds (renewing ``member``'s own)."""
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

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> Slot:
        now = time.monotonic()
        slots = {m: t for m, t in self._slots.get(bucket, {}).items() if t > now}
        self._slots[bucket] = slots
        held = member in slots
        if not held and len(slots) >= limit:
            return Slot.FULL
        slots[member] = now + ttl
        return Slot.RENEWED if held else Slot.TAKEN

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

# KEYS[1] holders zset. ARGV: member, limit, now ms, ttl ms. A Slot value: 0 full, 1 taken,
# 2 the member held one already (renewed).
_ACQUIRE: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= false
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if held then return 2 end
return 1
"""


class RedisLimitStore:
    """Counters in Redis, so every replica enforces the same limits."""

    def __init__(
        self,
        url: str,
        prefix: str = "rivulet",
        max_connections: int = 4,
        *,
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        # Timeouts like the log's pool: a hung Redis must fail requests (503), not hang them.
        self._pool = blocking_pool(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
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

    async def acquire(self, bucket: str, member: str, limit: int, ttl: float) -> Slot:
        now_ms = int(time.time() * 1000)
        script = self._acquire(
            keys=[self._prefix + "c:" + bucket], args=[member, limit, now_ms, int(ttl * 1000)]
        )
        return Slot(int(await self._call(script)))

    async def release(self, bucket: str, member: str) -> None:
        await self._call(self._redis.zrem(self._prefix + "c:" + bucket, member))

    async def start(self) -> None:
        await self._call(self._redis.ping())

    async def stop(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()
