"""The chunk log contract: values, errors and the :class:`ChunkLog` protocol both backends meet.

A stream is an append-only sequence of *entries* (one per binary append, one per JSON message)
identified by a path. Every rule of the Durable Streams write path that must hold atomically
(content type, closure, ``Stream-Seq``, idempotent producers, sliding TTL) is enforced *inside*
the backend, in one step per append, because only there can it be atomic across replicas.
The HTTP layer parses and validates syntax; it never decides a write's fate.

A stream may also carry *annotations*: small string attributes (names ``[a-z0-9_.-]{1,64}``,
values of at most 1024 characters) stored with the stream and gone with it (delete, expiry,
recreation). Setting or reading one renews no TTL, and a fork does not inherit them. Their use:
the generation writing a stream stores its trace context there, so every reader's delivery
span can link to the span that produced the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from service.log.offsets import Offset

if TYPE_CHECKING:
    from service.log.hub import LiveHub

__all__ = [
    "AppendResult",
    "BackendUnavailable",
    "Chunk",
    "ChunkLog",
    "ContentTypeMismatch",
    "ForkFrom",
    "InvalidFork",
    "InvalidOffset",
    "InvalidProducer",
    "LogError",
    "OffsetGone",
    "Producer",
    "ProducerSeqGap",
    "ReadResult",
    "SeqConflict",
    "StaleEpoch",
    "StreamClosed",
    "StreamConfig",
    "StreamConflict",
    "StreamGone",
    "StreamInfo",
    "StreamNotFound",
]


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's claim on one request: ``(id, epoch, seq)``."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ForkFrom:
    """Create a stream as a fork of ``source`` at ``offset`` (source tail when ``None``).

    ``sub_offset`` reaches into the entry after ``offset``: that many bytes of a binary entry,
    or that many messages of a JSON batch, are copied into the fork as its own first entry.
    """

    source: str
    offset: Offset | None = None
    sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What a PUT asks for. Two PUTs of one path must agree on all of it (else 409).

    ``content_type`` is ``None`` only for a fork that inherits its source's type.
    """

    content_type: str | None
    ttl_seconds: int | None = None
    expires_at_ms: int | None = None
    closed: bool = False
    fork: ForkFrom | None = None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's metadata as of one moment."""

    path: str
    content_type: str
    next_offset: Offset
    closed: bool
    ttl_seconds: int | None
    expires_at_ms: int | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """One entry's bytes and the offset just after it."""

    data: bytes
    end: Offset
    appended_ms: int = 0
    """Server time (ms since the epoch) the entry was appended; 0 when it predates the field.

    Every entry of one append shares it; a fork's inherited entries keep their source's, and
    the bytes a binary sub-offset fork copies into its first entry carry the fork's time.
    """


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Entries after a position, and the stream's state when they were read."""

    chunks: tuple[Chunk, ...]
    next_offset: Offset
    tail: Offset
    closed: bool
    content_type: str
    created_ms: int = 0
    """When this incarnation of the stream was created: tells a recreated stream apart."""

    @property
    def up_to_date(self) -> bool:
        """True when the read reached the stream's tail."""
        return self.next_offset == self.tail

    @property
    def at_end(self) -> bool:
        """True when nothing more will ever be readable after ``next_offset``."""
        return self.closed and self.up_to_date


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of an accepted (or deduplicated) append."""

    next_offset: Offset
    duplicate: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None
    closed: bool = False


class LogError(Exception):
    """Base of every error a backend raises on purpose."""


class StreamNotFound(LogError):
    """No stream at this path (never created, deleted, or expired)."""


class StreamGone(LogError):
    """The stream was deleted but its data lives on for forks; it can't be used or recreated."""


class OffsetGone(LogError):
    """The requested offset is before the earliest retained entry."""

    def __init__(self, earliest: Offset) -> None:
        super().__init__(f"offset is before the earliest retained offset {earliest}")
        self.earliest = earliest


class StreamConflict(LogError):
    """A create asked for a configuration other than the existing stream's."""


class ContentTypeMismatch(LogError):
    """An append's content type is not the stream's."""


class StreamClosed(LogError):
    """The stream is closed; nothing more can be appended."""

    def __init__(self, next_offset: Offset) -> None:
        super().__init__("stream is closed")
        self.next_offset = next_offset


class SeqConflict(LogError):
    """``Stream-Seq`` did not increase."""


class StaleEpoch(LogError):
    """A producer epoch older than the stream's: a fenced zombie writer."""

    def __init__(self, current_epoch: int) -> None:
        super().__init__(f"producer epoch is stale; current epoch is {current_epoch}")
        self.current_epoch = current_epoch


class ProducerSeqGap(LogError):
    """A producer skipped sequence numbers."""

    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"producer sequence gap: expected {expected}, received {received}")
        self.expected = expected
        self.received = received


class InvalidProducer(LogError):
    """A producer claim that is well-formed but not acceptable (new epoch not at seq 0)."""


class InvalidFork(LogError):
    """A fork point outside the source stream."""


class InvalidOffset(LogError):
    """A well-formed offset that is not a position in this stream."""


class BackendUnavailable(LogError):
    """The storage behind the log can't be reached right now."""


class ChunkLog(Protocol):
    """A durable, append-only log of chunk streams; the product's single source of truth."""

    @property
    def hub(self) -> LiveHub:
        """The process-wide live-tail hub fed by this backend."""
        ...

    async def start(self) -> None:
        """Connect and start background work; raise :class:`BackendUnavailable` if unusable."""

    async def stop(self) -> None:
        """Release connections and stop background work."""

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the backend answers now."""

    async def create(
        self, path: str, config: StreamConfig, initial: Sequence[bytes] = ()
    ) -> tuple[StreamInfo, bool]:
        """Create a stream (or confirm an identical one); return its info and whether it is new."""
        ...

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
        """Append ``items`` as one atomic step. With no items: ``close`` only closes, and a
        ``producer`` alone only claims its (epoch, seq), fencing older epochs."""
        ...

    async def read(self, path: str, after: Offset, max_bytes: int) -> ReadResult:
        """Entries after ``after``, at least one if any exist, about ``max_bytes`` at most."""
        ...

    async def info(self, path: str) -> StreamInfo:
        """The stream's metadata; does not extend its TTL."""
        ...

    async def touch(self, path: str) -> StreamInfo:
        """The stream's metadata, extending a sliding TTL as a read does."""
        ...

    async def delete(self, path: str) -> None:
        """Delete the stream (its data stays readable through existing forks)."""

    async def annotate(self, path: str, name: str, value: str) -> None:
        """Set a small string attribute on the stream (e.g. its writer's trace context)."""

    async def annotation(self, path: str, name: str) -> str | None:
        """A stream attribute set by :meth:`annotate`, ``None`` if unset; renews nothing."""
        ...
