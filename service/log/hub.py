"""The per-process live-tail hub: many live readers, one upstream subscription per stream.

Every live reader in a process (SSE, long-poll) registers a :class:`Watch` on the hub instead of
polling storage. The backend feeds the hub one :class:`Notice` per append: the memory backend
directly, the Redis backend from a single pub/sub connection. A notice carries the appended
chunks when they are small, so a reader at the tail gets new data with no storage read at all;
a reader that finds a gap (it was behind, or the notice had no payload, or the subscription was
re-established) re-reads from storage at its own offset. Nothing here is unbounded: each watch
keeps a few notices and, past that, only remembers that it must re-read.

Race-freedom: a reader registers its watch and waits until the upstream subscription is active
*before* its first storage read, so an append can't slip between "read found nothing" and
"started listening".
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from service.log.base import BackendUnavailable, Chunk, ReadResult
from service.log.offsets import Offset

if TYPE_CHECKING:
    from service.log.base import ChunkLog

__all__ = ["Follower", "LiveHub", "Notice", "Watch"]

_MAX_PENDING = 32


@dataclass(frozen=True, slots=True)
class Notice:
    """Something happened to a stream: an append (maybe with its chunks), a close, a delete."""

    start: Offset
    tail: Offset
    closed: bool
    chunks: tuple[Chunk, ...] | None = None
    deleted: bool = False
    resync: bool = False
    interrupt: bool = False


RESYNC = Notice(start=Offset(0, 0), tail=Offset(0, 0), closed=False, resync=True)
INTERRUPT = Notice(start=Offset(0, 0), tail=Offset(0, 0), closed=False, interrupt=True)


class Watch:
    """One reader's mailbox on the hub."""

    __slots__ = ("_hub", "_notices", "_overflow", "_waiter", "path")

    def __init__(self, path: str, hub: LiveHub) -> None:
        self.path = path
        self._hub = hub
        # A list, not a deque: a deque allocates a 64-slot block up front (~600 B per idle
        # reader, measured with tracemalloc); a watch rarely holds more than one notice.
        self._notices: list[Notice] = []
        self._overflow = False
        # The reader's pending wait, if any: a bare future, not an Event + wait_for (which
        # makes a Task per wait; profiled at ~7% of delivery CPU with many readers).
        self._waiter: asyncio.Future[bool] | None = None

    def push(self, notice: Notice) -> None:
        """Deliver a notice; past the bound, drop them all and remember to re-read."""
        if len(self._notices) >= _MAX_PENDING:
            self._notices.clear()
            self._overflow = True
        self._notices.append(notice)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def drain(self) -> tuple[list[Notice], bool]:
        """Pending notices, and whether some were dropped."""
        notices = list(self._notices)
        overflow = self._overflow
        self._notices.clear()
        self._overflow = False
        return notices, overflow

    async def wait(self, timeout: float | None) -> bool:
        """Wait for a notice; False on timeout."""
        if self._notices or self._overflow:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        deadlines, key = None, 0
        if timeout is not None:
            deadlines = self._hub.deadlines(loop)
            key = deadlines.add(timeout, waiter)
        try:
            return await waiter
        finally:
            self._waiter = None
            if deadlines is not None:
                deadlines.remove(key, waiter)


