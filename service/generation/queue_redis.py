"""The Redis job queue: one Redis Stream read through one consumer group.

Keys (``prefix`` defaults to ``rivulet``):

- ``<prefix>:jobs``          stream: one entry per job, fields ``id`` and ``payload``; an entry
  lives until its job is acked (XACK + XDEL), so XLEN is the queue depth
- consumer group ``<prefix>:workers`` on it; each worker name is a consumer, and the group's
  pending entries list (PEL) is the lease table: owner, idle time (time since the last
  delivery or heartbeat) and delivery counter of every job in progress
- ``<prefix>:idem:<key>``    string: the job id an idempotency key is bound to (PX = its ttl)
- ``<prefix>:reader:<job>``  string: "a reader is attached" (PX = its ttl)

Leases are idle times: a job whose idle time reached ``lease`` is lapsed and the next claim
takes it over with XAUTOCLAIM, which bumps its delivery counter, and that counter is the job's
``attempt`` (its worker's producer epoch): 1 for the XREADGROUP delivery, +1 per reclaim. A
heartbeat resets the idle time with ``XCLAIM ... JUSTID``, which leaves the counter alone, and
only if the PEL still names the worker as owner at the same counter (one script, so no reclaim
can slip in between the check and the reset). A released job is parked: handed to the
consumer ``~released`` with an idle time far beyond any lease, so the next claim reclaims it
at once, again with the counter one higher.

Connections: a queue opens at most ``max_connections + 1`` Redis connections, however many
workers claim through it (a process's chunk log holds its own; see ``service.log.redis``).
Commands share one blocking pool of ``max_connections`` (callers queue for a free connection;
each is held for one round trip). The blocking ``XREADGROUP`` gets ONE dedicated connection,
so a claim waiting for work never holds a pooled connection; concurrent claims of one queue
take turns on it (one blocks in Redis, the others wait in-process, each within its timeout).

A waiting claim doesn't poll: it blocks in XREADGROUP (woken by Redis the moment any replica
adds a job) for at most the time until the earliest lease in the PEL can lapse, then runs the
reclaim script once and blocks again.

A cancelled claim can leave a job delivered to its worker but never returned (the reply was
in flight); that job lapses after one lease and is reclaimed with the next attempt number.
Calls raise :class:`~service.log.base.BackendUnavailable` when Redis can't be reached; a
heartbeat's caller must tell that apart from :class:`LeaseLost` (the lease may still hold).

Needs Redis 7.0 or later (XAUTOCLAIM's reply shape, frozen time inside scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Any, Final, cast

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from service.generation.queue import Job, LeaseLost
from service.log.base import BackendUnavailable
from service.log.redis_errors import redact_url, unavailable
from service.log.redis_pool import blocking_pool
from service.telemetry import get_logger

__all__ = ["RedisJobQueue"]

PARKING_CONSUMER: Final = "~released"
"""The consumer that holds released jobs until the next claim reclaims them."""

_PARKED_IDLE_MS: Final = 365 * 24 * 3600 * 1000
"""A released job's idle time: beyond any replica's lease, so every claimer sees it lapsed."""

_PEL_SCAN: Final = 1000
"""How many in-progress jobs the claim script inspects for the next lease lapse."""


# KEYS[1] jobs stream. ARGV: group, worker, lease ms, PEL scan limit.
# Reply {1, entry id, {field, value, ...}, delivery count} for a reclaimed job, or {0, ms}: no
# lapsed job, and none can lapse for ms milliseconds (time is frozen inside a script, so the
# XPENDING scans and XAUTOCLAIM agree on who is lapsed).
_CLAIM_LUA: Final = """
local stream, group, worker, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
for _ = 1, 100 do
  local lapsed = redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', 1)[1]
  if not lapsed then break end
  -- Starting the scan at the first lapsed entry makes XAUTOCLAIM take exactly that one.
  local reply = redis.call('XAUTOCLAIM', stream, group, worker, lease, lapsed[1], 'COUNT', 1)
  local entry = reply[2][1]
  if entry then
    local now = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)[1]
    return {1, entry[1], entry[2], now[4]}
  end
  -- The entry was deleted while pending (not by ack, which is atomic): XAUTOCLAIM dropped
  -- it from the PEL, so look again.
