"""W3C trace context across the job queue and the stream: inject, extract, link."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACE_ANNOTATION", "current_carrier", "extract", "link_from", "traceparent_of"]

TRACE_ANNOTATION = "traceparent"
"""Stream annotation holding the ``traceparent`` of the generation span writing the stream."""

_PROPAGATOR = TraceContextTextMapPropagator()


def current_carrier() -> dict[str, str]:
    """The active span's context as W3C headers (empty when no span is recording)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str]) -> otel_context.Context:
    """A context whose parent is the span described by ``carrier``."""
    return _PROPAGATOR.extract(dict(carrier))


def traceparent_of(span: trace.Span) -> str | None:
    """``traceparent`` of ``span`` (``None`` for a non-recording span)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def link_from(traceparent: str | None) -> trace.Link | None:
    """A span link to the span a ``traceparent`` names."""
    if not traceparent:
        return None
    ctx = trace.get_current_span(extract({"traceparent": traceparent})).get_span_context()
    return trace.Link(ctx) if ctx.is_valid else None
