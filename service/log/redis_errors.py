"""What redis-py failures mean to Rivulet, shared by every Redis-backed component.

The log, the job queue and the limit store all turn "Redis can't serve this right now" into
:class:`BackendUnavailable` (HTTP 503, retried by workers) and let anything else surface as a
bug; and none of them may print a Redis password in a log line.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as rex

from service.log.base import BackendUnavailable

__all__ = ["TRANSIENT_REPLIES", "redact_url", "unavailable"]

# Replies that mean "Redis can't serve this right now", not "this request is wrong".
TRANSIENT_REPLIES: Final = (
    "OOM",
    "READONLY",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "NOREPLICAS",
    "MISCONF",
    "NOPERM",
)


def unavailable(exc: BaseException) -> BackendUnavailable | None:
    """The BackendUnavailable an exception from redis-py means, or None for a real bug."""
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | TimeoutError | OSError):
        return BackendUnavailable(f"Redis is unavailable: {exc}")
    if isinstance(exc, rex.ResponseError) and str(exc).startswith(TRANSIENT_REPLIES):
        return BackendUnavailable(f"Redis can't serve the request: {exc}")
    return None


def redact_url(url: str) -> str:
    """``url`` with its password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
