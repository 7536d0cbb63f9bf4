"""One ASGI middleware for what every response needs: security headers, access log, span name.

Security headers go on *every* response, errors and streams included (protocol §10.7), so they
are added at the ``http.response.start`` message rather than per handler. The access log never
records query strings: they may carry read tokens.
"""

from __future__ import annotations

import re
import socket
import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

from service.telemetry import get_logger

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["EdgeMiddleware"]

_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"cross-origin"),
)

access = get_logger("service.access")

# Litestar templates carry converters ("{gen_id:str}"); span names and http.route use "{gen_id}".
_TYPED_PARAM = re.compile(r"\{(\w+):\w+\}")


REPLICA_HEADER = b"rivulet-replica"


class EdgeMiddleware:
    """Adds security headers (and, when asked, the replica's name) and logs one
    ``http.request`` line per finished request."""

    def __init__(self, app: ASGIApp, replica_header: bool = False) -> None:
        self.app = app
        self._extra: tuple[tuple[bytes, bytes], ...] = _SECURITY_HEADERS
        if replica_header:
            self._extra += ((REPLICA_HEADER, socket.gethostname().encode()),)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        span = trace.get_current_span()
        if span.is_recording():
            template = _TYPED_PARAM.sub(r"{\1}", str(scope.get("path_template", "")))
            if template:
                span.update_name(f"{scope.get('method', '')} {template}")
                span.set_attribute(HTTP_ROUTE, template)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(kv for kv in self._extra if kv[0] not in present)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            if path not in ("/livez", "/readyz", "/metrics"):
                access.info(
                    "http.request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
