"""A ChunkLog that counts what passes through it: appends, and errors by operation and kind.

Wraps any backend; ``create_app`` puts it in front of the configured one so every caller
(protocol handlers, workers, readers) is counted the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.log.base import (
    AppendResult,
    BackendUnavailable,
    ChunkLog,
    LogError,
    Producer,
    ReadResult,
    StreamConfig,
    StreamInfo,
)
from service.log.hub import LiveHub
from service.log.offsets import Offset
from service.telemetry import Metrics

__all__ = ["InstrumentedChunkLog"]


class InstrumentedChunkLog:
    """Delegates to ``inner``; records ``rivulet.log.appends`` and ``rivulet.log.errors``."""

    def __init__(self, inner: ChunkLog, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        # Backend extras (e.g. ``redis_client`` for instrumentation) stay reachable.
        return getattr(self.inner, name)

    def _error(self, operation: str, exc: LogError) -> None:
        self._metrics.log_errors.add(
            1,
            {
                "rivulet.log.operation": operation,
                "error.type": type(exc).__name__,
                "rivulet.log.unavailable": isinstance(exc, BackendUnavailable),
            },
        )

    @property
    def hub(self) -> LiveHub:
        return self.inner.hub

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def ping(self) -> None:
        await self.inner.ping()

    async def create(
        self, path: str, config: StreamConfig, initial: Sequence[bytes] = ()
    ) -> tuple[StreamInfo, bool]:
        try:
            return await self.inner.create(path, config, initial)
        except LogError as exc:
            self._error("create", exc)
            raise

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
        try:
            result = await self.inner.append(
                path,
                items,
                content_type=content_type,
                stream_seq=stream_seq,
                producer=producer,
                close=close,
            )
        except LogError as exc:
            self._error("append", exc)
            raise
        outcome = "duplicate" if result.duplicate else "appended"
        self._metrics.appends.add(1, outcome)
        return result

    async def read(self, path: str, after: Offset, max_bytes: int) -> ReadResult:
        try:
            return await self.inner.read(path, after, max_bytes)
        except LogError as exc:
            self._error("read", exc)
            raise

    async def info(self, path: str) -> StreamInfo:
        try:
            return await self.inner.info(path)
        except LogError as exc:
            self._error("info", exc)
            raise

    async def touch(self, path: str) -> StreamInfo:
        try:
            return await self.inner.touch(path)
        except LogError as exc:
            self._error("touch", exc)
            raise

    async def delete(self, path: str) -> None:
        try:
            await self.inner.delete(path)
        except LogError as exc:
            self._error("delete", exc)
            raise

    async def annotate(self, path: str, name: str, value: str) -> None:
        await self.inner.annotate(path, name, value)

    async def annotation(self, path: str, name: str) -> str | None:
        return await self.inner.annotation(path, name)
