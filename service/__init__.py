"""Rivulet: durable, resumable LLM output streaming (SSE and the Durable Streams protocol)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
