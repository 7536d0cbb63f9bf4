"""The job queue contract: leased jobs, idempotency keys and reader presence.

Backends: ``memory`` (in-process, for the embedded default) and ``redis`` (a Redis Stream with
a consumer group; see ``queue_redis``). Both meet the same contract suite.

Leases: :meth:`JobQueue.claim` hands a job to one worker with a lease of ``lease`` seconds; the
worker renews it with :meth:`JobQueue.heartbeat`. A job whose lease lapsed (its worker died or
stalled) is handed to the next claimer with ``attempt`` one higher. The attempt number is the
worker's producer epoch on the job's stream, so a stale worker that wakes up again is fenced
by the log (403 stale epoch) and can't write a single chunk after its successor started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Job", "JobQueue", "LeaseLost"]


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job. ``attempt`` counts deliveries: 1 the first time, +1 per reclaim."""

    id: str
    payload: bytes
    attempt: int
    receipt: str
    """Backend handle for heartbeat/ack/release (the Redis entry id)."""


class LeaseLost(Exception):
    """The job was reclaimed by another worker: stop working on it."""


class JobQueue(Protocol):
    """Durable, leased job delivery plus the small shared state generations need."""

    async def start(self) -> None:
        """Connect / create the consumer group; raise if the backend is unusable."""

    async def stop(self) -> None:
        """Release connections."""

    async def enqueue(self, job_id: str, payload: bytes) -> None:
        """Add a job; it is claimable at once."""

    async def claim(self, worker: str, timeout: float, prefetch: int = 1) -> Job | None:
        """The next job for ``worker``: a new one, or one whose lease lapsed. Waits up to
        ``timeout`` seconds (without polling storage in a tight loop); ``None`` if none.

        ``prefetch``: how many jobs the caller is about to claim (its free slots). A backend
        may take up to that many new jobs in one round trip and hand the rest out on the
        next claims; their leases run from then, so only ask for what will start at once."""
        ...

    async def heartbeat(self, job: Job, worker: str) -> None:
        """Renew ``worker``'s lease on ``job``; raise :class:`LeaseLost` if it was reclaimed."""

    async def ack(self, job: Job) -> None:
        """The job is finished (its stream has its terminal event): remove it for good."""

    async def release(self, job: Job) -> None:
        """Hand the job back at once (graceful shutdown); the next claim gets it."""

    async def depth(self) -> int:
        """Jobs waiting or in progress."""
        ...

    async def remember_key(self, key: str, job_id: str, ttl: float) -> str | None:
        """Bind an idempotency key to ``job_id`` for ``ttl`` seconds. Returns the job id the
        key is already bound to, or ``None`` if this call bound it (atomic across replicas)."""
        ...

    async def forget_key(self, key: str, job_id: str) -> None:
        """Unbind ``key`` if it is still bound to ``job_id`` (its creation failed)."""

    async def touch_reader(self, job_id: str, ttl: float) -> None:
        """A reader is attached to the job's stream (on any replica); valid ``ttl`` seconds."""

    async def has_reader(self, job_id: str) -> bool:
        """Whether some reader touched the job within its ttl."""
        ...
