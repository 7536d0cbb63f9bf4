"""Map log errors and parse errors to protocol status codes, headers and JSON bodies.

Every error answer is JSON ``{"error": {"code": ..., "message": ...}}`` so a client (or an
operator reading a log line) can tell what was wrong without guessing from a status code.
"""

from __future__ import annotations

import json
from typing import Any

from litestar.response import Response
from litestar.response.base import ASGIResponse

from service.log import (
    BackendUnavailable,
    ContentTypeMismatch,
    InvalidFork,
    InvalidOffset,
    InvalidProducer,
    LogError,
    OffsetGone,
    ProducerSeqGap,
    SeqConflict,
    StaleEpoch,
    StreamClosed,
    StreamConflict,
    StreamGone,
    StreamNotFound,
)
from service.protocol import headers as h
from service.telemetry import get_logger

__all__ = ["RawResponse", "error_response", "log_error_response"]

_log = get_logger("service.protocol")


class RawResponse(Response[None]):
    """A prepared ASGI response where Litestar's signature wants a ``Response``.

    Used by HEAD handlers and exception handlers, which Litestar type-checks as ``Response``
    but whose exact headers we build ourselves.
    """

    def __init__(self, asgi: ASGIResponse) -> None:
        super().__init__(content=None)
        self._asgi = asgi

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        return self._asgi


def error_response(
    status: int,
    code: str,
    message: str,
    extra_headers: dict[str, str] | None = None,
    *,
    head: bool = False,
) -> ASGIResponse:
    """A JSON error response (headers only for HEAD)."""
    body = b"" if head else json.dumps({"error": {"code": code, "message": message}}).encode()
    hdrs = {"content-type": "application/json", "cache-control": "no-store"}
    if extra_headers:
        hdrs.update(extra_headers)
    return ASGIResponse(body=body, status_code=status, headers=hdrs, is_head_response=head)


def log_error_response(exc: LogError, *, head: bool = False) -> ASGIResponse:
    """The protocol's answer to a log error."""
    msg = str(exc) or type(exc).__name__
    match exc:
        case StreamNotFound():
            return error_response(404, "STREAM_NOT_FOUND", "stream not found", head=head)
        case StreamGone():
            return error_response(410, "STREAM_GONE", "stream was deleted", head=head)
        case OffsetGone():
            return error_response(
                410,
                "OFFSET_GONE",
                msg,
                {"Stream-Earliest-Offset": str(exc.earliest)},
                head=head,
            )
        case StreamClosed():
            return error_response(
                409,
                "STREAM_CLOSED",
                "stream is closed",
                {h.CLOSED: "true", h.NEXT_OFFSET: str(exc.next_offset)},
                head=head,
            )
        case StaleEpoch():
            return error_response(
                403, "STALE_EPOCH", msg, {h.PRODUCER_EPOCH: str(exc.current_epoch)}, head=head
            )
        case ProducerSeqGap():
            return error_response(
                409,
                "SEQUENCE_GAP",
                msg,
                {
                    h.PRODUCER_EXPECTED_SEQ: str(exc.expected),
                    h.PRODUCER_RECEIVED_SEQ: str(exc.received),
                },
                head=head,
            )
        case InvalidProducer():
            return error_response(400, "INVALID_PRODUCER", msg, head=head)
        case SeqConflict():
            return error_response(409, "SEQUENCE_CONFLICT", msg, head=head)
        case ContentTypeMismatch():
            return error_response(
                409, "CONTENT_TYPE_MISMATCH", "content type differs from the stream's", head=head
            )
        case StreamConflict():
            return error_response(409, "STREAM_CONFLICT", msg, head=head)
        case InvalidFork():
            return error_response(400, "INVALID_FORK", msg, head=head)
        case InvalidOffset():
            return error_response(400, "INVALID_OFFSET", msg, head=head)
        case BackendUnavailable():
            # The client gets a generic 503; the operator gets what Redis actually said.
            _log.warning("log.backend_unavailable", error=msg)
            return error_response(
                503,
                "BACKEND_UNAVAILABLE",
                "storage is unavailable, retry later",
                {"Retry-After": "1"},
                head=head,
            )
    return error_response(500, "INTERNAL", "unexpected log error", head=head)