end
local pending = redis.call('XPENDING', stream, group, '-', '+', tonumber(ARGV[4]))
local idle = 0
for _, p in ipairs(pending) do
  if p[3] > idle then idle = p[3] end
end
local wait = lease - idle
if #pending >= tonumber(ARGV[4]) then
  -- Entries past the scan may be older: look again sooner rather than miss them by a lease.
  wait = math.min(wait, math.max(1, math.floor(lease / 4)))
end
return {0, wait}
"""

# KEYS[1] jobs stream. ARGV: group, worker, entry id, attempt. 1 if the lease was renewed,
# 0 if the job isn't this worker's delivery any more (reclaimed, released, acked, or gone).
_HEARTBEAT_LUA: Final = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not ok then return 0 end  -- the stream or the group is gone, and the job with it
local p = pending[1]
if not p or p[2] ~= ARGV[2] or p[4] ~= tonumber(ARGV[4]) then return 0 end
-- JUSTID: reset the idle time without counting a delivery.
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

# KEYS[1] jobs stream. ARGV: group, parking consumer, entry id, attempt, parked idle ms.
# 1 if parked, 0 if this delivery was superseded (someone reclaimed it) or the job is gone.
_RELEASE_LUA: Final = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not ok then return 0 end
local p = pending[1]
if not p or p[4] ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
return 1
"""

