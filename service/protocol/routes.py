"""The Durable Streams HTTP surface at ``/v1/stream/{path}``: PUT, POST, GET, HEAD, DELETE.

Handlers parse and validate, then make one call to the chunk log; every rule that decides a
write's fate lives in the log (see ``service.log.base``). Responses are built as raw ASGI
responses because the protocol pins exact header values (``text/plain`` must not grow a
``; charset=utf-8``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from litestar import Request, delete, get, head, post, put
from litestar.connection import ASGIConnection
from litestar.params import FromPath
from litestar.response import Response
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from service import jsonwire
from service.api.auth import PUBLIC_ANNOTATION, all_of, rate_limited, require_read, require_scope
from service.api.limits import Limits, identity_of
from service.delivery import EndReason, Heartbeat, LiveSession
from service.delivery.recorder import DeliveryRecorder
from service.delivery.response import LiveStreamingResponse
from service.delivery.tasks import spawn
from service.log import (
    ZERO,
    ChunkLog,
    Follower,
    LogError,
    Offset,
    OffsetGone,
    ReadResult,
    StreamConfig,
)
from service.log.rules import media_type
from service.protocol import headers as h
from service.protocol import sse
from service.protocol.cursor import next_cursor
from service.protocol.errors import RawResponse as _Raw
from service.protocol.errors import error_response, log_error_response
from service.settings import Settings
from service.telemetry import Telemetry, get_logger

__all__ = ["STREAM_ROOT", "ProtocolState", "stream_handlers"]

STREAM_ROOT = "/v1/stream"
PUBLIC_READ = "Stream-Public-Read"
"""Extension header on PUT: ``true`` lets anyone read the stream without a key or token."""
READ_ONLY_PREFIX = "generations/"
"""Generation streams are written only by their worker (and cancel): read-only here."""
_MAX_NAME = 1024
_DEFAULT_CONTENT_TYPE = "application/octet-stream"

log = get_logger("service.protocol")

Kind = Literal["json", "text", "binary"]


@dataclass(slots=True)
class ProtocolState:
    """What the handlers need, stored on ``app.state.protocol`` by ``create_app``."""

    log: ChunkLog
    settings: Settings
    telemetry: Telemetry
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    limits: Limits | None = None
    presence: Callable[[str], Awaitable[None]] | None = None
    """Called with a stream name whenever someone reads it (feeds the no-reader cancel)."""

    async def touch(self, name: str) -> None:
        if self.presence is not None and name.startswith(READ_ONLY_PREFIX):
            with contextlib.suppress(LogError):
                await self.presence(name)


def _state(request: Request[Any, Any, Any]) -> ProtocolState:
    state: ProtocolState = request.app.state.protocol
    return state


def _kind(content_type: str) -> Kind:
    mt = media_type(content_type)
    if mt == "application/json":
        return "json"
    if mt.startswith("text/"):
        return "text"
    return "binary"


def _stream_name(path: str) -> str:
    """The stream id for a route's ``{path}``: no empty, control-character or dot segments."""
    name = path.lstrip("/")
    if not name:
        raise h.BadRequest("stream path is empty", "INVALID_PATH")
    if len(name) > _MAX_NAME:
        raise h.BadRequest(f"stream path is longer than {_MAX_NAME} characters", "INVALID_PATH")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise h.BadRequest("stream path contains control characters", "INVALID_PATH")
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        raise h.BadRequest("stream path has an empty, '.' or '..' segment", "INVALID_PATH")
    return name


def _writable(name: str) -> str:
    if name.startswith(READ_ONLY_PREFIX):
        raise _ReadOnly(name)
    return name


class _ReadOnly(Exception):
    """A write to a stream only Rivulet itself writes."""


def _read_only() -> ASGIResponse:
    return error_response(
        403,
        "READ_ONLY_STREAM",
        "generation streams are written by their worker; cancel with DELETE /v1/generations/{id}",
    )


