"""Creating and cancelling generations: the operations the HTTP edge calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from service.generation.events import Finish, encode_event
from service.generation.jobs import GenerationJob, new_generation_id, stream_path
from service.generation.providers.base import GenerationRequest, Provider
from service.generation.queue import JobQueue
from service.log import ChunkLog, Offset, StreamConfig
from service.telemetry import get_logger

__all__ = ["Generations"]

log = get_logger("service.generation")

JSON = "application/json"


@dataclass(slots=True)
class Generations:
    """Generation lifecycle over the chunk log and the job queue."""

    log: ChunkLog
    queue: JobQueue
    providers: Mapping[str, Provider]
    ttl_seconds: int
    idempotency_ttl: float = 86400.0

    async def create(
        self,
        request: GenerationRequest,
        idempotency_key: str | None = None,
        trace: Mapping[str, str] | None = None,
        *,
        gen_id: str | None = None,
        owner: str = "",
    ) -> tuple[str, bool]:
        """Create the stream, then enqueue the job; returns ``(id, created)``.

        With an idempotency key already bound, returns the bound generation instead.
        """
        gen_id = gen_id or new_generation_id()
        if idempotency_key is not None:
            existing = await self.queue.remember_key(idempotency_key, gen_id, self.idempotency_ttl)
            if existing is not None:
                return existing, False
        try:
            # The stream first: readers can attach before the worker writes anything.
            await self.log.create(
                stream_path(gen_id),
                StreamConfig(content_type=JSON, ttl_seconds=self.ttl_seconds),
            )
            job = GenerationJob(gen_id, request, int(time.time() * 1000), dict(trace or {}), owner)
            await self.queue.enqueue(gen_id, job.encode())
        except BaseException:
            # A client retrying with the same key after this failure must get a fresh
            # generation, not URLs of one that never started.
            if idempotency_key is not None:
                with contextlib.suppress(Exception):
                    await self.queue.forget_key(idempotency_key, gen_id)
            raise
        log.info(
            "generation.created",
            generation=gen_id,
            provider=request.provider,
            model=request.model,
        )
        return gen_id, True

    async def cancel(self, gen_id: str) -> Offset:
        """End the generation with ``finish`` (``cancelled``): one atomic append-and-close.

        The worker (on whatever replica) sees the close on its live-tail hub and aborts the
        provider call. Raises ``StreamNotFound`` or ``StreamClosed`` (already finished).
        """
        result = await self.log.append(
            stream_path(gen_id),
            [encode_event(Finish("cancelled"))],
            content_type=JSON,
            close=True,
        )
        log.info("generation.cancelled", generation=gen_id)
        return result.next_offset
