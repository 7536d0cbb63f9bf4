"""What one reader connection did, as an ``sse.deliver`` span and delivery metrics.

The span is a child of the request that opened the connection and *links* to the span of the
generation writing the stream (its ``traceparent`` is stored on the stream as an annotation),
so a trace view shows request → generation → provider call → every delivery, resumes on other
replicas included. Lag is measured per event from the entry's append time (stamped by the
log) to the moment its frame is handed to the socket.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from service.delivery.live import EndReason
from service.log import ZERO, LogError
from service.telemetry import TRACE_ANNOTATION, Telemetry, get_logger, link_from

if TYPE_CHECKING:
    from service.log import ChunkLog, Offset, ReadResult

__all__ = ["DeliveryRecorder"]

log = get_logger("service.delivery")


class DeliveryRecorder:
    """Counts events, bytes and lag for one connection; ends its span with the end reason."""

    def __init__(
        self,
        telemetry: Telemetry,
        chunk_log: ChunkLog,
        stream: str,
        start: Offset,
        dialect: str,
    ) -> None:
        self._telemetry = telemetry
        self._log = chunk_log
        self._stream = stream
        self._dialect = dialect
        self._attrs = {"rivulet.delivery.dialect": dialect}
        self._start = start
        self._started = time.perf_counter()
        self.events = 0
        self.bytes = 0
        self.max_lag_s = 0.0
        self._lag_pending = -1.0  # the largest lag not yet recorded in the histogram
        self._lag_due = 0.0  # when the histogram may take the next observation
        self._linked = False
        self.span: trace.Span = trace.INVALID_SPAN
        telemetry.metrics.sse_active.add(1, self._attrs)

    async def begin(self) -> None:
        """Start the span (tracing on only), linked to the generation if it is known yet."""
        if self._start != ZERO:
            log.info(
                "delivery.resumed",
                stream=self._stream,
                offset=str(self._start),
                dialect=self._attrs["rivulet.delivery.dialect"],
            )
        if not self._telemetry.tracing:
            return
        links = []
        link = await self._generation_link()
        if link is not None:
            links.append(link)
            self._linked = True
        self.span = self._telemetry.tracer.start_span(
            "sse.deliver",
            links=links,
            attributes={
                "rivulet.stream.id": self._stream,
                "rivulet.delivery.start_offset": str(self._start),
                "rivulet.delivery.resumed": self._start != ZERO,
                **self._attrs,
            },
        )

    async def _generation_link(self) -> trace.Link | None:
        try:
            return link_from(await self._log.annotation(self._stream, TRACE_ANNOTATION))
        except (LogError, ValueError):
            return None

    def sent(self, result: ReadResult, nbytes: int) -> None:
        """A batch's frames were written."""
        count = len(result.chunks)
        if not count:
            return
        metrics = self._telemetry.metrics
        # Lag is measured for the oldest entry of each written batch (the one a reader waited
        # longest for), and recorded at most once a second per connection: the largest lag
        # of that second. Recording every batch cost ~11% of the delivery path's CPU with
        # 500 readers (profiled); the histogram still shows every second's worst case.
        oldest = min((c.appended_ms for c in result.chunks if c.appended_ms), default=0)
        if oldest:
            now = time.time()
            lag = max(0.0, now - oldest / 1000)
            self.max_lag_s = max(self.max_lag_s, lag)
            self._lag_pending = max(self._lag_pending, lag)
            if now >= self._lag_due:
                metrics.delivery_lag.record(self._lag_pending, self._attrs)
                self._lag_pending = -1.0
                self._lag_due = now + 1.0
        self.events += count
        self.bytes += nbytes
        metrics.delivered_events.add(count, self._dialect)
        metrics.delivered_bytes.add(nbytes, self._dialect)

    async def relink(self) -> None:
        """Link the generation if it started after this connection did (call before end)."""
        if self._linked or not self.span.is_recording():
            return
        link = await self._generation_link()
        if link is not None:
            self.span.add_link(link.context)
            self._linked = True

    def end(self, reason: EndReason, position: Offset) -> None:
        """The connection is over; record why. Synchronous: it runs in ``finally`` blocks of
        cancelled responses, where nothing may be awaited."""
        metrics = self._telemetry.metrics
        if self._lag_pending >= 0:
            metrics.delivery_lag.record(self._lag_pending, self._attrs)
            self._lag_pending = -1.0
        metrics.sse_active.add(-1, self._attrs)
        ended = {**self._attrs, "rivulet.delivery.end_reason": reason.value}
        metrics.sse_duration.record(time.perf_counter() - self._started, ended)
        span = self.span
        if not span.is_recording():
            return
        span.set_attributes(
            {
                "rivulet.delivery.events": self.events,
                "rivulet.delivery.bytes": self.bytes,
                "rivulet.delivery.max_lag_ms": round(self.max_lag_s * 1000, 3),
                "rivulet.delivery.end_reason": reason.value,
                "rivulet.delivery.end_offset": str(position),
            }
        )
        if reason in (EndReason.BACKEND_ERROR, EndReason.GAP):
            span.set_status(Status(StatusCode.ERROR, reason.value))
        span.end()
