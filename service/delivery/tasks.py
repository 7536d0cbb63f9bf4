"""Fire-and-forget cleanup that must not be awaited where it is started."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["spawn"]

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` to completion in the background (errors are swallowed: it is cleanup).

    Used from ``finally`` blocks of cancelled responses, where awaiting is not possible; the
    task is referenced until done so it can't be garbage-collected half-way.
    """

    async def run() -> None:
        with contextlib.suppress(Exception):
            await coro

    task = asyncio.get_running_loop().create_task(run())
    _running.add(task)
    task.add_done_callback(_running.discard)
