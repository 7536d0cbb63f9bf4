"""Delivery: turns log reads into live sessions (heartbeats, duration cap, drain on shutdown)."""

from __future__ import annotations

from service.delivery.live import EndReason, Heartbeat, LiveSession

__all__ = ["EndReason", "Heartbeat", "LiveSession"]