def _source_name(raw: str | None) -> str | None:
    """``Stream-Forked-From`` names a stream by URL path (or full URL) under this server."""
    if raw is None:
        return None
    path = urlsplit(raw).path if "://" in raw else raw
    prefix = STREAM_ROOT + "/"
    if not path.startswith(prefix):
        raise h.BadRequest(f"{h.FORKED_FROM} must be a path under {prefix}", "INVALID_FORK")
    return _stream_name(path[len(prefix) :])


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses to inf, which would be written back as the non-JSON token Infinity.
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _json_items(body: bytes, *, allow_empty: bool) -> list[bytes]:
    """A JSON body as messages: a top-level array is flattened one level."""
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise h.BadRequest("body is not valid JSON", "INVALID_JSON") from None
    values = value if isinstance(value, list) else [value]
    if not values and not allow_empty:
        raise h.BadRequest("an empty JSON array appends nothing", "EMPTY_BODY")
    return [jsonwire.dumps(v).encode() for v in values]


def _items(body: bytes, content_type: str, *, allow_empty: bool) -> list[bytes]:
    if not body:
        return []
    if _kind(content_type) == "json":
        return _json_items(body, allow_empty=allow_empty)
    return [body]


def _bad(exc: h.BadRequest, *, head: bool = False) -> ASGIResponse:
    return error_response(400, exc.code, str(exc), head=head)


