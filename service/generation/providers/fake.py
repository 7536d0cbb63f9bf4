"""The in-process ``fake`` provider: scripted tokens with no network, the embedded default.

It follows :mod:`service.generation.providers.fake_script` (which documents every parameter
under ``params["fake"]``), so it answers exactly what the wire-compatible fake server answers
through the OpenAI or Anthropic adapter for the same request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from service.generation.events import ContentDelta, Finish, ProviderError, Usage
from service.generation.providers.base import GenerationRequest, ProviderEvent
from service.generation.providers.errors import kind_for_status
from service.generation.providers.fake_script import (
    AttemptCounter,
    FakeParamsError,
    plan,
    stamped,
)

__all__ = ["FakeProvider"]


class FakeProvider:
    """Scripted, deterministic answers; ``fail_attempts`` is counted per instance."""

    name = "fake"
    # Same request, same tokens: a successor can continue a half-written answer exactly.
    deterministic = True

    def __init__(self) -> None:
        self._attempts = AttemptCounter()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield the scripted tokens at the scripted rate, then a :class:`Finish`."""
        try:
            script = plan(request.messages, request.model, request.params)
        except FakeParamsError as exc:
            raise ProviderError("invalid_request", str(exc), retryable=False) from None
        attempt = self._attempts.next(script.fingerprint)
        if script.fails_before_first(attempt):
            raise _rejection(script.options.fail_status)
        loop = asyncio.get_running_loop()
        started = loop.time()
        fail_after = script.fail_after
        for index in range(script.tokens_to_send + (fail_after is not None)):
            delay = started + script.due(index) - loop.time()
            # Even at rate 0 give the loop a turn per token, so a long scripted answer can't
            # starve the other generations sharing this worker.
            await asyncio.sleep(max(delay, 0.0))
            if index == fail_after:
                raise _rejection(None)
            yield ContentDelta(stamped(script.tokens[index], script.options, time.time()))
        yield Finish(
            reason=script.finish_reason,
            usage=Usage(input_tokens=script.input_tokens, output_tokens=script.tokens_to_send),
            response_id=f"fake-{script.fingerprint[:24]}",
            response_model=request.model,
        )

    async def aclose(self) -> None:
        """Nothing to release: no connections."""


def _rejection(status: int | None) -> ProviderError:
    """What a call rejected before its first token raises: the kind the status would map to in
    the OpenAI/Anthropic adapters, so in-process and wire fakes fail alike."""
    kind, retryable = kind_for_status(503 if status is None else status)
    return ProviderError(kind, f"The fake provider failed ({kind}).", retryable=retryable)
