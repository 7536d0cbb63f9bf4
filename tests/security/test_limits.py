"""Limits hold across replicas (shared Redis): rate, concurrent generations, SSE connections."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from tests.rivulet_process import rivulet_serve
from tests.security.test_auth import ADMIN, GEN, SECRET, TEXT, bearer

if TYPE_CHECKING:
    from pathlib import Path


OTHER = "other-key-0123456789abcdef"
SLOW = {
    "messages": [{"role": "user", "content": "slow"}],
    "params": {"fake": {"tokens": 500, "rate": 20}},
}


def _replicas(redis_url: str, **limits: Any) -> tuple[Any, Any]:
    base = {
        "redis_url": redis_url,
        "redis_key_prefix": f"limits-{os.getpid()}-{random.randrange(1 << 30)}",
        "api_keys": f"{ADMIN},{GEN}:generate,{OTHER}",
        "read_token_secret": SECRET,
        "cancel_without_reader": 0,
        "rate_limit": 0,
        "max_concurrent_generations": 0,
        "max_sse_per_client": 0,
        "max_streams_per_key": 0,
        **limits,
    }
    return create_app(Settings(**base, workers=1)), create_app(Settings(**base, workers=0))


def _throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.asyncio
async def test_write_rate_is_limited_per_key_across_replicas(redis_server: str) -> None:
    app_a, app_b = _replicas(redis_server, rate_limit=3)
    async with AsyncTestClient(app_a) as a, AsyncTestClient(app_b) as b:
        for client, name in ((a, "r1"), (b, "r2"), (a, "r3")):
            r = await client.put(f"/v1/stream/{name}", headers={**TEXT, **bearer(ADMIN)})
            assert r.status_code == 201
        _throttled(await b.put("/v1/stream/r4", headers={**TEXT, **bearer(ADMIN)}))
        # Another key has its own budget; reads are never counted.
        assert (await b.put("/v1/stream/r5", headers={**TEXT, **bearer(OTHER)})).status_code == 201
        assert (await a.get("/v1/stream/r1", headers=bearer(ADMIN))).status_code == 200


@pytest.mark.asyncio
async def test_concurrent_generations_are_limited_per_key_across_replicas(
    redis_server: str,
) -> None:
    app_a, app_b = _replicas(redis_server, max_concurrent_generations=2)
    async with AsyncTestClient(app_a) as a, AsyncTestClient(app_b) as b:
        first = (await a.post("/v1/generations", json=SLOW, headers=bearer(GEN))).json()
        assert (await b.post("/v1/generations", json=SLOW, headers=bearer(GEN))).status_code == 201
        _throttled(await b.post("/v1/generations", json=SLOW, headers=bearer(GEN)))
        assert (
            await a.post("/v1/generations", json=SLOW, headers=bearer(OTHER))
        ).status_code == 201
        # Ending one (the worker frees its slot) lets the next one in.
        assert (
            await b.delete(f"/v1/generations/{first['id']}", headers=bearer(GEN))
        ).status_code == 200
        for _ in range(200):
            r = await a.post("/v1/generations", json=SLOW, headers=bearer(GEN))
            if r.status_code == 201:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 201


def test_open_sse_connections_are_limited_per_client_across_replicas(
    redis_server: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_server,
        "RIVULET_REDIS_KEY_PREFIX": f"sse-limit-{os.getpid()}",
        "RIVULET_MAX_SSE_PER_CLIENT": "1",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
    }
    with rivulet_serve(tmp_path, env, name="a") as a, rivulet_serve(tmp_path, env, name="b") as b:
        gen = httpx.post(f"{a.url}/v1/generations", json=SLOW).json()
        path = urlsplit(gen["events_url"]).path
        host, port = a.url.removeprefix("http://").split(":")
        held = socket.create_connection((host, int(port)))
        held.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert held.recv(64).startswith(b"HTTP/1.1 200")
        _throttled(httpx.get(f"{b.url}{path}"))
        held.close()  # the slot comes back once the server notices
        httpx.delete(f"{a.url}/v1/generations/{gen['id']}")
        deadline = time.monotonic() + 10
        while (r := httpx.get(f"{b.url}{path}")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)


@pytest.mark.asyncio
async def test_request_limits_and_model_allowlist() -> None:
    settings = Settings(
        max_messages=2, max_prompt_chars=10, max_output_tokens=100, models="fake=fake-1"
    )
    async with AsyncTestClient(create_app(settings)) as client:
        msg = [{"role": "user", "content": "hi"}]
        cases = [
            ({"messages": msg * 3}, "at most 2 messages"),
            ({"messages": [{"role": "user", "content": "x" * 11}]}, "more than 10 characters"),
            ({"messages": msg, "params": {"max_tokens": 101}}, "at most 100"),
            ({"messages": msg, "model": "fake-2"}, "not allowed for fake"),
        ]
        for body, reason in cases:
            r = await client.post("/v1/generations", json=body)
            assert r.status_code == 400, body
            assert reason in r.json()["error"]["message"]
        assert (await client.post("/v1/generations", json={"messages": msg})).status_code == 201


@pytest.mark.asyncio
async def test_streams_per_key_are_capped_and_freed_by_delete(redis_server: str) -> None:
    app_a, app_b = _replicas(redis_server, max_streams_per_key=2)
    async with AsyncTestClient(app_a) as a, AsyncTestClient(app_b) as b:
        headers = {**TEXT, **bearer(ADMIN)}
        assert (await a.put("/v1/stream/s1", headers=headers)).status_code == 201
        assert (await b.put("/v1/stream/s2", headers=headers)).status_code == 201
        assert (await b.put("/v1/stream/s1", headers=headers)).status_code == 200  # idempotent
        _throttled(await a.put("/v1/stream/s3", headers=headers))
        assert (await b.put("/v1/stream/s3", headers={**TEXT, **bearer(OTHER)})).status_code == 201
        assert (await a.delete("/v1/stream/s1", headers=bearer(ADMIN))).status_code == 204
        assert (await b.put("/v1/stream/s3b", headers=headers)).status_code == 201
