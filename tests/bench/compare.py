"""Side-by-side peer comparison (issue 8): Rivulet against the patterns it replaces.

Every peer runs on this machine, on loopback, driven by the same loadgen (``rivulet bench``'s
``run_readers``: raw asyncio SSE readers that time each stamped token from emit to receipt).

Peers
    ``seed``           the article's pattern: Starlette + sse-starlette, generation inside the
                       request handler, Redis pub/sub for other readers, cache at the end
                       (peers/seed_baseline.py under uvicorn, its own venv in .tmp/bench-venv).
    ``resumable``      vercel ``resumable-stream`` on Redis (peers/resumable_stream_server.mjs).
    ``rivulet-mem``    ``rivulet serve``, memory backend, in-process workers.
    ``rivulet-redis``  ``rivulet serve`` (RIVULET_WORKERS=0) + ``rivulet worker``, Redis Streams.
    ``ds-ref``         the Durable Streams reference server (@durable-streams/server, in-memory).
    ``rivulet-mem-ds`` / ``rivulet-redis-ds``  Rivulet's /v1/stream on the same protocol path.

Two paths
    generation path  the server produces the tokens (fake, stamped, rate R); readers GET them.
    protocol path    a producer process appends stamped JSON messages at rate R to each stream
                     (one POST each, ``Content-Type: application/json``); readers GET
                     ``?offset=-1&live=sse``. The producer's CPU is reported apart.

Scenarios: ``steady`` (N streams x R tokens/s, one reader each) and ``fanout`` (1 stream x N
readers). The first token of every stream is due ``lead`` seconds after the streams are set
up, so readers attach first; TTFT is first-token receipt minus that due time.

Usage: ``.venv/bin/python tests/bench/compare.py [--quick] [--repeat 3]``; writes
tests/bench/RESULTS.md and prints the same markdown. Each server, Redis included, is started
here on a free loopback port and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import multiprocessing
import os
import platform
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from service.bench.client import Endpoint, post_json  # noqa: E402
from service.bench.run import (  # noqa: E402
    ProcessProbe,
    ReaderJob,
    ReaderResult,
    percentiles,
    run_readers,
)

TMP = ROOT / ".tmp"
BENCH_VENV = TMP / "bench-venv"
LOGS = TMP / "bench-logs"
NODE_BIN = TMP / "node" / "node_modules" / "node" / "bin"
SEED_PACKAGES = ["sse-starlette", "starlette", "uvicorn[standard]", "redis"]
MESSAGES = [{"role": "user", "content": "rivulet compare"}]
RIVULET_ENV = {
    "RIVULET_HOST": "127.0.0.1",
    "RIVULET_LOG_LEVEL": "warning",
    "RIVULET_RATE_LIMIT": "0",
    "RIVULET_MAX_SSE_PER_CLIENT": "0",
    "RIVULET_MAX_CONCURRENT_GENERATIONS": "0",
    "RIVULET_MAX_STREAMS_PER_KEY": "0",
    "RIVULET_CANCEL_WITHOUT_READER": "0",
}
# Generations a process runs at once: above any scenario's stream count, so Rivulet never
# queues a generation the peers (unbounded) would start at once.
RIVULET_WORKERS = "4096"
FINISH = json.dumps({"type": "finish", "reason": "stop"}, separators=(",", ":"))
WORDS = ("river", "stream", "delta", "bank", "current", "flow", "eddy", "reach")


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("RIVULET_", "REDIS_URL", "OTEL_"))
    }
    if NODE_BIN.is_dir():
        base["PATH"] = f"{NODE_BIN}{os.pathsep}{base.get('PATH', '')}"
    return base | extra


def _wait_ready(proc: subprocess.Popen[bytes], port: int, http_path: str | None, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} not ready on port {port}: see {log}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if http_path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            elif httpx.get(f"http://127.0.0.1:{port}{http_path}", timeout=1).status_code == 200:
                return
        time.sleep(0.1)


@contextlib.contextmanager
def process(
    name: str, cmd: list[str], env: dict[str, str], port: int, http_path: str | None, cwd: Path
) -> Iterator[int]:
    """Start ``cmd``, wait until ``port`` answers, yield its PID; stop it by that PID."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port, http_path, log)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def redis_server(name: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--maxclients", "10000"]
    with process(f"{name}-redis", cmd, _env({}), port, None, TMP) as pid:
        yield f"redis://127.0.0.1:{port}/0", pid


