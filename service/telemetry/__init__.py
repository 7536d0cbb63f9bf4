"""Cross-cutting telemetry: OpenTelemetry tracing and metrics, structlog logging.

Imported by every layer; imports none of them.
"""

from __future__ import annotations

from service.telemetry.context import (
    TRACE_ANNOTATION,
    current_carrier,
    extract,
    link_from,
    traceparent_of,
)
from service.telemetry.genai import GenAICall
from service.telemetry.logging import add_trace_ids, configure_logging, get_logger
from service.telemetry.metrics import Metrics
from service.telemetry.setup import Telemetry

__all__ = [
    "TRACE_ANNOTATION",
    "GenAICall",
    "Metrics",
    "Telemetry",
    "add_trace_ids",
    "configure_logging",
    "current_carrier",
    "extract",
    "get_logger",
    "link_from",
    "traceparent_of",
]
