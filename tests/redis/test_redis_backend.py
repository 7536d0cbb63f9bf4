"""Redis-only behaviour: pub/sub resync, big notices, slots, expiry, refusal to start, outages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

import service.log.redis as redis_mod
from service.log.base import (
    BackendUnavailable,
    ForkFrom,
    InvalidProducer,
    Producer,
    StreamConfig,
    StreamNotFound,
)
from service.log.hub import Follower
from service.log.offsets import ZERO
from service.log.redis import RedisChunkLog
from tests.conftest import _answers_ping, free_port

pytestmark = pytest.mark.asyncio
T = "text/plain"


async def raw(url: str) -> aioredis.Redis:
    return aioredis.from_url(url)


# -- live tail ------------------------------------------------------------------------------


async def test_reader_at_tail_gets_append_from_another_process(
    red: RedisChunkLog, red2: RedisChunkLog
) -> None:
    info, _ = await red.create("/live", StreamConfig(T), [b"old"])
    async with red.hub.watch("/live") as w:
        f = Follower(red, w, info.next_offset, 1 << 20)
        assert await f.next(0.2) is None  # at the tail: waits, times out
        task = asyncio.create_task(f.next(5))
        await asyncio.sleep(0.1)
        await red2.append("/live", [b"new", b"er"], content_type=T)
        r = await task
        assert r is not None
        assert [c.data for c in r.chunks] == [b"new", b"er"]
        assert str(r.next_offset) == "0000000000000003_0000000000000008"
        # close from the other process: the follower returns the final state
        task = asyncio.create_task(f.next(5))
        await asyncio.sleep(0.05)
        await red2.append("/live", [], content_type=None, close=True)
        r = await task
        assert r is not None
        assert r.at_end


async def test_big_append_is_notified_without_data_and_re_read(
    red: RedisChunkLog, red2: RedisChunkLog
) -> None:
    info, _ = await red.create("/big", StreamConfig(T))
    big = b"x" * (70 * 1024)
    async with red.hub.watch("/big") as w:
        f = Follower(red, w, info.next_offset, 1 << 20)
        task = asyncio.create_task(f.next(5))
        await asyncio.sleep(0.05)
        await red2.append("/big", [big, b"y"], content_type=T)
        r = await task
        assert r is not None
        assert [c.data for c in r.chunks] == [big, b"y"]


async def test_delete_wakes_reader(red: RedisChunkLog, red2: RedisChunkLog) -> None:
    info, _ = await red.create("/del", StreamConfig(T))
    async with red.hub.watch("/del") as w:
        f = Follower(red, w, info.next_offset, 1 << 20)
        assert await f.next(0.1) is None
        task = asyncio.create_task(f.next(5))
        await asyncio.sleep(0.05)
        await red2.delete("/del")
        with pytest.raises(StreamNotFound):
            await task


async def test_resync_after_pubsub_connection_killed(
    red: RedisChunkLog, red2: RedisChunkLog, redis_server: str
) -> None:
    info, _ = await red.create("/rs", StreamConfig(T))
    client = await raw(redis_server)
    try:
        async with red.hub.watch("/rs") as w:
            f = Follower(red, w, info.next_offset, 1 << 20)
            assert await f.next(0.1) is None
            old = red._hub._conn
            resyncs = 0
            original = red.hub.resync_all

            def counting() -> None:
                nonlocal resyncs
                resyncs += 1
                original()

            red.hub.resync_all = counting  # type: ignore[method-assign]
            killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed >= 1
            # Written while the hub is (maybe) disconnected: only the resync can deliver it.
            await red2.append("/rs", [b"during"], content_type=T)
            r = await f.next(5)
            assert r is not None
            assert [c.data for c in r.chunks] == [b"during"]
            # after resubscribing, live notices flow again
            for _ in range(100):
                if red._hub.connected:
                    break
                await asyncio.sleep(0.02)
            assert red._hub._conn is not old
            assert resyncs == 1
            task = asyncio.create_task(f.next(5))
            await asyncio.sleep(0.05)
            await red2.append("/rs", [b"after"], content_type=T)
            r = await task
            assert r is not None
            assert [c.data for c in r.chunks] == [b"after"]
    finally:
        await client.aclose()


async def test_subscription_churn_and_connection_count(
    red: RedisChunkLog, red2: RedisChunkLog, redis_server: str
) -> None:
    paths = [f"/churn/{i}" for i in range(40)]
    tails = {}
    for p in paths:
        info, _ = await red.create(p, StreamConfig(T))
        tails[p] = info.next_offset
    client = await raw(redis_server)
    try:
        before = await client.pubsub_numsub(*[red._keys(p).channel for p in paths])
        assert all(n == 0 for _, n in before)
        async with contextlib.AsyncExitStack() as stack:
            watches = []
            for i in range(200):  # 5 readers per stream
                p = paths[i % len(paths)]
                watches.append((p, await stack.enter_async_context(red.hub.watch(p))))
            subs = await client.pubsub_numsub(*[red._keys(p).channel for p in paths])
            assert all(n == 1 for _, n in subs), subs
            followers = [Follower(red, w, tails[p], 1 << 20) for p, w in watches]
            tasks = [asyncio.create_task(f.next(5)) for f in followers]
            await asyncio.sleep(0.2)
            for p in paths:
                await red2.append(p, [p.encode()], content_type=T)
            results = await asyncio.gather(*tasks)
            for (p, _), r in zip(watches, results, strict=True):
                assert r is not None
                assert r.chunks[0].data == p.encode()
            pubsub_clients = [c for c in await client.client_list() if int(c.get("sub", 0)) > 0]
            assert len(pubsub_clients) == 2  # one per RedisChunkLog instance
        await asyncio.sleep(0.1)
        after = await client.pubsub_numsub(*[red._keys(p).channel for p in paths])
        assert all(n == 0 for _, n in after), after
        assert red.hub.watch_count == 0
        # rapid enter/leave/enter keeps the last watch subscribed
        for _ in range(20):
            async with red.hub.watch("/churn/0"):
                pass
        async with red.hub.watch("/churn/0") as w:
            subs = await client.pubsub_numsub(red._keys("/churn/0").channel)
            assert subs[0][1] == 1
            f = Follower(red, w, (await red.info("/churn/0")).next_offset, 1 << 20)
            task = asyncio.create_task(f.next(5))
            await asyncio.sleep(0.05)
            await red2.append("/churn/0", [b"z"], content_type=T)
            assert (await task) is not None
    finally:
        await client.aclose()


async def test_cancelled_watch_does_not_leak_subscription(
    red: RedisChunkLog, redis_server: str
) -> None:
    await red.create("/c", StreamConfig(T))

    async def enter() -> None:
        async with red.hub.watch("/c"):
            await asyncio.sleep(10)

    for _ in range(10):
        task = asyncio.create_task(enter())
        await asyncio.sleep(0)  # cancelled while subscribing
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)
    client = await raw(redis_server)
    try:
        subs = await client.pubsub_numsub(red._keys("/c").channel)
        assert subs[0][1] == 0
    finally:
        await client.aclose()
    assert red.hub.watch_count == 0


async def test_many_concurrent_appends_wait_for_pool(redis_server: str, prefix: str) -> None:
    log = RedisChunkLog(redis_server, prefix=prefix, max_connections=2)
    await log.start()
    try:
        await log.create("/burst", StreamConfig(T))
        results = await asyncio.gather(
            *(log.append("/burst", [b"%d," % i], content_type=T) for i in range(300))
        )
        assert len({r.next_offset for r in results}) == 300
        r = await log.read("/burst", ZERO, 1 << 20)
        assert len(r.chunks) == 300
    finally:
        await log.stop()


# -- layout and key expiry ------------------------------------------------------------------


async def test_all_keys_of_a_stream_share_a_slot(
    red: RedisChunkLog, redis_server: str, prefix: str
) -> None:
    client = await raw(redis_server)
    try:
        for p in ("{x}", "a}b{c", "", "/v1/{stream}/1"):
            await red.create(p, StreamConfig(T, ttl_seconds=100), [b"1"])
            await red.append(p, [b"2"], content_type=T, producer=Producer("p", 0, 0))
            await red.create(p + "/fork", StreamConfig(None, fork=ForkFrom(p)))
            k = red._keys(p)
            slots = {
                key_slot(x.encode()) for x in (k.meta, k.entries, k.producers, k.forks, k.channel)
            }
            assert len(slots) == 1
            for key in (k.meta, k.entries, k.producers, k.forks):
                assert await client.exists(key), key
        keys = [x.decode() async for x in client.scan_iter(f"{prefix}:*")]
        assert all(x.startswith(f"{prefix}:s:{{") or x.startswith(f"{prefix}:x:") for x in keys)
    finally:
        await client.aclose()


async def test_key_expiry_and_persist_while_referenced(
    red: RedisChunkLog, redis_server: str
) -> None:
    client = await raw(redis_server)
    try:
        await red.create("/k", StreamConfig(T, ttl_seconds=100), [b"a"])
        await red.append("/k", [b"b"], content_type=T, producer=Producer("p", 0, 0))
        k = red._keys("/k")
        for key in (k.meta, k.entries, k.producers):
            ttl = await client.pttl(key)
            assert 100_000 < ttl <= 160_000, (key, ttl)
        await red.create("/kf", StreamConfig(None, fork=ForkFrom("/k"), ttl_seconds=100))
        for key in (k.meta, k.entries, k.producers, k.forks):
            assert await client.pttl(key) == -1, key
        await red.delete("/kf")
        for key in (k.meta, k.entries, k.producers):
            assert 100_000 < await client.pttl(key) <= 160_000
        assert not await client.exists(k.forks)
        # no TTL: keys persist
        await red.create("/n", StreamConfig(T), [b"a"])
        n = red._keys("/n")
        assert await client.pttl(n.meta) == -1
        assert await client.zscore(f"{red._prefix}:x:exp", "/k") is not None
        # full delete removes everything
        await red.delete("/k")
        for key in (k.meta, k.entries, k.producers, k.forks):
            assert not await client.exists(key)
        assert await client.zscore(f"{red._prefix}:x:exp", "/k") is None
    finally:
        await client.aclose()


async def test_sweeper_collects_orphaned_fork_reference(
    red: RedisChunkLog, redis_server: str, monkeypatch: Any
) -> None:
    """A fork whose keys Redis expired never released its source: the sweeper does."""
    monkeypatch.setattr(redis_mod, "_ORPHAN_AGE_MS", 0)
    client = await raw(redis_server)
    try:
        await red.create("/o", StreamConfig(T), [b"a"])
        await red.create("/of", StreamConfig(None, fork=ForkFrom("/o")))
        f = red._keys("/of")
        await client.delete(f.meta, f.entries, f.producers, f.forks)  # as Redis expiry would
        await red.delete("/o")
        with pytest.raises(Exception, match="o"):
            await red.info("/o")  # soft-deleted: 410
        for _ in range(30):
            await asyncio.sleep(0.2)
            try:
                await red.info("/o")
            except StreamNotFound:
                break
            except Exception:
                continue
        else:
            raise AssertionError("sweeper did not collect the orphaned source")
        assert not await client.sismember(f"{red._prefix}:x:gone", "/o")
    finally:
        await client.aclose()


async def test_expired_stream_keys_removed_by_sweeper(
    red: RedisChunkLog, redis_server: str
) -> None:
    client = await raw(redis_server)
    try:
        await red.create("/e", StreamConfig(T, ttl_seconds=1), [b"a"])
        k = red._keys("/e")
        await asyncio.sleep(1.8)
        assert not await client.exists(k.meta, k.entries)
    finally:
        await client.aclose()


async def test_huge_producer_numbers_rejected(red: RedisChunkLog) -> None:
    await red.create("/h", StreamConfig(T))
    with pytest.raises(InvalidProducer):
        await red.append("/h", [b"x"], content_type=T, producer=Producer("p", 2**53, 0))
    r = await red.append("/h", [b"x"], content_type=T, producer=Producer("p", 2**53 - 1, 0))
    assert r.producer_epoch == 2**53 - 1
    r = await red.append("/h", [b"x"], content_type=T, producer=Producer("p", 2**53 - 1, 0))
    assert r.duplicate
    assert r.producer_epoch == 2**53 - 1


# -- failures -------------------------------------------------------------------------------


async def test_start_fails_when_unreachable() -> None:
    log = RedisChunkLog(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await log.start()
    with pytest.raises(BackendUnavailable):
        await log.ping()


async def test_start_fails_on_evicting_policy(redis_server: str) -> None:
    client = await raw(redis_server)
    try:
        await client.config_set("maxmemory-policy", "allkeys-lru")
        log = RedisChunkLog(redis_server)
        with pytest.raises(BackendUnavailable, match="noeviction"):
            await log.start()
    finally:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.aclose()


async def test_outage_is_backend_unavailable_and_recovers(tmp_path: Any) -> None:
    port = free_port()
    args = [
        "redis-server",
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(tmp_path),
    ]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return proc

    proc = start()
    log = RedisChunkLog(f"redis://127.0.0.1:{port}/0", connect_timeout=1, socket_timeout=1)
    try:
        await log.start()
        await log.create("/o", StreamConfig(T), [b"a"])
        async with log.hub.watch("/o") as w:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            with pytest.raises(BackendUnavailable):
                await log.append("/o", [b"b"], content_type=T)
            with pytest.raises(BackendUnavailable):
                await log.read("/o", ZERO, 10)
            with pytest.raises(BackendUnavailable):
                await log.ping()
            proc = start()
            await log.ping()
            await log.create("/o", StreamConfig(T), [b"c"])  # came back empty
            r = await log.read("/o", ZERO, 10)
            assert [c.data for c in r.chunks] == [b"c"]
            # the hub reconnected too: the watch gets notices again
            for _ in range(200):
                if log._hub.connected:
                    break
                await asyncio.sleep(0.02)
            assert log._hub.connected
            f = Follower(log, w, r.next_offset, 1 << 20)
            task = asyncio.create_task(f.next(5))
            await asyncio.sleep(0.05)
            await log.append("/o", [b"d"], content_type=T)
            got = await task
            assert got is not None
            assert [c.data for c in got.chunks] == [b"d"]
    finally:
        await log.stop()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
