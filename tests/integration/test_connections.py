"""Redis connections per process stay O(1) however many live readers a replica serves.

One ``rivulet serve`` on its own ``redis-server``; 1,000 SSE readers over 100 streams; then
``CLIENT LIST`` on Redis counts what the server holds. The live-tail hub must serve all of them
over one pub/sub connection plus the bounded command pool, and every reader must still get
every append (fan-out correctness at this scale, not just a connection count).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from tests.conftest import _start, _stop
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

READERS = 1000
STREAMS = 100
POOL = 8


async def _open_sse(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}: {buf[-300:]!r}")
        buf += chunk
    return buf


async def _scenario(base: str, redis_url: str) -> tuple[int, int]:
    import httpx

    host, port = base.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=base) as http:
        tails = []
        for i in range(STREAMS):
            r = await http.put(f"/v1/stream/fan/{i}", headers={"content-type": "text/plain"})
            assert r.status_code == 201
            tails.append(r.headers["stream-next-offset"])
        conns = []
        for i in range(READERS):
            s = i % STREAMS
            conns.append(
                await _open_sse(host, int(port), f"/v1/stream/fan/{s}?offset={tails[s]}&live=sse")
            )
        # Everyone is caught up (first control event) before we count and append.
        await asyncio.gather(*(_read_until(r, b'"upToDate":true') for r, _ in conns))
        client = aioredis.from_url(redis_url)
        try:
            listed = await client.client_list()
        finally:
            await client.aclose()
        held = len(listed) - 1  # minus the connection we just used to ask
        for i in range(STREAMS):
            r = await http.post(
                f"/v1/stream/fan/{i}", content=f"token-{i}", headers={"content-type": "text/plain"}
            )
            assert r.status_code == 204
        got = await asyncio.gather(
            *(
                _read_until(r, f"data:token-{i % STREAMS}\n".encode())
                for i, (r, _) in enumerate(conns)
            )
        )
        for _, w in conns:
            w.close()
        return held, len(got)


def test_thousand_live_readers_share_a_bounded_number_of_redis_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, port = _start("redis-server", tmp_path)
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        env = {
            "REDIS_URL": redis_url,
            "RIVULET_REDIS_MAX_CONNECTIONS": str(POOL),
            "RIVULET_MAX_SSE_PER_CLIENT": "0",  # all 1,000 readers share one address
            "RIVULET_LOG_LEVEL": "warning",
        }
        with rivulet_serve(tmp_path, env, name="fanout") as server:
            held, delivered = asyncio.run(asyncio.wait_for(_scenario(server.url, redis_url), 120))
    finally:
        _stop(proc)
    with capsys.disabled():
        print(f"\nredis connections held by one process with {READERS} live SSE readers: {held}")
    assert delivered == READERS
    # The documented bound: log pool + its pub/sub connection, queue pool (8) + its blocking
    # claim connection, limit store pool (4). None of it grows with readers.
    bound = POOL + 1 + 8 + 1 + 4
    assert 1 <= held <= bound, f"{held} connections for {READERS} readers (bound {bound})"
