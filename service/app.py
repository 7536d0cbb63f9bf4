"""``create_app``: settings → log backend → state → routes. Wiring only, no behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.response import Response

from service.api import EdgeMiddleware, health_handlers
from service.log import ChunkLog, LogError, open_log
from service.protocol import ProtocolState, stream_handlers
from service.protocol import headers as h
from service.protocol.errors import RawResponse, error_response, log_error_response
from service.settings import Settings
from service.telemetry import get_logger

__all__ = ["create_app"]

log = get_logger("service.app")

_EXPOSED = [
    h.NEXT_OFFSET,
    h.CURSOR,
    h.UP_TO_DATE,
    h.CLOSED,
    h.TTL,
    h.EXPIRES_AT,
    h.SSE_ENCODING,
    h.PRODUCER_EPOCH,
    h.PRODUCER_SEQ,
    h.PRODUCER_EXPECTED_SEQ,
    h.PRODUCER_RECEIVED_SEQ,
    "Stream-Earliest-Offset",
    "ETag",
    "Content-Type",
    "Location",
    "Retry-After",
]


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[None]:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
        exc.status_code, "HTTP_ERROR"
    )
    return RawResponse(error_response(exc.status_code, code, str(exc.detail)))


def _log_error(request: Request[Any, Any, Any], exc: LogError) -> Response[None]:
    return RawResponse(log_error_response(exc))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[None]:
    log.exception("http.unhandled_error", path=request.url.path, error=type(exc).__name__)
    return RawResponse(error_response(500, "INTERNAL", "internal error"))


def create_app(settings: Settings | None = None, *, chunk_log: ChunkLog | None = None) -> Litestar:
    """The ASGI application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()
    chunk_log = chunk_log or open_log(settings)
    state = ProtocolState(log=chunk_log, settings=settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await chunk_log.start()
        except LogError as exc:
            log.error("app.start_failed", backend=settings.backend, error=str(exc))
            raise
        log.info("app.started", backend=settings.backend, host=settings.host, port=settings.port)
        try:
            yield
        finally:
            state.draining.set()
            chunk_log.hub.interrupt_all()
            await chunk_log.stop()
            log.info("app.stopped")

    return Litestar(
        route_handlers=[*health_handlers(), *stream_handlers()],
        state=State({"protocol": state}),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(EdgeMiddleware)],
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=_EXPOSED,
        ),
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={
            HTTPException: _http_error,
            LogError: _log_error,
            Exception: _unexpected,
        },
        openapi_config=None,
        logging_config=None,
    )
