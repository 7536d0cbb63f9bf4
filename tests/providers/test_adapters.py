"""The real OpenAI and Anthropic SDK adapters against the wire-compatible fake server, and the
in-process fake provider beside them: one request, one answer, whichever path it takes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from service.generation.events import ContentDelta, Finish, ProviderError, Usage
from service.generation.providers.anthropic import AnthropicProvider
from service.generation.providers.base import GenerationRequest, Message, Provider
from service.generation.providers.clients import SdkClients
from service.generation.providers.fake import FakeProvider
from service.generation.providers.fake_script import input_token_count, script
from service.generation.providers.openai import OpenAIProvider
from service.generation.providers.registry import build_providers
from tests.conftest import free_port
from tests.providers.conftest import API_KEY, FakeServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

MESSAGES = [
    Message("system", "Answer briefly."),
    Message("user", "What is a durable stream?"),
]
WIRE = ["openai", "anthropic"]
ALL = ["openai", "anthropic", "fake"]


@pytest_asyncio.fixture
async def providers(fake_server: FakeServer) -> AsyncIterator[dict[str, Provider]]:
    built: dict[str, Provider] = {
        "openai": OpenAIProvider(API_KEY, fake_server.openai_base_url),
        "anthropic": AnthropicProvider(API_KEY, fake_server.anthropic_base_url),
        "fake": FakeProvider(),
    }
    yield built
    for provider in built.values():
        await provider.aclose()


def _request(params: dict[str, Any], messages: list[Message] = MESSAGES) -> GenerationRequest:
    # A model name of its own per test keeps the server's request log easy to pick apart.
    return GenerationRequest("any", f"m-{uuid.uuid4().hex[:12]}", messages, params)


async def _run(provider: Provider, request: GenerationRequest) -> tuple[list[Any], Any]:
    """All events, and the ProviderError that ended the stream (or None)."""
    events: list[Any] = []
    try:
        async for event in provider.stream(request):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


def _deltas(events: list[Any]) -> list[str]:
    return [e.delta for e in events if isinstance(e, ContentDelta)]


async def test_one_request_gets_the_same_answer_from_all_three(providers, fake_server) -> None:
    request = _request({"fake": {"tokens": 9, "rate": 0}, "temperature": 0.2})
    expected = script(MESSAGES, request.model, request.params)
    assert len(expected) == 9
    for name in ALL:
        events, error = await _run(providers[name], request)
        assert error is None, (name, error)
        assert _deltas(events) == expected, name
        finish = events[-1]
        assert isinstance(finish, Finish), name
        assert sum(isinstance(e, Finish) for e in events) == 1
        assert finish.reason == "stop"
        assert finish.usage == Usage(input_token_count(MESSAGES), 9), name
        assert finish.response_model == request.model
        assert finish.response_id
    records = fake_server.requests(request.model)
    assert [(r["path"], r["outcome"], r["tokens_sent"]) for r in records] == [
        ("/v1/chat/completions", "finished", 9),
        ("/v1/messages", "finished", 9),
    ]
    assert all(r["completed"] and not r["client_disconnected"] for r in records)


async def test_max_tokens_cuts_the_answer_with_reason_length(providers) -> None:
    request = _request({"max_tokens": 4, "fake": {"tokens": 10, "rate": 0}})
    full = script(MESSAGES, request.model, {"fake": {"tokens": 10}})
    for name in ALL:
        events, error = await _run(providers[name], request)
        assert error is None
        assert _deltas(events) == full[:4], name
        assert events[-1].reason == "length"
        assert events[-1].usage.output_tokens == 4


async def test_multi_turn_and_several_system_messages_agree(providers) -> None:
    messages = [
        Message("system", "One."),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("system", "Two."),
        Message("user", "more"),
    ]
    request = _request({"fake": {"tokens": 6, "rate": 0}}, messages)
    answers = {name: _deltas((await _run(providers[name], request))[0]) for name in ALL}
    assert answers["openai"] == answers["anthropic"] == answers["fake"]
    assert answers["fake"] == script(messages, request.model, request.params)


@pytest.mark.parametrize("name", ALL)
async def test_fail_after_raises_overloaded_after_exactly_k_deltas(providers, name) -> None:
    request = _request({"fake": {"tokens": 10, "rate": 0, "fail_after": 3}})
    events, error = await _run(providers[name], request)
    assert _deltas(events) == script(MESSAGES, request.model, request.params)[:3]
    assert len(events) == 3, "no Finish after a failure"
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == ("overloaded", True)


@pytest.mark.parametrize("name", ALL)
async def test_fail_attempts_fails_before_the_first_token_then_lets_the_retry_through(
    providers, fake_server, name
) -> None:
    request = _request({"fake": {"tokens": 5, "rate": 0, "fail_attempts": 1}})
    events, error = await _run(providers[name], request)
    assert events == []
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == ("overloaded", True)
    events, error = await _run(providers[name], request)
    assert error is None
    assert _deltas(events) == script(MESSAGES, request.model, request.params)
    if name != "fake":
        records = fake_server.requests(request.model)
        assert [(r["attempt"], r["status"], r["outcome"]) for r in records] == [
            (1, 503 if name == "openai" else 529, "rejected"),
            (2, 200, "finished"),
        ]


@pytest.mark.parametrize("name", WIRE)
@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_abandoning_the_stream_closes_the_provider_connection(
    providers, fake_server, name, how
) -> None:
    request = _request({"fake": {"tokens": 200, "rate": 20}})
    seen: list[str] = []
    three = asyncio.Event()

    async def consume() -> None:
        async for event in providers[name].stream(request):
            seen.append(event.delta)
            if len(seen) == 3:
                three.set()

    if how == "cancel":
        task = asyncio.create_task(consume())
        await asyncio.wait_for(three.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        # The worker's way to stop early: leave the loop, then close the generator.
        async with contextlib.aclosing(providers[name].stream(request)) as stream:
            async for event in stream:
                seen.append(event.delta)
                if len(seen) == 3:
                    break
    records = fake_server.wait_for(
        request.model, lambda rs: len(rs) == 1 and rs[0]["ended_at"] is not None
    )
    assert records[0]["client_disconnected"] is True
    assert records[0]["completed"] is False
    assert records[0]["outcome"] == "disconnected"
    assert 3 <= records[0]["tokens_sent"] < 200


@pytest.mark.parametrize("name", WIRE)
@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, "authentication", False),
        (403, "authentication", False),
        (429, "rate_limited", True),
        (400, "invalid_request", False),
        (500, "overloaded", True),
    ],
)
async def test_http_errors_map_to_safe_provider_errors(
    providers, capsys, name, status, kind, retryable
) -> None:
    # The fake quotes the API key in its error text, as careless upstreams do.
    request = _request({"fake": {"fail_attempts": 1, "fail_status": status}})
    events, error = await _run(providers[name], request)
    assert events == []
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == (kind, retryable)
    assert API_KEY not in error.message
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error.event())
    assert error.__cause__ is None
    assert error.__suppress_context__
    captured = capsys.readouterr()
    assert API_KEY not in captured.out + captured.err


@pytest.mark.parametrize("name", WIRE)
async def test_an_unreachable_provider_is_a_retryable_connection_error(name) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider: Provider = (
        OpenAIProvider(API_KEY, f"{url}/v1")
        if name == "openai"
        else AnthropicProvider(API_KEY, url)
    )
    try:
        events, error = await _run(provider, _request({}))
    finally:
        await provider.aclose()
    assert events == []
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == ("connection", True)
    assert API_KEY not in error.message


@pytest.mark.parametrize("name", WIRE)
async def test_a_silent_provider_times_out(fake_server, name) -> None:
    provider: Provider = (
        OpenAIProvider(API_KEY, fake_server.openai_base_url, timeout=0.3)
        if name == "openai"
        else AnthropicProvider(API_KEY, fake_server.anthropic_base_url, timeout=0.3)
    )
    request = _request({"fake": {"tokens": 3, "stall_before_first": 2}})
    try:
        events, error = await _run(provider, request)
    finally:
        await provider.aclose()
    assert events == []
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == ("timeout", True)
    # The adapter closed the connection on the way out; the server saw the client leave.
    records = fake_server.wait_for(
        request.model, lambda rs: len(rs) == 1 and rs[0]["ended_at"] is not None
    )
    assert records[0]["client_disconnected"] is True
    assert records[0]["tokens_sent"] == 0


async def test_invalid_fake_params_are_an_invalid_request_everywhere(providers) -> None:
    request = _request({"fake": {"tokenz": 3}})
    for name in ALL:
        events, error = await _run(providers[name], request)
        assert events == []
        assert isinstance(error, ProviderError)
        assert (error.kind, error.retryable) == ("invalid_request", False), name


async def test_the_fake_paces_tokens_at_the_scripted_rate(providers) -> None:
    request = _request({"fake": {"tokens": 6, "rate": 50, "stall_before_first": 0.1}})
    loop = asyncio.get_running_loop()
    for name in ALL:
        started = loop.time()
        _, error = await _run(providers[name], request)
        elapsed = loop.time() - started
        assert error is None
        # 0.1 s stall + 5 gaps of 20 ms; generous upper bound for slow CI machines.
        assert 0.19 <= elapsed < 1.5, (name, elapsed)


async def test_build_providers_enables_real_providers_only_with_keys() -> None:
    only_fake = build_providers(None, None, None, None)
    assert set(only_fake) == {"fake"}
    everything = build_providers("k1", "http://127.0.0.1:9/v1", "k2", "http://127.0.0.1:9")
    assert {name: p.name for name, p in everything.items()} == {
        "fake": "fake",
        "openai": "openai",
        "anthropic": "anthropic",
    }
    for provider in [*only_fake.values(), *everything.values()]:
        await provider.aclose()


_CUT = {
    # One token, then the body ends: no finish_reason / [DONE], no message_stop.
    "openai": b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n',
    "anthropic": b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
    b'"type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hel"}}\n\n',
}


@pytest.mark.parametrize("name", WIRE)
async def test_a_stream_cut_before_its_end_is_an_error_not_a_short_answer(name) -> None:
    # A proxy that drops the connection cleanly looks like a normal end of body to the SDK;
    # only the missing terminal event tells the two apart.
    import anthropic
    import httpx2
    import openai

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, content=_CUT[name])

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    provider: Any
    if name == "openai":
        provider = OpenAIProvider(API_KEY, "http://upstream.invalid/v1")
        await provider.aclose()
        provider._clients = SdkClients(
            lambda _: openai.AsyncOpenAI(
                api_key=API_KEY, base_url="http://upstream.invalid/v1", http_client=http
            ),
            count=1,
        )
    else:
        provider = AnthropicProvider(API_KEY, "http://upstream.invalid")
        await provider.aclose()
        provider._clients = SdkClients(
            lambda _: anthropic.AsyncAnthropic(
                api_key=API_KEY, base_url="http://upstream.invalid", http_client=http
            ),
            count=1,
        )
    try:
        events, error = await _run(provider, _request({}))
    finally:
        await provider.aclose()
    assert _deltas(events) == ["Hel"]
    assert len(events) == 1
    assert isinstance(error, ProviderError)
    assert (error.kind, error.retryable) == ("connection", True)
