"""The in-memory chunk log: the embedded default. One process, nothing survives a restart.

It implements exactly the rules of the Redis backend's Lua scripts (the contract tests run
both), in plain Python: each operation runs without an ``await`` between its check and its
write, so on one event loop it is atomic without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.log.base import (
    AppendResult,
    Chunk,
    ContentTypeMismatch,
    InvalidFork,
    InvalidOffset,
    InvalidProducer,
    OffsetGone,
    Producer,
    ProducerSeqGap,
    ReadResult,
    SeqConflict,
    StaleEpoch,
    StreamClosed,
    StreamConfig,
    StreamConflict,
    StreamGone,
    StreamInfo,
    StreamNotFound,
)
from service.log.hub import LiveHub, Notice
from service.log.offsets import ZERO, Offset
from service.log.rules import (
    check_annotation,
    check_producer,
    content_types_match,
    media_type,
    same_config,
)

__all__ = ["MemoryChunkLog"]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Stream:
    path: str
    config: StreamConfig
    content_type: str
    created_ms: int
    expires_at_ms: int | None
    base: Offset = ZERO
    source: _Stream | None = None
    ttl_seconds: int | None = None
    # Own entries are numbered first+1, first+2, ...; first starts at base.entries and moves
    # up as retention trims the oldest ones, and start is the earliest offset still readable.
    first: int = 0
    start: Offset = ZERO
    entries: list[bytes] = field(default_factory=list)
    ends: list[Offset] = field(default_factory=list)
    # When each entry was appended (ms since the epoch); every entry of one append shares it.
    times: list[int] = field(default_factory=list)
    # Entries left in the append each entry came in, itself included: a JSON sub-offset may
    # reach into one batch, never past it.
    batch_left: list[int] = field(default_factory=list)
    tail: Offset = ZERO
    closed: bool = False
    last_seq: str | None = None
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)
    refs: int = 0
    deleted: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    def info(self) -> StreamInfo:
        return StreamInfo(
            path=self.path,
            content_type=self.content_type,
            next_offset=self.tail,
            closed=self.closed,
            ttl_seconds=self.ttl_seconds,
            expires_at_ms=self.expires_at_ms,
            created_ms=self.created_ms,
        )

    def chunks_after(self, after: Offset, limit: Offset, max_bytes: int) -> list[Chunk]:
        """Chunks after ``after`` up to ``limit``, following the fork chain for old ones."""
        out: list[Chunk] = []
        size = 0
        if after < self.base and self.source is not None:
            out = self.source.chunks_after(after, min(limit, self.base), max_bytes)
            size = sum(len(c.data) for c in out)
            if out:
                after = out[-1].end
            if after < self.base or size >= max_bytes:
                return out
        for i in range(max(after.entries - self.first, 0), len(self.entries)):
            end = self.ends[i]
            if end > limit:
                break
            if out and size + len(self.entries[i]) > max_bytes:
                break
            out.append(Chunk(self.entries[i], end, self.times[i]))
            size += len(self.entries[i])
        return out

    def add(self, items: Sequence[bytes], now: int) -> Offset:
        start = self.tail
        for i, item in enumerate(items):
            self.tail = self.tail.advance(len(item))
            self.entries.append(item)
            self.ends.append(self.tail)
            self.times.append(now)
            self.batch_left.append(len(items) - i)
        return start

    def batch_at(self, index: int) -> int:
        """How many entries from ``index`` on (1-based) belong to the same append."""
        if index > self.first:
            i = index - self.first - 1
            return self.batch_left[i] if i < len(self.batch_left) else 0
        if index > self.base.entries:
            return 0  # trimmed
        if self.source is None:
            return 0
        return min(self.source.batch_at(index), self.base.entries - index + 1)

    def entry_at(self, index: int) -> bytes | None:
        """The data of entry ``index`` (1-based position), following the fork chain."""
        if index > self.first:
            i = index - self.first - 1
            return self.entries[i] if i < len(self.entries) else None
        if index > self.base.entries:
            return None  # trimmed
        return None if self.source is None else self.source.entry_at(index)

    def trim(self, max_entries: int) -> None:
        """Drop own entries beyond the newest ``max_entries``; never while forks read us."""
        if max_entries <= 0 or self.refs > 0:
            return
        floor = self.tail.entries - max_entries
        if floor <= self.first:
            return
        k = floor - self.first
        self.start = self.ends[k - 1]
        del self.entries[:k]
        del self.ends[:k]
        del self.times[:k]
        del self.batch_left[:k]
        self.first = floor


class MemoryChunkLog:
    """All streams in a dict; live readers are woken directly through the hub."""

    def __init__(self, sweep_interval: float = 1.0, *, retention_max_entries: int = 0) -> None:
        self._streams: dict[str, _Stream] = {}
        self._retention = retention_max_entries
        self._hub = LiveHub()
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def hub(self) -> LiveHub:
        return self._hub

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="memory-log-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def ping(self) -> None:
        return None

    # -- lookup and lifecycle -------------------------------------------------------------

    def _live(self, path: str, *, allow_deleted: bool = False) -> _Stream:
        s = self._streams.get(path)
        if s is None:
            raise StreamNotFound(path)
        if s.expires_at_ms is not None and s.expires_at_ms <= _now_ms() and not s.deleted:
            self._remove(s)
            if s.path not in self._streams:
                raise StreamNotFound(path)
        if s.deleted and not allow_deleted:
            raise StreamGone(path)
        return s

    def _remove(self, s: _Stream) -> None:
        """Delete a stream; keep it as a soft-deleted husk while forks still read it."""
        if not s.deleted:
            s.deleted = True
            self._hub.publish(s.path, Notice(s.tail, s.tail, s.closed, deleted=True))
        if s.refs > 0:
            return
        if self._streams.get(s.path) is s:
            del self._streams[s.path]
        src = s.source
        if src is not None:
            src.refs -= 1
            if src.refs == 0 and src.deleted:
                self._remove(src)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            now = _now_ms()
            for s in list(self._streams.values()):
                if s.expires_at_ms is not None and s.expires_at_ms <= now and not s.deleted:
                    self._remove(s)

    def _extend(self, s: _Stream) -> None:
        if s.ttl_seconds is not None:
            s.expires_at_ms = _now_ms() + s.ttl_seconds * 1000

    # -- operations -----------------------------------------------------------------------

    async def create(
        self, path: str, config: StreamConfig, initial: Sequence[bytes] = ()
    ) -> tuple[StreamInfo, bool]:
        existing = self._streams.get(path)
        if existing is not None:
            try:
                s = self._live(path)
            except StreamGone:
                raise StreamConflict("a deleted stream's path can't be reused yet") from None
            except StreamNotFound:
                pass
            else:
                if not same_config(s.config, config):
                    raise StreamConflict("stream exists with a different configuration")
                return s.info(), False
        now = _now_ms()
        source: _Stream | None = None
        base = ZERO
        prefix: list[bytes] = []
        content_type = config.content_type
        ttl = config.ttl_seconds
        expires = config.expires_at_ms
        fork = config.fork
        if fork is not None:
            try:
                source = self._live(fork.source)
            except StreamGone:
                raise StreamConflict("fork source has been deleted") from None
            if content_type is None:
                content_type = source.content_type
            elif not content_types_match(source.content_type, content_type):
                raise StreamConflict("fork content type differs from the source's")
            base = source.tail if fork.offset is None else fork.offset
            if base < source.start:
                raise OffsetGone(source.start)
            if base > source.tail or not _is_boundary(source, base):
                raise InvalidFork("fork offset is beyond the source stream")
            if fork.sub_offset:
                nxt = source.entry_at(base.entries + 1)
                if nxt is None:
                    raise InvalidFork("sub-offset reaches past the end of the source stream")
                if media_type(content_type) == "application/json":
                    if fork.sub_offset > source.batch_at(base.entries + 1):
                        raise InvalidFork("sub-offset is beyond the messages of that append")
                    base = _inherited_end(source, base.entries + fork.sub_offset)
                else:
                    if fork.sub_offset > len(nxt):
                        raise InvalidFork("sub-offset is longer than the entry it points into")
                    prefix = [nxt[: fork.sub_offset]]
            if config.ttl_seconds is None and config.expires_at_ms is None:
                ttl = source.ttl_seconds
                expires = source.expires_at_ms if ttl is None else None
        if content_type is None:
            raise StreamConflict("a stream needs a content type")
        s = _Stream(
            path=path,
            config=config,
            content_type=content_type,
            created_ms=now,
            expires_at_ms=expires,
            base=base,
            source=source,
            tail=base,
            ttl_seconds=ttl,
            first=base.entries,
            # What retention already took from the source, the fork never had.
            start=ZERO if source is None else min(source.start, base),
        )
        self._extend(s)
        if source is not None:
            source.refs += 1
        # The copied sub-offset prefix is a new entry: it carries the copy's time.
        s.add(prefix, now)
        s.add(initial, now)
        s.closed = config.closed
        self._streams[path] = s
        return s.info(), True

    async def append(
        self,
        path: str,
        items: Sequence[bytes],
        *,
        content_type: str | None,
        stream_seq: str | None = None,
        producer: Producer | None = None,
        close: bool = False,
    ) -> AppendResult:
        s = self._live(path)
        close_only = close and not items
        # A producer append of nothing only claims (epoch, seq): a successor fences its
        # predecessor before reading what it left.
        fence = not items and not close and producer is not None
        if not (close_only or fence) and (
            content_type is None or not content_types_match(s.content_type, content_type)
        ):
            raise ContentTypeMismatch(path)
        new_state: tuple[int, int] | None = None
        if producer is not None:
            verdict = check_producer(s.producers.get(producer.id), producer)
            if verdict.stale_epoch is not None:
                raise StaleEpoch(verdict.stale_epoch)
            if verdict.gap is not None:
                raise ProducerSeqGap(*verdict.gap)
            if verdict.bad_epoch_start:
                raise InvalidProducer("a new producer epoch must start at Producer-Seq 0")
            if verdict.duplicate:
                state = s.producers[producer.id]
                return AppendResult(
                    next_offset=s.tail,
                    duplicate=True,
                    producer_epoch=state[0],
                    producer_seq=state[1],
                    closed=s.closed,
                )
            new_state = (producer.epoch, producer.seq)
        if s.closed:
            if close_only and producer is None:
                return AppendResult(next_offset=s.tail, duplicate=True, closed=True)
            raise StreamClosed(s.tail)
        if stream_seq is not None:
            if s.last_seq is not None and stream_seq <= s.last_seq:
                raise SeqConflict(f"Stream-Seq {stream_seq!r} is not above {s.last_seq!r}")
            s.last_seq = stream_seq
        if new_state is not None and producer is not None:
            s.producers[producer.id] = new_state
        if fence:
            return AppendResult(
                next_offset=s.tail,
                producer_epoch=None if producer is None else producer.epoch,
                producer_seq=None if producer is None else producer.seq,
                closed=s.closed,
            )
        now = _now_ms()
        start = s.add(items, now)
        if close:
            s.closed = True
        self._extend(s)
        ends = s.ends[len(s.ends) - len(items) :]
        chunks = tuple(Chunk(d, e, now) for d, e in zip(items, ends, strict=True))
        self._hub.publish(path, Notice(start, s.tail, s.closed, chunks))
        # After the notice: readers at the tail still get everything that was appended.
        s.trim(self._retention)
        return AppendResult(
            next_offset=s.tail,
            producer_epoch=None if producer is None else producer.epoch,
            producer_seq=None if producer is None else producer.seq,
            closed=s.closed,
        )

    async def read(self, path: str, after: Offset, max_bytes: int) -> ReadResult:
        s = self._live(path)
        if after < s.start:
            raise OffsetGone(s.start)
        if after > s.tail or not _is_boundary(s, after):
            raise InvalidOffset("offset is not a position in this stream")
        self._extend(s)
        chunks = s.chunks_after(after, s.tail, max_bytes)
        return ReadResult(
            chunks=tuple(chunks),
            next_offset=chunks[-1].end if chunks else after,
            tail=s.tail,
            closed=s.closed,
            content_type=s.content_type,
            created_ms=s.created_ms,
        )

    async def info(self, path: str) -> StreamInfo:
        return self._live(path).info()

    async def touch(self, path: str) -> StreamInfo:
        s = self._live(path)
        self._extend(s)
        return s.info()

    async def delete(self, path: str) -> None:
        self._remove(self._live(path))

    async def annotate(self, path: str, name: str, value: str) -> None:
        check_annotation(name, value)
        self._live(path).annotations[name] = value

    async def annotation(self, path: str, name: str) -> str | None:
        check_annotation(name)
        return self._live(path).annotations.get(name)


def _inherited_end(s: _Stream, index: int) -> Offset:
    """The end offset of entry ``index`` (1-based), following the fork chain."""
    if index > s.first:
        return s.ends[index - s.first - 1]
    if index == s.first:
        return s.start if s.first > s.base.entries else s.base
    assert s.source is not None
    return _inherited_end(s.source, index)


def _is_boundary(s: _Stream, off: Offset) -> bool:
    """True when ``off`` is the start or the end of some entry of ``s`` (or its ancestors)."""
    if off == ZERO:
        return True
    if off == s.start:
        return True
    if off.entries > s.first:
        i = off.entries - s.first - 1
        return i < len(s.ends) and s.ends[i] == off
    if off.entries > s.base.entries:
        return False  # trimmed
    if off == s.base:
        return True
    return s.source is not None and _is_boundary(s.source, off)
