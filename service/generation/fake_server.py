"""A fake LLM provider that speaks the real OpenAI and Anthropic streaming wire formats.

``rivulet fake-provider --port 8081`` serves it; point the real SDKs at it
(``OPENAI_BASE_URL=http://127.0.0.1:8081/v1``, ``ANTHROPIC_BASE_URL=http://127.0.0.1:8081``,
any API key) and they stream scripted answers: the same tokens, failures and timing as the
in-process ``fake`` provider, from :mod:`service.generation.providers.fake_script` (which
documents the ``fake`` request field).

- ``POST /v1/chat/completions`` (``stream: true`` only): ``chat.completion.chunk`` events, a
  first chunk with the role, one chunk per token, a chunk with ``finish_reason``, a usage
  chunk (``choices: []``) when ``stream_options.include_usage``, then ``data: [DONE]``.
- ``POST /v1/messages`` (``stream: true`` only): ``message_start``, ``content_block_start``,
  ``ping``, ``content_block_delta`` per token, ``content_block_stop``, ``message_delta``,
  ``message_stop``.
- Scripted failures: before the first token, HTTP 503 (OpenAI) / 529 (Anthropic) with each
  provider's JSON error body; mid-stream, ``data: {"error": ...}`` (OpenAI) or
  ``event: error`` with ``overloaded_error`` (Anthropic), and the body ends.

Every event's JSON carries ``"rivulet_emitted_at"`` (Unix time, float) for latency
measurements; the SDKs ignore unknown fields. Each token is its own write, sent when due.

Every request is recorded, including whether the client went away before the response ended
(the proof that a cancelled generation really aborted its provider call):
``GET /_fake/requests`` lists the last 10,000 as JSON (see :class:`RequestRecord`),
``DELETE /_fake/requests`` clears them (and the ``fail_attempts`` counters).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from service.generation.providers.fake_script import (
    AttemptCounter,
    FakeParamsError,
    FakePlan,
    Turn,
    content_text,
    plan,
    stamped,
)

__all__ = ["FakeProviderApp", "RequestRecord", "create_fake_app", "serve_fake"]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

DEFAULT_PORT = 8081
_MAX_BODY = 8 * 1024 * 1024
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


@dataclass(slots=True)
class RequestRecord:
    """One request the fake server handled, as ``GET /_fake/requests`` shows it."""

    id: int
    path: str
    started_at: float
    """Unix time the request arrived."""
    model: str | None = None
    attempt: int | None = None
    """1-based call number of this exact request (what ``fail_attempts`` counts)."""
    status: int | None = None
    """HTTP status sent (``None`` if the client left before the response started)."""
    outcome: str = "pending"
    """``finished``, ``failed`` (scripted mid-stream error), ``rejected`` (scripted error
    before the first token), ``invalid`` (bad request), ``disconnected`` or ``pending``."""
    tokens_sent: int = 0
    tokens_total: int = 0
    """Tokens the script would have sent had the client stayed."""
    completed: bool = False
    """The whole response was written (answer, scripted error or rejection)."""
    client_disconnected: bool = False
    """The client closed the connection before the response ended."""
    ended_at: float | None = None


class _Wire(Protocol):
    """One provider's SSE dialect."""

    def preamble(self) -> bytes: ...
    def token(self, text: str) -> bytes: ...
    def finish(self, reason: str, output_tokens: int) -> bytes: ...
    def error(self) -> bytes: ...


class _BadRequest(Exception):
    """The request is malformed; the message goes back in the provider's error shape."""


class _ClientGone(Exception):
    """The client disconnected while we were still reading its request."""


