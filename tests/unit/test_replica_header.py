"""``RIVULET_REPLICA_HEADER``: which replica answered, on every response — off by default."""

from __future__ import annotations

import socket

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings

pytestmark = pytest.mark.asyncio


async def test_off_by_default_since_it_names_internal_hosts() -> None:
    async with AsyncTestClient(create_app(Settings())) as client:
        r = await client.get("/livez")
    assert "rivulet-replica" not in r.headers


async def test_names_the_replica_on_every_response_when_on() -> None:
    settings = Settings.from_env({"RIVULET_REPLICA_HEADER": "true"})
    async with AsyncTestClient(create_app(settings)) as client:
        ok = await client.put("/v1/stream/r", headers={"content-type": "text/plain"})
        missing = await client.get("/v1/stream/nope")
    for r in (ok, missing):
        assert r.headers["rivulet-replica"] == socket.gethostname()
    assert ok.status_code == 201
    assert missing.status_code == 404
