"""Benchmark: what Rivulet adds to time-to-first-token, measured side by side in one run.

Not a test (nothing here asserts a time). Run:

    .venv/bin/python tests/bench/ttft_overhead.py [--concurrency 100] [--rounds 3]

Both paths use the real OpenAI SDK's wire and the same ``rivulet fake-provider`` process:

- **direct**: ``AsyncOpenAI(...).chat.completions.create(stream=True)`` straight to the fake;
  TTFT = request start → first content chunk.
- **through Rivulet**: ``POST /v1/generations`` (provider ``openai``, pointed at the same fake),
  then the EventSource stream; TTFT = POST start → first content event. This includes the
  job queue, a worker's claim, the provider call (same SDK), the append to the log and the
  delivery to the reader.

``--concurrency`` requests start at once; each round reports p50/p99 for both and the
difference. Reported: medians over rounds (min-max).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
from openai import AsyncOpenAI

from service.bench.client import Endpoint, open_sse, post_json

MESSAGES = [{"role": "user", "content": "ttft"}]
FAKE = {"tokens": 3, "rate": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(15)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _direct(base: str, n: int) -> list[float]:
    client = AsyncOpenAI(api_key="sk-bench", base_url=f"{base}/v1", max_retries=0)

    async def one() -> float:
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="bench",
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
            extra_body={"fake": FAKE},
        )
        first = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        assert first is not None
        return first * 1000

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


async def _through(base: str, n: int) -> list[float]:
    endpoint = Endpoint.parse(base)
    body = json.dumps(
        {"provider": "openai", "model": "bench", "messages": MESSAGES, "params": {"fake": FAKE}}
    ).encode()

    async def one() -> float:
        # The client's POST on a connection of its own (see service.bench.client.post_json).
        started = time.perf_counter()
        status, reply = await post_json(endpoint, "/v1/generations", body)
        assert status == 201, reply
        conn = await open_sse(endpoint, f"/v1/generations/{json.loads(reply)['id']}/events")
        try:
            async for _, data in conn.events():
                if '"type":"content"' in data:
                    return (time.perf_counter() - started) * 1000
        finally:
            conn.close()
        raise AssertionError("no content event")

    return list(await asyncio.gather(*(one() for _ in range(n))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fake_port, api_port = _free_port(), _free_port()
    fake = f"http://127.0.0.1:{fake_port}"
    api = f"http://127.0.0.1:{api_port}"
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RIVULET_", "OPENAI_", "ANTHROPIC_", "REDIS_URL", "OTEL_"))
    }
    api_env = base_env | {
        "RIVULET_PORT": str(api_port),
        "RIVULET_LOG_LEVEL": "warning",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"{fake}/v1",
        "RIVULET_WORKERS": str(args.concurrency),
        "RIVULET_RATE_LIMIT": "0",
        "RIVULET_MAX_CONCURRENT_GENERATIONS": "0",
        "RIVULET_MAX_SSE_PER_CLIENT": "0",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
    }
    rows = []
    with (
        _process(["fake-provider", "--port", str(fake_port)], base_env, f"{fake}/_fake/requests"),
        _process(["serve"], api_env, f"{api}/readyz"),
    ):
        asyncio.run(_direct(fake, 5))  # warm both paths (imports, pools, first allocations)
        asyncio.run(_through(api, 5))
        for _ in range(args.rounds):
            direct = asyncio.run(_direct(fake, args.concurrency))
            through = asyncio.run(_through(api, args.concurrency))
            rows.append(
                {
                    "direct_p50": _pct(direct, 0.5),
                    "direct_p99": _pct(direct, 0.99),
                    "through_p50": _pct(through, 0.5),
                    "through_p99": _pct(through, 0.99),
                }
            )
    print(
        f"TTFT at {args.concurrency} concurrent, {args.rounds} rounds "
        "(median, min-max; milliseconds)\n"
    )
    print("| path | p50 | p99 |\n|---|---|---|")
    for label, key in (
        ("direct to the fake (OpenAI SDK)", "direct"),
        ("through Rivulet (queue, worker, log, SSE)", "through"),
    ):
        cells = []
        for q in ("p50", "p99"):
            values = [r[f"{key}_{q}"] for r in rows]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    added = {q: [r[f"through_{q}"] - r[f"direct_{q}"] for r in rows] for q in ("p50", "p99")}
    print(
        f"| **added by Rivulet** | {statistics.median(added['p50']):.1f} | "
        f"{statistics.median(added['p99']):.1f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
