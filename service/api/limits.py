"""Abuse limits that hold across replicas: request rate, concurrent generations, SSE connections.

The policy lives here; the counters (``service.log.counters``) live where the replicas share
them (Redis; in-process on the memory backend):

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
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException

from service.api.auth import ReadTokens, bearer
from service.log.counters import LimitStore, MemoryLimitStore, RedisLimitStore, Slot
from service.settings import Settings

__all__ = ["Limits", "identity_of"]

_WINDOW = 60.0


def identity_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Whom a limit counts: the API key (hashed) when one was sent, else the client address."""
    presented = bearer(connection)
    if presented and not presented.startswith(ReadTokens.PREFIX):
        return "key:" + hashlib.sha256(presented.encode()).hexdigest()[:16]
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits ``settings`` ask for, counted in Redis when there is one (so they hold
        across replicas and the worker processes that end generations)."""
        return cls(
            store=(
                RedisLimitStore(settings.redis_url, settings.redis_key_prefix)
                if settings.redis_url
                else MemoryLimitStore()
            ),
            rate_per_minute=settings.rate_limit,
            max_generations=settings.max_concurrent_generations,
            max_sse=settings.max_sse_per_client,
            generation_ttl=float(settings.generation_ttl),
            sse_ttl=settings.sse_max_duration + 60,
            max_streams=settings.max_streams_per_key,
        )

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
        slot = await self.store.acquire(
            f"g:{identity}", gen_id, self.max_generations, self.generation_ttl
        )
        if slot is Slot.FULL:
            raise _too_many(f"more than {self.max_generations} generations at once", 5.0)

    async def end_generation(self, identity: str, gen_id: str) -> None:
        if self.max_generations > 0:
            await self.store.release(f"g:{identity}", gen_id)

    async def take_stream(self, identity: str, stream: str, ttl: float | None) -> bool:
        """Hold a slot for ``stream`` (until deleted, or its TTL, else a day); True when this
        call took a new one (the caller gives it back if the stream turns out to exist)."""
        if self.max_streams <= 0:
            return False
        slot = await self.store.acquire(f"st:{identity}", stream, self.max_streams, ttl or 86400.0)
        if slot is Slot.FULL:
            raise _too_many(f"more than {self.max_streams} streams for this key", 60.0)
        return slot is Slot.TAKEN

    async def end_stream(self, identity: str, stream: str) -> None:
        if self.max_streams > 0:
            await self.store.release(f"st:{identity}", stream)

    async def take_connection(self, identity: str, conn_id: str) -> None:
        """Hold one of ``max_sse`` live-reader connections."""
        if self.max_sse <= 0:
            return
        slot = await self.store.acquire(f"s:{identity}", conn_id, self.max_sse, self.sse_ttl)
        if slot is Slot.FULL:
            raise _too_many(f"more than {self.max_sse} open streaming connections", 5.0)

    async def end_connection(self, identity: str, conn_id: str) -> None:
        if self.max_sse > 0:
            await self.store.release(f"s:{identity}", conn_id)


def _too_many(detail: str, retry_after: float) -> TooManyRequestsException:
    return TooManyRequestsException(
        detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}
    )
