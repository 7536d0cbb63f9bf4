"""A task that swallows a cancellation (as redis-py can mid-command on Python 3.11) is still
stopped by the worker's ``_cancel``: it re-delivers the cancellation until the task ends."""

from __future__ import annotations

import asyncio

import pytest

from service.generation.worker import _cancel

pytestmark = pytest.mark.asyncio


async def test_cancel_redelivers_until_a_swallowing_task_ends() -> None:
    swallowed = 0

    async def heartbeat_like() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed < 2:  # lose the first two cancellations, like a mid-command one
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(heartbeat_like())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(_cancel(task), timeout=5)
    assert task.cancelled()
    assert swallowed == 2


async def test_cancel_retrieves_a_failed_task_quietly() -> None:
    async def boom() -> None:
        raise RuntimeError("provider bug")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    await _cancel(task)
    assert isinstance(task.exception(), RuntimeError)
