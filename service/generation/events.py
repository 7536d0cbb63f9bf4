"""The normalized event schema every provider maps to, and that every reader sees.

A generation's stream (``application/json``) holds one JSON object per event:

- ``{"type": "content", "delta": "Hel"}`` — a piece of the answer, in order;
- ``{"type": "finish", "reason": "stop", "usage": {"input_tokens": 9, "output_tokens": 12}}``
  — the answer is complete (``reason``: ``stop``, ``length``, ``content_filter``,
  ``tool_calls``, ``cancelled``, or the provider's own word);
- ``{"type": "error", "error": {"type": "overloaded", "message": "..."}}`` — the generation
  failed; the message is safe to show (no upstream secrets, headers or stack traces).

``finish`` and ``error`` are *terminal*: a stream holds exactly one of them, last, and is closed
in the same atomic step that writes it, so no second terminal event can ever be appended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from service import jsonwire

__all__ = [
    "TERMINAL_TYPES",
    "ContentDelta",
    "ErrorEvent",
    "Event",
    "Finish",
    "ProviderError",
    "Usage",
    "decode_event",
    "encode_event",
]

TERMINAL_TYPES = frozenset({"finish", "error"})

ErrorKind = Literal[
    "overloaded",
    "rate_limited",
    "timeout",
    "connection",
    "authentication",
    "invalid_request",
    "provider_error",
    "worker_lost",
    "gap",
    "internal",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them (``None`` when it did not)."""

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """A piece of the answer."""

    delta: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The answer is complete."""

    reason: str
    usage: Usage | None = None
    response_id: str | None = None
    response_model: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The generation failed; ``message`` is safe to show to end users."""

    kind: str
    message: str


Event = ContentDelta | Finish | ErrorEvent


class ProviderError(Exception):
    """A provider call failed. ``retryable`` says whether trying again may help.

    ``message`` is already safe for clients; the upstream detail goes to logs only.
    """

    def __init__(self, kind: ErrorKind, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retryable = retryable

    def event(self) -> ErrorEvent:
        """The terminal event that reports this error."""
        return ErrorEvent(self.kind, self.message)


def encode_event(event: Event) -> bytes:
    """One event as the compact JSON stored in the log."""
    body: dict[str, Any]
    match event:
        case ContentDelta(delta=delta):
            body = {"type": "content", "delta": delta}
        case Finish(reason=reason, usage=usage):
            body = {"type": "finish", "reason": reason}
            if usage is not None:
                body["usage"] = {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                }
        case ErrorEvent(kind=kind, message=message):
            body = {"type": "error", "error": {"type": kind, "message": message}}
    return jsonwire.dumps(body).encode()


def decode_event(raw: bytes) -> dict[str, Any]:
    """A stored event back as a dict (readers pass it through; tests inspect it)."""
    value = json.loads(raw)
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError("not a generation event")
    return value
