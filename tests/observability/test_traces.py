"""One trace from request to provider call to every delivery: exact span trees and links."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import structlog
from litestar.testing import AsyncTestClient
from opentelemetry.trace import SpanKind, StatusCode

from service.app import create_app
from service.settings import Settings
from service.telemetry import configure_logging
from tests.generation.test_api import _parse_sse
from tests.observability.conftest import Spans, attrs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from service.telemetry import Telemetry

pytestmark = pytest.mark.asyncio

MESSAGES = [{"role": "user", "content": "trace me"}]
EVENTS_ROUTE = "GET /v1/generations/{gen_id}/events"


def _path(url: str) -> str:
    return urlsplit(url).path


async def _until_closed(client: AsyncTestClient, stream_url: str) -> None:
    for _ in range(200):
        head = await client.head(_path(stream_url))
        if head.headers.get("stream-closed") == "true":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("generation did not finish")


async def _settle(spans: Spans, name: str, count: int) -> None:
    """Spans end in finally blocks after the response: wait for them, boundedly."""
    for _ in range(200):
        if len(spans.named(name)) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {len(spans.named(name))} {name!r} spans: {spans.names()}")


def _generation_tree(spans: Spans) -> tuple[ReadableSpan, ReadableSpan, ReadableSpan]:
    post = spans.one("POST /v1/generations")
    generation = spans.one("rivulet.generation")
    chat = spans.one("chat fake-1")
    assert post.kind == SpanKind.SERVER
    assert generation.parent is not None
    assert generation.parent.span_id == post.context.span_id
    assert generation.context.trace_id == post.context.trace_id
    assert chat.parent is not None
    assert chat.parent.span_id == generation.context.span_id
    assert chat.kind == SpanKind.CLIENT
    return post, generation, chat


async def _create(client: AsyncTestClient, params: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/generations", json={"messages": MESSAGES, "params": params})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _links_to(span: ReadableSpan, target: ReadableSpan) -> bool:
    return any(link.context.span_id == target.context.span_id for link in span.links)


async def test_two_replicas_two_readers_one_resumes(
    redis_server: str, spans_and_telemetry: tuple[Spans, Telemetry]
) -> None:
    spans, telemetry = spans_and_telemetry
    base = {
        "redis_url": redis_server,
        "redis_key_prefix": f"trace-{os.getpid()}-{random.randrange(1 << 30)}",
        "cancel_without_reader": 0,
        "lease_seconds": 5.0,
    }
    replica_a = create_app(Settings(**base, workers=1), telemetry=telemetry)
    replica_b = create_app(Settings(**base, workers=0), telemetry=telemetry)
    params = {"fake": {"tokens": 6, "rate": 0}}
    async with AsyncTestClient(replica_a) as a, AsyncTestClient(replica_b) as b:
        r = await a.post("/v1/generations", json={"messages": MESSAGES, "params": params})
        gen = r.json()
        await _until_closed(a, gen["stream_url"])
        first = [e for e in _parse_sse((await a.get(_path(gen["events_url"]))).text) if "data" in e]
        resume_after = first[2]["id"]
        r = await b.get(_path(gen["events_url"]), headers={"last-event-id": resume_after})
        second = [e for e in _parse_sse(r.text) if "data" in e]
        await _settle(spans, "sse.deliver", 2)

    assert second == first[3:]
    _, generation, chat = _generation_tree(spans)
    assert attrs(
        generation, "rivulet.generation.id", "rivulet.job.attempt", "rivulet.generation.outcome"
    ) == {
        "rivulet.generation.id": gen["id"],
        "rivulet.job.attempt": 1,
        "rivulet.generation.outcome": "finished",
    }
    chat_attrs = attrs(chat)
    assert {
        k: chat_attrs[k]
        for k in (
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.request.stream",
            "gen_ai.response.finish_reasons",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
        )
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "rivulet.fake",
        "gen_ai.request.model": "fake-1",
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 6,
    }
    assert chat_attrs["gen_ai.response.time_to_first_chunk"] >= 0
    assert "gen_ai.input.messages" not in chat_attrs  # content is opt-in
    assert chat.status.status_code != StatusCode.ERROR

    # One delivery span per reader connection, each under its own GET request span, each
    # linking to the generation that wrote the stream.
    gets = spans.named(EVENTS_ROUTE)
    assert len(gets) == 2
    deliveries = spans.named("sse.deliver")
    by_parent = {d.parent.span_id: d for d in deliveries if d.parent is not None}
    assert sorted(by_parent) == sorted(g.context.span_id for g in gets)
    fresh = next(d for d in deliveries if not attrs(d)["rivulet.delivery.resumed"])
    resumed = next(d for d in deliveries if attrs(d)["rivulet.delivery.resumed"])
    for delivery in (fresh, resumed):
        assert _links_to(delivery, generation)
        assert attrs(delivery)["rivulet.stream.id"] == f"generations/{gen['id']}"
        assert attrs(delivery)["rivulet.delivery.end_reason"] == "finished"
        assert attrs(delivery)["rivulet.delivery.max_lag_ms"] >= 0
    assert attrs(fresh)["rivulet.delivery.events"] == 7
    assert attrs(fresh)["rivulet.delivery.start_offset"] == "0000000000000000_0000000000000000"
    assert attrs(resumed)["rivulet.delivery.events"] == 4
    assert attrs(resumed)["rivulet.delivery.start_offset"] == resume_after
    assert attrs(resumed)["rivulet.delivery.bytes"] < attrs(fresh)["rivulet.delivery.bytes"]
    # Redis is visible under the generation, one span per command, sanitized.
    redis_spans = [s for s in spans.all if s.attributes and "db.statement" in s.attributes]
    assert redis_spans
    assert all(
        "?" in s.attributes["db.statement"] or " " not in s.attributes["db.statement"]
        for s in redis_spans
    )


async def test_a_provider_error_mid_stream_marks_the_chat_span(
    spans_and_telemetry: tuple[Spans, Telemetry],
) -> None:
    spans, telemetry = spans_and_telemetry
    app = create_app(Settings(workers=1, cancel_without_reader=0), telemetry=telemetry)
    params = {"fake": {"tokens": 9, "rate": 0, "fail_after": 3}}
    async with AsyncTestClient(app) as client:
        gen = (
            await client.post("/v1/generations", json={"messages": MESSAGES, "params": params})
        ).json()
        events = [
            e["data"]
            for e in _parse_sse((await client.get(_path(gen["events_url"]))).text)
            if "data" in e
        ]
        await _settle(spans, "sse.deliver", 1)
    assert events[-1]["type"] == "error"
    _, generation, chat = _generation_tree(spans)
    assert attrs(chat, "error.type", "gen_ai.response.finish_reasons") == {
        "error.type": "overloaded",
        "gen_ai.response.finish_reasons": None,
    }
    assert chat.status.status_code == StatusCode.ERROR
    assert attrs(generation)["rivulet.generation.outcome"] == "error:overloaded"
    delivery = spans.one("sse.deliver")
    assert attrs(delivery)["rivulet.delivery.events"] == 4
    assert attrs(delivery)["rivulet.delivery.end_reason"] == "finished"


async def test_retries_are_events_on_the_chat_span(
    spans_and_telemetry: tuple[Spans, Telemetry],
) -> None:
    spans, telemetry = spans_and_telemetry
    app = create_app(
        Settings(workers=1, cancel_without_reader=0, provider_backoff=0.01), telemetry=telemetry
    )
    params = {"fake": {"tokens": 2, "rate": 0, "fail_attempts": 2}}
    async with AsyncTestClient(app) as client:
        gen = (
            await client.post("/v1/generations", json={"messages": MESSAGES, "params": params})
        ).json()
        await _until_closed(client, gen["stream_url"])
        await _settle(spans, "rivulet.generation", 1)
    _, _, chat = _generation_tree(spans)
    retries = [e for e in chat.events if e.name == "gen_ai.retry"]
    assert [
        (e.attributes["gen_ai.retry.attempt"], e.attributes["error.type"]) for e in retries
    ] == [
        (1, "overloaded"),
        (2, "overloaded"),
    ]
    assert attrs(chat)["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_cancel_ends_the_provider_span_and_the_generation(
    spans_and_telemetry: tuple[Spans, Telemetry],
) -> None:
    spans, telemetry = spans_and_telemetry
    app = create_app(Settings(workers=1, cancel_without_reader=0), telemetry=telemetry)
    params = {"fake": {"tokens": 500, "rate": 50}}
    async with AsyncTestClient(app) as client:
        gen = (
            await client.post("/v1/generations", json={"messages": MESSAGES, "params": params})
        ).json()
        await asyncio.sleep(0.3)
        assert (await client.delete(f"/v1/generations/{gen['id']}")).status_code == 200
        await _until_closed(client, gen["stream_url"])
        await _settle(spans, "rivulet.generation", 1)
    _, generation, chat = _generation_tree(spans)
    cancel = spans.one("DELETE /v1/generations/{gen_id}")
    assert cancel.kind == SpanKind.SERVER
    assert attrs(chat)["error.type"] == "cancelled"
    assert attrs(generation)["rivulet.generation.outcome"] == "cancelled"


async def test_log_lines_carry_trace_and_span_ids(
    spans_and_telemetry: tuple[Spans, Telemetry], capsys: pytest.CaptureFixture[str]
) -> None:
    spans, telemetry = spans_and_telemetry
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", "info")
    try:
        app = create_app(Settings(workers=1, cancel_without_reader=0), telemetry=telemetry)
        secret_prompt = "my secret prompt text 7f3a"
        async with AsyncTestClient(app) as client:
            body = {
                "messages": [{"role": "user", "content": secret_prompt}],
                "params": {"fake": {"tokens": 3, "rate": 0}},
            }
            gen = (await client.post("/v1/generations", json=body)).json()
            await _until_closed(client, gen["stream_url"])
            await _settle(spans, "rivulet.generation", 1)
        err = capsys.readouterr().err
    finally:
        # The handler writes to this test's captured stderr: never leave it installed.
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()
    lines = [json_line for json_line in err.splitlines() if json_line.startswith("{")]
    parsed = [json.loads(line) for line in lines]
    generation = spans.one("rivulet.generation")
    trace_id = f"{generation.context.trace_id:032x}"
    started = next(p for p in parsed if p["event"] == "generation.started")
    assert started["trace_id"] == trace_id
    assert started["span_id"] == f"{generation.context.span_id:016x}"
    created = next(p for p in parsed if p["event"] == "generation.created")
    assert created["trace_id"] == trace_id
    assert secret_prompt not in err
