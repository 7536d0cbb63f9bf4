"""What a provider adapter is: a request in, normalized events out, errors as ProviderError."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.generation.events import ContentDelta, Finish

__all__ = ["GenerationRequest", "Message", "Provider", "ProviderEvent"]

ProviderEvent = ContentDelta | Finish


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. ``params`` holds sampling settings (``max_tokens``, ``temperature``,
    ``top_p``, ``stop``) and, for the fake provider, its script (``fake``: see
    ``service.generation.providers.fake``)."""

    provider: str
    model: str
    messages: Sequence[Message]
    params: Mapping[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """A streaming chat provider."""

    name: str
    deterministic: bool
    """Same request, same events: a successor worker may continue a half-written answer."""

    def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Yield content deltas, then exactly one :class:`Finish`.

        Raises :class:`~service.generation.events.ProviderError` on failure (before or after
        the first delta). Cancelling the iteration must abort the underlying HTTP request.
        """
        ...

    async def aclose(self) -> None:
        """Release HTTP clients."""
