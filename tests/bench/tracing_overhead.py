"""Benchmark: what tracing costs, as delivery events/s with tracing off vs on, side by side.

Not a test (nothing here asserts a time). Run:

    .venv/bin/python tests/bench/tracing_overhead.py [--rounds 3] [--generations 20] [--tokens 500]

Each round starts ``rivulet serve`` twice on the embedded default (memory log, in-process
worker, fake provider at full speed): once with tracing off, once exporting every span over
OTLP/HTTP to a local sink that accepts and discards them (so encoding and export run for
real). In each, ``--generations`` generations run at once, each followed by one EventSource
reader; events/s = events received by all readers / wall time from first POST to last event.
Reports the median over rounds, min-max, and the on/off ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Sink(BaseHTTPRequestHandler):
    spans_bytes = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        _Sink.spans_bytes += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _server(env: dict[str, str]):  # type: ignore[no-untyped-def]
    port = _free_port()
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RIVULET_", "OTEL_", "REDIS"))},
        "RIVULET_PORT": str(port),
        "RIVULET_LOG_LEVEL": "warning",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
        "RIVULET_WORKERS": "64",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve"],
        env=full,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)


async def _read(client: httpx.AsyncClient, url: str) -> int:
    events = 0
    async with client.stream("GET", url) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                events += 1
                if '"type":"finish"' in line or '"type":"error"' in line:
                    return events
    return events


async def _round(url: str, generations: int, tokens: int) -> float:
    body = {
        "messages": [{"role": "user", "content": "benchmark"}],
        "params": {"fake": {"tokens": tokens, "rate": 0}},
    }
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        created = await asyncio.gather(
            *(client.post("/v1/generations", json=body) for _ in range(generations))
        )
        urls = [r.json()["events_url"] for r in created]
        counts = await asyncio.gather(*(_read(client, u) for u in urls))
        elapsed = time.perf_counter() - started
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()

    sink_port = _free_port()
    sink = ThreadingHTTPServer(("127.0.0.1", sink_port), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    modes = {
        "off": {},
        "on": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OTEL_SERVICE_NAME": "rivulet-bench",
        },
    }
    results: dict[str, list[float]] = {m: [] for m in modes}
    for rnd in range(args.rounds):
        for mode, env in modes.items():
            with _server(env) as url:
                asyncio.run(_round(url, 2, 20))  # warm-up
                rate = asyncio.run(_round(url, args.generations, args.tokens))
            results[mode].append(rate)
            print(f"round {rnd + 1} tracing {mode:>3}: {rate:,.0f} events/s", flush=True)
    sink.shutdown()
    off, on = (statistics.median(results[m]) for m in ("off", "on"))
    print()
    print("| tracing | delivery events/s (median) | min-max |")
    print("|---|---|---|")
    for mode in modes:
        vals = results[mode]
        print(f"| {mode} | {statistics.median(vals):,.0f} | {min(vals):,.0f}-{max(vals):,.0f} |")
    print(
        f"\nratio on/off: {on / off:.2f} ({args.rounds} rounds, {args.generations} "
        f"generations x {args.tokens} tokens, 1 reader each; OTLP bytes exported: "
        f"{_Sink.spans_bytes:,})"
    )


if __name__ == "__main__":
    main()
