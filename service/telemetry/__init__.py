"""Cross-cutting telemetry: structured logging (tracing and metrics arrive with issue 4)."""

from __future__ import annotations

from service.telemetry.logging import configure_logging, get_logger

__all__ = ["configure_logging", "get_logger"]
