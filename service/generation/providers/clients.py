"""A few SDK clients used in turn, each with its own HTTP connection pool.

The OpenAI and Anthropic SDKs send through httpx2/httpcore2, whose pool checks every idle
connection on each request it assigns (``has_expired``, which asks the socket through anyio's
typed-attribute machinery, ~20 µs each). After a burst, a pool holds up to 100 idle keep-alive
connections, so a burst of N new generations costs ~N x 100 checks: with 100 generations
starting at once that was a third of the process's CPU and most of the time Rivulet added to
time-to-first-token (py-spy, tests/bench/ttft_overhead.py). Splitting the same connection
budget over ``count`` clients divides that scan by ``count`` and keeps what the pool is for:
warm keep-alive (TLS) connections to the provider.

(The SDKs' aiohttp transport has no such scan, but closing an abandoned stream through it did
not close the upstream connection, and an abandoned generation must stop costing tokens.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import httpx2

__all__ = ["SdkClients"]


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)

# The SDKs' own defaults (openai._constants / anthropic._constants), split across the clients.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100


class SdkClients(Generic[C]):
    """``count`` clients made by ``make(limits)``; :meth:`next` hands them out in turn."""

    def __init__(self, make: Callable[[httpx2.Limits], C], count: int = 8) -> None:
        limits = httpx2.Limits(
            max_connections=math.ceil(MAX_CONNECTIONS / count),
            max_keepalive_connections=math.ceil(MAX_KEEPALIVE / count),
        )
        self._clients = [make(limits) for _ in range(count)]
        self._turn = 0

    def next(self) -> C:
        self._turn = (self._turn + 1) % len(self._clients)
        return self._clients[self._turn]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()
