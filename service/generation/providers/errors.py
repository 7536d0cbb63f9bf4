"""The one mapping from an upstream HTTP status to an error kind and whether to retry.

Shared by the OpenAI and Anthropic adapters and by the in-process fake (which fails the way
the wire adapters would for the same status).
"""

from __future__ import annotations

from service.generation.events import ErrorKind

__all__ = ["kind_for_status"]


def kind_for_status(status: int) -> tuple[ErrorKind, bool]:
    """``(kind, retryable)`` for an upstream HTTP status."""
    if status == 429:
        return "rate_limited", True
    if status >= 500:
        return "overloaded", True
    if status in (401, 403):
        return "authentication", False
    if status == 408:
        return "timeout", True
    if status in (400, 404, 413, 422):
        return "invalid_request", False
    # 409 is a transient conflict the SDKs themselves would retry.
    return "provider_error", status == 409
