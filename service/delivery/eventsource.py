"""Browser EventSource delivery of a generation: ``id:`` = log offset, typed JSON ``data:``.

Frames are encoded by Litestar's ``ServerSentEventMessage`` (line splitting, ``id``/``retry``
fields, comments). Per connection:

- one ``retry:`` first, so a dropped browser reconnects after ``retry_ms``;
- each log entry becomes one event whose ``id`` is the offset just after it, so the browser's
  automatic ``Last-Event-ID`` on reconnect resumes exactly after the last event it got;
- a heartbeat comment after ``heartbeat`` idle seconds;
- the response ends after the terminal event (``finish``/``error``); the client should close
  its EventSource when it sees one (a closed response would otherwise make it reconnect);
- a reader behind retention gets an explicit ``error`` event of type ``gap``, never a silent
  skip; on shutdown a short ``retry:`` is sent so it reconnects to another replica quickly;
- when the connection reaches its duration cap, a ``: reconnect`` comment says the server
  (not a proxy) ended it, and the client resumes with ``Last-Event-ID`` as usual.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from litestar.response.sse import ServerSentEventMessage

from service.delivery.live import EndReason, Heartbeat, LiveSession
from service.delivery.recorder import DeliveryRecorder
from service.delivery.tasks import spawn
from service.log import Chunk, Offset, ReadResult

__all__ = ["event_frames", "gap_frame"]

_SHUTDOWN_RETRY_MS = 250


def gap_frame(earliest: Offset) -> bytes:
    """The event that tells a reader it fell behind retention (and where the log starts)."""
    body = {
        "type": "error",
        "error": {
            "type": "gap",
            "message": "events before this point are no longer retained",
            "earliest_offset": str(earliest),
        },
    }
    return ServerSentEventMessage(data=json.dumps(body, separators=(",", ":"))).encode()


# A live event's frame depends only on its bytes and offset, and every reader of a stream
# sends the same one: encode it once per process, not once per reader. Bounded by count, and
# only small frames (a token, a finish): a big chunk's encoding is cheap per byte already.
_FRAMES: dict[tuple[bytes, int, int], bytes] = {}
_FRAMES_MAX = 2048
_FRAME_CACHE_LIMIT = 2048  # bytes of data


def _frame(chunk: Chunk) -> bytes:
    data, end = chunk.data, chunk.end
    if len(data) > _FRAME_CACHE_LIMIT:
        return ServerSentEventMessage(data=data.decode(), id=str(end)).encode()
    key = (data, end.entries, end.bytes)
    frame = _FRAMES.get(key)
    if frame is None:
        if len(_FRAMES) >= _FRAMES_MAX:
            _FRAMES.clear()
        # The stored bytes are already compact JSON: passed through, never re-encoded.
        frame = _FRAMES[key] = ServerSentEventMessage(data=data.decode(), id=str(end)).encode()
    return frame


def _batch(result: ReadResult) -> bytes:
    return b"".join(_frame(chunk) for chunk in result.chunks)


async def event_frames(
    session: LiveSession,
    first: ReadResult | Heartbeat,
    events: AsyncGenerator[ReadResult | Heartbeat, None],
    *,
    retry_ms: int,
    on_alive: Callable[[], Awaitable[None]] | None = None,
    alive_every: float = 10.0,
    recorder: DeliveryRecorder | None = None,
    on_end: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> AsyncIterator[bytes]:
    """The bytes of one EventSource response, starting from an already-read first batch."""
    loop = asyncio.get_running_loop()
    last_alive = loop.time()
    item: ReadResult | Heartbeat | None = first
    try:
        yield ServerSentEventMessage(data=None, retry=retry_ms, comment="rivulet").encode()
        while item is not None:
            if isinstance(item, Heartbeat):
                yield ServerSentEventMessage(data=None, comment="keep-alive").encode()
            elif item.chunks:
                frame = _batch(item)
                yield frame
                if recorder is not None:
                    recorder.sent(item, len(frame))
            if on_alive is not None and loop.time() - last_alive >= alive_every:
                last_alive = loop.time()
                await on_alive()
            item = await anext(events, None)
        if session.end_reason is EndReason.GAP and session.earliest is not None:
            yield gap_frame(session.earliest)
        elif session.end_reason is EndReason.SHUTDOWN:
            yield ServerSentEventMessage(
                data=None, retry=_SHUTDOWN_RETRY_MS, comment="draining"
            ).encode()
        elif session.end_reason is EndReason.MAX_DURATION:
            yield ServerSentEventMessage(data=None, comment="reconnect").encode()
        if recorder is not None:
            await recorder.relink()
    finally:
        if recorder is not None:
            recorder.end(session.end_reason, session.position)
        if on_end is not None:
            spawn(on_end())  # may run in a cancelled context: never await here
        await events.aclose()