def _expiry_headers(ttl: int | None, expires_at_ms: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if ttl is not None:
        out[h.TTL] = str(ttl)
    elif expires_at_ms is not None:
        out[h.EXPIRES_AT] = h.format_expires_at(expires_at_ms)
    return out


def _body(result: ReadResult, kind: Kind) -> bytes:
    if kind == "json":
        return b"[" + b",".join(c.data for c in result.chunks) + b"]"
    return b"".join(c.data for c in result.chunks)


def _etag(start: Offset, result: ReadResult) -> str:
    closed = ":c" if result.at_end else ""
    return f'"{result.created_ms}:{start}:{result.next_offset}{closed}"'


def _read_headers(result: ReadResult, content_type: str) -> dict[str, str]:
    out = {"content-type": content_type, h.NEXT_OFFSET: str(result.next_offset)}
    if result.up_to_date:
        out[h.UP_TO_DATE] = "true"
        # The tail moves: let caches keep it only with revalidation (ETag/304).
        out["cache-control"] = "no-cache"
    else:
        # Bytes between two offsets never change: safe to cache, but the data is per-user.
        out["cache-control"] = "private, max-age=60, stale-while-revalidate=300"
    if result.at_end:
        out[h.CLOSED] = "true"
    return out


# -- handlers -----------------------------------------------------------------------------


def _path_stream(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return str(connection.path_params.get("path", "")).lstrip("/")


_WRITE = all_of(require_scope("streams:write"), rate_limited())
_READ = [require_read(_path_stream)]


@put(f"{STREAM_ROOT}/{{path:path}}", status_code=201, name="stream:create", guards=_WRITE)
async def create_stream(request: Request[Any, Any, Any], path: FromPath[str]) -> ASGIResponse:
    """Create a stream, or confirm an identical one (200); 409 on a different config."""
    st = _state(request)
    hdrs = request.headers
    try:
        name = _writable(_stream_name(path))
        ttl = h.parse_ttl(hdrs.get(h.TTL))
        expires = h.parse_expires_at(hdrs.get(h.EXPIRES_AT))
        if ttl is not None and expires is not None:
            raise h.BadRequest(f"send {h.TTL} or {h.EXPIRES_AT}, not both", "CONFLICTING_EXPIRY")
        closed = h.parse_closed(hdrs.get(h.CLOSED))
        fork = h.parse_fork(
            _source_name(hdrs.get(h.FORKED_FROM)),
            hdrs.get(h.FORK_OFFSET),
            hdrs.get(h.FORK_SUB_OFFSET),
        )
        content_type = hdrs.get("content-type")
        if content_type is None and fork is None:
            content_type = _DEFAULT_CONTENT_TYPE
        body = await request.body()
        parse_as = content_type
        if parse_as is None and body and fork is not None:
            parse_as = (await st.log.info(fork.source)).content_type
        items = _items(body, parse_as or _DEFAULT_CONTENT_TYPE, allow_empty=True)
        config = StreamConfig(
            content_type=content_type,
            ttl_seconds=ttl,
            expires_at_ms=expires,
            closed=closed,
            fork=fork,
        )
        public = h.parse_closed(hdrs.get(PUBLIC_READ), header=PUBLIC_READ)
        who = identity_of(request)
        # A new slot in the key's stream quota; renewing an existing one takes none, and a
        # slot taken for a stream that turns out to exist already is given back.
        taken = st.limits is not None and await st.limits.take_stream(
            who, name, float(ttl) if ttl else None
        )
        try:
            info, created = await st.log.create(name, config, items)
        except BaseException:
            if taken and st.limits is not None:
                await st.limits.end_stream(who, name)
            raise
        if taken and not created and st.limits is not None:
            await st.limits.end_stream(who, name)
        if created and public:
            await st.log.annotate(name, PUBLIC_ANNOTATION, "true")
    except _ReadOnly:
        return _read_only()
    except h.BadRequest as exc:
        return _bad(exc)
    except LogError as exc:
        return log_error_response(exc)
    out = {"content-type": info.content_type, h.NEXT_OFFSET: str(info.next_offset)}
    out.update(_expiry_headers(info.ttl_seconds, info.expires_at_ms))
    if info.closed:
        out[h.CLOSED] = "true"
    if created:
        out["location"] = str(request.url.with_replacements(query=""))
        log.info("stream.create", stream=name, content_type=info.content_type, fork=bool(fork))
    return ASGIResponse(body=b"", status_code=201 if created else 200, headers=out)


@post(f"{STREAM_ROOT}/{{path:path}}", status_code=200, name="stream:append", guards=_WRITE)
async def append_stream(request: Request[Any, Any, Any], path: FromPath[str]) -> ASGIResponse:
    """Append the body (and/or close the stream) as one atomic step."""
    st = _state(request)
    hdrs = request.headers
    try:
        name = _writable(_stream_name(path))
        close = h.parse_closed(hdrs.get(h.CLOSED))
        producer = h.parse_producer(
            hdrs.get(h.PRODUCER_ID), hdrs.get(h.PRODUCER_EPOCH), hdrs.get(h.PRODUCER_SEQ)
        )
        content_type = hdrs.get("content-type")
        body = await request.body()
        if not body and not close:
            raise h.BadRequest("empty body: nothing to append", "EMPTY_BODY")
        if body and content_type is None:
            raise h.BadRequest("Content-Type is required with a body", "MISSING_CONTENT_TYPE")
        items = _items(body, content_type or "", allow_empty=False)
        result = await st.log.append(
            name,
            items,
            content_type=content_type if items else None,
            stream_seq=hdrs.get(h.SEQ),
            producer=producer,
            close=close,
        )
    except _ReadOnly:
        return _read_only()
    except h.BadRequest as exc:
        return _bad(exc)
    except LogError as exc:
        return log_error_response(exc)
    out = {h.NEXT_OFFSET: str(result.next_offset)}
    if result.closed:
        out[h.CLOSED] = "true"
    status = 204
    if producer is not None:
        out[h.PRODUCER_EPOCH] = str(result.producer_epoch)
        out[h.PRODUCER_SEQ] = str(result.producer_seq)
        if items and not result.duplicate:
            status = 200
    return ASGIResponse(body=b"", status_code=status, headers=out)


@head(f"{STREAM_ROOT}/{{path:path}}", name="stream:head", guards=_READ)
async def head_stream(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[None]:
    """Metadata only; never cached, never extends a TTL."""
    st = _state(request)
    try:
        name = _stream_name(path)
        info = await st.log.info(name)
    except h.BadRequest as exc:
        return _Raw(_bad(exc, head=True))
    except LogError as exc:
        return _Raw(log_error_response(exc, head=True))
    out = {
        "content-type": info.content_type,
        h.NEXT_OFFSET: str(info.next_offset),
        "cache-control": "no-store",
    }
    out.update(_expiry_headers(info.ttl_seconds, info.expires_at_ms))
    if info.closed:
        out[h.CLOSED] = "true"
    return _Raw(ASGIResponse(body=b"", headers=out, is_head_response=True))


@delete(f"{STREAM_ROOT}/{{path:path}}", status_code=200, name="stream:delete", guards=_WRITE)
async def delete_stream(request: Request[Any, Any, Any], path: FromPath[str]) -> ASGIResponse:
    """Delete a stream; forks keep reading what they inherited."""
    st = _state(request)
    try:
        name = _writable(_stream_name(path))
        await st.log.delete(name)
        if st.limits is not None:
            await st.limits.end_stream(identity_of(request), name)
    except _ReadOnly:
        return _read_only()
    except h.BadRequest as exc:
        return _bad(exc)
    except LogError as exc:
        return log_error_response(exc)
    log.info("stream.delete", stream=name)
    return ASGIResponse(body=b"", status_code=204)


@get(f"{STREAM_ROOT}/{{path:path}}", name="stream:read", guards=_READ)
async def read_stream(request: Request[Any, Any, Any], path: FromPath[str]) -> ASGIResponse:
    """Catch-up read, ``live=long-poll`` or ``live=sse``."""
    st = _state(request)
    query = parse_qs(
        request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
    )
    live = query.get("live", [None])[-1]
    try:
        name = _stream_name(path)
        start = h.parse_read_offset(query.get("offset", []))
        if live not in (None, "long-poll", "sse"):
            raise h.BadRequest("live must be long-poll or sse", "INVALID_LIVE_MODE")
        if live is not None and not start.explicit:
            raise h.BadRequest(f"live={live} needs an offset", "OFFSET_REQUIRED")
        cursor = query.get("cursor", [None])[-1]
        if start.now:
            if live == "sse":
                tail = (await st.log.touch(name)).next_offset
                return await _sse(st, name, tail, cursor, identity_of(request))
            return await _read_now(st, name, live, cursor)
        try:
            return await _read_from(st, request, name, start.offset, live, cursor)
        except OffsetGone as exc:
            # "From the beginning" of a stream that retention trimmed means from the earliest
            # entry it still has; any other offset behind retention is a loud 410 (gap).
            if start.offset != ZERO:
                raise
            return await _read_from(st, request, name, exc.earliest, live, cursor)
    except h.BadRequest as exc:
        return _bad(exc)
    except LogError as exc:
        return log_error_response(exc)


async def _read_from(
    st: ProtocolState,
    request: Request[Any, Any, Any],
    name: str,
    start: Offset,
    live: str | None,
    cursor: str | None,
) -> ASGIResponse | ASGIStreamingResponse:
    await st.touch(name)
    if live == "sse":
        return await _sse(st, name, start, cursor, identity_of(request))
    if live == "long-poll":
        return await _long_poll(st, name, start, cursor)
    result = await st.log.read(name, start, st.settings.read_max_bytes)
    out = _read_headers(result, result.content_type)
    etag = _etag(start, result)
    out["etag"] = etag
    if request.headers.get("if-none-match") == etag:
        return ASGIResponse(body=b"", status_code=304, headers=out)
    return ASGIResponse(body=_body(result, _kind(result.content_type)), headers=out)


async def _read_now(
    st: ProtocolState, name: str, live: str | None, cursor: str | None
) -> ASGIResponse:
    info = await st.log.touch(name)
    if live == "long-poll":
        return await _long_poll(st, name, info.next_offset, cursor)
    out = {
        "content-type": info.content_type,
        h.NEXT_OFFSET: str(info.next_offset),
        h.UP_TO_DATE: "true",
        "cache-control": "no-store",
    }
    if info.closed:
        out[h.CLOSED] = "true"
    body = b"[]" if _kind(info.content_type) == "json" else b""
    return ASGIResponse(body=body, headers=out)


async def _long_poll(
    st: ProtocolState, name: str, start: Offset, cursor: str | None
) -> ASGIResponse:
    async with st.log.hub.watch(name) as watch:
        follower = Follower(st.log, watch, start, st.settings.read_max_bytes)
        result = await follower.next(st.settings.long_poll_timeout)
    out: dict[str, str] = {h.CURSOR: next_cursor(cursor)}
    if result is None or not result.chunks:
        tail = follower.position if result is None else result.next_offset
        out.update({h.NEXT_OFFSET: str(tail), h.UP_TO_DATE: "true", "cache-control": "no-store"})
        if result is not None and result.at_end:
            out[h.CLOSED] = "true"
        return ASGIResponse(body=b"", status_code=204, headers=out)
    out.update(_read_headers(result, result.content_type))
    out["etag"] = _etag(start, result)
    return ASGIResponse(body=_body(result, _kind(result.content_type)), headers=out)


async def _sse(
    st: ProtocolState, name: str, start: Offset, cursor: str | None, who: str
) -> ASGIStreamingResponse:
    session = LiveSession.configured(st.log, name, start, st.settings, st.draining)
    events = session.__aiter__()
    # The first batch is read before answering, so a missing stream or an offset behind
    # retention is a plain 404/410 rather than a 200 that ends at once.
    first = await anext(events)
    conn_id = secrets.token_hex(8)
    if st.limits is not None:
        try:
            await st.limits.take_connection(who, conn_id)
        except BaseException:
            await events.aclose()
            raise
    recorder = DeliveryRecorder(st.telemetry, st.log, name, start, "durable-streams")
    await recorder.begin()
    kind = _kind(first.content_type) if isinstance(first, ReadResult) else "binary"
    out = {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        # Tell nginx-style proxies not to buffer this response (one of several layers).
        "x-accel-buffering": "no",
    }
    if kind == "binary":
        out[h.SSE_ENCODING] = "base64"
    return LiveStreamingResponse(
        iterator=_sse_frames(session, first, events, kind, cursor, recorder, st, (who, conn_id)),
        headers=out,
    )


async def _sse_frames(
    session: LiveSession,
    first: ReadResult | Heartbeat,
    events: AsyncGenerator[ReadResult | Heartbeat, None],
    kind: Kind,
    cursor: str | None,
    recorder: DeliveryRecorder,
    st: ProtocolState,
    connection: tuple[str, str],
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    touch_every = st.settings.presence_ttl / 3
    next_touch = loop.time() + touch_every
    item: ReadResult | Heartbeat | None = first
    try:
        while item is not None:
            if isinstance(item, Heartbeat):
                yield sse.comment("keep-alive")
            else:
                # One write per batch: the data event and the control event that makes it
                # resumable travel together, so no reader sees one without the other.
                frame = sse.data_event(sse.encode_payload(item.chunks, kind)) if item.chunks else ""
                cursor = next_cursor(cursor)
                frame += sse.control_event(
                    str(item.next_offset),
                    cursor=cursor,
                    up_to_date=item.up_to_date,
                    closed=item.at_end,
                )
                yield frame
                recorder.sent(item, len(frame))
            if loop.time() >= next_touch:
                next_touch = loop.time() + touch_every
                await st.touch(session.stream)
            item = await anext(events, None)
        await recorder.relink()
    finally:
        recorder.end(session.end_reason, session.position)
        if st.limits is not None:
            spawn(st.limits.end_connection(*connection))  # never await in a cancelled finally
        await events.aclose()
        if session.end_reason in (EndReason.BACKEND_ERROR, EndReason.GAP):
            log.warning(
                "sse.ended",
                stream=session.stream,
                reason=session.end_reason.value,
                position=str(session.position),
            )


def stream_handlers() -> list[Any]:
    """The protocol's route handlers, for ``create_app``."""
    return [create_stream, append_stream, head_stream, delete_stream, read_stream]
