"""HTTP edge shared by every route: health probes and response middleware."""

from __future__ import annotations

from service.api.health import health_handlers
from service.api.middleware import EdgeMiddleware

__all__ = ["EdgeMiddleware", "health_handlers"]
