"""The Redis chunk log: Redis Streams hold the entries, Lua scripts enforce every write rule.

Connections: a process uses exactly ``max_connections + 1`` Redis connections, however many
live readers it serves. Commands share one blocking pool of ``max_connections`` (a caller waits
for a free connection instead of failing, so a burst of appends queues rather than loses
writes), and each command holds a connection only for one round trip. Live readers hold none:
they wait on the in-process :class:`RedisHub`, which receives the notices of every stream this
process watches over ONE pub/sub connection and fans them out.

Key layout. All keys of one stream share the hash tag ``{<base64url of the path>}``, so they
live in one Redis Cluster slot whatever characters the path holds, and each per-stream script
touches one slot only:

- ``<prefix>:s:{<tag>}:m``  hash: metadata (fields in ``lua/common.lua``), among them the
  retention fields ``fs`` (own entries are numbered ``fs+1, fs+2, ...``) and ``se``/``sb`` (the
  earliest readable offset); a stream without them has ``fs`` = its fork base entries and
  ``se``/``sb`` = 0/0. Fields ``a:<name>`` hold the stream's annotations (``lua/annotate.lua``),
  so they vanish with the stream's metadata.
- ``<prefix>:s:{<tag>}:e``  stream: entry n (1-based) has id ``<n>-0`` and fields ``d`` (data),
  ``b`` (payload bytes up to and including it), ``k`` (entries left in its append) and ``t``
  (Redis server time in ms when it was written: the append's, or for a fork's copied sub-offset
  prefix the fork's; entries written before ``t`` existed read as 0); with retention on, the
  oldest own entries are trimmed (``XTRIM MINID``)
- ``<prefix>:s:{<tag>}:p``  hash: producer id -> ``epoch:seq``
- ``<prefix>:s:{<tag>}:f``  hash: fork path -> fork gen; its length is the reference count
- ``<prefix>:n:{<tag>}``    pub/sub channel of the stream's live-tail notices

Notice payload (``notify`` in ``lua/common.lua``, decoded by :func:`_decode_notice`): a msgpack
array ``[start_e, start_b, tail_e, tail_b, closed, kind, appended_ms, data...]``, all ints but
the data (msgpack bin, one per entry appended, left out when the append is too big). ``kind`` 0
is an append, 1 a delete; ``appended_ms`` is the ``t`` every entry of the append was stored with
(0 in a delete notice). A notice without ``appended_ms`` (six ints, then data: the format before
it) still decodes, its chunks with time 0.

Every mutation of one stream is one Lua script (``lua/*.lua``, each prefixed by
``lua/common.lua``). Forks live in other slots, so fork creation and cascading deletion are
short sequences of per-slot scripts driven from here; each step leaves a consistent state and
whatever a crash interrupts is finished by the sweeper. Two untagged index keys, written
best-effort after the scripts, let the sweeper find work: ``<prefix>:x:exp`` (paths scored by a
lower bound of their expiry) and ``<prefix>:x:gone`` (soft-deleted paths).

Retention (``retention_max_entries``, memory.py's rules): after each accepted append, in the
same script and after its notice, a stream no fork references keeps only its newest N own
entries, and its start moves to the end of the last trimmed one. Reads and fork points before a
stream's start raise :class:`OffsetGone`; a fork starts at ``min(source's start, fork base)``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, cast
from urllib.parse import urlsplit

import msgspec
from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from service.log.base import (
    AppendResult,
    BackendUnavailable,
    Chunk,
    ContentTypeMismatch,
    ForkFrom,
    InvalidFork,
    InvalidOffset,
    InvalidProducer,
    LogError,
    OffsetGone,
    Producer,
    ProducerSeqGap,
    ReadResult,
    SeqConflict,
    StaleEpoch,
    StreamClosed,
    StreamConfig,
    StreamConflict,
    StreamGone,
    StreamInfo,
    StreamNotFound,
)
from service.log.hub import RESYNC, LiveHub, Notice
from service.log.offsets import ZERO, Offset
from service.log.redis_errors import redact_url, unavailable
from service.log.redis_pool import blocking_pool
from service.log.rules import check_annotation, media_type, same_config
from service.telemetry import get_logger

__all__ = ["RedisChunkLog", "RedisHub"]

NOTIFY_MAX_BYTES: Final = 64 * 1024
"""Largest total payload a live-tail notice carries; bigger appends make readers re-read."""

_MAX_PRODUCER_NUMBER: Final = 2**53 - 1  # exact in Lua's doubles
_KEY_GRACE_MS: Final = 60_000
_ORPHAN_AGE_MS: Final = 60_000
# The gone set only holds work when a process died mid-cascade or Redis expired a fork's keys
# (both rare, and the orphan age makes them slow anyway): scan it every few passes.
_GONE_EVERY: Final = 10
_JSON: Final = "application/json"
_SCRIPTS: Final = (
    "annotate",
    "append",
    "create",
    "delete",
    "fork",
    "info",
    "range",
    "read",
    "release",
)

_log = get_logger("service.log.redis")


# -- keys and encodings --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Keys:
    meta: str
    entries: str
    producers: str
    forks: str
    channel: str

    @property
    def stream(self) -> list[str]:
        """The KEYS of a per-stream script, in the order ``lua/common.lua`` expects."""
        return [self.meta, self.entries, self.producers, self.forks]


def _tag(path: str) -> str:
    # base64url never contains braces, so the tag is exactly this path's; an empty tag would
    # make Redis hash the whole key, hence a placeholder for the empty path.
    encoded = base64.urlsafe_b64encode(path.encode("utf-8", "surrogatepass")).decode("ascii")
    return encoded.rstrip("=") or "="


def _encode_config(c: StreamConfig) -> str:
    fork = None
    if c.fork is not None:
        offset = None if c.fork.offset is None else str(c.fork.offset)
        fork = [c.fork.source, offset, c.fork.sub_offset]
    return json.dumps([c.content_type, c.ttl_seconds, c.expires_at_ms, c.closed, fork])


def _decode_config(raw: bytes) -> StreamConfig:
    ct, ttl, expires, closed, fork = json.loads(raw)
    fork_from = None
    if fork is not None:
        source, offset, sub = fork
        fork_from = ForkFrom(source, None if offset is None else Offset.parse(offset), sub)
    return StreamConfig(ct, ttl, expires, closed, fork_from)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _info(path: str, f: Sequence[Any]) -> StreamInfo:
    """A StreamInfo from the scripts' info tuple (ct, te, tb, closed, ttl, exp, created)."""
    return StreamInfo(
        path=path,
        content_type=_text(f[0]),
        next_offset=Offset(int(f[1]), int(f[2])),
        closed=f[3] == b"1",
        ttl_seconds=_opt_int(f[4]),
        expires_at_ms=_opt_int(f[5]),
        created_ms=int(f[6]),
    )


