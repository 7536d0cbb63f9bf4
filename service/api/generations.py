"""Generation endpoints: create, follow (EventSource), cancel, and the seed-compatible one-shot.

Handlers parse and validate, then call ``service.generation`` / ``service.delivery``; they
never touch storage themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from service.api.auth import (
    PUBLIC_ANNOTATION,
    Auth,
    all_of,
    rate_limited,
    require_read,
    require_scope,
)
from service.api.limits import Limits, identity_of
from service.delivery import LiveSession
from service.delivery.eventsource import event_frames, gap_frame
from service.delivery.recorder import DeliveryRecorder
from service.delivery.response import LiveStreamingResponse
from service.generation.jobs import (
    InvalidGeneration,
    RequestLimits,
    new_generation_id,
    parse_generation_request,
    stream_path,
    valid_id,
)
from service.generation.providers.base import GenerationRequest, Message
from service.generation.service import Generations
from service.log import (
    ZERO,
    LogError,
    Offset,
    OffsetError,
    OffsetGone,
    ReadResult,
    StreamClosed,
    StreamGone,
    StreamNotFound,
)
from service.protocol.errors import error_response, log_error_response
from service.settings import Settings
from service.telemetry import Telemetry, current_carrier

__all__ = ["GenerationState", "generation_handlers"]

HEARTBEAT_HEADER = "rivulet-heartbeat"
_SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


@dataclass(slots=True)
class GenerationState:
    """What these handlers need; ``app.state.generations``."""

    generations: Generations
    settings: Settings
    draining: asyncio.Event
    telemetry: Telemetry
    limits: Limits
    request_limits: RequestLimits


def _st(request: Request[Any, Any, Any]) -> GenerationState:
    state: GenerationState = request.app.state.generations
    return state


def _json(status: int, body: dict[str, Any]) -> ASGIResponse:
    return ASGIResponse(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers={"content-type": "application/json", "cache-control": "no-store"},
    )


def _urls(request: Request[Any, Any, Any], gen_id: str) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    urls = {
        "id": gen_id,
        "events_url": f"{base}/v1/generations/{gen_id}/events",
        "stream_url": f"{base}/v1/stream/{stream_path(gen_id)}",
    }
    auth: Auth = request.app.state.auth
    if not auth.open:
        # EventSource can't send headers: the token rides in the URL (never logged).
        token = auth.tokens.issue(stream_path(gen_id))
        urls["read_token"] = token
        urls["events_url"] += f"?token={token}"
    return urls


def _generation_stream(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return stream_path(str(connection.path_params.get("gen_id", "")))


@post(
    "/v1/generations",
    status_code=201,
    name="generations:create",
    guards=all_of(require_scope("generate"), rate_limited()),
)
async def create_generation(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Create a generation; 201 ``{id, events_url, stream_url}`` (200 for a known key)."""
    st = _st(request)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return error_response(400, "INVALID_JSON", "body is not valid JSON")
    try:
        gen_request, key = parse_generation_request(
            body,
            default_provider=st.settings.provider_for_default,
            providers=list(st.generations.providers),
            limits=st.request_limits,
        )
        gen_id, created = await _create_limited(request, st, gen_request, key)
        if created and isinstance(body, dict) and body.get("public_read") is True:
            await st.generations.log.annotate(stream_path(gen_id), PUBLIC_ANNOTATION, "true")
    except InvalidGeneration as exc:
        return error_response(400, "INVALID_GENERATION", str(exc))
    except LogError as exc:
        return log_error_response(exc)
    return _json(201 if created else 200, _urls(request, gen_id))


@delete(
    "/v1/generations/{gen_id:str}",
    status_code=200,
    name="generations:cancel",
    guards=all_of(require_scope("generate"), rate_limited()),
)
async def cancel_generation(request: Request[Any, Any, Any], gen_id: FromPath[str]) -> ASGIResponse:
    """Cancel from any replica: the stream ends with ``finish`` (``cancelled``)."""
    if not valid_id(gen_id):
        return error_response(404, "GENERATION_NOT_FOUND", "no such generation")
    try:
        offset = await _st(request).generations.cancel(gen_id)
    except StreamClosed as exc:
        return error_response(
            409,
            "GENERATION_FINISHED",
            "the generation already ended",
            {"Stream-Next-Offset": str(exc.next_offset)},
        )
    except LogError as exc:
        if isinstance(exc, StreamNotFound):
            return error_response(404, "GENERATION_NOT_FOUND", "no such generation")
        return log_error_response(exc)
    return _json(200, {"id": gen_id, "status": "cancelled", "final_offset": str(offset)})


