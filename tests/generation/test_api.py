"""Generations end to end in one process: memory log, in-process worker, fake provider."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.generation.providers.fake_script import script
from service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[AsyncTestClient]:
    settings = Settings(
        workers=2,
        lease_seconds=2.0,
        provider_backoff=0.01,
        cancel_without_reader=0,
        sse_heartbeat=0.5,
    )
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


def _parse_sse(text: str) -> list[dict[str, Any]]:
    """EventSource semantics: events split on blank lines, fields by name."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        data = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:
            fields["data"] = json.loads("\n".join(data))
            events.append(fields)
        elif fields:
            events.append(fields)
    return events


async def _create(client: AsyncTestClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/generations", json={"messages": MESSAGES, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _path(url: str) -> str:
    return urlsplit(url).path


def _expected(params: dict[str, Any] | None = None) -> list[str]:
    return script(MESSAGES, "fake-1", params or {})


async def test_create_then_follow_delivers_every_token_and_one_finish(client) -> None:
    gen = await _create(client, params={"fake": {"tokens": 8, "rate": 0}})
    assert gen["events_url"].endswith(f"/v1/generations/{gen['id']}/events")
    assert gen["stream_url"].endswith(f"/v1/stream/generations/{gen['id']}")
    r = await client.get(f"/v1/generations/{gen['id']}/events")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["rivulet-heartbeat"] == "0.5"  # what `rivulet doctor` times against
    events = _parse_sse(r.text)
    assert events[0] == {"retry": "1000"}
    data = [e for e in events if "data" in e]
    deltas = [e["data"]["delta"] for e in data if e["data"]["type"] == "content"]
    assert deltas == _expected({"fake": {"tokens": 8, "rate": 0}})
    assert data[-1]["data"]["type"] == "finish"
    assert data[-1]["data"]["reason"] == "stop"
    assert [e["data"]["type"] for e in data].count("finish") == 1
    # ids are the log offsets: strictly increasing, and the same stream over the protocol.
    ids = [e["id"] for e in data]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    r = await client.get(_path(gen["stream_url"]))
    assert [m.get("delta") for m in r.json()][:-1] == deltas


async def test_last_event_id_resumes_exactly_after_that_event(client) -> None:
    params = {"fake": {"tokens": 10, "rate": 0}}
    gen = await _create(client, params=params)
    full = _parse_sse((await client.get(f"/v1/generations/{gen['id']}/events")).text)
    data = [e for e in full if "data" in e]
    for cut in (0, 3, len(data) - 2):
        r = await client.get(
            f"/v1/generations/{gen['id']}/events", headers={"last-event-id": data[cut]["id"]}
        )
        rest = [e for e in _parse_sse(r.text) if "data" in e]
        assert rest == data[cut + 1 :]
    r = await client.get(f"/v1/generations/{gen['id']}/events", params={"offset": data[4]["id"]})
    assert [e for e in _parse_sse(r.text) if "data" in e] == data[5:]


async def test_cancel_ends_the_stream_with_one_cancelled_finish(client) -> None:
    gen = await _create(client, params={"fake": {"tokens": 500, "rate": 20}})
    await asyncio.sleep(0.3)
    r = await client.delete(f"/v1/generations/{gen['id']}")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    events = [
        e["data"]
        for e in _parse_sse((await client.get(_path(gen["events_url"]))).text)
        if "data" in e
    ]
    assert events[-1] == {"type": "finish", "reason": "cancelled"}
    assert sum(e["type"] in ("finish", "error") for e in events) == 1
    assert 0 < sum(e["type"] == "content" for e in events) < 500
    r = await client.delete(f"/v1/generations/{gen['id']}")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "GENERATION_FINISHED"


async def test_idempotency_key_returns_the_same_generation(client) -> None:
    first = await _create(client, idempotency_key="abc", params={"fake": {"rate": 0}})
    r = await client.post("/v1/generations", json={"messages": MESSAGES, "idempotency_key": "abc"})
    assert r.status_code == 200
    assert r.json()["id"] == first["id"]


async def test_errors_before_the_first_token_are_retried(client) -> None:
    params = {"fake": {"tokens": 3, "rate": 0, "fail_attempts": 2}}
    gen = await _create(client, params=params)
    events = [
        e["data"]
        for e in _parse_sse((await client.get(_path(gen["events_url"]))).text)
        if "data" in e
    ]
    assert [e["type"] for e in events] == ["content"] * 3 + ["finish"]


async def test_an_error_after_the_first_token_ends_with_an_error_event(client) -> None:
    gen = await _create(client, params={"fake": {"tokens": 9, "rate": 0, "fail_after": 4}})
    events = [
        e["data"]
        for e in _parse_sse((await client.get(_path(gen["events_url"]))).text)
        if "data" in e
    ]
    assert [e["type"] for e in events] == ["content"] * 4 + ["error"]
    assert events[-1]["error"]["type"] == "overloaded"
    assert "Traceback" not in events[-1]["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": {"a": 1}, "content": "x"}]}, "role"),  # found by schemathesis
        ({"messages": MESSAGES, "provider": "nope"}, "provider"),
        ({"messages": MESSAGES, "params": {"max_tokens": -1}}, "max_tokens"),
        ({"messages": MESSAGES, "params": {"seed": 1}}, "unknown params"),
        ({"messages": MESSAGES, "idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_bad_generation_requests_are_400_with_a_reason(client, body, fragment) -> None:
    r = await client.post("/v1/generations", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_GENERATION"
    assert fragment in r.json()["error"]["message"]


async def test_unknown_generation_is_404(client) -> None:
    assert (await client.get("/v1/generations/nope/events")).status_code == 404
    assert (await client.delete("/v1/generations/nope")).status_code == 404
    r = await client.get("/v1/generations/nope/events", headers={"last-event-id": "junk"})
    assert r.status_code in (400, 404)


async def test_seed_compatible_endpoint_creates_once_and_resumes(client) -> None:
    r = await client.get("/api/stream", params={"prompt": "hi", "messageId": "m1"})
    first = [e for e in _parse_sse(r.text) if "data" in e]
    assert first[-1]["data"]["type"] == "finish"
    r = await client.get(
        "/api/stream",
        params={"prompt": "hi", "messageId": "m1"},
        headers={"last-event-id": first[2]["id"]},
    )
    assert [e for e in _parse_sse(r.text) if "data" in e] == first[3:]
    assert (await client.get("/api/stream", params={"prompt": "hi"})).status_code == 400


async def test_demo_page_is_served(client) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "EventSource" in r.text


async def test_a_generation_nobody_reads_is_cancelled_after_the_grace() -> None:
    settings = Settings(workers=1, cancel_without_reader=0.4, lease_seconds=2.0)
    async with AsyncTestClient(create_app(settings)) as client:
        gen = await _create(client, params={"fake": {"tokens": 1000, "rate": 50}})
        path = _path(gen["stream_url"])
        for _ in range(100):
            head = await client.head(path)
            if head.headers.get("stream-closed") == "true":
                break
            await asyncio.sleep(0.05)
        events = (await client.get(path)).json()
    assert events[-1] == {"type": "finish", "reason": "cancelled"}
    assert sum(e["type"] == "content" for e in events) < 1000


async def test_an_attached_reader_keeps_the_generation_alive() -> None:
    settings = Settings(workers=1, cancel_without_reader=0.4, lease_seconds=2.0, sse_heartbeat=0.1)
    async with AsyncTestClient(create_app(settings)) as client:
        # 40 tokens at 40/s: ~1 s, more than twice the grace, all with a reader attached.
        gen = await _create(client, params={"fake": {"tokens": 40, "rate": 40}})
        r = await client.get(_path(gen["events_url"]))
        events = [e["data"] for e in _parse_sse(r.text) if "data" in e]
    assert events[-1]["type"] == "finish"
    assert events[-1]["reason"] == "stop"
    assert sum(e["type"] == "content" for e in events) == 40


async def test_a_connection_at_its_duration_cap_says_the_server_ended_it() -> None:
    # A proxy that cuts a stream and the server closing it on schedule look alike to a
    # client; the closing comment tells them apart (rivulet doctor relies on it).
    settings = Settings(workers=1, sse_max_duration=0.5, sse_heartbeat=0.2)
    async with AsyncTestClient(create_app(settings)) as client:
        gen = await _create(client, params={"fake": {"tokens": 4, "rate": 2}})
        got: list[dict[str, Any]] = []
        headers: dict[str, str] = {}
        for _ in range(20):  # ~2 s of answer, 0.5 s per connection
            r = await client.get(_path(gen["events_url"]), headers=headers)
            events = _parse_sse(r.text)
            got += [e["data"] for e in events if "data" in e]
            if got and got[-1]["type"] == "finish":
                break
            assert r.text.rstrip().endswith(": reconnect"), r.text[-200:]
            ids = [e["id"] for e in events if "id" in e]
            if ids:
                headers = {"last-event-id": ids[-1]}
        assert [e["type"] for e in got].count("finish") == 1
    deltas = [e["delta"] for e in got if e["type"] == "content"]
    assert deltas == _expected({"fake": {"tokens": 4, "rate": 2}})


async def test_a_reader_behind_retention_gets_an_explicit_gap_event() -> None:
    settings = Settings(workers=1, retention_max_entries=3, cancel_without_reader=0)
    async with AsyncTestClient(create_app(settings)) as client:
        gen = await _create(client, params={"fake": {"tokens": 20, "rate": 0}})
        path = _path(gen["stream_url"])
        for _ in range(100):
            if (await client.head(path)).headers.get("stream-closed") == "true":
                break
            await asyncio.sleep(0.05)
        r = await client.get(_path(gen["events_url"]))
        events = [e for e in _parse_sse(r.text) if "data" in e]
        earliest = (await client.head(path)).headers["stream-next-offset"]
    assert r.status_code == 200
    assert len(events) == 1
    gap = events[0]["data"]
    assert gap["type"] == "error"
    assert gap["error"]["type"] == "gap"
    # The three newest entries are retained: the earliest offset is three entries before the end.
    assert int(gap["error"]["earliest_offset"][:16]) == int(earliest[:16]) - 3
    assert "id" not in events[0]


async def test_deeply_nested_json_is_a_400_not_a_500(client) -> None:
    r = await client.post(
        "/v1/generations", content=b"[" * 200_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_JSON"


async def test_reconnecting_after_the_terminal_event_gets_204(client) -> None:
    gen = await _create(client, params={"fake": {"tokens": 2, "rate": 0}})
    events = [
        e for e in _parse_sse((await client.get(_path(gen["events_url"]))).text) if "data" in e
    ]
    r = await client.get(_path(gen["events_url"]), headers={"last-event-id": events[-1]["id"]})
    assert r.status_code == 204  # EventSource stops reconnecting on 204