class FakeProviderApp:
    """The ASGI application. Plain ASGI rather than a framework: the test of record is what
    bytes go out when, and whether ``http.disconnect`` arrived, with nothing in between."""

    def __init__(self, *, max_records: int = 10_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._ids = itertools.count(1)
        self._attempts = AttemptCounter()

    @property
    def records(self) -> list[RequestRecord]:
        """The recorded requests, oldest first."""
        return list(self._records)

    def clear(self) -> None:
        """Forget every record and attempt count."""
        self._records.clear()
        self._attempts.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/v1/chat/completions" and method == "POST":
            await self._generate(scope, receive, send, openai=True)
        elif path == "/v1/messages" and method == "POST":
            await self._generate(scope, receive, send, openai=False)
        elif path == "/_fake/requests" and method == "GET":
            body = [asdict(record) for record in self._records]
            await _send_json(send, 200, body)
        elif path == "/_fake/requests" and method == "DELETE":
            self.clear()
            await _send_json(send, 200, {"cleared": True})
        else:
            await _send_json(send, 404, {"error": {"message": "not found", "type": "not_found"}})

    async def _generate(self, scope: Scope, receive: Receive, send: Send, *, openai: bool) -> None:
        record = RequestRecord(id=next(self._ids), path=scope["path"], started_at=time.time())
        self._records.append(record)
        try:
            try:
                body = json.loads(await _read_body(receive))
                turns, model, params, include_usage = (
                    _parse_openai(body) if openai else _parse_anthropic(body)
                )
                record.model = model
                script = plan(turns, model, params)
            except _ClientGone:
                record.client_disconnected = True
                record.outcome = "disconnected"
                return
            except (ValueError, _BadRequest) as exc:  # FakeParamsError and JSON errors too
                message = str(exc) if isinstance(exc, FakeParamsError | _BadRequest) else "bad JSON"
                record.status, record.outcome, record.completed = 400, "invalid", True
                await _send_json(send, 400, _error_body(openai, 400, message))
                return
            record.tokens_total = script.tokens_to_send
            # Per wire path too: the same prompt through the other SDK is another request.
            record.attempt = self._attempts.next(f"{scope['path']}:{script.fingerprint}")
            if script.fails_before_first(record.attempt):
                await self._reject(scope, send, record, script, openai=openai)
                return
            wire: _Wire = (
                _OpenAIWire(model, script, include_usage=include_usage)
                if openai
                else _AnthropicWire(model, script)
            )
            await _stream(receive, send, record, script, wire)
        finally:
            record.ended_at = time.time()

    async def _reject(
        self, scope: Scope, send: Send, record: RequestRecord, script: FakePlan, *, openai: bool
    ) -> None:
        status = script.options.fail_status
        if status is None:
            status = 503 if openai else 529
            message = "Overloaded"
        else:
            # Deliberately careless, like real upstreams that quote the key they refused:
            # adapters must never pass provider error text on to clients.
            message = f"Scripted failure for API key {_api_key(scope)}"
        record.status, record.outcome, record.completed = status, "rejected", True
        await _send_json(send, status, _error_body(openai, status, message))


async def _stream(
    receive: Receive, send: Send, record: RequestRecord, script: FakePlan, wire: _Wire
) -> None:
    """Write the scripted stream one event at a time, stopping when the client leaves."""
    conn = _Connection(send)
    watcher = asyncio.create_task(conn.watch(receive))
    try:
        record.status = 200
        headers = [*_SSE_HEADERS, (b"x-request-id", uuid.uuid4().hex.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not await conn.write(wire.preamble()):
            return
        started = conn.loop.time()
        for index in range(script.tokens_to_send):
            if not await conn.sleep_until(started + script.due(index)):
                return
            token = stamped(script.tokens[index], script.options, time.time())
            if not await conn.write(wire.token(token)):
                return
            record.tokens_sent += 1
        if script.fail_after is not None:
            if not await conn.sleep_until(started + script.due(script.fail_after)):
                return
            outcome, final = "failed", wire.error()
        else:
            outcome, final = "finished", wire.finish(script.finish_reason, record.tokens_sent)
        if await conn.write(final, more=False):
            record.outcome, record.completed = outcome, True
    finally:
        watcher.cancel()
        if not record.completed and conn.gone:
            record.client_disconnected = True
            record.outcome = "disconnected"


class _Connection:
    """One streaming response: writes, paced sleeps, and whether the client has gone.

    Sleeps are a bare future plus a timer, woken early by a disconnect: at thousands of
    streams times tens of tokens per second, a task per sleep (``asyncio.wait_for``) would
    make the fake, not the system under test, the bottleneck of a benchmark.
    """

    def __init__(self, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        self.gone = False
        self._send = send
        self._waiter: asyncio.Future[None] | None = None
        self._unyielded = 0

    async def watch(self, receive: Receive) -> None:
        """Wait for ``http.disconnect``; the body is read, so nothing else can arrive."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def write(self, data: bytes, *, more: bool = True) -> bool:
        """Send ``data`` now; False if the client has gone (uvicorn drops writes silently)."""
        if self.gone:
            return False
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
        except OSError:
            # Servers other than uvicorn report a closed connection by failing the send.
            self.gone = True
        return not self.gone

    async def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (loop time); False if the client left meanwhile."""
        delay = deadline - self.loop.time()
        if delay <= 0:
            # Rate 0: still let the watcher run now and then, or a long answer to a client
            # that has left would be written to nowhere until its end.
            self._unyielded += 1
            if self._unyielded >= 32:
                self._unyielded = 0
                await asyncio.sleep(0)
            return not self.gone
        if self.gone:
            return False
        waiter: asyncio.Future[None] = self.loop.create_future()
        timer = self.loop.call_later(delay, _wake, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return not self.gone


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _OpenAIWire:
    def __init__(self, model: str, script: FakePlan, *, include_usage: bool) -> None:
        self._model = model
        self._script = script
        self._include_usage = include_usage
        self._id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self._created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": "fp_rivulet_fake",
            "choices": choices,
        }
        if self._include_usage:
            body["usage"] = None  # as OpenAI does: null on every chunk but the last
        body.update(extra)
        body["rivulet_emitted_at"] = time.time()
        return b"data: " + _dumps(body) + b"\n\n"

    @staticmethod
    def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def preamble(self) -> bytes:
        return self._chunk([self._choice({"role": "assistant", "content": "", "refusal": None})])

    def token(self, text: str) -> bytes:
        return self._chunk([self._choice({"content": text})])

    def finish(self, reason: str, output_tokens: int) -> bytes:
        out = self._chunk([self._choice({}, reason)])
        if self._include_usage:
            prompt = self._script.input_tokens
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": output_tokens,
                "total_tokens": prompt + output_tokens,
            }
            out += self._chunk([], usage=usage)
        return out + b"data: [DONE]\n\n"

    def error(self) -> bytes:
        error = {
            "message": "The server is overloaded. Please retry your request.",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
        return b"data: " + _dumps({"error": error, "rivulet_emitted_at": time.time()}) + b"\n\n"


class _AnthropicWire:
    def __init__(self, model: str, script: FakePlan) -> None:
        self._model = model
        self._script = script
        self._id = f"msg_{uuid.uuid4().hex[:24]}"

    @staticmethod
    def _event(name: str, body: dict[str, Any]) -> bytes:
        body = {"type": name, **body, "rivulet_emitted_at": time.time()}
        return b"event: " + name.encode() + b"\ndata: " + _dumps(body) + b"\n\n"

    def preamble(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._script.input_tokens, "output_tokens": 1},
        }
        return (
            self._event("message_start", {"message": message})
            + self._event("content_block_start", {"index": 0, "content_block": _TEXT_BLOCK})
            + self._event("ping", {})
        )

    def token(self, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        return self._event("content_block_delta", {"index": 0, "delta": delta})

    def finish(self, reason: str, output_tokens: int) -> bytes:
        stop_reason = "max_tokens" if reason == "length" else "end_turn"
        return (
            self._event("content_block_stop", {"index": 0})
            + self._event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
            + self._event("message_stop", {})
        )

    def error(self) -> bytes:
        return self._event(
            "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
        )


_TEXT_BLOCK = {"type": "text", "text": ""}

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(openai: bool, status: int, message: str) -> dict[str, Any]:
    """The provider's JSON error shape for ``status``."""
    if openai:
        default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
        error_type, code = _OPENAI_ERRORS.get(status, default)
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    default_type = "api_error" if status >= 500 else "invalid_request_error"
    error = {"type": _ANTHROPIC_ERRORS.get(status, default_type), "message": message}
    return {"type": "error", "error": error, "request_id": f"req_{uuid.uuid4().hex[:24]}"}


def _parse_openai(body: Any) -> tuple[list[Turn], str, dict[str, Any], bool]:
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    if body.get("stream") is not True:
        raise _BadRequest("this fake server only streams: set stream=true")
    turns = [(str(m.get("role", "")), content_text(m.get("content"))) for m in _messages(body)]
    params: dict[str, Any] = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        params["max_tokens"] = limit
    if body.get("fake") is not None:
        params["fake"] = body["fake"]
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return turns, _model(body), params, include_usage


def _parse_anthropic(body: Any) -> tuple[list[Turn], str, dict[str, Any], bool]:
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    if body.get("stream") is not True:
        raise _BadRequest("this fake server only streams: set stream=true")
    if "max_tokens" not in body:
        raise _BadRequest("max_tokens: Field required")
    system = body.get("system")
    turns = [("system", content_text(system, "\n\n"))] if system else []
    turns += [(str(m.get("role", "")), content_text(m.get("content"))) for m in _messages(body)]
    params: dict[str, Any] = {"max_tokens": body["max_tokens"]}
    if body.get("fake") is not None:
        params["fake"] = body["fake"]
    return turns, _model(body), params, True


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model: a non-empty string is required")
    return model


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("messages: a list of message objects is required")
    return messages


def _api_key(scope: Scope) -> str:
    headers: dict[bytes, bytes] = dict(scope.get("headers", []))
    key = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
    return key.decode("latin-1")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _BadRequest("request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, body: Any) -> None:
    data = _dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def create_fake_app(*, max_records: int = 10_000) -> FakeProviderApp:
    """A fresh fake provider (its own request log and attempt counters)."""
    return FakeProviderApp(max_records=max_records)


def serve_fake(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> bool:
    """Serve the fake provider until interrupted; False if it could not start (port taken)."""
    import uvicorn

    config = uvicorn.Config(
        create_fake_app(),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        # A scripted answer can be arbitrarily slow; on SIGTERM, don't wait for it to finish.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    server.run()
    return server.started
