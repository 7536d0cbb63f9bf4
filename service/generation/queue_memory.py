"""The in-memory job queue: the embedded default. One process, nothing survives a restart.

It follows the Redis backend's rules (the contract suite runs both), in plain Python: every
operation checks and writes without an ``await`` in between, so on one event loop it is atomic
without locks. Claimers wait on an in-process signal, never poll; a waiting claimer also wakes
when the earliest lease runs out, since a lapsed job is claimable again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from service.generation.queue import Job, LeaseLost
from service.telemetry import get_logger

__all__ = ["MemoryJobQueue"]

_V = TypeVar("_V")
_RELEASED: Final = "\x00released"
"""The owner of a released job: no worker's name, so the releasing worker's lease is gone."""

_log = get_logger("service.generation.queue_memory")


@dataclass(slots=True)
class _Entry:
    id: str
    payload: bytes
    receipt: str
    seq: int
    attempt: int = 0
    owner: str | None = None
    deadline: float = math.inf
    """When the current lease lapses (monotonic seconds); ``-inf`` once released."""


class _TtlMap(Generic[_V]):
    """A dict whose entries vanish ``ttl`` seconds after they were set.

    Expired entries are dropped on every access (a heap orders them by expiry), so keys that
    are never asked for again don't pile up.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[_V, float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def get(self, key: str) -> _V | None:
        self._purge()
        item = self._items.get(key)
        return None if item is None else item[0]

    def set(self, key: str, value: _V, ttl: float) -> None:
        self._purge()
        expires = time.monotonic() + max(ttl, 0.0)
        self._items[key] = (value, expires)
        heapq.heappush(self._expiries, (expires, key))

    def pop_if(self, key: str, value: _V) -> None:
        """Remove ``key`` if it holds ``value``."""
        item = self._items.get(key)
        if item is not None and item[0] == value:
            del self._items[key]

    def _purge(self) -> None:
        now = time.monotonic()
        while self._expiries and self._expiries[0][0] <= now:
            expires, key = heapq.heappop(self._expiries)
            item = self._items.get(key)
            # A key set again later has a later expiry and its own heap entry: keep it.
            if item is not None and item[1] == expires:
                del self._items[key]


class MemoryJobQueue:
    """Leased jobs in one process's memory (see :class:`~service.generation.queue.JobQueue`)."""

    def __init__(self, lease: float = 30.0) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self._lease = lease
        self._seq = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        """Every job not yet acked (waiting or in progress), by receipt."""
        self._new: deque[_Entry] = deque()
        """Jobs never delivered, oldest first."""
        self._pending: dict[str, _Entry] = {}
        """Delivered jobs (leased, lapsed or released), by receipt."""
        self._changed = asyncio.Event()
        self._keys: _TtlMap[str] = _TtlMap()
        self._readers: _TtlMap[bool] = _TtlMap()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Nothing to release; waiting claimers time out as usual."""

    async def enqueue(self, job_id: str, payload: bytes) -> None:
        seq = next(self._seq)
        entry = _Entry(job_id, payload, receipt=str(seq), seq=seq)
        self._entries[entry.receipt] = entry
        self._new.append(entry)
        self._notify()

    async def claim(self, worker: str, timeout: float, prefetch: int = 1) -> Job | None:
        del prefetch  # in process, every claim is already cheap
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            # Taken before looking, so a change made while this claimer sleeps can't be missed.
            changed = self._changed
            job, next_lapse = self._take(worker)
            if job is not None:
                return job
            now = time.monotonic()
            if now >= deadline:
                return None
            wait = min(deadline, next_lapse) - now
            try:
                async with asyncio.timeout(wait):
                    await changed.wait()
            except TimeoutError:
                pass

    def _take(self, worker: str) -> tuple[Job | None, float]:
        """Deliver a lapsed job (oldest first), else a new one; else when the next lease lapses.

        Lapsed jobs come first, as in the Redis backend, whose XAUTOCLAIM runs before its
        XREADGROUP.
        """
        now = time.monotonic()
        lapsed: _Entry | None = None
        next_lapse = math.inf
        for entry in self._pending.values():
            if entry.deadline <= now:
                if lapsed is None or entry.seq < lapsed.seq:
                    lapsed = entry
            else:
                next_lapse = min(next_lapse, entry.deadline)
        if lapsed is not None:
            entry = lapsed
        elif self._new:
            entry = self._new.popleft()
            self._pending[entry.receipt] = entry
        else:
            return None, next_lapse
        entry.attempt += 1
        entry.owner = worker
        entry.deadline = now + self._lease
        if entry.attempt > 1:
            _log.info("queue.reclaimed", job=entry.id, attempt=entry.attempt, worker=worker)
        return Job(entry.id, entry.payload, entry.attempt, entry.receipt), next_lapse

    async def heartbeat(self, job: Job, worker: str) -> None:
        entry = self._held(job)
        if entry is None or entry.owner != worker:
            raise LeaseLost(job.id)
        # A lapsed lease nobody reclaimed yet is still this worker's: renewing it is fine.
        entry.deadline = time.monotonic() + self._lease

    async def ack(self, job: Job) -> None:
        entry = self._entries.pop(job.receipt, None)
        if entry is None:
            return
        self._pending.pop(job.receipt, None)
        if entry.attempt == 0:  # acked before any delivery: drop it from the new jobs too
            self._new.remove(entry)

    async def release(self, job: Job) -> None:
        entry = self._held(job)
        if entry is None:
            # Reclaimed (or acked) since this job was handed out: not ours to give back.
            return
        entry.owner = _RELEASED
        entry.deadline = -math.inf
        self._notify()

    async def depth(self) -> int:
        return len(self._entries)

    async def remember_key(self, key: str, job_id: str, ttl: float) -> str | None:
        bound = self._keys.get(key)
        if bound is not None:
            return bound
        self._keys.set(key, job_id, ttl)
        return None

    async def forget_key(self, key: str, job_id: str) -> None:
        self._keys.pop_if(key, job_id)

    async def touch_reader(self, job_id: str, ttl: float) -> None:
        self._readers.set(job_id, True, ttl)

    async def has_reader(self, job_id: str) -> bool:
        return self._readers.get(job_id) is not None

    def _held(self, job: Job) -> _Entry | None:
        """The job's entry if this delivery of it (its ``attempt``) is still the latest."""
        entry = self._pending.get(job.receipt)
        if entry is None or entry.attempt != job.attempt:
            return None
        return entry

    def _notify(self) -> None:
        # Wake every waiting claimer; each looks again, and those that find nothing sleep on
        # the fresh event.
        self._changed.set()
        self._changed = asyncio.Event()