# -- peers -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Running:
    url: str
    server_pids: list[int]
    redis_pid: int | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    path: str  # "generation" (server makes tokens) or "protocol" (Durable Streams appends)
    label: str
    start: Callable[[], contextlib.AbstractContextManager[Running]]
    kind: str = ""  # generation path: "rivulet" or "get" (GET creates); protocol: stream prefix


@contextlib.contextmanager
def start_rivulet_mem() -> Iterator[Running]:
    port = free_port()
    env = _env(RIVULET_ENV | {"RIVULET_PORT": str(port), "RIVULET_WORKERS": RIVULET_WORKERS})
    cmd = [sys.executable, "-m", "service.cli", "serve"]
    with process("rivulet-mem", cmd, env, port, "/readyz", ROOT) as pid:
        yield Running(f"http://127.0.0.1:{port}", [pid])


@contextlib.contextmanager
def start_rivulet_redis() -> Iterator[Running]:
    with redis_server("rivulet") as (redis_url, redis_pid):
        port, worker_port = free_port(), free_port()
        common = RIVULET_ENV | {
            "REDIS_URL": redis_url,
            "RIVULET_REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        }
        api_env = _env(common | {"RIVULET_PORT": str(port), "RIVULET_WORKERS": "0"})
        worker_env = _env(
            common | {"RIVULET_PORT": str(worker_port), "RIVULET_WORKERS": RIVULET_WORKERS}
        )
        serve = [sys.executable, "-m", "service.cli", "serve"]
        work = [sys.executable, "-m", "service.cli", "worker"]
        with (
            process("rivulet-redis-api", serve, api_env, port, "/readyz", ROOT) as api,
            process("rivulet-redis-worker", work, worker_env, worker_port, "/readyz", ROOT) as w,
        ):
            yield Running(f"http://127.0.0.1:{port}", [api, w], redis_pid)


@contextlib.contextmanager
def start_seed() -> Iterator[Running]:
    with redis_server("seed") as (redis_url, redis_pid):
        port = free_port()
        cmd = [str(BENCH_VENV / "bin" / "uvicorn"), "seed_baseline:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        env = _env({"REDIS_URL": redis_url})
        with process("seed", cmd, env, port, "/healthz", HERE / "peers") as pid:
            yield Running(f"http://127.0.0.1:{port}", [pid], redis_pid)


@contextlib.contextmanager
def start_litestar() -> Iterator[Running]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "litestar_plain:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    with process("litestar", cmd, _env({}), port, "/healthz", HERE / "peers") as pid:
        yield Running(f"http://127.0.0.1:{port}", [pid])


@contextlib.contextmanager
def start_resumable() -> Iterator[Running]:
    with redis_server("resumable") as (redis_url, redis_pid):
        port = free_port()
        cmd = [_node(), str(HERE / "peers" / "resumable_stream_server.mjs"), str(port), redis_url]
        with process("resumable", cmd, _env({}), port, "/healthz", HERE) as pid:
            yield Running(f"http://127.0.0.1:{port}", [pid], redis_pid)


@contextlib.contextmanager
def start_ds_ref() -> Iterator[Running]:
    port = free_port()
    cmd = [_node(), str(HERE / "peers" / "durable_streams_server.mjs"), str(port)]
    with process("ds-ref", cmd, _env({}), port, None, HERE) as pid:
        yield Running(f"http://127.0.0.1:{port}", [pid])


PEERS = [
    Peer(
        "litestar",
        "generation",
        "Plain Litestar SSE, in-process generator (the delivery floor: no log, no Redis)",
        start_litestar,
        "get",
    ),
    Peer(
        "seed",
        "generation",
        "Seed baseline (Starlette + sse-starlette + Redis pub/sub)",
        start_seed,
        "get",
    ),
    Peer(
        "resumable", "generation", "vercel resumable-stream (Node, Redis)", start_resumable, "get"
    ),
    Peer("rivulet-mem", "generation", "Rivulet, memory backend", start_rivulet_mem, "rivulet"),
    Peer(
        "rivulet-redis",
        "generation",
        "Rivulet, Redis, API + worker",
        start_rivulet_redis,
        "rivulet",
    ),
    Peer(
        "ds-ref",
        "protocol",
        "Durable Streams reference server (Node, memory)",
        start_ds_ref,
        "/bench",
    ),
    Peer(
        "rivulet-mem-ds",
        "protocol",
        "Rivulet /v1/stream, memory",
        start_rivulet_mem,
        "/v1/stream/bench",
    ),
    Peer(
        "rivulet-redis-ds",
        "protocol",
        "Rivulet /v1/stream, Redis + worker",
        start_rivulet_redis,
        "/v1/stream/bench",
    ),
]


def _node() -> str:
    node = NODE_BIN / "node"
    return str(node) if node.exists() else (shutil.which("node") or "node")


# -- the protocol path's producer ------------------------------------------------------------


async def _post_loop(
    endpoint: Endpoint, path: str, tokens: int, rate: float, start_at: float
) -> int:
    """Append ``tokens`` stamped messages and a finish to ``path`` on one keep-alive socket."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, limit=1 << 20)
    errors = 0
    head = (
        f"POST {endpoint.prefix}{path} HTTP/1.1\r\nHost: {endpoint.host}:{endpoint.port}\r\n"
        "Content-Type: application/json\r\n"
    )
    try:
        for i in range(tokens + 1):
            due = start_at + min(i, tokens - 1) / rate if rate > 0 else start_at
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if i < tokens:
                delta = f"{WORDS[i % len(WORDS)]}@{time.time():.6f}"
                body = json.dumps({"type": "content", "delta": delta}, separators=(",", ":"))
            else:
                body = FINISH
            raw = body.encode()
            writer.write(f"{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
            response = await reader.readuntil(b"\r\n\r\n")
            status = int(response.split(b" ", 2)[1])
            lower = response.lower()
            if b"content-length:" in lower:
                length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                if length:
                    await reader.readexactly(length)
            elif b"chunked" in lower:
                await reader.readuntil(b"0\r\n\r\n")
            if status >= 300:
                errors += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors += 1
    finally:
        writer.close()
    return errors


def _producer(
    url: str, paths: list[str], tokens: int, rate: float, start_at: float, out: Any
) -> None:
    endpoint = Endpoint.parse(url)

    async def main() -> int:
        done = await asyncio.gather(
            *(_post_loop(endpoint, p, tokens, rate, start_at) for p in paths)
        )
        return sum(done)

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    errors = asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((errors, usage.ru_utime + usage.ru_stime))


async def _create_streams(url: str, paths: list[str]) -> None:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(path: str) -> None:
            r = await client.put(path, headers={"content-type": "application/json"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"PUT {path}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(one(p) for p in paths))


# -- the generation path's setup --------------------------------------------------------------


async def _create_generations(
    url: str, n: int, tokens: int, rate: float, stall: float
) -> list[tuple[str, float]]:
    fake = {"tokens": tokens, "rate": rate, "stamp": True, "stall_before_first": stall}
    body = json.dumps(
        {"provider": "fake", "model": "bench", "messages": MESSAGES, "params": {"fake": fake}}
    ).encode()
    endpoint = Endpoint.parse(url)

    # Each POST on a connection of its own, all at once (as n clients would): a pooled client
    # would queue them behind its own connection limit and charge that wait to Rivulet's TTFT.
    async def one() -> tuple[str, float]:
        started = time.time()
        status, reply = await post_json(endpoint, "/v1/generations", body)
        if status != 201:
            raise RuntimeError(f"POST /v1/generations: {status} {reply[:300]!r}")
        return str(json.loads(reply)["id"]), started + stall

    return list(await asyncio.gather(*(one() for _ in range(n))))


# -- one run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    readers: int
    completed: int
    stamped: int
    expected: int
    wall_s: float
    latency_ms: dict[str, float]
    ttft_ms: dict[str, float]
    errors: int
    error_kinds: dict[str, int]
    server_cpu_s: float
    redis_cpu_s: float | None
    peak_rss_mib: float
    loadgen_cpu_s: float
    producer_cpu_s: float | None = None
    timed_out: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.stamped / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.server_cpu_s / self.stamped if self.stamped else float("nan")

    @property
    def redis_per_1k(self) -> float | None:
        if self.redis_cpu_s is None:
            return None
        return 1000 * self.redis_cpu_s / self.stamped if self.stamped else float("nan")


class RssSampler:
    """Peak summed RSS of the server processes, sampled every 100 ms on a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.probes = [ProcessProbe(p) for p in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, sum(p.rss() for p in self.probes))

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _readers_with_timeout(
    url: str, jobs: list[ReaderJob], processes: int, timeout: float
) -> tuple[list[ReaderResult], float, bool]:
    """``run_readers``, but a stuck run is cut off: its loadgen processes are terminated."""
    progress = multiprocessing.get_context("fork").Value("q", 0)
    box: dict[str, Any] = {}
    before = {p.pid for p in multiprocessing.active_children()}

    def target() -> None:
        box["out"] = run_readers(url, jobs, {}, processes, progress)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():  # the abandoned thread stays blocked on the loadgen queue
        for child in multiprocessing.active_children():
            if child.pid not in before:
                child.terminate()
        return [ReaderResult(errors=["timeout"]) for _ in jobs], 0.0, True
    results, cpu = box["out"]
    return results, cpu, False


def run_once(peer: Peer, running: Running, scenario: str, args: argparse.Namespace) -> Run:
    streams = args.streams if scenario == "steady" else 1
    readers_per_stream = 1 if scenario == "steady" else args.readers
    lead = args.lead_steady if scenario == "steady" else args.lead_fanout
    tokens, rate = args.tokens, args.rate
    probes = [ProcessProbe(p) for p in running.server_pids]
    redis_probe = ProcessProbe(running.redis_pid) if running.redis_pid else None
    cpu_before = sum(p.cpu_seconds() for p in probes)
    redis_before = redis_probe.cpu_seconds() if redis_probe else 0.0
    tag = uuid.uuid4().hex[:8]
    producer = None
    out = None
    jobs: list[ReaderJob] = []
    with RssSampler(running.server_pids) as rss:
        if peer.path == "generation" and peer.kind == "rivulet":
            # The stall runs from each POST, and the readers attach only after every POST:
            # allow ~10 ms a generation on top, so they are attached before the first token.
            stall = lead + 0.01 * streams
            gens = asyncio.run(_create_generations(running.url, streams, tokens, rate, stall))
            for gen, due in gens:
                path = f"/v1/generations/{gen}/events"
                jobs += [ReaderJob(path, started_at=due) for _ in range(readers_per_stream)]
        elif peer.path == "generation":
            start_at = time.time() + lead
            for i in range(streams):
                path = f"/api/stream?messageId={tag}-{i}&tokens={tokens}&rate={rate}"
                path += f"&startAt={start_at:.6f}"
                jobs += [ReaderJob(path, started_at=start_at) for _ in range(readers_per_stream)]
        else:
            paths = [f"{peer.kind}-{tag}-s{i}" for i in range(streams)]
            asyncio.run(_create_streams(running.url, paths))
            start_at = time.time() + lead
            ctx = multiprocessing.get_context("fork")
            out = ctx.Queue()
            producer = ctx.Process(
                target=_producer, args=(running.url, paths, tokens, rate, start_at, out)
            )
            producer.start()
            for path in paths:
                read = f"{path}?offset=-1&live=sse"
                jobs += [ReaderJob(read, started_at=start_at) for _ in range(readers_per_stream)]
        timeout = lead + 2 * tokens / rate + 15
        started = time.monotonic()
        results, loadgen_cpu, timed_out = _readers_with_timeout(
            running.url, jobs, args.processes, timeout
        )
        ended = time.time()
        # The delivery window: from the median first-token due time to the last reader's end.
        dues = [j.started_at for j in jobs if j.started_at is not None]
        wall = ended - statistics.median(dues) if dues else time.monotonic() - started
    producer_errors, producer_cpu = 0, None
    if producer is not None and out is not None:
        try:
            producer_errors, producer_cpu = out.get(timeout=30)
        except Exception:  # a stuck producer is an error of the run
            producer_errors = 1
            producer.terminate()
        producer.join(10)
    kinds: dict[str, int] = {}
    for r in results:
        for e in r.errors:
            kinds[e] = kinds.get(e, 0) + 1
        if not r.done and not r.errors:
            kinds["incomplete"] = kinds.get("incomplete", 0) + 1
    if producer_errors:
        kinds["producer"] = producer_errors
    return Run(
        readers=len(results),
        completed=sum(r.done for r in results),
        stamped=sum(len(r.latencies_ms) for r in results),
        expected=len(jobs) * tokens,
        wall_s=wall,
        latency_ms=percentiles([x for r in results for x in r.latencies_ms]),
        ttft_ms=percentiles([r.ttft_ms for r in results if r.ttft_ms is not None]),
        errors=sum(kinds.values()),
        error_kinds=kinds,
        server_cpu_s=sum(p.cpu_seconds() for p in probes) - cpu_before,
        redis_cpu_s=(redis_probe.cpu_seconds() - redis_before) if redis_probe else None,
        peak_rss_mib=rss.peak / 2**20,
        loadgen_cpu_s=loadgen_cpu,
        producer_cpu_s=producer_cpu,
        timed_out=timed_out,
    )


# -- report ------------------------------------------------------------------------------------


def _agg(values: list[float | None], fmt: str = "{:,.0f}") -> str:
    xs = [v for v in values if v is not None and v == v]
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1 or min(xs) == max(xs):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def _median(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None and v == v]
    return statistics.median(xs) if xs else None


COLUMNS = (
    "peer",
    "tokens/s",
    "delivered",
    "p50 ms",
    "p99 ms",
    "TTFT p50 ms",
    "errors",
    "server CPU s/1k",
    "Redis CPU s/1k",
    "peak RSS MiB",
    "loadgen CPU s",
)


def _row(peer: Peer, runs: list[Run]) -> list[str]:
    delivered = [100 * r.stamped / r.expected if r.expected else None for r in runs]
    completed = sum(r.completed for r in runs)
    total = sum(r.readers for r in runs)
    loadgen = _agg([r.loadgen_cpu_s for r in runs], "{:.1f}")
    producer = [r.producer_cpu_s for r in runs]
    if any(p is not None for p in producer):
        loadgen += f" + producer {_agg(producer, '{:.1f}')}"
    return [
        peer.name,
        _agg([r.tokens_per_s for r in runs]),
        f"{_agg(delivered, '{:.0f}')}% ({completed}/{total} done)",
        _agg([r.latency_ms.get("p50") for r in runs], "{:.1f}"),
        _agg([r.latency_ms.get("p99") for r in runs], "{:.1f}"),
        _agg([r.ttft_ms.get("p50") for r in runs], "{:.1f}"),
        _agg([float(r.errors) for r in runs]),
        _agg([r.cpu_per_1k for r in runs], "{:.3f}"),
        _agg([r.redis_per_1k for r in runs], "{:.3f}"),
        _agg([r.peak_rss_mib for r in runs], "{:.0f}"),
        loadgen,
    ]


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def ratios(results: dict[tuple[str, str], list[Run]], peers: list[Peer], scenario: str) -> str:
    """Rivulet / peer, medians over repetitions, for the peers on the same path."""
    rows = []
    by_name = {p.name: p for p in peers}
    pairs = [
        ("rivulet-mem", "litestar"),
        ("rivulet-mem", "seed"),
        ("rivulet-redis", "seed"),
        ("rivulet-mem", "resumable"),
        ("rivulet-redis", "resumable"),
        ("rivulet-mem-ds", "ds-ref"),
        ("rivulet-redis-ds", "ds-ref"),
    ]
    for ours, theirs in pairs:
        a, b = results.get((ours, scenario)), results.get((theirs, scenario))
        if not a or not b or ours not in by_name or theirs not in by_name:
            continue

        def med(runs: list[Run], f: Callable[[Run], float | None]) -> float | None:
            return _median([f(r) for r in runs])

        def total_cpu(r: Run) -> float:
            return r.cpu_per_1k + (r.redis_per_1k or 0.0)

        rows.append(
            [
                f"{ours} / {theirs}",
                _ratio(med(a, lambda r: r.tokens_per_s), med(b, lambda r: r.tokens_per_s)),
                _ratio(
                    med(a, lambda r: r.latency_ms.get("p50")),
                    med(b, lambda r: r.latency_ms.get("p50")),
                ),
                _ratio(
                    med(a, lambda r: r.latency_ms.get("p99")),
                    med(b, lambda r: r.latency_ms.get("p99")),
                ),
                _ratio(
                    med(a, lambda r: r.ttft_ms.get("p50")), med(b, lambda r: r.ttft_ms.get("p50"))
                ),
                _ratio(med(a, lambda r: r.cpu_per_1k), med(b, lambda r: r.cpu_per_1k)),
                _ratio(med(a, total_cpu), med(b, total_cpu)),
                _ratio(med(a, lambda r: r.peak_rss_mib), med(b, lambda r: r.peak_rss_mib)),
            ]
        )
    header = [
        "Rivulet / peer",
        "tokens/s",
        "p50",
        "p99",
        "TTFT p50",
        "server CPU/1k",
        "server+Redis CPU/1k",
        "peak RSS",
    ]
    return _table(header, rows) if rows else ""


# -- environment ---------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=_env({}), capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({exc})"
    return (proc.stdout or proc.stderr).strip()


def install(skip: bool) -> None:
    if not (BENCH_VENV / "bin" / "uvicorn").exists():
        if skip:
            raise SystemExit(f"{BENCH_VENV} is missing (run without --skip-install)")
        print(f"creating {BENCH_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(BENCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *SEED_PACKAGES], check=True)
    if not skip or not (HERE / "node_modules").is_dir():
        print("npm ci in tests/bench ...", file=sys.stderr)
        npm = str(NODE_BIN / "npm") if (NODE_BIN / "npm").exists() else shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not on PATH")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            env=_env({}),
            stdout=sys.stderr,
            check=True,
        )


def versions() -> dict[str, str]:
    def node_pkg(name: str) -> str:
        with contextlib.suppress(OSError, ValueError):
            return str(
                json.loads((HERE / "node_modules" / name / "package.json").read_text())["version"]
            )
        return "?"

    seed_py = str(BENCH_VENV / "bin" / "python")
    code = (
        "import importlib.metadata as m;print(m.version('sse-starlette'), m.version('starlette'))"
    )
    sse, _, starlette = _run([seed_py, "-c", code]).partition(" ")
    commit = _run(["git", "rev-parse", "--short", "HEAD"], ROOT)
    dirty = " (with uncommitted changes)" if _run(["git", "status", "--porcelain"], ROOT) else ""
    return {
        "python": platform.python_version(),
        "node": _run([_node(), "-v"]),
        "rivulet": f"{importlib.metadata.version('rivulet')} @ {commit}{dirty}",
        "sse-starlette": sse,
        "starlette": starlette,
        "@durable-streams/server": node_pkg("@durable-streams/server"),
        "resumable-stream": node_pkg("resumable-stream"),
        "redis (npm)": node_pkg("redis"),
        "redis-server": _run(["redis-server", "--version"]).split(" sha=")[0],
    }


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 2**20:.1f} GiB RAM"
    return f"{os.cpu_count()} CPUs (nproc {_run(['nproc'])}), {model}{mem}, {platform.platform()}"


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small run (~2 min): 1 repetition")
    p.add_argument("--repeat", type=int, help="repetitions per peer and scenario (default 3)")
    p.add_argument("--streams", type=int, help="steady: streams, one reader each (default 200)")
    p.add_argument("--readers", type=int, help="fanout: readers of the one stream (default 500)")
    p.add_argument("--rate", type=float, default=20.0, help="tokens per second per stream")
    p.add_argument("--tokens", type=int, help="tokens per stream (default 100)")
    p.add_argument("--lead-steady", type=float, default=1.0, help="s before the first token")
    p.add_argument("--lead-fanout", type=float, default=2.0, help="s before the first token")
    p.add_argument("--processes", type=int, default=1, help="loadgen processes")
    p.add_argument(
        "--peers", default=",".join(p.name for p in PEERS), help="comma-separated subset"
    )
    p.add_argument("--scenarios", default="steady,fanout", help="steady,fanout")
    p.add_argument("--skip-install", action="store_true", help="no npm ci / venv check")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="markdown file")
    p.add_argument(
        "--saturation",
        action="store_true",
        help="steady only: double the streams from --streams up to --max-streams per peer and "
        "report the largest count still at p99 <= 100 ms with every reader done (the "
        "saturation point); writes --output (default SATURATION.md)",
    )
    p.add_argument("--max-streams", type=int, default=3200, help="saturation: largest count")
    args = p.parse_args(argv)
    if args.saturation:
        if args.output == HERE / "RESULTS.md":
            args.output = HERE / "SATURATION.md"
        sat = {"repeat": 1, "streams": 100, "readers": 1, "tokens": 40}
        for k, v in sat.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    quick = {"repeat": 1, "streams": 50, "readers": 100, "tokens": 40}
    full = {"repeat": 3, "streams": 200, "readers": 500, "tokens": 100}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


