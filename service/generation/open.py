"""Build the generation layer's parts from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.generation.providers.registry import build_providers
from service.generation.queue_memory import MemoryJobQueue
from service.generation.worker import WorkerSettings

if TYPE_CHECKING:
    from service.generation.providers.base import Provider
    from service.generation.queue import JobQueue
    from service.settings import Settings

__all__ = ["open_providers", "open_queue", "worker_settings"]


def open_providers(settings: Settings) -> dict[str, Provider]:
    """The providers ``settings`` enable (the fake always; OpenAI/Anthropic with a key)."""
    return build_providers(
        openai_api_key=settings.openai_api_key,
        openai_base_url=settings.openai_base_url,
        anthropic_api_key=settings.anthropic_api_key,
        anthropic_base_url=settings.anthropic_base_url,
    )


def open_queue(settings: Settings) -> JobQueue:
    """The job queue ``settings`` ask for (Redis consumer group, or in-process)."""
    if settings.redis_url is None:
        return MemoryJobQueue(lease=settings.lease_seconds)
    from service.generation.queue_redis import RedisJobQueue

    return RedisJobQueue(
        settings.redis_url, prefix=settings.redis_key_prefix, lease=settings.lease_seconds
    )


def worker_settings(settings: Settings) -> WorkerSettings:
    """The worker's knobs."""
    return WorkerSettings(
        concurrency=max(settings.workers, 1),
        lease=settings.lease_seconds,
        retries=settings.provider_retries,
        backoff=settings.provider_backoff,
        cancel_without_reader=settings.cancel_without_reader,
        shutdown_grace=settings.shutdown_grace,
    )
