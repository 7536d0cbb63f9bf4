"""``rivulet doctor``'s judgement on recorded connections (no network; real proxies are in
tests/edge). Each case builds what a client would have seen and checks the verdict."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import httpx
import pytest

from service.doctor import _SSE, Connection, Plan, Token, _read, analyse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PLAN = Plan(tokens=6, rate=4.0, pause_after=3, pause=5.0, heartbeat=2.0)
SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def _offset(i: int) -> str:
    return f"{i + 1:016d}_{(i + 1) * 10:016d}"


def _streaming(replicas: tuple[str | None, str | None] = (None, None)) -> list[Connection]:
    """A healthy run: tokens on time, heartbeats in the silence, one deliberate reconnect."""
    emitted = [0.0, 0.25, 0.5, 5.75, 6.0, 6.25]  # the provider's clock (silence after 3)
    delay = 100.0  # this machine's clock minus the provider's: any constant
    first = Connection(opened=99.0, http_version="HTTP/1.1", status=200, headers=dict(SSE))
    jitter = [0.004, 0.011, 0.006, 0.019]  # a streaming edge: a few ms, never the same
    first.tokens = [Token(_offset(i), emitted[i] + delay + jitter[i], emitted[i]) for i in range(4)]
    first.heartbeats = [100.5 + 2.001, 100.5 + 4.002]
    first.end, first.closed, first.last_byte = "doctor", 105.8, 105.8
    second = Connection(opened=106.0, http_version="HTTP/1.1", status=200, headers=dict(SSE))
    second.tokens = [Token(_offset(i), emitted[i] + delay + 0.5, emitted[i]) for i in (4, 5)]
    second.terminal, second.end, second.closed = ["finish"], "terminal", 106.4
    for conn, replica in zip((first, second), replicas, strict=True):
        if replica:
            conn.headers["rivulet-replica"] = replica
    return [first, second]


def _verdicts(conns: list[Connection]) -> dict[str, str]:
    return {c.name: c.status for c in analyse(PLAN, conns, heartbeat_advertised=True, long=False)}


def test_a_healthy_edge_passes_everything_it_can_measure() -> None:
    verdicts = _verdicts(_streaming())
    assert verdicts.pop("cross-replica") == "SKIP"
    assert set(verdicts.values()) == {"PASS"}, verdicts


def test_cross_replica_resume_is_reported_from_the_replica_header() -> None:
    assert _verdicts(_streaming(("api-a", "api-b")))["cross-replica"] == "PASS"
    assert _verdicts(_streaming(("api-a", "api-a")))["cross-replica"] == "WARN"


def test_a_buffering_edge_fails_buffering_and_heartbeats() -> None:
    conns = _streaming()
    # Everything the first connection got arrived at once, when the silence ended.
    for token in conns[0].tokens:
        token.received = 105.76
    conns[0].heartbeats = [105.76, 105.76]
    verdicts = _verdicts(conns)
    assert verdicts["buffering"] == "FAIL"
    assert verdicts["heartbeats"] == "FAIL"


def test_content_length_and_compression_fail_with_their_fixes() -> None:
    conns = _streaming()
    conns[0].headers |= {"content-length": "1234", "content-encoding": "br"}
    checks = {c.name: c for c in analyse(PLAN, conns, heartbeat_advertised=True, long=False)}
    assert checks["headers"].status == "FAIL"
    assert "Content-Length" in checks["headers"].fix
    assert checks["compression"].status == "FAIL"
    assert "gzip_types" in checks["compression"].fix


def test_a_cut_fails_idle_timeout_and_a_lost_or_doubled_token_fails_resume() -> None:
    conns = _streaming()
    conns[0].end, conns[0].detail = "cut", "the connection broke mid-response"
    verdicts = _verdicts(conns)
    assert verdicts["idle timeout"] == "FAIL"
    assert verdicts["resume"] == "PASS"  # the cut cost nothing
    doubled = _streaming()
    doubled[1].tokens.insert(0, doubled[0].tokens[-1])
    assert _verdicts(doubled)["resume"] == "FAIL"
    lost = _streaming()
    del lost[1].tokens[0]
    assert _verdicts(lost)["resume"] == "FAIL"


def test_an_http_1_0_edge_is_a_warning() -> None:
    conns = _streaming()
    conns[0].http_version = "HTTP/1.0"
    assert _verdicts(conns)["headers"] == "WARN"


# -- reading: the SSE parser and how a connection's end is classified ----------------------


def test_the_parser_handles_chunk_boundaries_anywhere_and_every_line_ending() -> None:
    stream = (
        b": rivulet\r\nretry: 1000\r\n\r\n"
        b'id: 0000000000000001_0000000000000010\r\ndata: {"type":"content"}\r\n\r\n'
        b'id: 0000000000000002_0000000000000020\rdata: {"a":\r\ndata: 1}\r\r'
        b"id: 0000000000000003_0000000000000030\n\n"
        b": keep-alive\n\n"
    )
    for size in (1, 2, 3, 7, len(stream)):
        parser = _SSE()
        items = []
        for at in range(0, len(stream), size):
            items += parser.feed(stream[at : at + size])
        assert items == [
            ("comment", "rivulet", None),
            ("event", '{"type":"content"}', "0000000000000001_0000000000000010"),
            ("event", '{"a":\n1}', "0000000000000002_0000000000000020"),
            ("id", "0000000000000003_0000000000000030", "0000000000000003_0000000000000030"),
            ("comment", "keep-alive", None),
        ], size


def _served(body: list[bytes], error: Exception | None = None) -> httpx.AsyncClient:
    async def chunks() -> AsyncIterator[bytes]:
        for part in body:
            yield part
        if error is not None:
            raise error

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=chunks())

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


TOKEN = b'id: 0000000000000001_0000000000000010\ndata: {"type":"content","delta":"a@1.5"}\n\n'


@pytest.mark.parametrize(
    ("body", "error", "end", "detail"),
    [
        ([TOKEN, b": reconnect\n\n"], None, "server", ""),  # the server's duration cap
        ([TOKEN, b": draining\n\n"], None, "server", ""),  # the server shutting down
        ([TOKEN, b": keep-alive\n\n"], None, "cut", "ended without a final event"),
        ([TOKEN], httpx.ReadError("connection reset"), "cut", "reset"),
        ([TOKEN], httpx.RemoteProtocolError("incomplete"), "cut", "broken mid-response"),
        ([TOKEN, b'data: {"type":"finish","reason":"stop"}\n\n'], None, "terminal", ""),
    ],
)
def test_a_connection_end_is_told_apart_from_a_cut(
    body: list[bytes], error: Exception | None, end: str, detail: str
) -> None:
    async def read() -> tuple[Connection, str | None]:
        conn = Connection(opened=0.0)
        async with _served(body, error) as client:
            last = await _read(client, "http://edge/v1/x", None, conn, stop_after_pause=None)
        return conn, last

    conn, last = asyncio.run(read())
    assert (conn.end, conn.detail) == (end, detail)
    assert last == "0000000000000001_0000000000000010"
    assert [(t.id, t.emitted) for t in conn.tokens] == [("0000000000000001_0000000000000010", 1.5)]


def test_an_unreachable_edge_is_an_error_not_a_cut() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def read() -> Connection:
        conn = Connection(opened=0.0)
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            await _read(client, "http://edge/v1/x", None, conn, stop_after_pause=None)
        return conn

    assert asyncio.run(read()).end == "error"


def test_without_the_advertised_interval_heartbeat_doubts_are_warnings() -> None:
    conns = _streaming()
    conns[0].heartbeats = []  # none seen: with a different real interval that is no proof
    checks = analyse(PLAN, conns, heartbeat_advertised=False, long=False)
    assert {c.name: c.status for c in checks}["heartbeats"] == "WARN"
    assert {c.name: c.status for c in analyse(PLAN, conns, heartbeat_advertised=True, long=False)}[
        "heartbeats"
    ] == "FAIL"


def test_unstamped_tokens_skip_the_timing_checks() -> None:
    conns = _streaming()
    for conn in conns:
        for token in conn.tokens:
            token.emitted = math.nan
    verdicts = _verdicts(conns)
    assert (verdicts["buffering"], verdicts["heartbeats"]) == ("SKIP", "SKIP")
    assert verdicts["resume"] == "PASS"
