"""Slow readers cost bounded server memory: nothing buffers a whole answer for them.

20 EventSource readers each take one event per second (tiny receive buffers) while one
generation produces 10,000 events of ~600 bytes. Buffering the answer per reader would grow
the server by about 20 x 6 MiB; the live session reads one page (``RIVULET_READ_MAX_BYTES``)
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
import pytest

from service.generation.providers.fake_script import script
from tests.rivulet_process import rivulet_command, rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

READERS = 20
EVENTS = 10_000
PAGE = 32 * 1024
# Stated bound: fixed slack for allocator noise, plus per reader a page read from the log, its
# encoded frame and the transport's high-water mark.
BOUND = 8 * 1024 * 1024 + READERS * (4 * PAGE + 64 * 1024)
MESSAGES = [{"role": "user", "content": "backpressure"}]
# ~5 s of production; ~600-byte tokens make each answer ~6 MiB, more than the kernel's socket
# buffers can hide, so a server that buffered per reader would grow by READERS x 6 MiB.
PARAMS = {"fake": {"tokens": EVENTS, "rate": 2000, "word_repeat": 100}}


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _open(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer  # the writer must stay referenced: dropping it closes the socket


async def _next_event(reader: asyncio.StreamReader) -> dict[str, object] | None:
    """The next data event (chunked transfer framing is skipped line by line)."""
    while True:
        line = await reader.readline()
        if not line:
            return None
        text = line.decode().rstrip("\r\n")
        if text.startswith("data: "):
            return json.loads(text[6:])  # type: ignore[no-any-return]


async def _scenario(base: str, pid: int, redis_url: str) -> tuple[int, int]:
    host, port = base.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        # Warm up (imports, pools, first allocations), then take the baseline.
        warm = {"messages": MESSAGES, "params": {"fake": {"tokens": 50, "rate": 0}}}
        r = await http.post("/v1/generations", json=warm)
        await http.get(f"/v1/generations/{r.json()['id']}/events")
        before = _rss(pid)
        r = await http.post("/v1/generations", json={"messages": MESSAGES, "params": PARAMS})
        gen = r.json()
        path = f"/v1/generations/{gen['id']}/events"
        conns = [await _open(host, int(port), path) for _ in range(READERS)]
        readers = [r for r, _ in conns]
        got: list[list[dict[str, object]]] = [[] for _ in readers]

        async def one_each() -> bool:
            events = await asyncio.gather(*(_next_event(r) for r in readers))
            for bucket, event in zip(got, events, strict=True):
                if event is not None:
                    bucket.append(event)
            return all(e is not None for e in events)

        # One event a second per reader while the generation runs to the end.
        for second in range(120):
            assert await one_each()
            head = await http.head(f"/v1/stream/generations/{gen['id']}")
            if head.headers.get("stream-closed") == "true" and second >= 3:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("the generation did not finish")
        grown = _rss(pid) - before
        slow_events = len(got[0])
        expected = script(MESSAGES, "fake-1", PARAMS)
        for reader, bucket in zip(readers, got, strict=True):
            while (event := await _next_event(reader)) is not None:
                bucket.append(event)
                if event["type"] != "content":
                    break
            assert [e["type"] for e in bucket[-1:]] == ["finish"]
            assert [e["delta"] for e in bucket[:-1]] == expected
    return grown, slow_events


def test_slow_readers_cost_bounded_server_memory(
    redis_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "REDIS_URL": redis_server,
        "RIVULET_REDIS_KEY_PREFIX": f"bp-{os.getpid()}",
        "RIVULET_READ_MAX_BYTES": str(PAGE),
        "RIVULET_CANCEL_WITHOUT_READER": "0",
        "RIVULET_LOG_LEVEL": "warning",
    }
    # The generation runs in its own worker process, so the server's RSS is delivery only.
    with (
        rivulet_serve(tmp_path, {**env, "RIVULET_WORKERS": "0"}, name="backpressure") as server,
        rivulet_command(tmp_path, ["worker"], env, "bp-worker"),
    ):
        grown, slow_events = asyncio.run(
            asyncio.wait_for(_scenario(server.url, server.proc.pid, redis_server), 240)
        )
    with capsys.disabled():
        print(
            f"\nserver RSS growth with {READERS} readers slowed to 1 event/s "
            f"({slow_events} events read slowly): {grown / 2**20:.1f} MiB "
            f"(bound {BOUND / 2**20:.1f} MiB; buffering per reader would be ~{READERS} x 6 MiB)"
        )
    assert grown < BOUND
