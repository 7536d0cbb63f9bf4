"""Generations as jobs: what ``POST /v1/generations`` enqueues and how it is described.

A generation is a stream (``generations/<id>``, JSON, sliding TTL) plus a job on the queue.
The stream exists before the job is enqueued, so a client can attach a reader at once; the
worker only ever appends to it.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.generation.providers.base import GenerationRequest, Message

__all__ = [
    "GenerationJob",
    "InvalidGeneration",
    "RequestLimits",
    "new_generation_id",
    "parse_generation_request",
    "stream_path",
]

_ROLES = frozenset({"system", "user", "assistant"})
_PARAMS = frozenset({"max_tokens", "temperature", "top_p", "stop", "fake"})
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_MESSAGES = 256
MAX_CHARS = 1_000_000


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one generation request may ask for (from settings)."""

    max_messages: int = MAX_MESSAGES
    max_chars: int = MAX_CHARS
    max_tokens: int = 32768
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)


class InvalidGeneration(ValueError):
    """A generation request that can't be run; the message says which field and why."""


def new_generation_id() -> str:
    """Time-ordered, URL-safe, unguessable: ``<ms hex>-<random>``."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(8)}"


def stream_path(generation_id: str) -> str:
    """The chunk-log stream of a generation (also served at ``/v1/stream/<path>``)."""
    return f"generations/{generation_id}"


def valid_id(generation_id: str) -> bool:
    """Whether a path segment could be a generation id."""
    return bool(_ID.fullmatch(generation_id))


@dataclass(frozen=True, slots=True)
class GenerationJob:
    """The queued work item: the request plus where to write and the caller's trace context."""

    id: str
    request: GenerationRequest
    created_ms: int
    trace: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    """Whose concurrent-generation slot this job holds (released when it ends)."""

    @property
    def path(self) -> str:
        return stream_path(self.id)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "provider": self.request.provider,
                "model": self.request.model,
                "messages": [{"role": m.role, "content": m.content} for m in self.request.messages],
                "params": dict(self.request.params),
                "created_ms": self.created_ms,
                "trace": dict(self.trace),
                "owner": self.owner,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> GenerationJob:
        body = json.loads(raw)
        request = GenerationRequest(
            provider=body["provider"],
            model=body["model"],
            messages=tuple(Message(m["role"], m["content"]) for m in body["messages"]),
            params=body.get("params") or {},
        )
        return cls(
            body["id"],
            request,
            int(body["created_ms"]),
            body.get("trace") or {},
            str(body.get("owner") or ""),
        )


def _messages(raw: Any, limits: RequestLimits) -> Sequence[Message]:
    if not isinstance(raw, list) or not raw:
        raise InvalidGeneration("messages must be a non-empty list")
    if len(raw) > limits.max_messages:
        raise InvalidGeneration(f"at most {limits.max_messages} messages")
    out = []
    total = 0
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise InvalidGeneration(f"messages[{i}] must be an object")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidGeneration(f"messages[{i}].role must be one of {sorted(_ROLES)}")
        if not isinstance(content, str):
            raise InvalidGeneration(f"messages[{i}].content must be a string")
        total += len(content)
        out.append(Message(role, content))
    if total > limits.max_chars:
        raise InvalidGeneration(f"messages hold more than {limits.max_chars} characters")
    return tuple(out)


def _params(raw: Any, limits: RequestLimits) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidGeneration("params must be an object")
    unknown = sorted(set(raw) - _PARAMS)
    if unknown:
        raise InvalidGeneration(f"unknown params {unknown}; allowed: {sorted(_PARAMS)}")
    mt = raw.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt <= 0):
        raise InvalidGeneration("params.max_tokens must be a positive integer")
    if mt is not None and mt > limits.max_tokens:
        raise InvalidGeneration(f"params.max_tokens may be at most {limits.max_tokens}")
    for name in ("temperature", "top_p"):
        v = raw.get(name)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise InvalidGeneration(f"params.{name} must be a number")
    stop = raw.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidGeneration("params.stop must be a string or a list of strings")
    if "fake" in raw and not isinstance(raw["fake"], dict):
        raise InvalidGeneration("params.fake must be an object")
    return dict(raw)


def parse_generation_request(
    body: Any,
    *,
    default_provider: str,
    providers: Sequence[str],
    limits: RequestLimits | None = None,
) -> tuple[GenerationRequest, str | None]:
    """Validate a ``POST /v1/generations`` body; returns the request and idempotency key."""
    limits = limits or RequestLimits()
    if not isinstance(body, dict):
        raise InvalidGeneration("body must be a JSON object")
    provider = body.get("provider") or default_provider
    if provider not in providers:
        raise InvalidGeneration(
            f"provider {provider!r} is not configured here; available: {sorted(providers)}"
        )
    model = body.get("model") or ("fake-1" if provider == "fake" else None)
    if not isinstance(model, str) or not model or len(model) > 256:
        raise InvalidGeneration("model must be a non-empty string (at most 256 characters)")
    allowed = limits.models.get(provider)
    if allowed is not None and model not in allowed:
        raise InvalidGeneration(
            f"model {model!r} is not allowed for {provider}; allowed: {sorted(allowed)}"
        )
    if not isinstance(body.get("public_read", False), bool):
        raise InvalidGeneration("public_read must be true or false")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
        raise InvalidGeneration("idempotency_key must be a string of 1 to 256 characters")
    request = GenerationRequest(
        provider=provider,
        model=model,
        messages=_messages(body.get("messages"), limits),
        params=_params(body.get("params"), limits),
    )
    return request, key