def _chunks(flat: Sequence[Any]) -> list[Chunk]:
    """Chunks from the scripts' flat (n, end bytes, data, appended ms) quadruples."""
    return [
        Chunk(bytes(flat[i + 2]), Offset(int(flat[i]), int(flat[i + 1])), int(flat[i + 3]))
        for i in range(0, len(flat), 4)
    ]


def _ancestors(raw: Any) -> list[tuple[str, int]]:
    """A fork's ancestor chain, nearest first: (path, that stream's own fork base entries)."""
    if raw is None:
        return []
    return [(str(p), int(b)) for p, b in json.loads(raw)]


def _holder(
    chain: Sequence[tuple[str, int]], n: int, cap: int | None
) -> tuple[str, int | None] | None:
    """Which stream of ``chain`` stores entry ``n`` itself, and the fork base capping it.

    ``chain`` runs from a stream to its root, each with its own fork base; entry n belongs to
    the first one whose base is below n. ``cap`` bounds what may be read there (a fork sees an
    ancestor only up to the fork point), which bounds how far a JSON batch reaches.
    """
    for path, base in chain:
        if n > base:
            return path, cap
        cap = base if cap is None else min(cap, base)
    return None


def _new_gen() -> str:
    # Creation time first: the sweeper only drops a reference to a missing fork once it is
    # old enough that the fork can't still be in the middle of being created.
    return f"{int(time.time() * 1000)}.{secrets.token_hex(6)}"


def _gen_ms(gen: bytes) -> int:
    try:
        return int(gen.split(b".", 1)[0])
    except ValueError:
        return 0


# -- notices -------------------------------------------------------------------------------

_NOTICE_DECODER: Final = msgspec.msgpack.Decoder(list[int | bytes])


def _decode_notice(payload: bytes) -> Notice:
    """Decode a notice the scripts publish (format in the module docstring)."""
    fields = _NOTICE_DECODER.decode(payload)
    head = fields[:6]
    if len(head) != 6 or not all(isinstance(x, int) for x in head):
        raise ValueError("malformed live-tail notice")
    start_e, start_b, tail_e, tail_b, closed, kind = cast("list[int]", head)
    start, tail = Offset(start_e, start_b), Offset(tail_e, tail_b)
    if kind == 1:
        return Notice(start, tail, bool(closed), deleted=True)
    # The append time follows the header; a notice of the earlier format has none.
    appended_ms = 0
    data = fields[6:]
    if data and isinstance(data[0], int):
        appended_ms, data = data[0], data[1:]
    if len(data) != tail_e - start_e or not all(isinstance(d, bytes) for d in data):
        return Notice(start, tail, bool(closed))  # payload left out: readers re-read
    chunks: list[Chunk] = []
    end = start
    for item in cast("list[bytes]", data):
        end = end.advance(len(item))
        chunks.append(Chunk(item, end, appended_ms))
    return Notice(start, tail, bool(closed), tuple(chunks))


# -- the hub -------------------------------------------------------------------------------