class _Deadlines:
    """Every watch timeout of one hub's event loop, on one timer, in 20 ms buckets.

    Each idle reader waits with a timeout (its next heartbeat), and each delivered event starts
    a new wait: a ``call_later`` per wait cost every waiting reader a timer handle and every
    event a timer created and cancelled. Here a wait joins the set of its (rounded-up) due
    bucket and leaves it when it ends; one timer, armed for the earliest bucket, expires the
    waiters still in due buckets. Timeouts fire up to one bucket late (and at most the loop's
    1 ms timer slack early).
    """

    __slots__ = ("_armed", "_buckets", "_handle", "_keys", "loop")

    _RESOLUTION: Final = 0.02

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._buckets: dict[int, set[asyncio.Future[bool]]] = {}
        self._keys: list[int] = []  # a heap of the buckets' keys
        self._handle: asyncio.TimerHandle | None = None
        self._armed: int | None = None

    def add(self, timeout: float, waiter: asyncio.Future[bool]) -> int:
        """Expire ``waiter`` (result False) after ``timeout`` seconds; returns its bucket."""
        key = math.ceil((self.loop.time() + timeout) / self._RESOLUTION)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._keys, key)
            if self._armed is None or key < self._armed:
                self._arm(key)
        bucket.add(waiter)
        return key

    def remove(self, key: int, waiter: asyncio.Future[bool]) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(waiter)

    def _arm(self, key: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = key
        self._handle = self.loop.call_at(key * self._RESOLUTION, self._fire)

    def _fire(self) -> None:
        self._handle = self._armed = None
        # A loop may run a timer up to its clock resolution early (uvloop: 1 ms).
        due = math.floor((self.loop.time() + 0.001) / self._RESOLUTION)
        while self._keys and self._keys[0] <= due:
            for waiter in self._buckets.pop(heapq.heappop(self._keys), ()):
                if not waiter.done():
                    waiter.set_result(False)
        if self._keys:
            self._arm(self._keys[0])


class LiveHub:
    """Fans notices out to local watches; subclasses connect it to an upstream."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._deadlines: _Deadlines | None = None

    def deadlines(self, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        """The watch timeouts' timer for ``loop`` (a hub outlives no loop in production;
        tests may run one hub on several)."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        return deadlines

    @property
    def watch_count(self) -> int:
        """Live readers registered in this process."""
        return sum(len(ws) for ws in self._watches.values())

    @property
    def stream_count(self) -> int:
        """Streams with at least one live reader in this process."""
        return len(self._watches)

    @asynccontextmanager
    async def watch(self, path: str) -> AsyncIterator[Watch]:
        """Register a watch on ``path``; it is live (subscribed upstream) once entered."""
        w = Watch(path, self)
        watches = self._watches.get(path)
        if watches is None:
            watches = self._watches[path] = set()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ready[path] = fut
            watches.add(w)
            try:
                await self._subscribe(path)
            except BaseException as exc:
                self._drop(w)
                if not fut.done():
                    # Waiters on the same path must not inherit *our* cancellation.
                    failure = (
                        BackendUnavailable("live subscription was interrupted")
                        if isinstance(exc, asyncio.CancelledError)
                        else exc
                    )
                    fut.set_exception(failure)
                    fut.exception()  # mark retrieved: later waiters re-raise their own
                raise
            if not fut.done():
                fut.set_result(None)
        else:
            watches.add(w)
            ready = self._ready.get(path)
            if ready is not None:
                try:
                    await asyncio.shield(ready)
                except BaseException:
                    self._drop(w)
                    raise
        try:
            yield w
        finally:
            if self._drop(w):
                await self._unsubscribe(path)

    def _drop(self, w: Watch) -> bool:
        """Remove a watch; True if it was the path's last one."""
        watches = self._watches.get(w.path)
        if watches is None:
            return False
        watches.discard(w)
        if watches:
            return False
        del self._watches[w.path]
        self._ready.pop(w.path, None)
        return True

    def publish(self, path: str, notice: Notice) -> None:
        """Deliver a notice to every local watch of ``path``."""
        for w in self._watches.get(path, ()):
            w.push(notice)

    def resync_all(self) -> None:
        """Tell every reader to re-read from storage (after the upstream was lost)."""
        for watches in self._watches.values():
            for w in watches:
                w.push(RESYNC)

    def interrupt_all(self) -> None:
        """Make every waiting reader return now (graceful shutdown: readers resume elsewhere)."""
        for watches in self._watches.values():
            for w in watches:
                w.push(INTERRUPT)

    async def _subscribe(self, path: str) -> None:
        """Start receiving notices for ``path`` (no-op for in-process backends)."""

    async def _unsubscribe(self, path: str) -> None:
        """Stop receiving notices for ``path``."""


class Follower:
    """Reads a stream from an offset onwards, waiting on the hub (never polling) at the tail."""

    def __init__(self, log: ChunkLog, watch: Watch, start: Offset, max_bytes: int) -> None:
        self._log = log
        self._watch = watch
        self._pos = start
        self._max_bytes = max_bytes
        self._fresh = True
        self._content_type = ""
        self._created_ms = 0

    @property
    def position(self) -> Offset:
        """The offset the next batch starts at."""
        return self._pos

    @property
    def content_type(self) -> str:
        """The stream's content type, once the first read has happened."""
        return self._content_type

    async def next(self, timeout: float | None) -> ReadResult | None:
        """The next batch, or the final state of a closed stream; ``None`` on timeout.

        Raises the backend's errors (e.g. ``StreamNotFound`` after a delete).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._fresh:
                result = await self._log.read(self._watch.path, self._pos, self._max_bytes)
                # A partial page means storage has more: read again next time, don't wait.
                self._fresh = not result.up_to_date
                self._pos = result.next_offset
                self._content_type = result.content_type
                self._created_ms = result.created_ms
                if result.chunks or result.at_end:
                    return result
            notices, must_read = self._watch.drain()
            chunks: list[Chunk] = []
            size = 0
            last: Notice | None = None
            interrupted = False
            for notice in notices:
                if notice.interrupt:
                    interrupted = True
                    continue
                if notice.resync or notice.deleted or notice.chunks is None:
                    must_read = (
                        must_read or notice.resync or notice.deleted or (notice.tail > self._pos)
                    )
                    last = notice
                    continue
                if notice.start > self._pos or must_read or size > self._max_bytes:
                    must_read = True
                    continue
                for chunk in notice.chunks:
                    if chunk.end > self._pos:
                        chunks.append(chunk)
                        size += len(chunk.data)
                        self._pos = chunk.end
                last = notice
            if must_read:
                # Storage has more than the notices carried; the next read resumes from here.
                self._fresh = True
            if chunks or (
                not must_read and last is not None and last.closed and last.tail == self._pos
            ):
                return self._result(chunks, last)
            if interrupted:
                return None
            if must_read:
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            if not await self._watch.wait(remaining):
                return None

    def _result(self, chunks: list[Chunk], last: Notice | None) -> ReadResult:
        tail = last.tail if last is not None and last.tail > self._pos else self._pos
        closed = bool(last is not None and last.closed)
        return ReadResult(
            chunks=tuple(chunks),
            next_offset=self._pos,
            tail=tail,
            closed=closed,
            content_type=self._content_type,
            created_ms=self._created_ms,
        )
