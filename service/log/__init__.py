"""The chunk log: the durable, append-only source of truth every reader follows.

Two backends meet one contract (:class:`ChunkLog`): ``memory`` (embedded default) and ``redis``
(Redis Streams + Lua). :func:`open_log` picks one from settings.
"""

from __future__ import annotations

from service.log.base import (
    AppendResult,
    BackendUnavailable,
    Chunk,
    ChunkLog,
    ContentTypeMismatch,
    ForkFrom,
    InvalidFork,
    InvalidOffset,
    InvalidProducer,
    LogError,
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
from service.log.hub import Follower, LiveHub, Notice, Watch
from service.log.memory import MemoryChunkLog
from service.log.offsets import ZERO, Offset, OffsetError
from service.log.open import open_log

__all__ = [
    "ZERO",
    "AppendResult",
    "BackendUnavailable",
    "Chunk",
    "ChunkLog",
    "ContentTypeMismatch",
    "Follower",
    "ForkFrom",
    "InvalidFork",
    "InvalidOffset",
    "InvalidProducer",
    "LiveHub",
    "LogError",
    "MemoryChunkLog",
    "Notice",
    "Offset",
    "OffsetError",
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
    "Watch",
    "open_log",
]
