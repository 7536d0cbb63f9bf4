"""Slow readers cost bounded server memory: nothing buffers a whole answer for them.

30 EventSource readers each take one event per second (tiny receive buffers) while one
generation produces 10,000 events as fast as it can. Buffering the answer per reader would
grow the server by about 30 x 1 MiB; the live session reads one page (``RIVULET_READ_MAX_BYTES``)
at a time and waits for the socket, so the growth must stay under the stated bound. Then the
readers speed up and must each get every event, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import TYPE_CHECKING

import httpx

from service.generation.providers.fake_script import script
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

READERS = 30
EVENTS = 10_000
PAGE = 32 * 1024
# Stated bound: fixed slack for allocator noise, plus per reader a page read from the log, its
# encoded frame and the transport's high-water mark.
BOUND = 8 * 1024 * 1024 + READERS * (4 * PAGE + 64 * 1024)
MESSAGES = [{"role": "user", "content": "backpressure"}]
PARAMS = {"fake": {"tokens": EVENTS, "rate": 0}}


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _open(host: str, port: int, path: str) -> asyncio.StreamReader:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader


async def _next_event(reader: asyncio.StreamReader) -> dict[str, object] | None:
    """The next data event (chunked transfer framing is skipped line by line)."""
    while True:
        line = await reader.readline()
        if not line:
            return None
        text = line.decode().rstrip("\r\n")
        if text.startswith("data: "):
            return json.loads(text[6:])  # type: ignore[no-any-return]


async def _scenario(base: str, pid: int, redis_url: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        r = await http.post("/v1/generations", json={"messages": MESSAGES, "params": PARAMS})
        gen = r.json()
        path = f"/v1/generations/{gen['id']}/events"
        readers = [await _open(host, int(port), path) for _ in range(READERS)]
        await asyncio.sleep(0.5)
        before = _rss(pid)
        first = [await _next_event(r) for r in readers]
        # Read one event a second per reader while the generation runs to the end.
        for _ in range(120):
            head = await http.head(f"/v1/stream/generations/{gen['id']}")
            if head.headers.get("stream-closed") == "true":
                break
            await asyncio.gather(*(_next_event(r) for r in readers))
            await asyncio.sleep(1)
        else:
            raise AssertionError("the generation did not finish")
        grown = _rss(pid) - before
        expected = script(MESSAGES, "fake-1", PARAMS)
        for reader, head_event in zip(readers, first, strict=True):
            deltas = [head_event["delta"]] if head_event else []
            while (event := await _next_event(reader)) is not None:
                if event["type"] != "content":
                    assert event["type"] == "finish"
                    break
                deltas.append(event["delta"])
            assert deltas == expected
    print(
        f"\nserver RSS growth with {READERS} slow readers: {grown / 2**20:.1f} MiB "
        f"(bound {BOUND / 2**20:.1f} MiB, unbounded buffering ~ {READERS} x answer)"
    )
    assert grown < BOUND


def test_slow_readers_cost_bounded_server_memory(redis_server: str, tmp_path: Path) -> None:
    env = {
        "REDIS_URL": redis_server,
        "RIVULET_REDIS_KEY_PREFIX": f"bp-{os.getpid()}",
        "RIVULET_READ_MAX_BYTES": str(PAGE),
        "RIVULET_CANCEL_WITHOUT_READER": "0",
        "RIVULET_LOG_LEVEL": "warning",
    }
    with rivulet_serve(tmp_path, env, name="backpressure") as server:
        asyncio.run(asyncio.wait_for(_scenario(server.url, server.proc.pid, redis_server), 240))
