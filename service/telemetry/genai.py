"""The provider call span, per the OpenTelemetry GenAI semantic conventions.

One span per provider call (retries included, each recorded as an event), kind CLIENT, named
``chat {model}``, with the conventions' attribute names from the semconv package. Hand-built
in one place rather than with the SDK-specific instrumentations so that all three providers
(including the fake) produce identical spans, retries appear as events, and time to first
chunk is recorded. Prompt and completion text are recorded only when ``record_content`` is on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import SpanKind, Status, StatusCode

from service.telemetry.metrics import Metrics

__all__ = ["GenAICall"]

# The conventions' well-known provider names; our own fake gets a namespaced one.
_PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "fake": "rivulet.fake"}


class GenAICall:
    """Records one provider call (all its attempts) on a span and in the GenAI metrics."""

    def __init__(
        self,
        tracer: trace.Tracer,
        metrics: Metrics,
        *,
        provider: str,
        model: str,
        params: Mapping[str, Any],
        messages: Sequence[tuple[str, str]] = (),
        record_content: bool = False,
        server_address: str | None = None,
    ) -> None:
        self._metrics = metrics
        self._provider = _PROVIDER_NAMES.get(provider, provider)
        self._model = model
        attributes: dict[str, Any] = {
            ga.GEN_AI_OPERATION_NAME: ga.GenAiOperationNameValues.CHAT.value,
            ga.GEN_AI_PROVIDER_NAME: self._provider,
            ga.GEN_AI_REQUEST_MODEL: model,
            ga.GEN_AI_REQUEST_STREAM: True,
        }
        if isinstance(params.get("max_tokens"), int):
            attributes[ga.GEN_AI_REQUEST_MAX_TOKENS] = params["max_tokens"]
        for key, attr in (
            ("temperature", ga.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", ga.GEN_AI_REQUEST_TOP_P),
        ):
            if isinstance(params.get(key), int | float):
                attributes[attr] = float(params[key])
        if server_address:
            attributes[server_attributes.SERVER_ADDRESS] = server_address
        if record_content:
            attributes[ga.GEN_AI_INPUT_MESSAGES] = repr(
                [{"role": r, "content": c} for r, c in messages]
            )
        self._record_content = record_content
        self._completion: list[str] = []
        self.span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)
        self._started = time.perf_counter()
        self._first: float | None = None
        self._attempt_started = self._started

    def retry(self, attempt: int, error_type: str, delay_s: float) -> None:
        """An attempt failed before its first chunk and will be retried."""
        self.span.add_event(
            "gen_ai.retry",
            {
                "gen_ai.retry.attempt": attempt,
                error_attributes.ERROR_TYPE: error_type,
                "gen_ai.retry.delay_s": delay_s,
            },
        )

    def chunk(self, text: str) -> None:
        """A content chunk arrived."""
        if self._first is None:
            self._first = time.perf_counter()
            ttfc = self._first - self._started
            self.span.set_attribute(ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttfc)
            self._metrics.genai_ttfc.record(ttfc, self._metric_attributes())
        if self._record_content:
            self._completion.append(text)

    def finish(
        self,
        reason: str,
        *,
        response_id: str | None,
        response_model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> None:
        """The call completed."""
        span = self.span
        span.set_attribute(ga.GEN_AI_RESPONSE_FINISH_REASONS, [reason])
        if response_id:
            span.set_attribute(ga.GEN_AI_RESPONSE_ID, response_id)
        if response_model:
            span.set_attribute(ga.GEN_AI_RESPONSE_MODEL, response_model)
        attrs = self._metric_attributes(response_model)
        if input_tokens is not None:
            span.set_attribute(ga.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            self._metrics.genai_tokens.record(
                input_tokens, {**attrs, ga.GEN_AI_TOKEN_TYPE: "input"}
            )
        if output_tokens is not None:
            span.set_attribute(ga.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
            self._metrics.genai_tokens.record(
                output_tokens, {**attrs, ga.GEN_AI_TOKEN_TYPE: "output"}
            )
        if self._record_content:
            span.set_attribute(ga.GEN_AI_OUTPUT_MESSAGES, "".join(self._completion))
        self._end(attrs)

    def fail(self, error_type: str, message: str) -> None:
        """The call failed for good (or was cancelled: ``error_type`` ``cancelled``)."""
        self.span.set_attribute(error_attributes.ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))
        self._end({**self._metric_attributes(), error_attributes.ERROR_TYPE: error_type})

    def _metric_attributes(self, response_model: str | None = None) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            ga.GEN_AI_OPERATION_NAME: ga.GenAiOperationNameValues.CHAT.value,
            ga.GEN_AI_PROVIDER_NAME: self._provider,
            ga.GEN_AI_REQUEST_MODEL: self._model,
        }
        if response_model:
            attrs[ga.GEN_AI_RESPONSE_MODEL] = response_model
        return attrs

    def _end(self, attrs: Mapping[str, Any]) -> None:
        self._metrics.genai_duration.record(time.perf_counter() - self._started, attrs)
        self.span.end()
