"""Worker edge cases the HTTP tests can't reach: interrupted appends, shutdown, blips."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.generation.events import ContentDelta, Finish, decode_event
from service.generation.jobs import GenerationJob
from service.generation.providers.base import GenerationRequest, Message
from service.generation.providers.fake import FakeProvider
from service.generation.queue_memory import MemoryJobQueue
from service.generation.worker import Worker, WorkerSettings, _Writer
from service.log import ZERO, BackendUnavailable, MemoryChunkLog, StreamConfig

pytestmark = pytest.mark.asyncio

JSON = "application/json"


class LandsThenHangs(MemoryChunkLog):
    """The first producer append is applied, then its caller never hears back (like a Redis
    reply lost in flight): the caller gets cancelled while waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.hang_next = True

    async def append(self, path: str, items: Any, **kw: Any) -> Any:  # type: ignore[override]
        result = await super().append(path, items, **kw)
        if self.hang_next and kw.get("producer") is not None:
            self.hang_next = False
            await asyncio.sleep(3600)
        return result


async def _events(log: MemoryChunkLog, path: str) -> list[dict[str, Any]]:
    result = await log.read(path, ZERO, 1 << 20)
    return [decode_event(c.data) for c in result.chunks]


async def test_a_batch_cancelled_in_flight_does_not_swallow_the_terminal_event() -> None:
    log = LandsThenHangs()
    await log.start()
    await log.create("g", StreamConfig(JSON))
    writer = _Writer(log, "g", "gen", 0)
    task = asyncio.create_task(writer.write([ContentDelta("a")]))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Same seq reused: the log calls it a duplicate of the batch that did land.
    await writer.write([Finish("cancelled")], close=True)
    info = await log.info("g")
    assert info.closed
    assert await _events(log, "g") == [
        {"type": "content", "delta": "a"},
        {"type": "finish", "reason": "cancelled"},
    ]
    await log.stop()


def _job(tokens: int, rate: float) -> GenerationJob:
    request = GenerationRequest(
        provider="fake",
        model="fake-1",
        messages=(Message("user", "stop me"),),
        params={"fake": {"tokens": tokens, "rate": rate}},
    )
    return GenerationJob("gid", request, 0)


async def test_stop_leaves_no_provider_call_or_writer_running() -> None:
    log = MemoryChunkLog()
    queue = MemoryJobQueue(lease=5.0)
    await log.start()
    await queue.start()
    await log.create("generations/gid", StreamConfig(JSON))
    await queue.enqueue("gid", _job(1000, 50).encode())
    worker = Worker(
        log,
        queue,
        {"fake": FakeProvider()},
        WorkerSettings(concurrency=1, shutdown_grace=0.2, cancel_without_reader=0),
    )
    runner = asyncio.create_task(worker.run())
    for _ in range(200):
        if (await log.info("generations/gid")).next_offset.entries >= 5:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    await asyncio.wait_for(runner, 5)
    frozen = (await log.info("generations/gid")).next_offset
    await asyncio.sleep(0.3)
    assert (await log.info("generations/gid")).next_offset == frozen  # nothing still writing
    assert worker.active == 0
    # Handed back: the next claim gets it at once, with a higher attempt (a new epoch).
    job = await queue.claim("next", timeout=1)
    assert job is not None
    assert job.attempt == 2
    await queue.stop()
    await log.stop()


class FlakyPresence(MemoryJobQueue):
    """has_reader fails with a storage blip now and then."""

    calls = 0

    async def has_reader(self, job_id: str) -> bool:
        self.calls += 1
        if self.calls % 2:
            raise BackendUnavailable("blip")
        return True


async def test_a_storage_blip_in_the_cancel_watcher_does_not_kill_the_generation() -> None:
    log = MemoryChunkLog()
    queue = FlakyPresence(lease=5.0)
    await log.start()
    await queue.start()
    await log.create("generations/gid", StreamConfig(JSON))
    await queue.enqueue("gid", _job(30, 100).encode())
    worker = Worker(
        log,
        queue,
        {"fake": FakeProvider()},
        WorkerSettings(concurrency=1, cancel_without_reader=0.1),
    )
    runner = asyncio.create_task(worker.run())
    for _ in range(300):
        if (await log.info("generations/gid")).closed:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    await asyncio.wait_for(runner, 5)
    events = await _events(log, "generations/gid")
    assert queue.calls >= 2
    assert events[-1]["type"] == "finish"
    assert events[-1]["reason"] == "stop"
    assert sum(e["type"] == "content" for e in events) == 30
    await queue.stop()
    await log.stop()
