"""Seed baseline: the article's pattern written plainly (Starlette + sse-starlette + Redis).

One request handler does everything, as in the article:

* ``GET /api/stream?messageId=ID&tokens=T&rate=R&startAt=UNIX_SECONDS``
* if the answer for ID is cached (a Redis list ``cache:ID``), replay it;
* else, if nobody is generating ID (``SET running:ID NX``), this request runs the (fake,
  stamped) token generator itself, inside the handler, publishing every chunk on the Redis
  pub/sub channel ``stream:ID`` and streaming it to its own client; at the end the whole
  answer is cached (``RPUSH cache:ID``);
* else it subscribes to ``stream:ID`` and relays what it hears (anything published before it
  subscribed is lost: that is the pattern, not a bug of this file).

Events have Rivulet's shape: ``{"type":"content","delta":"word@<unix seconds>"}`` ...
``{"type":"finish","reason":"stop"}``. ``startAt`` schedules the first token so every reader
of a fan-out attaches first (the benchmark's equivalent of Rivulet's ``stall_before_first``).

Run: ``REDIS_URL=redis://... uvicorn seed_baseline:app --host 127.0.0.1 --port P``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

WORDS = ("river", "stream", "delta", "bank", "current", "flow", "eddy", "reach")
FINISH = json.dumps({"type": "finish", "reason": "stop"}, separators=(",", ":"))

redis: Redis | None = None


def _content(i: int) -> str:
    delta = f"{WORDS[i % len(WORDS)]}@{time.time():.6f}"
    return json.dumps({"type": "content", "delta": delta}, separators=(",", ":"))


async def _replay(r: Redis, cache_key: str) -> AsyncIterator[dict[str, str]]:
    for raw in await r.lrange(cache_key, 0, -1):
        yield {"data": raw.decode()}


async def _events(
    message_id: str, tokens: int, rate: float, start_at: float
) -> AsyncIterator[dict[str, str]]:
    assert redis is not None
    r = redis
    channel, cache_key = f"stream:{message_id}", f"cache:{message_id}"
    if await r.exists(cache_key):
        async for event in _replay(r, cache_key):
            yield event
        return
    if await r.set(f"running:{message_id}", "1", nx=True, ex=600):
        # This request is the generator: the model call lives inside the handler.
        chunks: list[str] = []
        for i in range(tokens):
            due = start_at + (i / rate if rate > 0 else 0.0)
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            data = _content(i)
            chunks.append(data)
            await r.publish(channel, data)
            yield {"data": data}
        # The cache is written at the end, then the finish is announced.
        await r.rpush(cache_key, *chunks, FINISH)
        await r.expire(cache_key, 3600)
        await r.publish(channel, FINISH)
        yield {"data": FINISH}
        return
    # Someone else is generating: follow the pub/sub channel.
    pubsub = r.pubsub()
    await pubsub.subscribe(channel)
    try:
        if await r.exists(cache_key):  # finished while we subscribed
            async for event in _replay(r, cache_key):
                yield event
            return
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            data = message["data"].decode()
            yield {"data": data}
            if '"type":"finish"' in data:
                return
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()


async def stream(request: Request) -> EventSourceResponse:
    q = request.query_params
    return EventSourceResponse(
        _events(
            q.get("messageId", "default"),
            int(q.get("tokens", "100")),
            float(q.get("rate", "20")),
            float(q.get("startAt", str(time.time()))),
        )
    )


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global redis
    # redis-py's pool refuses a 101st connection by default; every pub/sub follower holds one.
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    redis = Redis.from_url(url, max_connections=10_000)
    yield
    await redis.aclose()


app = Starlette(
    routes=[Route("/api/stream", stream), Route("/healthz", healthz)], lifespan=lifespan
)
