"""The ``openai`` provider: Chat Completions streaming through the official ``openai`` SDK.

Any OpenAI-compatible endpoint works through ``base_url`` (Azure OpenAI's v1 API, vLLM, the
fake provider server). Chunks map to :class:`ContentDelta`; the chunk with ``finish_reason``
plus the trailing usage chunk (``stream_options.include_usage``) map to one :class:`Finish`.
SDK exceptions become :class:`ProviderError` with a message of our own: upstream messages can
quote credentials ("Incorrect API key provided: sk-...") or the request, so none is passed on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from service.generation.events import ContentDelta, ErrorKind, Finish, ProviderError, Usage
from service.generation.providers.base import GenerationRequest, ProviderEvent
from service.generation.providers.clients import SdkClients
from service.generation.providers.errors import kind_for_status
from service.telemetry import get_logger

__all__ = ["OpenAIProvider"]

_log = get_logger(__name__)
_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_SAFE_WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class OpenAIProvider:
    """Streams chat completions from OpenAI or an OpenAI-compatible server.

    ``timeout`` bounds each wait on the network (connecting, and the silence between two
    chunks), not the whole answer, which may legitimately stream for minutes.
    ``max_retries`` is 0 by default because the worker retries failures before the first
    token itself, with its own backoff, and must see every attempt.
    ``max_tokens_field``: OpenAI's reasoning models reject the deprecated ``max_tokens``, so
    ``params["max_tokens"]`` goes out as ``max_completion_tokens``; older OpenAI-compatible
    servers may need ``"max_tokens"``.
    """

    name = "openai"
    deterministic = False

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 0,
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
    ) -> None:
        # Several SDK clients, each with a share of the connection budget (see SdkClients).
        self._clients = SdkClients(
            lambda limits: openai.AsyncOpenAI(
                api_key=api_key,
                timeout=openai.Timeout(timeout, connect=connect_timeout),
                max_retries=max_retries,
                # Explicit, because given nothing the SDK reads OPENAI_BASE_URL itself, and
                # settings.py is meant to be the one place that reads the environment.
                base_url=base_url or _DEFAULT_BASE_URL,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits),
            )
        )
        self._max_tokens_field = max_tokens_field

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the answer's deltas, then one :class:`Finish`; see :class:`Provider`."""
        params = request.params
        messages = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": message.role, "content": message.content} for message in request.messages],
        )
        limit = _given(params, "max_tokens")
        try:
            stream = await self._clients.next().chat.completions.create(
                model=request.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_completion_tokens=limit
                if self._max_tokens_field == "max_completion_tokens"
                else openai.omit,
                max_tokens=limit if self._max_tokens_field == "max_tokens" else openai.omit,
                temperature=_given(params, "temperature"),
                top_p=_given(params, "top_p"),
                stop=_given(params, "stop"),
                # Only the fake provider server reads this; real servers never see the field.
                extra_body={"fake": params["fake"]} if params.get("fake") is not None else None,
            )
        except openai.OpenAIError as exc:
            raise _provider_error(exc) from None
        finish_reason: str | None = None
        usage: Usage | None = None
        response_id: str | None = None
        response_model: str | None = None
        # The context manager closes the HTTP response however this generator ends: consumed,
        # failed, cancelled, or closed early by the worker. That is what aborts the upstream
        # generation (the provider sees the connection drop).
        async with stream:
            try:
                async for chunk in stream:
                    response_id = response_id or chunk.id or None
                    response_model = response_model or chunk.model or None
                    if chunk.usage is not None:
                        usage = Usage(
                            input_tokens=chunk.usage.prompt_tokens,
                            output_tokens=chunk.usage.completion_tokens,
                        )
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        # A refusal is the model's answer too; without it the reader sees nothing.
                        text = choice.delta.content or choice.delta.refusal
                        if text:
                            yield ContentDelta(text)
                        if choice.finish_reason is not None:
                            finish_reason = choice.finish_reason
            except openai.OpenAIError as exc:
                raise _provider_error(exc) from None
        if finish_reason is None:
            # The body ended without a finish_reason: a proxy or the server cut the stream.
            # Without this the answer would look complete when it is not.
            raise ProviderError(
                "connection",
                "The OpenAI stream ended before the answer was complete.",
                retryable=True,
            )
        yield Finish(
            reason=finish_reason,
            usage=usage,
            response_id=response_id,
            response_model=response_model,
        )

    async def aclose(self) -> None:
        """Close the SDK clients' HTTP connection pools."""
        await self._clients.aclose()


def _given(params: Mapping[str, Any], key: str) -> Any:
    """The param, or the SDK's ``omit`` so absent (or null) settings are not sent at all."""
    value = params.get(key)
    return openai.omit if value is None else value


def _provider_error(exc: openai.OpenAIError) -> ProviderError:
    """Map an SDK exception to a ProviderError whose message carries no upstream text."""
    status: int | None = None
    error_type = code = None
    if isinstance(exc, openai.APIError):
        error_type, code = _safe(exc.type), _safe(exc.code)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
    _log.warning(
        "provider.upstream_error",
        provider="openai",
        exc_type=type(exc).__name__,
        status=status,
        error_type=error_type,
        code=code,
        request_id=_safe(exc.request_id) if isinstance(exc, openai.APIStatusError) else None,
    )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("timeout", "OpenAI did not respond in time.", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("connection", "Could not reach OpenAI.", retryable=True)
    if status is not None:
        if status == 429 and code == "insufficient_quota":
            # Retrying cannot help until someone adds credit.
            return ProviderError("rate_limited", "OpenAI quota exceeded.", retryable=False)
        kind, retryable = kind_for_status(status)
        return ProviderError(kind, _message(kind, status, code or error_type), retryable=retryable)
    if isinstance(exc, openai.APIError):
        # An error object inside the event stream, after the response had started.
        kind, retryable = _kind_for_error_type(f"{error_type or ''} {code or ''}")
        return ProviderError(kind, _message(kind, None, code or error_type), retryable=retryable)
    return ProviderError("provider_error", "The OpenAI call failed.", retryable=False)


def _kind_for_error_type(text: str) -> tuple[ErrorKind, bool]:
    if "rate_limit" in text:
        return "rate_limited", True
    if "invalid_request" in text:
        return "invalid_request", False
    if "auth" in text or "permission" in text:
        return "authentication", False
    # server_error / overloaded / unknown mid-stream failures are the provider's trouble.
    return "overloaded", True


_TEXT: dict[str, str] = {
    "rate_limited": "OpenAI is rate limiting requests",
    "overloaded": "OpenAI is overloaded or failed",
    "authentication": "OpenAI rejected the credentials",
    "timeout": "OpenAI timed out",
    "invalid_request": "OpenAI rejected the request",
}


def _message(kind: str, status: int | None, detail: str | None) -> str:
    text = _TEXT.get(kind, "The OpenAI call failed")
    extras = ([f"HTTP {status}"] if status is not None else []) + ([detail] if detail else [])
    return f"{text} ({', '.join(extras)})." if extras else f"{text}."


def _safe(value: object) -> str | None:
    """An upstream code or type only if it is a plain identifier (never free text)."""
    return value if isinstance(value, str) and _SAFE_WORD.fullmatch(value) else None
