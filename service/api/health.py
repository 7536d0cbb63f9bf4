"""Kubernetes probes: ``/livez`` (the process serves HTTP) and ``/readyz`` (storage answers);
and ``/metrics`` (Prometheus text), which ``rivulet serve`` and ``rivulet worker`` both serve."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Response
from litestar.response.base import ASGIResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.log import LogError
from service.telemetry import Telemetry

__all__ = ["health_handlers", "livez", "metrics_handler"]


@get("/livez", name="health:live", cache_control=None, opt={"skip_access_log": True})
async def livez() -> dict[str, str]:
    """Alive: the event loop answers. No dependency checks: a Redis blip must not restart pods."""
    return {"status": "ok"}


@get("/readyz", name="health:ready", opt={"skip_access_log": True})
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Ready only when the chunk log backend answers, so traffic goes to pods that can serve it."""
    state = request.app.state.protocol
    try:
        await state.log.ping()
    except LogError as exc:
        return Response(
            {"status": "unavailable", "backend": state.settings.backend, "error": str(exc)},
            status_code=503,
        )
    return Response({"status": "ok", "backend": state.settings.backend})


def health_handlers() -> list[Any]:
    """The probe routes."""
    return [livez, readyz]


def metrics_handler(telemetry: Telemetry) -> Any:
    """``GET /metrics``: the Prometheus text exposition of ``telemetry``'s registry."""

    @get("/metrics", name="metrics", include_in_schema=False, opt={"skip_access_log": True})
    async def metrics() -> ASGIResponse:
        """Prometheus text exposition of every metric."""
        return ASGIResponse(
            body=generate_latest(telemetry.registry),
            headers={"content-type": CONTENT_TYPE_LATEST, "cache-control": "no-store"},
        )

    return metrics
