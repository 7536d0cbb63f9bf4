"""Security tests reuse the in-memory span exporter fixture."""

from __future__ import annotations

from tests.observability.conftest import spans_and_telemetry

__all__ = ["spans_and_telemetry"]