async def _create_limited(
    request: Request[Any, Any, Any],
    st: GenerationState,
    gen_request: GenerationRequest,
    key: str | None,
) -> tuple[str, bool]:
    """Create within the caller's concurrent-generation limit (the worker frees the slot)."""
    owner = identity_of(request)
    gen_id = new_generation_id()
    await st.limits.take_generation(owner, gen_id)
    try:
        # The job carries this request's trace context to whichever worker runs it.
        found, created = await st.generations.create(
            gen_request, key, current_carrier(), gen_id=gen_id, owner=owner
        )
    except BaseException:
        await st.limits.end_generation(owner, gen_id)
        raise
    if not created:
        await st.limits.end_generation(owner, gen_id)  # an existing one was returned
    return found, created


def _resume_offset(request: Request[Any, Any, Any]) -> Offset:
    raw = request.headers.get("last-event-id") or request.query_params.get("offset")
    if not raw or raw == "-1":
        return ZERO
    return Offset.parse(raw)


async def _follow(request: Request[Any, Any, Any], gen_id: str) -> ASGIResponse:
    st = _st(request)
    settings = st.settings
    try:
        start = _resume_offset(request)
    except OffsetError:
        return error_response(400, "INVALID_OFFSET", "Last-Event-ID / offset is not an offset")
    gens = st.generations
    session = LiveSession.configured(gens.log, stream_path(gen_id), start, settings, st.draining)
    events = session.__aiter__()
    try:
        first = await anext(events)
        if isinstance(first, ReadResult) and first.at_end and not first.chunks:
            # Already at the end of a finished generation: 204 tells EventSource to stop
            # reconnecting (a 200 that ends at once would make it retry forever).
            await events.aclose()
            return ASGIResponse(body=b"", status_code=204, headers={"cache-control": "no-store"})
    except OffsetGone as exc:
        return ASGIResponse(body=gap_frame(exc.earliest), headers=_SSE_HEADERS)
    except LogError as exc:
        if isinstance(exc, StreamNotFound | StreamGone):
            return error_response(404, "GENERATION_NOT_FOUND", "no such generation")
        return log_error_response(exc)
    grace = settings.cancel_without_reader
    presence_ttl = settings.presence_ttl
    who, conn_id = identity_of(request), secrets.token_hex(8)
    try:
        await st.limits.take_connection(who, conn_id)
    except BaseException:
        await events.aclose()
        raise

    async def alive() -> None:
        # Presence is advisory (it only feeds the no-reader cancel); never fail the stream.
        with contextlib.suppress(LogError):
            await gens.queue.touch_reader(gen_id, presence_ttl)

    if grace > 0:
        await alive()
    recorder = DeliveryRecorder(st.telemetry, gens.log, stream_path(gen_id), start, "eventsource")
    await recorder.begin()
    return LiveStreamingResponse(
        iterator=event_frames(
            session,
            first,
            events,
            retry_ms=settings.sse_retry_ms,
            on_alive=alive if grace > 0 else None,
            alive_every=presence_ttl / 3,
            recorder=recorder,
            on_end=lambda: st.limits.end_connection(who, conn_id),
        ),
        # The heartbeat interval, so a client (``rivulet doctor``) can tell late heartbeats.
        headers=_SSE_HEADERS | {HEARTBEAT_HEADER: f"{settings.sse_heartbeat:g}"},
    )


@get(
    "/v1/generations/{gen_id:str}/events",
    name="generations:events",
    guards=[require_read(_generation_stream)],
)
async def generation_events(request: Request[Any, Any, Any], gen_id: FromPath[str]) -> ASGIResponse:
    """EventSource stream of the generation; resume with ``Last-Event-ID`` or ``?offset=``."""
    if not valid_id(gen_id):
        return error_response(404, "GENERATION_NOT_FOUND", "no such generation")
    return await _follow(request, gen_id)


@get(
    "/api/stream", name="generations:seed", guards=all_of(require_scope("generate"), rate_limited())
)
async def seed_stream(request: Request[Any, Any, Any]) -> ASGIResponse:
    """The seed article's endpoint: ``?prompt=…&messageId=…`` creates the generation for that
    message id (or attaches to it) and streams it; reconnecting with the same messageId and
    ``Last-Event-ID`` resumes."""
    st = _st(request)
    prompt = request.query_params.get("prompt")
    message_id = request.query_params.get("messageId")
    if not prompt or not message_id:
        return error_response(400, "INVALID_GENERATION", "prompt and messageId are required")
    if len(message_id) > 256:
        return error_response(400, "INVALID_GENERATION", "messageId is longer than 256")
    provider = st.settings.provider_for_default
    gen_request = GenerationRequest(
        provider=provider,
        model="fake-1" if provider == "fake" else request.query_params.get("model", ""),
        messages=(Message("user", prompt),),
    )
    if not gen_request.model:
        return error_response(400, "INVALID_GENERATION", "model is required for this provider")
    try:
        gen_id, _ = await _create_limited(request, st, gen_request, f"seed:{message_id}")
    except LogError as exc:
        return log_error_response(exc)
    return await _follow(request, gen_id)


def generation_handlers() -> list[Any]:
    """The generation routes."""
    return [create_generation, cancel_generation, generation_events, seed_stream]