# KEYS[1] idempotency key. ARGV: job id, ttl ms. The bound job id, or nil if this call bound it.
_REMEMBER_LUA: Final = """
local bound = redis.call('GET', KEYS[1])
if bound then return bound end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS[1] idempotency key. ARGV: job id. Compare-and-delete: only our own binding goes.
_UNBIND_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] jobs stream. ARGV: group, consumer. Deletes the consumer only if it holds no job:
# deleting one with pending entries would drop them from the PEL, and nobody could reclaim them.
_FORGET_LUA: Final = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or pending[1] then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

_log = get_logger("service.generation.queue_redis")


def _no_group(exc: BaseException) -> bool:
    # The group vanished under us (a Redis restart without persistence, a FLUSHALL).
    return isinstance(exc, rex.ResponseError) and str(exc).startswith("NOGROUP")


def _ms(seconds: float) -> int:
    """Whole milliseconds, at least 1 (0 means "forever" to BLOCK and "invalid" to PX)."""
    return max(1, math.ceil(seconds * 1000))


def _raise_if_cancelled(task: asyncio.Task[Any] | None, cancels: int) -> None:
    """Raise a cancellation requested since the task had ``cancels`` pending, but swallowed."""
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisJobQueue:
    """Leased jobs in a Redis Stream consumer group; see :class:`.queue.JobQueue`."""

    def __init__(
        self,
        url: str,
        prefix: str = "rivulet",
        lease: float = 30.0,
        max_connections: int = 8,
        *,
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        health_check_interval: float = 15.0,
    ) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self._url = url
        self._lease_ms = _ms(lease)
        self._socket_timeout = socket_timeout
        self._stream = f"{prefix}:jobs"
        self._group = f"{prefix}:workers"
        self._idem_prefix = f"{prefix}:idem:"
        self._reader_prefix = f"{prefix}:reader:"
        # No automatic retries: a retried XADD could enqueue a job twice. A connection Redis
        # closed is replaced when taken from the pool, so after an outage the pool heals.
        self._pool = blocking_pool(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )
        self._redis: Redis = Redis(connection_pool=self._pool)
        # The blocking reader's own connection. No socket timeout: a blocked XREADGROUP is
        # silent for as long as it blocks; each read is bounded in claim() instead.
        self._reader_pool = blocking_pool(
            url,
            max_connections=1,
            socket_timeout=None,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )
        self._reader: Redis = Redis(connection_pool=self._reader_pool)
        self._reader_turn = asyncio.Lock()
        self._scripts: dict[str, AsyncScript] = {
            "claim": self._redis.register_script(_CLAIM_LUA),
            "heartbeat": self._redis.register_script(_HEARTBEAT_LUA),
            "release": self._redis.register_script(_RELEASE_LUA),
            "remember": self._redis.register_script(_REMEMBER_LUA),
            "unbind": self._redis.register_script(_UNBIND_LUA),
            "forget": self._redis.register_script(_FORGET_LUA),
        }
        self._workers: set[str] = set()
        self._prefetched: dict[str, deque[Job]] = {}
        """Worker names that claimed through this queue: consumers to clean up at stop()."""

    # -- lifecycle

    @property
    def redis_client(self) -> Redis:
        """The command client (for instrumentation); the blocking claim client is left out so
        an idle worker's one-second claims don't become a span each."""
        return self._redis

    async def start(self) -> None:
        where = redact_url(self._url)
        try:
            await self._redis.ping()
            await self._reader.ping()  # the dedicated connection must work too
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            raise BackendUnavailable(f"Redis at {where} is unreachable: {exc}") from exc
        try:
            await self._create_group()
            for script in self._scripts.values():
                script.sha = await self._redis.script_load(script.script)
        except Exception as exc:
            if unavailable(exc) is None and not isinstance(exc, rex.ResponseError):
                raise
            raise BackendUnavailable(f"Redis at {where} can't hold the job queue: {exc}") from exc

    async def stop(self) -> None:
        # Prefetched jobs no worker started: hand them back now rather than after a lease.
        for jobs in self._prefetched.values():
            while jobs:
                with contextlib.suppress(Exception):
                    await self.release(jobs.popleft())
        # Consumers that hold no job are dead weight in the group (worker names are usually
        # per process, so every deploy would add some). Best effort: stopping must not hang
        # on an unreachable Redis, so the first failure ends the cleanup.
        try:
            for worker in sorted(self._workers):
                await self._scripts["forget"](keys=[self._stream], args=[self._group, worker])
        except Exception as exc:
            if unavailable(exc) is None and not isinstance(exc, rex.ResponseError):
                raise
            _log.warning("queue.consumer_cleanup_failed", error=str(exc))
        self._workers.clear()
        await self._reader.aclose()
        await self._reader_pool.disconnect()
        await self._redis.aclose()
        await self._pool.disconnect()

    async def _create_group(self) -> None:
        try:
            # From id 0: entries are deleted when acked, so any entry already in the stream
            # is a job nobody finished.
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    # -- jobs

    async def enqueue(self, job_id: str, payload: bytes) -> None:
        await self._cmd(self._redis.xadd(self._stream, {"id": job_id, "payload": payload}))

    async def claim(self, worker: str, timeout: float, prefetch: int = 1) -> Job | None:
        self._workers.add(worker)
        # New jobs delivered together by an earlier claim (see _read_new): no round trip. A
        # burst of N generations otherwise costs N sequential claims (two round trips each)
        # before the last one starts: measured ~150 ms of TTFT at 50 at once.
        prefetched = self._prefetched.get(worker)
        if prefetched:
            return prefetched.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        # On Python 3.11, redis-py's ``asyncio.wait_for`` around a socket write can swallow a
        # cancellation that lands mid-command (the call then just returns). A claim is a loop
        # of commands, so it checks for such a lost request after each one, or a cancelled
        # claim would go on waiting, and might take a job nobody then works on.
        task = asyncio.current_task()
        cancels = 0 if task is None else task.cancelling()
        if self._reader_turn.locked():
            # Another claim holds the reader: a lapsed job needn't wait for it.
            job, _ = await self._reclaim(worker)
            if job is not None:
                return await self._unless_cancelled(job, task, cancels)
            _raise_if_cancelled(task, cancels)
        try:
            async with asyncio.timeout_at(deadline):
                await self._reader_turn.acquire()
        except TimeoutError:
            return None
        try:
            while True:
                job, wait = await self._reclaim(worker)
                if job is None:
                    _raise_if_cancelled(task, cancels)
                    remaining = deadline - loop.time()
                    # +2 ms: wake once the lease lapsed by Redis's clock, not a hair before.
                    job = await self._read_new(
                        worker, min(remaining, wait + 0.002), max(1, prefetch)
                    )
                if job is not None:
                    return await self._unless_cancelled(job, task, cancels)
                _raise_if_cancelled(task, cancels)
                if loop.time() >= deadline:
                    return None
        finally:
            self._reader_turn.release()

    async def _unless_cancelled(
        self, job: Job, task: asyncio.Task[Any] | None, cancels: int
    ) -> Job:
        """``job``, or, if the claim was cancelled meanwhile, hand it back and raise."""
        if task is None or task.cancelling() <= cancels:
            return job
        await self.release(job)
        raise asyncio.CancelledError

    async def _reclaim(self, worker: str) -> tuple[Job | None, float]:
        """Take over a lapsed job; else ``None`` and the seconds until one can lapse."""
        args: list[Any] = [self._group, worker, self._lease_ms, _PEL_SCAN]
        reply = cast("list[Any]", await self._group_cmd(self._scripts["claim"], args))
        if reply[0] == 0:
            return None, int(reply[1]) / 1000
        entry_id, flat, attempt = _text(reply[1]), reply[2], int(reply[3])
        fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        job = Job(_text(fields["id"]), bytes(fields["payload"]), attempt, entry_id)
        _log.info("queue.reclaimed", job=job.id, attempt=attempt, worker=worker)
        return job, 0.0

    async def _read_new(self, worker: str, block: float, count: int = 1) -> Job | None:
        """A never-delivered job, waiting up to ``block`` seconds on the dedicated connection;
        up to ``count - 1`` more delivered with it wait in this worker's prefetch queue."""
        streams: dict[Any, Any] = {self._stream: ">"}
        block_ms = _ms(block) if block > 0 else None  # None: don't block at all
        for attempt in (1, 2):
            try:
                # A cancelled or timed-out read closes the connection (redis-py does so on
                # any interruption); a job Redis delivered meanwhile is pending for this
                # worker, and a claim after its lease reclaims it.
                async with asyncio.timeout(max(block, 0.0) + self._socket_timeout):
                    reply: Any = await self._reader.xreadgroup(
                        self._group, worker, streams, count=count, block=block_ms
                    )
                break
            except Exception as exc:
                if attempt == 1 and _no_group(exc):
                    await self._cmd(self._create_group())
                    continue
                err = unavailable(exc)
                if err is None:
                    raise
                raise err from exc
        if not reply:
            return None
        _, entries = reply[0]
        jobs = [
            Job(_text(fields[b"id"]), bytes(fields[b"payload"]), 1, _text(entry_id))
            for entry_id, fields in entries
        ]
        if len(jobs) > 1:
            self._prefetched.setdefault(worker, deque()).extend(jobs[1:])
        return jobs[0]

    async def heartbeat(self, job: Job, worker: str) -> None:
        args: list[Any] = [self._group, worker, job.receipt, job.attempt]
        renewed = await self._cmd(self._scripts["heartbeat"](keys=[self._stream], args=args))
        if renewed != 1:
            raise LeaseLost(job.id)

    async def ack(self, job: Job) -> None:
        # One transaction: an entry acked but not deleted would linger in XLEN forever, and
        # one deleted but not acked would linger in the PEL until a claim drops it.
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(self._stream, self._group, job.receipt)
        pipe.xdel(self._stream, job.receipt)
        await self._cmd(pipe.execute())

    async def release(self, job: Job) -> None:
        args: list[Any] = [self._group, PARKING_CONSUMER, job.receipt, job.attempt, _PARKED_IDLE_MS]
        await self._cmd(self._scripts["release"](keys=[self._stream], args=args))

    async def depth(self) -> int:
        return int(await self._cmd(self._redis.xlen(self._stream)))

    # -- shared generation state

    async def remember_key(self, key: str, job_id: str, ttl: float) -> str | None:
        bound = await self._cmd(
            self._scripts["remember"](keys=[self._idem_prefix + key], args=[job_id, _ms(ttl)])
        )
        return None if bound is None else _text(bound)

    async def forget_key(self, key: str, job_id: str) -> None:
        await self._cmd(self._scripts["unbind"](keys=[self._idem_prefix + key], args=[job_id]))

    async def touch_reader(self, job_id: str, ttl: float) -> None:
        await self._cmd(self._redis.set(self._reader_prefix + job_id, b"1", px=_ms(ttl)))

    async def has_reader(self, job_id: str) -> bool:
        return bool(await self._cmd(self._redis.exists(self._reader_prefix + job_id)))

    # -- plumbing

    async def _group_cmd(self, script: AsyncScript, args: list[Any]) -> Any:
        """Run a script on the jobs stream, recreating the group once if it vanished."""
        for attempt in (1, 2):
            try:
                return await script(keys=[self._stream], args=args)
            except Exception as exc:
                if attempt == 1 and _no_group(exc):
                    await self._cmd(self._create_group())
                    continue
                err = unavailable(exc)
                if err is None:
                    raise
                raise err from exc
        raise AssertionError("unreachable")

    async def _cmd(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            err = unavailable(exc)
            if err is None:
                raise
            raise err from exc