class RedisHub(LiveHub):
    """The live-tail hub fed by ONE pub/sub connection per process, shared by every reader.

    A stream's channel is subscribed while the process has at least one watch on it. Commands
    and confirmations flow in order on the one connection, so each SUBSCRIBE's confirmation is
    matched to its caller, which returns only once Redis confirmed it (a reader's first storage
    read therefore can't miss a notice). After a lost connection the hub reconnects with
    backoff, re-subscribes every watched channel and tells every reader to re-read, since
    notices published in between are gone.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        channel: Callable[[str], bytes],
        control: bytes,
        *,
        subscribe_timeout: float = 5.0,
        probe_interval: float | None = 30.0,
        max_backoff: float = 2.0,
    ) -> None:
        super().__init__()
        self._connect = connect
        self._channel = channel
        self._control = control
        self._subscribe_timeout = subscribe_timeout
        self._probe_interval = probe_interval
        self._max_backoff = max_backoff
        self._conn: AbstractConnection | None = None
        # Every channel wanted now, to the path it carries; the truth for re-subscribing.
        self._paths: dict[bytes, str] = {}
        # SUBSCRIBEs sent on the current connection and not yet confirmed, in order, each with
        # the callers waiting for it; callers waiting for the next connection in _orphans.
        self._confirms: dict[bytes, deque[list[asyncio.Future[None]]]] = {}
        self._orphans: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pongs: deque[bool] = deque()  # True: the barrier ending a (re)subscription
        self._lock = asyncio.Lock()
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_error: BaseException | None = None

    @property
    def connected(self) -> bool:
        """True while subscribed upstream (readers may miss nothing)."""
        return self._up.is_set()

    async def start(self, timeout: float) -> None:
        """Connect and subscribe; raise :class:`BackendUnavailable` if that fails in time."""
        self._task = asyncio.create_task(self._run(), name="redis-hub")
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise BackendUnavailable(
                f"can't open the live-tail pub/sub connection to Redis: {self._last_error}"
            ) from None

    async def stop(self) -> None:
        """Close the connection; waiting subscribers fail with BackendUnavailable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in list(self._tasks):
            t.cancel()
        self._fail_waiters(BackendUnavailable("the live-tail hub has stopped"))

    # -- LiveHub hooks

    async def _subscribe(self, path: str) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            # Shielded: a cancelled caller must not abort a half-written command (redis-py
            # drops the connection then) or leave the bookkeeping half-done.
            await asyncio.shield(self._spawn(self._send_subscribe(path, fut)))
            await asyncio.wait_for(asyncio.shield(fut), self._subscribe_timeout)
        except TimeoutError:
            self._cleanup_later(path)
            raise BackendUnavailable("Redis did not confirm a live-tail subscription") from None
        except BaseException:
            self._cleanup_later(path)
            raise

    async def _unsubscribe(self, path: str) -> None:
        await asyncio.shield(self._spawn(self._send_unsubscribe(path)))

    # -- sending

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_subscribe(self, path: str, fut: asyncio.Future[None]) -> None:
        ch = self._channel(path)
        async with self._lock:
            self._paths[ch] = path
            conn = self._conn
            if conn is None or not conn.is_connected:
                self._orphans.setdefault(ch, []).append(fut)
                return
            self._confirms.setdefault(ch, deque()).append([fut])
            with contextlib.suppress(rex.ConnectionError, rex.TimeoutError, OSError):
                # On failure the reader sees the broken connection, and the reconnect
                # re-subscribes every wanted channel and confirms this waiter.
                await conn.send_command("SUBSCRIBE", ch, check_health=False)

    async def _send_unsubscribe(self, path: str) -> None:
        async with self._lock:
            # A new watch may have arrived since the last one left; its SUBSCRIBE is (or will
            # be) sent, and this UNSUBSCRIBE must not undo it.
            if path in self._watches:
                return
            ch = self._channel(path)
            if self._paths.pop(ch, None) is None:
                return
            conn = self._conn
            if conn is not None and conn.is_connected:
                with contextlib.suppress(rex.ConnectionError, rex.TimeoutError, OSError):
                    await conn.send_command("UNSUBSCRIBE", ch, check_health=False)

    def _cleanup_later(self, path: str) -> None:
        # LiveHub drops the failed watch only after _subscribe raised; unsubscribe after that.
        asyncio.get_running_loop().call_soon(lambda: self._spawn(self._send_unsubscribe(path)))

    # -- the connection

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            conn = self._connect()
            try:
                await conn.connect_check_health(check_health=False)
                await self._attach(conn)
                await self._listen(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = exc
                _log.warning("hub.disconnected", error=str(exc), watched=len(self._paths))
            finally:
                was_up = self._up.is_set()
                self._detach(conn)
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if was_up:
                backoff = 0.05
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _attach(self, conn: AbstractConnection) -> None:
        async with self._lock:
            self._confirms = {ch: deque([self._orphans.pop(ch, [])]) for ch in self._paths}
            self._confirms[self._control] = deque([[]])
            for futs in self._orphans.values():  # channels no longer wanted
                _abandon(futs)
            self._orphans.clear()
            # The control channel keeps the connection in subscriber mode even when no
            # stream is watched; the PING's reply, queued after all confirmations, marks
            # the moment every channel is live.
            self._pongs = deque([True])
            self._conn = conn
            await conn.send_command("SUBSCRIBE", self._control, *self._paths, check_health=False)
            await conn.send_command("PING", check_health=False)

    def _detach(self, conn: AbstractConnection) -> None:
        if self._conn is conn:
            self._conn = None
        self._up.clear()
        for ch, queue in self._confirms.items():
            waiting = [f for futs in queue for f in futs if not f.done()]
            if ch in self._paths:
                self._orphans.setdefault(ch, []).extend(waiting)
            else:
                _abandon(waiting)
        self._confirms = {}
        self._pongs.clear()

    async def _listen(self, conn: AbstractConnection) -> None:
        probing = False
        while True:
            msg = await conn.read_response(
                timeout=math.inf if self._probe_interval is None else self._probe_interval
            )
            if msg is None:
                # A liveness probe, not a data poll: without it a half-open TCP connection
                # would leave every live reader of this process waiting forever.
                if probing:
                    raise rex.TimeoutError("the pub/sub connection stopped answering")
                probing = True
                async with self._lock:
                    self._pongs.append(False)
                    await conn.send_command("PING", check_health=False)
                continue
            probing = False
            kind = msg[0]
            if kind == b"message":
                self._deliver(msg[1], msg[2])
            elif kind == b"subscribe":
                queue = self._confirms.get(msg[1])
                if queue:
                    for f in queue.popleft():
                        if not f.done():
                            f.set_result(None)
                    if not queue:
                        del self._confirms[msg[1]]
            elif kind == b"pong" and self._pongs and self._pongs.popleft():
                self._up.set()
                # Notices published while the connection was down are lost: every reader
                # re-reads from storage (a no-op on the first connection: no readers yet).
                self.resync_all()

    def _deliver(self, channel: bytes, payload: bytes) -> None:
        path = self._paths.get(channel)
        if path is None:
            return
        try:
            notice = _decode_notice(payload)
        except (msgspec.DecodeError, ValueError):
            _log.warning("hub.bad_notice", path=path)
            notice = RESYNC
        self.publish(path, notice)

    def _fail_waiters(self, exc: BaseException) -> None:
        for futs in self._orphans.values():
            _abandon(futs, exc)
        self._orphans.clear()


def _abandon(futs: list[asyncio.Future[None]], exc: BaseException | None = None) -> None:
    """Fail subscription waiters (an error, not a cancellation: their callers aren't)."""
    for f in futs:
        if not f.done():
            f.set_exception(exc or BackendUnavailable("live-tail subscription abandoned"))
            f.exception()  # retrieved: the waiter may be gone already


# -- the log -------------------------------------------------------------------------------


class RedisChunkLog:
    """The chunk log on Redis: streams, Lua scripts and one pub/sub-fed hub per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "rivulet",
        max_connections: int = 32,
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        health_check_interval: float = 15.0,
        sweep_interval: float = 1.0,
        key_grace_ms: int = _KEY_GRACE_MS,
        retention_max_entries: int = 0,
    ) -> None:
        self._url = url
        self._retention = retention_max_entries
        self._prefix = prefix
        self._connect_timeout = connect_timeout
        self._sweep_interval = sweep_interval
        self._grace = str(key_grace_ms)
        self._exp_key = f"{prefix}:x:exp"
        self._gone_key = f"{prefix}:x:gone"
        # No automatic retries (see redis_pool); idempotent calls retry once by hand (_eval).
        # A connection Redis closed (say, a restart) is replaced when taken from the pool, and
        # idle ones are PINGed first, so after an outage the pool heals by itself.
        self._tcp = urlsplit(url).scheme != "unix"
        self._pool = blocking_pool(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )
        self._redis: Redis = Redis(connection_pool=self._pool)
        common = (resources.files("service.log") / "lua" / "common.lua").read_text("utf-8")
        self._scripts: dict[str, AsyncScript] = {
            name: self._redis.register_script(
                common
                + "\n"
                + (resources.files("service.log") / "lua" / f"{name}.lua").read_text("utf-8")
            )
            for name in _SCRIPTS
        }
        self._hub = RedisHub(
            self._pubsub_connection,
            lambda path: self._keys(path).channel.encode(),
            f"{prefix}:n:control".encode(),
            subscribe_timeout=connect_timeout,
        )
        self._sweeper: asyncio.Task[None] | None = None
        self._passes = 0
        self._background: set[asyncio.Task[None]] = set()

    @property
    def redis_client(self) -> Redis:
        """The command client (for instrumentation: one span per script call)."""
        return self._redis

    @property
    def hub(self) -> LiveHub:
        return self._hub

    # -- lifecycle

    async def start(self) -> None:
        where = redact_url(self._url)
        try:
            await self._redis.ping()
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            raise BackendUnavailable(f"Redis at {where} is unreachable: {exc}") from exc
        await self._check_policy(where)
        try:
            for script in self._scripts.values():
                script.sha = await self._redis.script_load(script.script)
        except Exception as exc:
            raise BackendUnavailable(f"Redis at {where} refused the log's scripts: {exc}") from exc
        await self._hub.start(self._connect_timeout + 1.0)
        self._sweeper = asyncio.create_task(self._sweep(), name="redis-log-sweeper")

    async def _check_policy(self, where: str) -> None:
        try:
            reply = await self._redis.config_get("maxmemory-policy")
        except rex.ResponseError as exc:
            # Managed Redis often forbids CONFIG; the operator must vouch for the policy.
            _log.warning("log.redis_policy_unchecked", url=where, error=str(exc))
            return
        except Exception as exc:
            raise BackendUnavailable(f"Redis at {where} is unreachable: {exc}") from exc
        policy = next((_text(v) for k, v in reply.items() if _text(k) == "maxmemory-policy"), "")
        if not policy:
            _log.warning("log.redis_policy_unchecked", url=where, error="CONFIG GET said nothing")
        elif policy != "noeviction":
            raise BackendUnavailable(
                f"Redis at {where} has maxmemory-policy {policy!r}: it would silently evict "
                "stream data; set it to 'noeviction'"
            )

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._background:
            await asyncio.wait(self._background, timeout=self._connect_timeout)
        await self._hub.stop()
        await self._redis.aclose()
        await self._pool.disconnect()

    async def ping(self) -> None:
        await self._cmd(self._redis.ping())

    def _pubsub_connection(self) -> AbstractConnection:
        options: dict[str, Any] = dict(parse_url(self._url))
        cls = cast("type[AbstractConnection]", options.pop("connection_class", Connection))
        # Blocks for notices indefinitely (no socket timeout); liveness is the hub's probe.
        # The hub reads replies itself, so redis-py must never read one for a health check.
        options.update(
            socket_timeout=None,
            socket_connect_timeout=self._connect_timeout,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
        )
        if self._tcp:
            options["socket_keepalive"] = True
        return cls(**options)

    # -- plumbing

    def _keys(self, path: str) -> _Keys:
        tag = _tag(path)
        base = f"{self._prefix}:s:{{{tag}}}"
        return _Keys(
            meta=f"{base}:m",
            entries=f"{base}:e",
            producers=f"{base}:p",
            forks=f"{base}:f",
            channel=f"{self._prefix}:n:{{{tag}}}",
        )

    async def _eval(
        self, name: str, keys: _Keys, args: Sequence[Any], *, retry: bool = False
    ) -> list[Any]:
        """Run a per-stream script. Only idempotent ones may ``retry`` a lost connection."""
        script = self._scripts[name]
        full = [keys.channel, self._grace, *args]
        for attempt in (1, 2):
            try:
                return cast("list[Any]", await script(keys=keys.stream, args=full))
            except Exception as exc:
                err = unavailable(exc)
                if err is None:
                    raise
                if retry and attempt == 1 and not isinstance(exc, rex.ResponseError):
                    continue
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

    async def _best_effort(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            _log.warning("log.index_update_failed", error=str(exc))

    async def _settle(self, path: str, effects: Sequence[Any]) -> None:
        """Finish, outside the script's slot, what a script reported (see lua/common.lua)."""
        if not effects:
            return
        # Not cancellable half-way: a cascade stopped by a disconnecting client would leave a
        # source soft-deleted until the sweeper noticed.
        task = asyncio.create_task(self._settle_now(path, effects))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _settle_now(self, path: str, effects: Sequence[Any]) -> None:
        if effects[0] == b"soft":
            await self._best_effort(self._redis.sadd(self._gone_key, path))
        elif effects[0] == b"dropped":
            await self._forget(path)
            source, gen = effects[1], effects[3]
            if source is not None:
                await self._release(_text(source), path, gen)

    async def _forget(self, path: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._exp_key, path)
        pipe.srem(self._gone_key, path)
        await self._best_effort(pipe.execute())

    async def _release(self, source: str, child: str, child_gen: bytes | str) -> None:
        """Drop ``child``'s reference to ``source``, cascading up soft-deleted ancestors."""
        try:
            while True:
                reply = await self._eval(
                    "release", self._keys(source), [child, child_gen], retry=True
                )
                effects = reply[1]
                if not effects or effects[0] != b"dropped":
                    return
                await self._forget(source)
                if effects[1] is None:
                    return
                source, child, child_gen = _text(effects[1]), source, effects[3]
        except BackendUnavailable as exc:
            # The sweeper finds the source in the gone index and finishes the cascade.
            _log.warning("log.release_deferred", source=source, fork=child, error=str(exc))

    def _error(self, path: str, reply: Sequence[Any]) -> LogError:
        """The error a script's status reply stands for."""
        status = reply[0]
        if status == b"NOTFOUND":
            return StreamNotFound(path)
        if status == b"GONE":
            return StreamGone(path)
        if status == b"CTYPE":
            return ContentTypeMismatch(path)
        if status == b"CLOSED":
            return StreamClosed(Offset(int(reply[2]), int(reply[3])))
        if status == b"SEQ":
            return SeqConflict("Stream-Seq is not above the last one")
        if status == b"STALE":
            return StaleEpoch(int(reply[2]))
        if status == b"GAP":
            return ProducerSeqGap(int(reply[2]), int(reply[3]))
        if status == b"BADEPOCH":
            return InvalidProducer("a new producer epoch must start at Producer-Seq 0")
        if status == b"OFFSETGONE":
            return OffsetGone(Offset(int(reply[2]), int(reply[3])))
        if status == b"BADOFFSET":
            return InvalidOffset("offset is not a position in this stream")
        if status == b"BADFORK":
            return InvalidFork(_text(reply[2]))
        if status == b"CONFLICT":
            return StreamConflict(_text(reply[2]) if len(reply) > 2 else path)
        return LogError(f"unexpected reply {status!r} from the Redis log")

    # -- create

    async def create(
        self, path: str, config: StreamConfig, initial: Sequence[bytes] = ()
    ) -> tuple[StreamInfo, bool]:
        keys = self._keys(path)
        ct = config.content_type
        if config.fork is None and ct is not None:
            fields = _CreateFields(
                ct=ct, ttl=config.ttl_seconds, expires=config.expires_at_ms, closed=config.closed
            )
            reply = await self._eval("create", keys, fields.args(_new_gen(), config, initial))
            return await self._created(path, config, reply)
        # An existing stream answers before the fork source is even looked at (memory.py).
        reply = await self._eval("create", keys, _CreateFields.probe())
        if reply[0] != b"ABSENT":
            return await self._created(path, config, reply)
        await self._settle(path, reply[1])
        if config.fork is None:
            raise StreamConflict("a stream needs a content type")
        return await self._create_fork(path, keys, config, config.fork, initial)

    async def _created(
        self, path: str, config: StreamConfig, reply: Sequence[Any]
    ) -> tuple[StreamInfo, bool]:
        await self._settle(path, reply[1])
        status = reply[0]
        if status == b"EXISTS":
            if not same_config(_decode_config(reply[2]), config):
                raise StreamConflict("stream exists with a different configuration")
            return _info(path, reply[3:]), False
        if status == b"CONFLICT":
            raise StreamConflict("a deleted stream's path can't be reused yet")
        if status != b"CREATED":
            raise self._error(path, reply)
        info = _info(path, reply[2:])
        if info.expires_at_ms is not None:
            await self._best_effort(self._redis.zadd(self._exp_key, {path: info.expires_at_ms}))
        return info, True

    async def _create_fork(
        self,
        path: str,
        keys: _Keys,
        config: StreamConfig,
        fork: ForkFrom,
        initial: Sequence[bytes],
    ) -> tuple[StreamInfo, bool]:
        gen = _new_gen()
        wanted = "" if config.content_type is None else media_type(config.content_type)
        off = fork.offset
        step1 = await self._eval(
            "fork",
            self._keys(fork.source),
            [
                path,
                gen,
                wanted,
                "0" if off is None else "1",
                0 if off is None else off.entries,
                0 if off is None else off.bytes,
                fork.sub_offset,
            ],
            retry=True,
        )
        await self._settle(fork.source, step1[1])
        if step1[0] != b"OK":
            raise self._error(fork.source, step1)
        try:
            fields = await self._resolve_fork(config, fork, step1)
        except BaseException:
            # A rejected fork must not keep its reference on the source.
            await asyncio.shield(self._release(fork.source, path, gen))
            raise
        # If this call fails unanswered, the fork may or may not exist: its reference stays,
        # and the sweeper drops it once the source is deleted and the fork is still missing.
        reply = await self._eval("create", keys, fields.args(gen, config, initial))
        if reply[0] != b"CREATED":
            await self._release(fork.source, path, gen)
        return await self._created(path, config, reply)

    async def _resolve_fork(
        self, config: StreamConfig, fork: ForkFrom, step1: Sequence[Any]
    ) -> _CreateFields:
        """The fork's fields, finishing the checks that need the source's ancestors."""
        (src_gen, src_ct, src_ttl, src_exp, src_be, _src_bb, src_anc) = step1[2:9]
        base = Offset(int(step1[9]), int(step1[10]))
        prefix: list[bytes] = [] if step1[11] is None else [bytes(step1[11])]
        source_ct = _text(src_ct)
        chain = [(fork.source, int(src_be)), *_ancestors(src_anc)]
        if step1[12] == 1 and not await self._boundary_in(chain, None, base):
            raise InvalidFork("fork offset is beyond the source stream")
        if step1[13] == 1:
            base, prefix = await self._sub_offset(chain, base, fork.sub_offset, source_ct)
        # What retention already took from the source, the fork never had.
        start = min(Offset(int(step1[14]), int(step1[15])), base)
        ttl, expires = config.ttl_seconds, config.expires_at_ms
        if ttl is None and expires is None:
            ttl = _opt_int(src_ttl)
            expires = _opt_int(src_exp) if ttl is None else None
        ancestors = [[fork.source, int(src_be)], *([p, b] for p, b in _ancestors(src_anc))]
        return _CreateFields(
            ct=config.content_type or source_ct,
            ttl=ttl,
            expires=expires,
            closed=config.closed,
            source=fork.source,
            source_gen=_text(src_gen),
            ancestors=json.dumps(ancestors),
            base=base,
            start=start,
            prefix=prefix,
        )

    async def _sub_offset(
        self, chain: list[tuple[str, int]], base: Offset, sub: int, content_type: str
    ) -> tuple[Offset, list[bytes]]:
        """A sub-offset reaching into an ancestor's entry (memory.py's create, fork branch)."""
        index = base.entries + 1
        found = _holder(chain, index, None)
        got = None if found is None else await self._entry(found[0], index)
        if found is None or got is None:
            raise InvalidFork("sub-offset reaches past the end of the source stream")
        data, _, left = got
        cap = found[1]
        if media_type(content_type) == _JSON:
            batch = left if cap is None else min(left, cap - index + 1)
            if sub > batch:
                raise InvalidFork("sub-offset is beyond the messages of that append")
            last = base.entries + sub
            end = _holder(chain, last, None)
            got = None if end is None else await self._entry(end[0], last)
            if got is None:
                raise InvalidFork("sub-offset is beyond the messages of that append")
            return Offset(last, got[1]), []
        if sub > len(data):
            raise InvalidFork("sub-offset is longer than the entry it points into")
        return base, [data[:sub]]

    async def _entry(self, path: str, n: int) -> tuple[bytes, int, int] | None:
        rows = await self._cmd(self._redis.xrange(self._keys(path).entries, f"{n}-0", f"{n}-0"))
        if not rows:
            return None
        fields = rows[0][1]
        return bytes(fields[b"d"]), int(fields[b"b"]), int(fields[b"k"])

    async def _boundary_in(
        self, chain: Sequence[tuple[str, int]], cap: int | None, off: Offset
    ) -> bool:
        """Whether ``off`` ends an entry of ``chain`` (only asked below a fork base)."""
        found = _holder(chain, off.entries, cap)
        if found is None:
            return False
        got = await self._entry(found[0], off.entries)
        return got is not None and got[1] == off.bytes

    # -- append

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
        if producer is not None and not (
            0 <= producer.epoch <= _MAX_PRODUCER_NUMBER
            and 0 <= producer.seq <= _MAX_PRODUCER_NUMBER
        ):
            raise InvalidProducer("Producer-Epoch and Producer-Seq must be below 2**53")
        args: list[Any] = [
            "" if content_type is None else media_type(content_type),
            "1" if close else "0",
            "0" if stream_seq is None else "1",
            stream_seq or "",
            "" if producer is None else producer.id,
            "0" if producer is None else "1",
            0 if producer is None else producer.epoch,
            0 if producer is None else producer.seq,
            NOTIFY_MAX_BYTES,
            self._retention,
            *items,
        ]
        reply = await self._eval("append", self._keys(path), args)
        await self._settle(path, reply[1])
        status = reply[0]
        if status == b"OK":
            return AppendResult(
                next_offset=Offset(int(reply[2]), int(reply[3])),
                producer_epoch=None if producer is None else producer.epoch,
                producer_seq=None if producer is None else producer.seq,
                closed=reply[4] == b"1",
            )
        if status == b"DUP":
            return AppendResult(
                next_offset=Offset(int(reply[2]), int(reply[3])),
                duplicate=True,
                producer_epoch=int(reply[5]),
                producer_seq=int(reply[6]),
                closed=reply[4] == b"1",
            )
        if status == b"CLOSEDUP":
            return AppendResult(
                next_offset=Offset(int(reply[2]), int(reply[3])), duplicate=True, closed=True
            )
        raise self._error(path, reply)

    # -- read

    async def read(self, path: str, after: Offset, max_bytes: int) -> ReadResult:
        keys = self._keys(path)
        checked = ""
        while True:
            reply = await self._eval(
                "read", keys, [after.entries, after.bytes, max_bytes, checked], retry=True
            )
            await self._settle(path, reply[1])
            if reply[0] != b"CHAIN":
                break
            # Below the fork base the position must be an entry boundary in the ancestors,
            # which live in other slots; their data there is immutable, so check it once.
            gen, anc, base_e = _text(reply[2]), _ancestors(reply[3]), int(reply[4])
            if not await self._boundary_in(anc, base_e, after):
                raise InvalidOffset("offset is not a position in this stream")
            checked = gen
        if reply[0] != b"OK":
            raise self._error(path, reply)
        ct, te, tb, closed, be = reply[2:7]
        tail = Offset(int(te), int(tb))
        if after.entries >= int(be):
            chunks = _chunks(reply[11:])
        else:
            chunks = await self._read_below_base(
                path, _ancestors(reply[9]), int(be), tail.entries, after, max_bytes
            )
        return ReadResult(
            chunks=tuple(chunks),
            next_offset=chunks[-1].end if chunks else after,
            tail=tail,
            closed=closed == b"1",
            content_type=_text(ct),
            created_ms=int(reply[10]),
        )

    async def _read_below_base(
        self,
        path: str,
        ancestors: list[tuple[str, int]],
        base_e: int,
        tail_e: int,
        after: Offset,
        max_bytes: int,
    ) -> list[Chunk]:
        """memory.py's ``chunks_after`` for a position below a fork's base."""
        out = await self._chunks_after(ancestors, 0, after.entries, base_e, max_bytes)
        size = sum(len(c.data) for c in out)
        last = out[-1].end.entries if out else after.entries
        if last < base_e or size >= max_bytes:
            return out
        # ``out`` holds entries here, so a page a concurrent trim cuts short is never empty.
        own = await self._range(
            path, base_e + 1, tail_e, max_bytes, size, bool(out), trimmable=True
        )
        return out + own

    async def _chunks_after(
        self, chain: list[tuple[str, int]], i: int, after_e: int, limit_e: int, max_bytes: int
    ) -> list[Chunk]:
        path, base_e = chain[i]
        out: list[Chunk] = []
        size = 0
        if after_e < base_e and i + 1 < len(chain):
            out = await self._chunks_after(chain, i + 1, after_e, min(limit_e, base_e), max_bytes)
            size = sum(len(c.data) for c in out)
            if out:
                after_e = out[-1].end.entries
            if after_e < base_e or size >= max_bytes:
                return out
        start = max(after_e, base_e) + 1
        if start > limit_e:
            return out
        return out + await self._range(path, start, limit_e, max_bytes, size, bool(out))

    async def _range(
        self,
        path: str,
        first: int,
        last: int,
        max_bytes: int,
        size: int,
        any_held: bool,
        *,
        trimmable: bool = False,
    ) -> list[Chunk]:
        keys = self._keys(path)
        flat = await self._cmd(
            self._scripts["range"](
                keys=[keys.entries],
                args=["", "0", first, last, max_bytes, size, "1" if any_held else "0"],
            )
        )
        chunks = _chunks(flat)
        if trimmable and chunks and chunks[0].end.entries > first:
            # The reader's own stream (no fork pins it) was trimmed by an append since its read
            # script checked the position: end the page here; the next read is OffsetGone.
            return []
        if (not chunks and not any_held) or (chunks and chunks[0].end.entries != first):
            # These entries are pinned while the reader's stream exists; missing ones mean
            # the stream was deleted during this read.
            raise StreamNotFound(path)
        return chunks

    # -- metadata and delete

    async def info(self, path: str) -> StreamInfo:
        return await self._info_call(path, touch=False)

    async def touch(self, path: str) -> StreamInfo:
        return await self._info_call(path, touch=True)

    async def _info_call(self, path: str, *, touch: bool) -> StreamInfo:
        reply = await self._eval("info", self._keys(path), ["1" if touch else "0"], retry=True)
        await self._settle(path, reply[1])
        if reply[0] != b"OK":
            raise self._error(path, reply)
        return _info(path, reply[2:])

    async def delete(self, path: str) -> None:
        reply = await self._eval("delete", self._keys(path), [])
        await self._settle(path, reply[1])
        if reply[0] != b"OK":
            raise self._error(path, reply)

    # -- annotations (lua/annotate.lua: meta hash fields ``a:<name>``)

    async def annotate(self, path: str, name: str, value: str) -> None:
        check_annotation(name, value)
        reply = await self._eval("annotate", self._keys(path), ["set", name, value])
        await self._settle(path, reply[1])
        if reply[0] != b"OK":
            raise self._error(path, reply)

    async def annotation(self, path: str, name: str) -> str | None:
        check_annotation(name)
        reply = await self._eval("annotate", self._keys(path), ["get", name, ""], retry=True)
        await self._settle(path, reply[1])
        if reply[0] != b"OK":
            raise self._error(path, reply)
        return None if reply[2] is None else bytes(reply[2]).decode("utf-8")

    # -- the sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("log.sweep_failed", error=str(exc))

    async def sweep(self) -> None:
        """One pass: retire expired streams, collect soft-deleted ones nothing references.

        Every process runs it; every step is an idempotent script, so they don't conflict.
        """
        seconds, micros = await self._cmd(self._redis.time())
        now = seconds * 1000 + micros // 1000
        for _ in range(16):  # bounded: the rest waits for the next pass
            due = await self._cmd(
                self._redis.zrangebyscore(self._exp_key, "-inf", now, start=0, num=256)
            )
            for raw in due:
                await self._sweep_expired(_text(raw))
            if len(due) < 256:
                break
        self._passes += 1
        if self._passes % _GONE_EVERY:
            return
        cursor = 0
        while True:
            cursor, gone = await self._cmd(self._redis.sscan(self._gone_key, cursor, count=256))
            for raw in gone:
                await self._sweep_gone(_text(raw), now)
            if cursor == 0:
                break

    async def _sweep_expired(self, path: str) -> None:
        # info.lua removes (or soft-deletes) an expired stream as any access would.
        reply = await self._eval("info", self._keys(path), ["0"], retry=True)
        await self._settle(path, reply[1])
        if reply[0] == b"OK":
            expires = _opt_int(reply[7])
            if expires is None:
                await self._best_effort(self._redis.zrem(self._exp_key, path))
            else:  # a sliding TTL moved on: look again then
                await self._best_effort(self._redis.zadd(self._exp_key, {path: expires}))
            return
        await self._best_effort(self._redis.zrem(self._exp_key, path))
        if reply[0] == b"GONE":
            await self._best_effort(self._redis.sadd(self._gone_key, path))

    async def _sweep_gone(self, path: str, now: int) -> None:
        keys = self._keys(path)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(keys.meta, "del")
        pipe.hgetall(keys.forks)
        deleted, forks = await self._cmd(pipe.execute())
        if deleted != b"1":
            await self._best_effort(self._redis.srem(self._gone_key, path))
            return
        if not forks:
            await self._release(path, "", "")
            return
        # Forks whose keys Redis expired (no process swept them in time) never released
        # their reference; a reference whose fork is missing, and old enough not to be a fork
        # still being created, is released here.
        names = list(forks)
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._keys(_text(name)).meta, "gen")
        gens = await self._cmd(pipe.execute())
        for name, actual in zip(names, gens, strict=True):
            expected = forks[name]
            if actual != expected and now - _gen_ms(expected) > _ORPHAN_AGE_MS:
                await self._release(path, _text(name), expected)


@dataclass(frozen=True, slots=True)
class _CreateFields:
    """What create.lua writes for a new stream (see its header for the ARGV layout)."""

    ct: str
    ttl: int | None
    expires: int | None
    closed: bool
    source: str = ""
    source_gen: str = ""
    ancestors: str = ""
    base: Offset = ZERO
    start: Offset = ZERO
    prefix: Sequence[bytes] = ()

    def args(self, gen: str, config: StreamConfig, initial: Sequence[bytes]) -> list[Any]:
        return [
            "create",
            gen,
            _encode_config(config),
            self.ct,
            media_type(self.ct),
            "" if self.ttl is None else self.ttl,
            "" if self.expires is None else self.expires,
            "1" if self.closed else "0",
            self.source,
            self.source_gen,
            self.ancestors,
            self.base.entries,
            self.base.bytes,
            self.start.entries,
            self.start.bytes,
            len(self.prefix),
            *self.prefix,
            *initial,
        ]

    @staticmethod
    def probe() -> list[Any]:
        return ["probe", "", "", "", "", "", "", "0", "", "", "", 0, 0, 0, 0, 0]
