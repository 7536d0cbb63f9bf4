"""``create_worker_app``: the ``rivulet worker`` process — generations plus probes and metrics.

A worker Deployment takes no API traffic, but Kubernetes still needs to know it is alive and
connected, Prometheus still scrapes it, and its provider calls belong in the same traces as the
API's. So the worker is a small ASGI app too: ``/livez``, ``/readyz`` (log and queue answer),
``/metrics``, and a lifespan that runs the :class:`Worker` with the process's telemetry and
releases each finished generation's concurrency slot (the limits live in Redis, shared with
the API replicas that took them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.response import Response

from service.api.health import livez, metrics_handler
from service.api.limits import Limits
from service.generation.open import open_providers, open_queue, worker_settings
from service.generation.worker import Worker
from service.log import LogError, open_log
from service.log.instrumented import InstrumentedChunkLog
from service.settings import Settings
from service.telemetry import Telemetry, get_logger

__all__ = ["create_worker_app"]

log = get_logger("service.worker")


def create_worker_app(settings: Settings, *, telemetry: Telemetry | None = None) -> Litestar:
    """The worker process for ``settings`` (which must name a Redis: workers share its queue)."""
    if settings.redis_url is None:
        raise ValueError("a worker process needs REDIS_URL")
    telemetry = telemetry or Telemetry.from_settings(settings)
    chunk_log = InstrumentedChunkLog(open_log(settings), telemetry.metrics)
    queue = open_queue(settings)
    limits = Limits.from_settings(settings)
    providers = open_providers(settings)
    worker = Worker(
        chunk_log,
        queue,
        providers,
        worker_settings(settings),
        telemetry=telemetry,
        on_finished=limits.end_generation,
    )
    telemetry.instrument_redis(chunk_log, queue)

    @get("/readyz", name="health:ready", opt={"skip_access_log": True})
    async def readyz() -> Response[dict[str, Any]]:
        """Ready when the claim loop runs and the log and the queue answer (both in Redis)."""
        if not worker.alive:
            return Response(
                {"status": "unavailable", "error": "the worker loop has stopped"}, status_code=503
            )
        try:
            await chunk_log.ping()
            depth = await queue.depth()
        except LogError as exc:
            return Response({"status": "unavailable", "error": str(exc)}, status_code=503)
        return Response({"status": "ok", "active": worker.active, "queue_depth": depth})

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            await chunk_log.start()
            await queue.start()
            await limits.store.start()
        except LogError as exc:
            log.error("worker.start_failed", error=str(exc))
            raise
        worker.start()
        log.info("worker.process_started", worker=worker.name, providers=sorted(providers))
        try:
            yield
        finally:
            # SIGTERM: claim nothing new; running generations get the shutdown grace, then go
            # back to the queue for another worker (which resumes them after fencing this one).
            await worker.stop()
            for provider in providers.values():
                await provider.aclose()
            await queue.stop()
            await limits.store.stop()
            await chunk_log.stop()
            telemetry.shutdown()
            log.info("worker.process_stopped", worker=worker.name)

    app = Litestar(
        route_handlers=[livez, readyz, metrics_handler(telemetry)],
        lifespan=[lifespan],
        openapi_config=None,
        # configure_logging owns the root logger (JSON lines); Litestar's default would replace it.
        logging_config=None,
    )
    app.state.worker = worker
    return app