P99_LIMIT_MS = 100.0


def saturation(args: argparse.Namespace, peers: list[Peer], command: str) -> str:
    """Largest steady stream count at p99 <= 100 ms with every reader done, per peer."""
    began = time.monotonic()
    rows: list[list[str]] = []
    best: dict[str, int] = {}
    first = args.streams
    for peer in peers:
        passed = 0
        trail: list[str] = []
        with peer.start() as running:

            def step(
                n: int, peer: Peer = peer, running: Running = running, trail: list[str] = trail
            ) -> bool:
                args.streams = n
                run = run_once(peer, running, "steady", args)
                p99 = run.latency_ms.get("p99")
                ok = (
                    run.errors == 0
                    and run.completed == run.readers
                    and p99 is not None
                    and p99 <= P99_LIMIT_MS
                )
                trail.append(f"{n}: p99 {p99} ms{'' if ok else ' ✗'}")
                print(
                    f"[{time.monotonic() - began:5.0f}s] {peer.name:17} steady N={n}: "
                    f"p99 {p99} ms, errors {run.errors}",
                    file=sys.stderr,
                )
                time.sleep(1)
                return ok

            # Double until a step fails, then bisect between the last pass and that failure
            # down to an eighth of the pass (doubling alone can't tell 400 from 799).
            n, failed = first, 0
            while n <= args.max_streams:
                if not step(n):
                    failed = n
                    break
                passed = n
                n *= 2
            while failed and passed and failed - passed > max(1, passed // 8):
                middle = (passed + failed) // 2
                if step(middle):
                    passed = middle
                else:
                    failed = middle
        best[peer.name] = passed
        rows.append(
            [
                f"`{peer.name}`",
                str(passed) if passed else "< " + str(trail and args.streams),
                "; ".join(trail),
            ]
        )
    seed = best.get("seed")
    lines = [
        "# Saturation point: steady streams at p99 <= 100 ms (issue 8)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine()}",
        f"- command: `{command}` (took {(time.monotonic() - began) / 60:.1f} min)",
        f"- each step: N streams x {args.rate:g} tokens/s x {args.tokens} tokens, one reader "
        "each, one run; N doubles until p99 emit→receive exceeds 100 ms or a reader fails, "
        "then bisects between the last pass and that failure to within an eighth",
        "",
        _table(("peer", "largest N passing", "steps"), rows),
        "",
    ]
    if seed:
        lines.append(
            "Ratios to the seed pattern's saturation point: "
            + ", ".join(f"{name} {n / seed:.1f}x" for name, n in best.items() if name != "seed")
        )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "tests/bench/compare.py", *sys.argv[1:]])
    os.chdir(ROOT)
    install(args.skip_install)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    wanted = args.peers.split(",")
    peers = [p for p in PEERS if p.name in wanted]
    scenarios = args.scenarios.split(",")
    if args.saturation:
        markdown = saturation(args, [p for p in peers if p.path == "generation"], command)
        print(markdown)
        args.output.write_text(markdown)
        return 0
    results: dict[tuple[str, str], list[Run]] = {}
    began = time.monotonic()
    for peer in peers:
        try:
            with peer.start() as running:
                for scenario in scenarios:
                    for rep in range(args.repeat):
                        run = run_once(peer, running, scenario, args)
                        results.setdefault((peer.name, scenario), []).append(run)
                        print(
                            f"[{time.monotonic() - began:5.0f}s] {peer.name:17} {scenario:6} "
                            f"#{rep + 1}: {run.tokens_per_s:,.0f} tokens/s, "
                            f"p50 {run.latency_ms.get('p50')} p99 {run.latency_ms.get('p99')} "
                            f"ms, errors {run.errors} {run.error_kinds or ''}",
                            file=sys.stderr,
                        )
                        time.sleep(1)
        except RuntimeError as exc:
            print(f"{peer.name}: could not run: {exc}", file=sys.stderr)
    elapsed = time.monotonic() - began
    markdown = render(args, peers, scenarios, results, command, elapsed)
    print(markdown)
    args.output.write_text(markdown)
    return 0


