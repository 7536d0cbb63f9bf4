"""The Durable Streams protocol (v1.0) over the chunk log."""

from __future__ import annotations

from service.protocol.routes import STREAM_ROOT, ProtocolState, stream_handlers

__all__ = ["STREAM_ROOT", "ProtocolState", "stream_handlers"]
