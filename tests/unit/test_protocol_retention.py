"""Retention over HTTP: reading behind the retained start is a loud 410 with where to resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

URL = "/v1/stream/r"
TEXT = {"content-type": "text/plain"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[AsyncTestClient]:
    app = create_app(Settings(retention_max_entries=2, long_poll_timeout=0.2))
    async with AsyncTestClient(app) as c:
        r = await c.put(URL, headers=TEXT)
        assert r.status_code == 201
        yield c


async def _append_all(client: AsyncTestClient, *items: str) -> list[str]:
    ends = []
    for item in items:
        r = await client.post(URL, content=item, headers=TEXT)
        assert r.status_code == 204
        ends.append(r.headers["stream-next-offset"])
    return ends


@pytest.mark.parametrize("live", [None, "long-poll", "sse"])
async def test_reading_behind_retention_is_410_naming_the_earliest_offset(client, live) -> None:
    ends = await _append_all(client, "a", "b", "c", "d")
    params = {"offset": ends[0]}
    if live:
        params["live"] = live
    r = await client.get(URL, params=params)
    assert r.status_code == 410
    assert r.json()["error"]["code"] == "OFFSET_GONE"
    assert r.headers["stream-earliest-offset"] == ends[1]


async def test_from_the_beginning_means_from_the_earliest_retained_entry(client) -> None:
    ends = await _append_all(client, "a", "b", "c", "d")
    for offset in ("-1", "0000000000000000_0000000000000000"):
        r = await client.get(URL, params={"offset": offset})
        assert r.status_code == 200
        assert r.text == "cd"
        assert r.headers["stream-next-offset"] == ends[-1]
    r = await client.get(URL)
    assert r.text == "cd"


async def test_sse_from_the_beginning_of_a_trimmed_stream_starts_at_the_earliest(client) -> None:
    await _append_all(client, "a", "b", "c")
    r = await client.post(URL, headers={"stream-closed": "true"})
    assert r.status_code == 204
    r = await client.get(URL, params={"offset": "-1", "live": "sse"})
    assert r.status_code == 200
    assert "data:bc\n" in r.text
    assert '"streamClosed":true' in r.text
