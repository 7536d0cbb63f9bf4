"""Plain Litestar SSE: the floor for Rivulet's delivery path, measured in the same run.

An in-process token generator per request, streamed with Litestar's own ``ServerSentEvent``
under uvicorn: no log, no resume, no tracing, no Redis. What Rivulet does per event on top of
this (persist, notify, resume offsets, metrics) is the difference the comparison prices.

* ``GET /api/stream?messageId=ID&tokens=T&rate=R&startAt=UNIX_SECONDS``: every request
  generates its own answer (fan-out readers each get the same schedule), in Rivulet's event
  shape: ``{"type":"content","delta":"word@<unix seconds>"}`` ... ``{"type":"finish"}``.

Run: ``uvicorn litestar_plain:app --host 127.0.0.1 --port P`` (the project's venv).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from litestar import Litestar, get
from litestar.response import ServerSentEvent

WORDS = ("river", "stream", "delta", "bank", "current", "flow", "eddy", "reach")
FINISH = json.dumps({"type": "finish", "reason": "stop"}, separators=(",", ":"))


async def _tokens(tokens: int, rate: float, start_at: float) -> AsyncIterator[str]:
    for i in range(tokens):
        wait = start_at + (i / rate if rate > 0 else 0.0) - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        delta = f"{WORDS[i % len(WORDS)]}@{time.time():.6f}"
        yield json.dumps({"type": "content", "delta": delta}, separators=(",", ":"))
    yield FINISH


@get("/api/stream")
async def stream(
    tokens: int = 100,
    rate: float = 20.0,
    startAt: float = 0.0,
    messageId: str = "",
) -> ServerSentEvent:
    del messageId  # one generator per request: nothing is shared
    return ServerSentEvent(_tokens(tokens, rate, startAt or time.time()))


@get("/healthz")
async def healthz() -> str:
    return "ok"


app = Litestar([stream, healthz], logging_config=None, openapi_config=None)
