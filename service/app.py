"""``create_app``: settings → log backend → state → routes. Wiring only, no behaviour."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.response import Response
from litestar.types import Scope
from opentelemetry.trace import Span

from service.api import EdgeMiddleware, health_handlers
from service.api.auth import PUBLIC_ANNOTATION, Auth
from service.api.demo import demo_handlers
from service.api.generations import GenerationState, generation_handlers
from service.api.health import metrics_handler
from service.api.limits import Limits
from service.api.openapi import openapi_handlers
from service.generation.jobs import RequestLimits
from service.generation.open import open_providers, open_queue, worker_settings
from service.generation.queue import JobQueue
from service.generation.service import Generations
from service.generation.worker import Worker
from service.log import ChunkLog, LogError, open_log
from service.log.instrumented import InstrumentedChunkLog
from service.protocol import ProtocolState, stream_handlers
from service.protocol import headers as h
from service.protocol.errors import RawResponse, error_response, log_error_response
from service.settings import Settings
from service.telemetry import Telemetry, get_logger

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
    "Rivulet-Replica",
]


_HTTP_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[None]:
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    headers = {k: str(v) for k, v in (exc.headers or {}).items()}
    return RawResponse(error_response(exc.status_code, code, str(exc.detail), headers))


def _log_error(request: Request[Any, Any, Any], exc: LogError) -> Response[None]:
    return RawResponse(log_error_response(exc))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[None]:
    log.exception("http.unhandled_error", path=request.url.path, error=type(exc).__name__)
    return RawResponse(error_response(500, "INTERNAL", "internal error"))


def _route_span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # The server span starts before routing, so it is named by method only (never by raw
    # path: stream ids would explode cardinality); EdgeMiddleware renames it to the route
    # template once the router has matched.
    return str(scope.get("method", "HTTP")).upper(), {}


_SECRET_PARAMS = frozenset({"token", "key", "api_key", "access_token"})


def _redact_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        parts.append(f"{name}=REDACTED" if eq and name.lower() in _SECRET_PARAMS else pair)
    return "&".join(parts)


def _redact_span_urls(span: Span, scope: dict[str, Any]) -> None:
    # Read tokens travel in query strings (EventSource can't send headers): the server
    # span must record the URL without them.
    if not span.is_recording():
        return
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("path", "")
    safe = f"{path}?{_redact_query(query)}" if query else path
    server = scope.get("server") or ("", None)
    host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    span.set_attribute("http.target", safe)
    span.set_attribute("http.url", f"{scope.get('scheme', 'http')}://{host}{safe}")
    if query:
        span.set_attribute("url.query", _redact_query(query))


def create_app(
    settings: Settings | None = None,
    *,
    chunk_log: ChunkLog | None = None,
    queue: JobQueue | None = None,
    telemetry: Telemetry | None = None,
) -> Litestar:
    """The ASGI application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings.from_env()
    telemetry = telemetry or Telemetry.from_settings(settings)
    chunk_log = InstrumentedChunkLog(chunk_log or open_log(settings), telemetry.metrics)

    async def is_public(stream: str) -> bool:
        try:
            return await chunk_log.annotation(stream, PUBLIC_ANNOTATION) == "true"
        except (LogError, ValueError):
            return False  # a missing stream etc.: the handler answers that properly

    auth = Auth.from_settings(
        settings.api_keys,
        settings.api_keys_file,
        settings.read_token_secret,
        settings.read_token_ttl,
        open_mode=settings.auth_open,
        is_public=is_public,
    )
    queue = queue or open_queue(settings)
    providers = open_providers(settings)
    generations = Generations(chunk_log, queue, providers, settings.generation_ttl)
    limits = Limits.from_settings(settings)
    request_limits = RequestLimits(
        max_messages=settings.max_messages,
        max_chars=settings.max_prompt_chars,
        max_tokens=settings.max_output_tokens,
        models=settings.model_allowlist(),
    )

    async def presence(stream: str) -> None:
        # A Durable Streams reader of a generation counts as a reader too.
        await queue.touch_reader(stream.removeprefix("generations/"), settings.presence_ttl)

    state = ProtocolState(
        log=chunk_log,
        settings=settings,
        telemetry=telemetry,
        limits=limits,
        presence=presence if settings.cancel_without_reader > 0 else None,
    )
    gen_state = GenerationState(
        generations, settings, state.draining, telemetry, limits, request_limits
    )
    worker = (
        Worker(
            chunk_log,
            queue,
            providers,
            worker_settings(settings),
            telemetry=telemetry,
            on_finished=limits.end_generation,
        )
        if settings.workers > 0
        else None
    )
    telemetry.instrument_redis(chunk_log, queue)
    depth: list[int | None] = [None]
    telemetry.metrics.observe_queue_depth(lambda: depth[0])

    async def sample_depth() -> None:
        # Sampled here, not at scrape time: a scrape must never wait on Redis.
        while True:
            with contextlib.suppress(LogError):
                depth[0] = await queue.depth()
            await asyncio.sleep(5)

    def begin_drain() -> None:
        # SIGTERM: live readers end now (and resume elsewhere), the worker stops claiming;
        # running generations get the shutdown grace to finish.
        state.draining.set()
        chunk_log.hub.interrupt_all()
        if worker is not None:
            worker.stop_claiming()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await chunk_log.start()
            await queue.start()
            await limits.store.start()
        except LogError as exc:
            log.error("app.start_failed", backend=settings.backend, error=str(exc))
            raise
        if worker is not None:
            worker.start()
        sampler = asyncio.create_task(sample_depth())
        if auth.open:
            log.warning(
                "auth.open",
                detail="no API keys configured: anyone who can reach this address can write",
                host=settings.host,
            )
        log.info(
            "app.started",
            backend=settings.backend,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            providers=sorted(providers),
        )
        try:
            yield
        finally:
            begin_drain()
            sampler.cancel()
            if worker is not None:
                await worker.stop()
            for provider in providers.values():
                await provider.aclose()
            await queue.stop()
            await limits.store.stop()
            await chunk_log.stop()
            telemetry.shutdown()
            log.info("app.stopped")

    plugins = []
    if telemetry.tracing:
        plugins.append(
            OpenTelemetryPlugin(
                OpenTelemetryConfig(
                    tracer_provider=telemetry.tracer_provider,
                    meter_provider=telemetry.meter_provider,
                    scope_span_details_extractor=_route_span_details,
                    # Per-message send/receive spans would be one span per SSE frame.
                    exclude_spans=["receive", "send"],
                    exclude=["/livez", "/readyz", "/metrics"],
                    server_request_hook_handler=_redact_span_urls,
                )
            )
        )
    return Litestar(
        plugins=plugins,
        route_handlers=[
            *health_handlers(),
            metrics_handler(telemetry),
            *demo_handlers(),
            *openapi_handlers(),
            *generation_handlers(),
            *stream_handlers(),
        ],
        state=State(
            {
                "protocol": state,
                "generations": gen_state,
                "drain": begin_drain,
                "auth": auth,
                "limits": limits,
            }
        ),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(EdgeMiddleware, replica_header=settings.replica_header)],
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=_EXPOSED,
            allow_credentials=False,
        )
        if settings.cors_origins
        else None,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={
            HTTPException: _http_error,
            LogError: _log_error,
            Exception: _unexpected,
        },
        openapi_config=None,
        logging_config=None,
    )
