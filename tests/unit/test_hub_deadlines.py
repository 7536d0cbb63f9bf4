"""Watch timeouts share one timer per hub: they expire on time (never early), a notice wins
over its timeout, and an ended wait leaves nothing behind."""

from __future__ import annotations

import asyncio

from service.log.hub import RESYNC, LiveHub, Watch


def test_timeouts_expire_on_time_and_notices_win() -> None:
    async def run() -> None:
        hub = LiveHub()
        loop = asyncio.get_running_loop()
        quiet = [Watch(f"/q{i}", hub) for i in range(50)]
        told = Watch("/told", hub)
        started = loop.time()
        waits = [asyncio.ensure_future(w.wait(0.15)) for w in quiet]
        told_wait = asyncio.ensure_future(told.wait(5))
        await asyncio.sleep(0.03)
        told.push(RESYNC)
        assert await told_wait is True  # the notice, long before its timeout
        assert await asyncio.gather(*waits) == [False] * 50
        elapsed = loop.time() - started
        assert elapsed >= 0.149, elapsed  # never early (the loop's 1 ms timer slack aside)
        deadlines = hub.deadlines(loop)
        # Ended waits leave no waiter behind, and a 5 s wait that a notice ended is gone too.
        assert all(not bucket for bucket in deadlines._buckets.values())

    asyncio.run(run())


def test_a_hub_used_on_a_new_loop_gets_a_new_timer() -> None:
    hub = LiveHub()

    async def once() -> bool:
        return await Watch("/p", hub).wait(0.01)

    assert asyncio.run(once()) is False
    assert asyncio.run(once()) is False  # not armed on the first, closed loop
