"""Operations under load, through the ingress: a rolling restart of the API replicas while 50
clients stream, and slow clients that must not make an API replica buffer their answers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from service.generation.providers.fake_script import script
from tests.deployed.sse import Follow, assert_exactly_once, follow_to_end
from tests.deployed.test_streaming import MESSAGES, start_generation
from tests.deployed.topology import API, READ_PAGE

if TYPE_CHECKING:
    from tests.deployed.topology import Topology

GENERATIONS, READERS_EACH = 10, 5  # 50 clients


def test_rolling_restart_of_every_api_replica_while_50_clients_stream(
    deployed: Topology,
) -> None:
    tokens, rate = 120, 15  # ~8 s per answer: longer than the whole roll
    gens = [start_generation(deployed.ingress, "fake", tokens, rate) for _ in range(GENERATIONS)]
    follows = [Follow() for _ in range(GENERATIONS * READERS_EACH)]
    errors: list[BaseException] = []

    def reader(i: int) -> None:
        gen = gens[i // READERS_EACH]
        try:
            follow_to_end(f"{deployed.ingress}/v1/generations/{gen['id']}/events", follows[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(follows))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    for name in API:  # SIGTERM one replica, wait for it to exit, bring it back, next
        deployed.terminate(name)
        deployed.revive(name)
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    expected = script(MESSAGES, "test-model", {"fake": {"tokens": tokens, "rate": rate}})
    for follow in follows:
        assert_exactly_once(follow, expected)
    moved = sum(f.reconnects > 0 for f in follows)
    assert moved > 0, "the roll never moved a client: the test did not test anything"
    served = {r for f in follows for r in f.replicas}
    assert served == set(API)


# -- slow clients ---------------------------------------------------------------------------

SLOW_READERS = 5
EVENTS = 10_000
# ~600-byte tokens: each answer is ~6 MiB, far more than the socket buffers between a reader
# and the replica can hide, so a replica that buffered per reader would grow by ~5 x 6 MiB.
PARAMS = {"fake": {"tokens": EVENTS, "rate": 2000, "word_repeat": 100}}
# Stated bound: allocator slack plus, per reader, a page read from the log, its encoded frame
# and the transport's high-water mark.
BOUND = 8 * 2**20 + SLOW_READERS * (4 * READ_PAGE + 64 * 1024)


async def _open(host: str, port: int, path: str) -> asyncio.StreamReader:
    """An HTTP/1.0 reader through nginx (no chunked framing) with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(
        f"GET {path} HTTP/1.0\r\nHost: rivulet\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    reader._rivulet_writer = writer  # type: ignore[attr-defined]  # keep the socket open
    reader._rivulet_replica = next(  # type: ignore[attr-defined]
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"rivulet-replica:")
    )
    return reader


async def _next_event(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    while True:
        line = await reader.readline()
        if not line:
            return None
        if line.startswith(b"data: "):
            event: dict[str, Any] = json.loads(line[6:])
            return event


async def _slow_clients(deployed: Topology) -> tuple[dict[str, int], int]:
    host, port = deployed.ingress.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=deployed.ingress, timeout=60) as http:
        # Warm both replicas up (first allocations), then take the baseline.
        for _ in range(4):
            r = await http.post(
                "/v1/generations",
                json={
                    "messages": MESSAGES,
                    "provider": "fake",
                    "params": {"fake": {"tokens": 50, "rate": 0}},
                },
            )
            await http.get(f"/v1/generations/{r.json()['id']}/events")
        before = {name: deployed.memory_bytes(name) for name in API}
        # The measure is real: a running replica is tens of MiB of anonymous memory.
        assert all(b > 20 * 2**20 for b in before.values()), before
        r = await http.post(
            "/v1/generations", json={"messages": MESSAGES, "provider": "fake", "params": PARAMS}
        )
        gen = r.json()
        path = f"/v1/generations/{gen['id']}/events"
        readers = [await _open(host, int(port), path) for _ in range(SLOW_READERS)]
        got: list[list[dict[str, Any]]] = [[] for _ in readers]
        peak = dict(before)
        # One event a second per reader until the whole answer has been produced.
        for second in range(120):
            events = await asyncio.gather(*(_next_event(r) for r in readers))
            for bucket, event in zip(got, events, strict=True):
                assert event is not None
                bucket.append(event)
            for name in API:
                peak[name] = max(peak[name], deployed.memory_bytes(name))
            head = await http.head(f"/v1/stream/generations/{gen['id']}")
            if head.headers.get("stream-closed") == "true" and second >= 3:
                break
            await asyncio.sleep(1)
        slow_events = len(got[0])
        # Now read fast: every reader gets the whole answer, in order.
        expected = script(MESSAGES, "fake-1", PARAMS)
        for reader, bucket in zip(readers, got, strict=True):
            while (event := await _next_event(reader)) is not None:
                bucket.append(event)
                if event["type"] != "content":
                    break
            assert bucket[-1]["type"] == "finish"
            assert [e["delta"] for e in bucket[:-1]] == expected
    return {name: peak[name] - before[name] for name in API}, slow_events


def test_slow_clients_through_the_ingress_cost_bounded_replica_memory(
    deployed: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    grown, slow_events = asyncio.run(asyncio.wait_for(_slow_clients(deployed), 240))
    with capsys.disabled():
        print(
            f"\nAPI replica memory growth with {SLOW_READERS} readers at 1 event/s through nginx "
            f"({slow_events} events read slowly): "
            + ", ".join(f"{n} {g / 2**20:.1f} MiB" for n, g in grown.items())
            + f" (bound {BOUND / 2**20:.1f} MiB; buffering would be ~{SLOW_READERS} x 6 MiB)"
        )
    assert slow_events < EVENTS / 10, "the readers were not slow: nothing was tested"
    for name, growth in grown.items():
        assert growth < BOUND, f"{name} grew {growth / 2**20:.1f} MiB"