def render(
    args: argparse.Namespace,
    peers: list[Peer],
    scenarios: list[str],
    results: dict[tuple[str, str], list[Run]],
    command: str,
    elapsed: float,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Rivulet vs peers: side-by-side streaming benchmark (issue 8)",
        "",
        f"- date: {now}",
        f"- machine: {machine()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- command: `{command}` (took {elapsed / 60:.1f} min)",
        f"- parameters: steady = {args.streams} streams x {args.rate:g} tokens/s x "
        f"{args.tokens} tokens, one reader each; fanout = 1 stream x {args.readers} readers, "
        f"{args.rate:g} tokens/s x {args.tokens} tokens; first token due {args.lead_steady:g} s "
        f"(steady) / {args.lead_fanout:g} s (fanout) after setup; {args.repeat} repetition(s), "
        f"{args.processes} loadgen process(es)",
        "- Rivulet's generation path has no absolute start time: its fake provider stalls "
        "`lead + 10 ms x streams` from each POST (readers attach after the last POST), and "
        "TTFT counts from the POST plus that stall, so it includes queueing to a worker",
        "- everything (servers, Redis, loadgen, producer) shares this machine's cores; other "
        "work on the machine (if any) is not controlled",
        "",
        "Cells are the median over repetitions, with (min-max) when they differ. "
        "*tokens/s*: stamped tokens received, all readers, / (last reader done - median due). "
        "*delivered*: stamped tokens received / tokens sent x readers. "
        "*p50/p99*: emit → receive latency over every stamped token. "
        "*TTFT*: first token receipt - its due time. "
        "*server CPU s/1k*: server process CPU seconds (Rivulet+Redis: API + worker) per 1000 "
        "tokens received, setup included; *Redis CPU s/1k* is the private redis-server's. "
        "*peak RSS*: summed over the server processes (not Redis). "
        "*loadgen CPU*: the readers' CPU seconds (and the protocol path's producer's).",
        "",
        "Protocol path caveat: the loadgen reads one stamp per SSE `data` frame (the last `@` in "
        "it). A server that batches several appended messages into one frame (a JSON array) "
        "is timed on the newest message of the batch and the older ones are not counted, so "
        "*delivered* below 100% with all readers done means batching, not loss.",
    ]
    for scenario in scenarios:
        for path, title in (("generation", "generation path"), ("protocol", "protocol path")):
            rows = [
                _row(p, results[(p.name, scenario)])
                for p in peers
                if p.path == path and (p.name, scenario) in results
            ]
            if not rows:
                continue
            out += ["", f"## {scenario}: {title}", "", _table(COLUMNS, rows)]
        table = ratios(results, peers, scenario)
        if table:
            out += ["", f"### {scenario}: ratios Rivulet / peer (medians; < 1 is lower)", "", table]
    errors = {
        f"{name} {scenario}": [r.error_kinds for r in runs if r.error_kinds]
        for (name, scenario), runs in results.items()
    }
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        out += ["", "## Errors by kind", ""]
        out += [f"- {k}: {v}" for k, v in errors.items()]
    out += ["", "## Peers", ""]
    out += [f"- `{p.name}`: {p.label} ({p.path} path)" for p in peers]
    missing = [p.name for p in peers if not any(n == p.name for n, _ in results)]
    if missing:
        out += ["", f"Did not run: {', '.join(missing)} (see the run's stderr)."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
