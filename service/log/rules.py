"""Write-path rules shared by the backends (the Redis Lua scripts mirror them line by line)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from service.log.base import Producer, StreamConfig

__all__ = [
    "ANNOTATION_MAX_CHARS",
    "ProducerVerdict",
    "check_annotation",
    "check_producer",
    "content_types_match",
    "media_type",
    "same_config",
]

ANNOTATION_MAX_CHARS: Final = 1024
"""The longest annotation value, in characters."""

_ANNOTATION_NAME: Final = re.compile(r"[a-z0-9_.-]{1,64}")


def media_type(content_type: str) -> str:
    """The lower-cased ``type/subtype`` of a Content-Type, parameters dropped."""
    return content_type.split(";", 1)[0].strip().lower()


def content_types_match(a: str, b: str) -> bool:
    """Content types are equal when their media types are (case and parameters ignored)."""
    return media_type(a) == media_type(b)


def same_config(existing: StreamConfig, requested: StreamConfig) -> bool:
    """Whether an idempotent PUT asks for what the stream already is."""
    if (existing.content_type is None) != (requested.content_type is None):
        return False
    if (
        existing.content_type is not None
        and requested.content_type is not None
        and not content_types_match(existing.content_type, requested.content_type)
    ):
        return False
    return (
        existing.ttl_seconds == requested.ttl_seconds
        and existing.expires_at_ms == requested.expires_at_ms
        and existing.closed == requested.closed
        and existing.fork == requested.fork
    )


@dataclass(frozen=True, slots=True)
class ProducerVerdict:
    """What to do with a producer claim. At most one field is set; none means accept."""

    duplicate: bool = False
    stale_epoch: int | None = None
    gap: tuple[int, int] | None = None
    bad_epoch_start: bool = False


def check_producer(state: tuple[int, int] | None, claim: Producer) -> ProducerVerdict:
    """Kafka-style idempotent producer check against ``(epoch, last seq)`` state."""
    if state is None:
        if claim.seq != 0:
            return ProducerVerdict(gap=(0, claim.seq))
        return ProducerVerdict()
    epoch, last = state
    if claim.epoch < epoch:
        return ProducerVerdict(stale_epoch=epoch)
    if claim.epoch > epoch:
        return ProducerVerdict() if claim.seq == 0 else ProducerVerdict(bad_epoch_start=True)
    if claim.seq <= last:
        return ProducerVerdict(duplicate=True)
    if claim.seq == last + 1:
        return ProducerVerdict()
    return ProducerVerdict(gap=(last + 1, claim.seq))


def check_annotation(name: str, value: str | None = None) -> None:
    """Raise ``ValueError`` unless ``name`` (and ``value``, when given) may be stored."""
    if not isinstance(name, str) or _ANNOTATION_NAME.fullmatch(name) is None:
        raise ValueError(f"annotation name must match [a-z0-9_.-]{{1,64}}: {repr(name)[:80]}")
    if value is None:
        return
    if not isinstance(value, str):
        raise ValueError("annotation value must be a string")
    if len(value) > ANNOTATION_MAX_CHARS:
        raise ValueError(f"annotation value is longer than {ANNOTATION_MAX_CHARS} characters")
    # Stored as UTF-8 by the Redis backend: reject what can't be (lone surrogates) everywhere.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("annotation value is not encodable as UTF-8") from None
