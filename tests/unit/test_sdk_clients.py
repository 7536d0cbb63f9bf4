"""SdkClients: the connection budget split over a few SDK clients, handed out in turn."""

from __future__ import annotations

import asyncio

import httpx2

from service.generation.providers.clients import MAX_CONNECTIONS, MAX_KEEPALIVE, SdkClients


class FakeClient:
    def __init__(self, limits: httpx2.Limits) -> None:
        self.limits = limits
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def test_clients_take_turns_and_share_the_sdk_connection_budget() -> None:
    made: list[FakeClient] = []

    def make(limits: httpx2.Limits) -> FakeClient:
        made.append(FakeClient(limits))
        return made[-1]

    clients = SdkClients(make, count=4)
    handed = [clients.next() for _ in range(8)]
    assert [made.index(c) for c in handed] == [1, 2, 3, 0, 1, 2, 3, 0]
    assert sum(c.limits.max_keepalive_connections or 0 for c in made) == MAX_KEEPALIVE
    assert sum(c.limits.max_connections or 0 for c in made) == MAX_CONNECTIONS
    asyncio.run(clients.aclose())
    assert all(c.closed for c in made)
