"""The fake provider server's bytes on the wire, read without any SDK in between."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from service.generation.providers.fake_script import script
from tests.providers.conftest import FakeServer

pytestmark = pytest.mark.asyncio

USER = [{"role": "user", "content": "hello"}]


def _model() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def _sse(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
        out.append((event, "\n".join(data)))
    return out


async def _post(server: FakeServer, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post(path, json=body)


async def test_openai_chunks_role_tokens_finish_usage_done(fake_server) -> None:
    model = _model()
    body = {
        "model": model,
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        "fake": {"tokens": 4, "rate": 0},
    }
    response = await _post(fake_server, "/v1/chat/completions", body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all(isinstance(c["rivulet_emitted_at"], float) for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[1:5]]
    assert tokens == script(USER, model, {"fake": {"tokens": 4}})
    assert chunks[5]["choices"][0]["finish_reason"] == "stop"
    assert chunks[6]["choices"] == []
    assert chunks[6]["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert all(c["usage"] is None for c in chunks[:6])
    assert len(chunks) == 7


async def test_openai_without_include_usage_sends_no_usage_chunk(fake_server) -> None:
    body = {"model": _model(), "messages": USER, "stream": True, "fake": {"tokens": 2, "rate": 0}}
    events = _sse((await _post(fake_server, "/v1/chat/completions", body)).text)
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert [len(c["choices"]) for c in chunks] == [1, 1, 1, 1]
    assert all("usage" not in c for c in chunks)


async def test_anthropic_event_sequence(fake_server) -> None:
    model = _model()
    body = {
        "model": model,
        "max_tokens": 3,
        "system": "Be brief.",
        "messages": USER,
        "stream": True,
        "fake": {"tokens": 5, "rate": 0},
    }
    response = await _post(fake_server, "/v1/messages", body)
    assert response.status_code == 200
    events = _sse(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == name for d, name in zip(data, names, strict=True))
    assert all(isinstance(d["rivulet_emitted_at"], float) for d in data)
    assert data[0]["message"]["model"] == model
    assert data[0]["message"]["usage"]["input_tokens"] == 2 + 3  # messages + words
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    expected = script(messages, model, {"max_tokens": 3, "fake": {"tokens": 5}})
    assert [d["delta"]["text"] for d in data[3:6]] == expected
    assert data[7]["delta"]["stop_reason"] == "max_tokens"
    assert data[7]["usage"] == {"output_tokens": 3}


async def test_scripted_failures_on_both_wires(fake_server) -> None:
    model = _model()
    fake = {"tokens": 5, "rate": 0, "fail_after": 2}
    openai = {"model": model, "messages": USER, "stream": True, "fake": fake}
    events = _sse((await _post(fake_server, "/v1/chat/completions", openai)).text)
    assert (None, "[DONE]") not in events
    assert json.loads(events[-1][1])["error"]["code"] == "overloaded"
    anthropic = {**openai, "max_tokens": 100}
    events = _sse((await _post(fake_server, "/v1/messages", anthropic)).text)
    assert [name for name, _ in events][-3:] == ["content_block_delta"] * 2 + ["error"]
    error = json.loads(events[-1][1])
    assert {k: error[k] for k in ("type", "error")} == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    rejected = {"tokens": 5, "fail_attempts": 1}
    response = await _post(fake_server, "/v1/messages", {**anthropic, "fake": rejected})
    assert response.status_code == 529
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    response = await _post(fake_server, "/v1/chat/completions", {**openai, "fake": rejected})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "server_error"
    records = fake_server.requests(model)
    assert [(r["status"], r["outcome"], r["tokens_sent"]) for r in records] == [
        (200, "failed", 2),
        (200, "failed", 2),
        (529, "rejected", 0),
        (503, "rejected", 0),
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": USER}),
        ("/v1/chat/completions", {"model": "m", "messages": USER, "stream": True, "fake": 3}),
        ("/v1/messages", {"model": "m", "messages": USER, "stream": True}),
        ("/v1/messages", {"model": "m", "max_tokens": 5, "stream": True, "messages": "x"}),
        ("/v1/chat/completions", {"messages": USER, "stream": True, "fake": {"rate": -1}}),
    ],
)
async def test_malformed_requests_get_a_400_in_the_providers_shape(fake_server, path, body):
    response = await _post(fake_server, path, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


async def test_tokens_leave_one_at_a_time_at_the_scripted_rate(fake_server) -> None:
    body = {"model": _model(), "messages": USER, "stream": True, "fake": {"tokens": 5, "rate": 20}}
    async with (
        httpx.AsyncClient(base_url=fake_server.url) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        arrivals = []
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                arrivals.append((time.time(), json.loads(line[6:])["rivulet_emitted_at"]))
    emitted = [e for _, e in arrivals[1:6]]  # the five token chunks
    gaps = [b - a for a, b in itertools.pairwise(emitted)]
    assert all(0.03 < gap < 0.3 for gap in gaps), gaps
    # Each token reached the client soon after it was written: flushed, not buffered.
    assert all(arrived - sent < 0.2 for arrived, sent in arrivals), arrivals


async def test_the_request_log_can_be_cleared(fake_server) -> None:
    # Session-wide server: clearing is safe because every test filters by its own model.
    body = {"model": _model(), "messages": USER, "stream": True, "fake": {"tokens": 1}}
    await _post(fake_server, "/v1/chat/completions", body)
    assert fake_server.requests()
    async with httpx.AsyncClient(base_url=fake_server.url) as client:
        assert (await client.delete("/_fake/requests")).status_code == 200
    assert fake_server.requests() == []
    assert (await _post(fake_server, "/nope", {})).status_code == 404
