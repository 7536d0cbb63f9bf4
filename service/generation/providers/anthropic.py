"""The ``anthropic`` provider: Messages streaming through the official ``anthropic`` SDK.

``system`` messages become the ``system`` parameter (joined with a blank line; Anthropic takes
no system turns inside ``messages``). ``text_delta`` events map to :class:`ContentDelta`;
``message_delta`` (stop reason, output tokens) and ``message_stop`` to one :class:`Finish`.
An ``event: error`` inside the stream (``overloaded_error`` is the common one) raises
:class:`ProviderError`. Messages are our own, never the upstream text.

Sampling: ``temperature`` and ``top_p`` are *not* forwarded. SDK 2.x sends API version
2026-10-21, which rejects sampling parameters with HTTP 400 (the SDK dropped them too), so
forwarding them would turn a harmless hint into a failed generation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import anthropic
import httpx2
from anthropic.types import (
    MessageParam,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextDelta,
)

from service.generation.events import ContentDelta, ErrorKind, Finish, ProviderError, Usage
from service.generation.providers.base import GenerationRequest, ProviderEvent
from service.generation.providers.clients import SdkClients
from service.generation.providers.errors import kind_for_status
from service.telemetry import get_logger

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicProvider"]

DEFAULT_MAX_TOKENS = 1024
"""Sent when the request has no ``max_tokens``: the Messages API requires one."""

_log = get_logger(__name__)
_DEFAULT_BASE_URL = "https://api.anthropic.com"
_SAFE_WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_STOP_REASONS = {"end_turn": "stop", "max_tokens": "length"}


class AnthropicProvider:
    """Streams messages from Anthropic (or a compatible endpoint at ``base_url``).

    ``timeout`` bounds each wait on the network (connecting, and the silence between two
    events), not the whole answer. ``max_retries`` is 0 by default because the worker retries
    failures before the first token itself and must see every attempt.
    """

    name = "anthropic"
    deterministic = False

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 0,
    ) -> None:
        # Several SDK clients, each with a share of the connection budget (see SdkClients).
        self._clients = SdkClients(
            lambda limits: anthropic.AsyncAnthropic(
                api_key=api_key,
                # Explicit, because given nothing the SDK reads ANTHROPIC_BASE_URL itself, and
                # settings.py is meant to be the one place that reads the environment.
                base_url=base_url or _DEFAULT_BASE_URL,
                timeout=anthropic.Timeout(timeout, connect=connect_timeout),
                max_retries=max_retries,
                http_client=anthropic.DefaultAsyncHttpxClient(limits=limits),
            )
        )

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the answer's deltas, then one :class:`Finish`; see :class:`Provider`."""
        params = request.params
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = cast(
            "list[MessageParam]",
            [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        )
        max_tokens = params.get("max_tokens")
        try:
            stream = await self._clients.next().messages.create(
                model=request.model,
                max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
                messages=messages,
                system=system or anthropic.omit,
                stop_sequences=_stop_sequences(params),
                stream=True,
                # Only the fake provider server reads this; real servers never see the field.
                extra_body={"fake": params["fake"]} if params.get("fake") is not None else None,
            )
        except (anthropic.AnthropicError, httpx2.RequestError) as exc:
            raise _provider_error(exc) from None
        stop_reason: str | None = None
        stopped = False
        input_tokens: int | None = None
        output_tokens: int | None = None
        response_id: str | None = None
        response_model: str | None = None
        # The context manager closes the HTTP response however this generator ends: consumed,
        # failed, cancelled, or closed early by the worker. That is what aborts the upstream
        # generation (the provider sees the connection drop).
        async with stream:
            try:
                async for event in stream:
                    if isinstance(event, RawContentBlockDeltaEvent):
                        if isinstance(event.delta, TextDelta) and event.delta.text:
                            yield ContentDelta(event.delta.text)
                    elif isinstance(event, RawMessageStartEvent):
                        response_id = event.message.id or None
                        response_model = event.message.model or None
                        input_tokens = event.message.usage.input_tokens
                    elif isinstance(event, RawMessageDeltaEvent):
                        stop_reason = event.delta.stop_reason or stop_reason
                        # Usage in message_delta is cumulative: the last one is the total.
                        output_tokens = event.usage.output_tokens
                        if event.usage.input_tokens is not None:
                            input_tokens = event.usage.input_tokens
                    elif isinstance(event, RawMessageStopEvent):
                        stopped = True
            # The SDK wraps transport errors only when it opens the response; once streaming,
            # a dropped connection surfaces as a raw httpx2 error.
            except (anthropic.AnthropicError, httpx2.RequestError) as exc:
                raise _provider_error(exc) from None
        if not stopped or stop_reason is None:
            # The body ended without message_stop: a proxy or the server cut the stream.
            # Without this the answer would look complete when it is not.
            raise ProviderError(
                "connection",
                "The Anthropic stream ended before the answer was complete.",
                retryable=True,
            )
        yield Finish(
            reason=_STOP_REASONS.get(stop_reason, stop_reason),
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            response_id=response_id,
            response_model=response_model,
        )

    async def aclose(self) -> None:
        """Close the SDK's HTTP connection pool."""
        await self._clients.aclose()


def _stop_sequences(params: Mapping[str, Any]) -> Any:
    """``stop`` in the OpenAI shape (a string or a list) as Anthropic's ``stop_sequences``."""
    stop = params.get("stop")
    if stop is None:
        return anthropic.omit
    return [stop] if isinstance(stop, str) else list(stop)


def _provider_error(exc: anthropic.AnthropicError | httpx2.RequestError) -> ProviderError:
    """Map an SDK or transport exception to a ProviderError with no upstream text in it."""
    status: int | None = None
    error_type: str | None = None
    request_id: str | None = None
    if isinstance(exc, anthropic.APIStatusError):
        # An in-stream `event: error` arrives as an APIStatusError with the stream's own
        # status (200); its `type` (from the error body) is what says what went wrong.
        status = exc.status_code
        error_type = _safe(exc.type)
        request_id = _safe(exc.request_id)
    _log.warning(
        "provider.upstream_error",
        provider="anthropic",
        exc_type=type(exc).__name__,
        status=status,
        error_type=error_type,
        request_id=request_id,
    )
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ProviderError("timeout", "Anthropic did not respond in time.", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.RequestError):
        return ProviderError("connection", "Could not reach Anthropic.", retryable=True)
    if status is not None:
        kind, retryable = _kind(status, error_type)
        return ProviderError(kind, _message(kind, status, error_type), retryable=retryable)
    return ProviderError("provider_error", "The Anthropic call failed.", retryable=False)


_ERROR_TYPES: dict[str, tuple[ErrorKind, bool]] = {
    "overloaded_error": ("overloaded", True),
    "api_error": ("overloaded", True),
    "rate_limit_error": ("rate_limited", True),
    "timeout_error": ("timeout", True),
    "authentication_error": ("authentication", False),
    "permission_error": ("authentication", False),
    "invalid_request_error": ("invalid_request", False),
    "not_found_error": ("invalid_request", False),
    "request_too_large": ("invalid_request", False),
}


def _kind(status: int, error_type: str | None) -> tuple[ErrorKind, bool]:
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type]
    if status < 300:
        # An error event of a type we don't know, after the stream started: the provider's.
        return "provider_error", True
    return kind_for_status(status)


_TEXT: dict[str, str] = {
    "rate_limited": "Anthropic is rate limiting requests",
    "overloaded": "Anthropic is overloaded or failed",
    "authentication": "Anthropic rejected the credentials",
    "timeout": "Anthropic timed out",
    "invalid_request": "Anthropic rejected the request",
}


def _message(kind: str, status: int, error_type: str | None) -> str:
    text = _TEXT.get(kind, "The Anthropic call failed")
    # A 200 here means the error came inside the stream; the HTTP status says nothing then.
    extras = ([f"HTTP {status}"] if status >= 300 else []) + ([error_type] if error_type else [])
    return f"{text} ({', '.join(extras)})." if extras else f"{text}."


def _safe(value: object) -> str | None:
    """An upstream code or type only if it is a plain identifier (never free text)."""
    return value if isinstance(value, str) and _SAFE_WORD.fullmatch(value) else None
