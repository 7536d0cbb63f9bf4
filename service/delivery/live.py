"""A live reader's session: follow a stream from an offset until something ends it.

Both SSE dialects (Durable Streams now, browser EventSource next) and long-poll share this
loop, so the policies live in one place:

- **no polling**: waiting happens on the process's live-tail hub (``service.log.hub``);
- **heartbeats**: after ``heartbeat`` seconds without data a :class:`Heartbeat` is yielded so
  the transport can write a comment that keeps proxies from closing an idle connection;
- **bounded duration**: after ``max_duration`` the session ends and the client resumes from its
  last offset (lets CDNs collapse readers and spreads load across replicas over time);
- **graceful drain**: when the process drains (SIGTERM) every session ends at once, so
  clients reconnect to another replica instead of being cut off mid-write later;
- **backpressure**: one batch (at most ``max_bytes``) is read per step and the next is read
  only after the transport has written it, so a slow reader reads the log slower and nothing
  queues in server memory.

The reason a session ended is kept in :attr:`LiveSession.end_reason` for logs and traces.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.log import (
    ChunkLog,
    Follower,
    LogError,
    Offset,
    OffsetGone,
    ReadResult,
    StreamGone,
    StreamNotFound,
)

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["EndReason", "Heartbeat", "LiveSession"]


class EndReason(enum.Enum):
    """Why a live session stopped."""

    FINISHED = "finished"  # the stream is closed and the reader has all of it
    MAX_DURATION = "max_duration"
    SHUTDOWN = "shutdown"
    DELETED = "deleted"
    GAP = "gap"  # the reader fell behind retention; it resumes and gets a 410
    BACKEND_ERROR = "backend_error"
    CLIENT_GONE = "client_gone"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing new for a while; the connection is still alive."""

    position: Offset


class LiveSession:
    """Yields the first read (possibly empty), then each new batch or a heartbeat.

    Errors of the first read propagate (the transport has not answered yet and can say 404
    or 410); after that, an error ends the session and sets :attr:`end_reason`.
    """

    def __init__(
        self,
        log: ChunkLog,
        stream: str,
        start: Offset,
        *,
        max_bytes: int,
        heartbeat: float,
        max_duration: float,
        draining: asyncio.Event,
    ) -> None:
        self._log = log
        self.stream = stream
        self._start = start
        self._max_bytes = max_bytes
        self._heartbeat = heartbeat
        self._max_duration = max_duration
        self._draining = draining
        self.end_reason = EndReason.CLIENT_GONE
        self.position = start
        self.earliest: Offset | None = None
        """Where the log now starts, when the session ended with a gap."""

    @classmethod
    def configured(
        cls,
        log: ChunkLog,
        stream: str,
        start: Offset,
        settings: Settings,
        draining: asyncio.Event,
    ) -> LiveSession:
        """A session with the page size, heartbeat and duration cap ``settings`` give."""
        return cls(
            log,
            stream,
            start,
            max_bytes=settings.read_max_bytes,
            heartbeat=settings.sse_heartbeat,
            max_duration=settings.sse_max_duration,
            draining=draining,
        )

    async def __aiter__(self) -> AsyncGenerator[ReadResult | Heartbeat, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_duration
        started = False
        try:
            async with self._log.hub.watch(self.stream) as watch:
                follower = Follower(self._log, watch, self._start, self._max_bytes)
                first = await follower.next(0)
                self.position = follower.position
                if first is None:
                    # At the tail with nothing yet: the transport still says where it is.
                    first = ReadResult(
                        chunks=(),
                        next_offset=follower.position,
                        tail=follower.position,
                        closed=False,
                        content_type=follower.content_type,
                    )
                started = True
                yield first
                if first.at_end:
                    self.end_reason = EndReason.FINISHED
                    return
                while True:
                    if self._draining.is_set():
                        self.end_reason = EndReason.SHUTDOWN
                        return
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        self.end_reason = EndReason.MAX_DURATION
                        return
                    result = await follower.next(min(self._heartbeat, remaining))
                    self.position = follower.position
                    if result is None:
                        if not self._draining.is_set() and loop.time() < deadline:
                            yield Heartbeat(follower.position)
                        continue
                    yield result
                    if result.at_end:
                        self.end_reason = EndReason.FINISHED
                        return
        except LogError as exc:
            if not started:
                raise
            if isinstance(exc, (StreamNotFound, StreamGone)):
                self.end_reason = EndReason.DELETED
            elif isinstance(exc, OffsetGone):
                self.end_reason = EndReason.GAP
                self.earliest = exc.earliest
            else:
                self.end_reason = EndReason.BACKEND_ERROR
