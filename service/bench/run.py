"""``rivulet bench``: load-test a Rivulet deployment through its front door.

Scenarios (each drives generations on the fake provider, which stamps every token with its
emit time, so per-event latency is provider emit → client receipt):

``steady``
    ``--streams`` generations at once, ``--rate`` tokens/s, ``--tokens`` long, one reader each.
``fanout``
    One generation, ``--readers`` readers on it.
``slow``
    Like steady, but ``--slow-fraction`` of the readers take one event a second (then leave);
    the report separates fast and slow readers, and shows server memory when local.
``resume-storm``
    ``--readers`` readers, each ``--behind`` events behind a finished generation, reconnect at
    once with ``Last-Event-ID``; the time until all are caught up is the figure.
``idle``
    ``--readers`` live readers on a silent Durable Stream for ``--duration`` seconds:
    heartbeats only; server memory per connection when local.

Readers use raw asyncio streams (uvloop when installed) and can be spread over
``--processes``; the loadgen reports its own CPU so saturation is visible. With ``--spawn``
the command starts a local ``rivulet serve`` itself and reports its RSS and CPU too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.bench.client import Endpoint, SSEError, open_sse, post_json

__all__ = ["add_arguments", "main"]

SCENARIOS = ("steady", "fanout", "slow", "resume-storm", "idle")
MESSAGES = [{"role": "user", "content": "rivulet bench"}]
TERMINAL = ('"type":"finish"', '"type":"error"')


# -- what one reader saw ---------------------------------------------------------------------


@dataclass(slots=True)
class ReaderResult:
    events: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: float | None = None
    heartbeats: int = 0
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    done: bool = False
    slow: bool = False


@dataclass(frozen=True, slots=True)
class ReaderJob:
    """One reader: which events URL, from where, how fast, and the POST time (for TTFT)."""

    path: str
    last_event_id: str | None = None
    slow_for: float = 0.0  # seconds of one-event-a-second reading, then leave
    started_at: float | None = None  # wall clock of the POST that created the generation
    hold_for: float = 0.0  # idle: keep the connection this long, then leave
    create: dict[str, Any] | None = None  # POST this generation first, then read it (steady)


def _delta_stamp(data: str) -> float | None:
    at = data.rfind("@")
    if at < 0 or '"type":"content"' not in data:
        return None
    end = data.find('"', at)
    try:
        return float(data[at + 1 : end])
    except ValueError:
        return None


async def _read(
    endpoint: Endpoint, job: ReaderJob, headers: dict[str, str], progress: Any
) -> ReaderResult:
    result = ReaderResult(slow=job.slow_for > 0)
    if job.create is not None:
        # What a client does: POST, then open the events URL at once. TTFT counts from the POST.
        started = time.time()
        try:
            status, body = await post_json(
                endpoint, "/v1/generations", json.dumps(job.create).encode(), headers
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            result.errors.append(type(exc).__name__)
            return result
        if status != 201:
            result.errors.append(f"POST {status}")
            return result
        job = ReaderJob(
            f"/v1/generations/{json.loads(body)['id']}/events",
            slow_for=job.slow_for,
            started_at=started,
        )
    last_id = job.last_event_id
    deadline = time.monotonic() + 600
    while not result.done and time.monotonic() < deadline:
        request_headers = dict(headers)
        if last_id:
            request_headers["Last-Event-ID"] = last_id
        try:
            conn = await open_sse(
                endpoint, job.path, request_headers, recv_buffer=4096 if job.slow_for else None
            )
        except SSEError as exc:
            if exc.status == 204:  # already past the end
                result.done = True
                break
            result.errors.append(f"HTTP {exc.status}")
            return result
        except OSError as exc:
            result.errors.append(type(exc).__name__)
            result.reconnects += 1
            await asyncio.sleep(0.5)
            continue
        slow_until = time.monotonic() + job.slow_for
        hold_until = time.monotonic() + job.hold_for
        try:
            if job.hold_for:
                with contextlib.suppress(asyncio.TimeoutError):
                    async with asyncio.timeout(job.hold_for):
                        async for _ in conn.events():
                            pass
                result.heartbeats = conn.heartbeats
                result.done = time.monotonic() >= hold_until - 0.5
                break
            async for event_id, data in conn.events():
                now = time.time()
                result.events += 1
                if progress is not None:
                    with progress.get_lock():
                        progress.value += 1
                stamp = _delta_stamp(data)
                if stamp is not None:
                    result.latencies_ms.append((now - stamp) * 1000)
                    if result.ttft_ms is None and job.started_at is not None:
                        result.ttft_ms = (now - job.started_at) * 1000
                last_id = event_id or last_id
                if any(t in data for t in TERMINAL):
                    result.done = True
                    break
                if job.slow_for:
                    if time.monotonic() > slow_until:
                        result.done = True  # a slow reader leaves once its time is up
                        break
                    await asyncio.sleep(1.0)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors.append(type(exc).__name__)
        finally:
            result.heartbeats += conn.heartbeats
            conn.close()
        if not result.done:
            result.reconnects += 1
    return result


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


async def _read_all(
    url: str, jobs: list[ReaderJob], headers: dict[str, str], progress: Any
) -> list[ReaderResult]:
    endpoint = Endpoint.parse(url)
    return list(await asyncio.gather(*(_read(endpoint, j, headers, progress) for j in jobs)))


def _child(
    url: str, jobs: list[ReaderJob], headers: dict[str, str], progress: Any, out: Any
) -> None:
    _use_uvloop()
    _raise_fd_limit(len(jobs))
    results = asyncio.run(_read_all(url, jobs, headers, progress))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put(([asdict(r) for r in results], usage.ru_utime + usage.ru_stime))


def run_readers(
    url: str, jobs: list[ReaderJob], headers: dict[str, str], processes: int, progress: Any
) -> tuple[list[ReaderResult], float]:
    """Run ``jobs`` over ``processes`` loadgen processes; results and loadgen CPU seconds."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    shares = [jobs[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_child, args=(url, s, headers, progress, out)) for s in shares if s]
    for p in procs:
        p.start()
    results: list[ReaderResult] = []
    cpu = 0.0
    for _ in procs:
        raw, used = out.get()
        results += [ReaderResult(**r) for r in raw]
        cpu += used
    for p in procs:
        p.join()
    return results, cpu


# -- the server, when it is local ------------------------------------------------------------


@dataclass(slots=True)
class ProcessProbe:
    pid: int

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def spawn_server(redis_url: str | None) -> Iterator[tuple[str, ProcessProbe]]:
    """A local ``rivulet serve`` on a free loopback port, for ``--spawn``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RIVULET_", "REDIS_URL", "OTEL_"))
    }
    env |= {
        "RIVULET_HOST": "127.0.0.1",
        "RIVULET_PORT": str(port),
        "RIVULET_LOG_LEVEL": "warning",
        "RIVULET_RATE_LIMIT": "0",
        "RIVULET_MAX_SSE_PER_CLIENT": "0",
        "RIVULET_MAX_CONCURRENT_GENERATIONS": "0",
        "RIVULET_MAX_STREAMS_PER_KEY": "0",
        "RIVULET_WORKERS": "4096",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["RIVULET_REDIS_KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
    # A file, not a pipe: a chatty server never blocks on it. Closed in the finally below.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"rivulet serve did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield url, ProcessProbe(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# -- scenarios ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    scenario: str
    url: str
    params: dict[str, Any]
    wall_s: float = 0.0
    readers: int = 0
    events: int = 0
    events_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    completed: int = 0
    heartbeats: int = 0
    loadgen_cpu_s: float = 0.0
    loadgen_cpu_pct: float = 0.0
    server_rss_mb: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50": round(at(0.50), 2),
        "p90": round(at(0.90), 2),
        "p99": round(at(0.99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


async def _create(
    client: httpx.AsyncClient, tokens: int, rate: float, stall: float = 0.0
) -> tuple[str, float]:
    fake: dict[str, Any] = {"tokens": tokens, "rate": rate, "stamp": True}
    if stall:
        fake["stall_before_first"] = stall
    started = time.time()
    r = await client.post(
        "/v1/generations",
        json={"provider": "fake", "model": "bench", "messages": MESSAGES, "params": {"fake": fake}},
    )
    if r.status_code != 201:
        raise RuntimeError(f"POST /v1/generations: {r.status_code} {r.text[:300]}")
    return str(r.json()["id"]), started


async def _create_many(
    url: str, headers: dict[str, str], n: int, tokens: int, rate: float, stall: float = 0.0
) -> list[tuple[str, float]]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as c:
        return list(await asyncio.gather(*(_create(c, tokens, rate, stall) for _ in range(n))))


def _jobs_for(
    args: argparse.Namespace, url: str, headers: dict[str, str]
) -> tuple[list[ReaderJob], dict[str, Any]]:
    """The readers of a scenario (and anything the report should show about its setup)."""
    extra: dict[str, Any] = {}
    if args.scenario in ("steady", "slow"):
        # Each reader POSTs its own generation and opens its events at once, as a client does.
        slow_n = round(args.streams * args.slow_fraction) if args.scenario == "slow" else 0
        body = {
            "provider": "fake",
            "model": "bench",
            "messages": MESSAGES,
            "params": {"fake": {"tokens": args.tokens, "rate": args.rate, "stamp": True}},
        }
        jobs = [
            ReaderJob("", create=body, slow_for=args.slow_seconds if i < slow_n else 0.0)
            for i in range(args.streams)
        ]
        return jobs, extra
    if args.scenario == "fanout":
        ((gen, started),) = asyncio.run(
            _create_many(url, headers, 1, args.tokens, args.rate, args.fanout_stall)
        )
        return [
            ReaderJob(f"/v1/generations/{gen}/events", started_at=started + args.fanout_stall)
            for _ in range(args.readers)
        ], extra
    if args.scenario == "resume-storm":
        gens = asyncio.run(_create_many(url, headers, args.streams, args.behind + 10, 0.0))
        first_ids = asyncio.run(_finish_and_first_ids(url, headers, [g for g, _ in gens]))
        jobs = [
            ReaderJob(
                f"/v1/generations/{gens[i % len(gens)][0]}/events",
                last_event_id=first_ids[i % len(gens)],
            )
            for i in range(args.readers)
        ]
        extra["behind"] = args.behind
        return jobs, extra
    if args.scenario == "idle":
        name = f"bench-idle-{uuid.uuid4().hex[:8]}"
        r = httpx.put(
            f"{url}/v1/stream/{name}", headers=headers | {"content-type": "text/plain"}, timeout=30
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"PUT /v1/stream/{name}: {r.status_code} {r.text[:300]}")
        return [
            ReaderJob(f"/v1/stream/{name}?offset=-1&live=sse", hold_for=args.duration)
            for _ in range(args.readers)
        ], extra
    raise ValueError(args.scenario)


async def _finish_and_first_ids(url: str, headers: dict[str, str], gens: list[str]) -> list[str]:
    """Wait for each generation to finish; the id of its first event (readers resume after it)."""
    endpoint = Endpoint.parse(url)
    out = []
    for gen in gens:
        conn = await open_sse(endpoint, f"/v1/generations/{gen}/events", headers)
        first: str | None = None
        try:
            async for event_id, data in conn.events():
                first = first or event_id
                if any(t in data for t in TERMINAL):
                    break
        finally:
            conn.close()
        if first is None:
            raise RuntimeError(f"generation {gen} produced no event")
        out.append(first)
    return out


@contextlib.contextmanager
def _progress_printer(progress: Any, total: int | None, label: str) -> Iterator[None]:
    """A progress line on stderr while the readers run (only on a terminal)."""
    stop = [False]
    if not sys.stderr.isatty():
        yield
        return
    import threading

    def loop() -> None:
        start, last = time.monotonic(), 0
        while not stop[0]:
            time.sleep(0.5)
            n = progress.value
            rate = (n - last) * 2
            last = n
            bar = ""
            if total:
                done = min(1.0, n / total)
                bar = "[" + "#" * int(done * 30) + "." * (30 - int(done * 30)) + "] "
            sys.stderr.write(
                f"\r{label} {bar}{n} events, {rate:,.0f}/s, {time.monotonic() - start:.0f}s "
            )
            sys.stderr.flush()
        sys.stderr.write("\n")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop[0] = True
        thread.join()


def run_scenario(args: argparse.Namespace, url: str, probe: ProcessProbe | None) -> Report:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    shown = {
        "steady": ("streams", "rate", "tokens"),
        "fanout": ("readers", "rate", "tokens"),
        "slow": ("streams", "rate", "tokens", "slow_fraction", "slow_seconds"),
        "resume-storm": ("readers", "streams", "behind"),
        "idle": ("readers", "duration"),
    }[args.scenario]
    params = {k: getattr(args, k) for k in (*shown, "processes")}
    report = Report(args.scenario, url, params)
    rss_before = probe.rss() if probe else 0
    jobs, report.extra = _jobs_for(args, url, headers)
    expected = None
    if args.scenario in ("steady", "fanout"):
        expected = len(jobs) * (args.tokens + 1)
    progress = multiprocessing.get_context("fork").Value("q", 0)
    cpu_before = probe.cpu_seconds() if probe else 0.0
    started = time.monotonic()
    with _progress_printer(progress, expected, args.scenario):
        if args.scenario == "idle" and probe is not None:
            # Measure while the readers are all connected: halfway through their hold.
            import threading

            peak: list[int] = []
            timer = threading.Timer(args.duration / 2, lambda: peak.append(probe.rss()))
            timer.start()
        results, loadgen_cpu = run_readers(url, jobs, headers, args.processes, progress)
    report.wall_s = round(time.monotonic() - started, 3)
    report.readers = len(results)
    report.events = sum(r.events for r in results)
    report.events_per_s = round(report.events / report.wall_s, 1) if report.wall_s else 0.0
    fast = [r for r in results if not r.slow]
    if args.scenario in ("steady", "fanout", "slow"):  # resume-storm reads history: no latency
        report.latency_ms = percentiles([x for r in fast for x in r.latencies_ms])
        report.ttft_ms = percentiles([r.ttft_ms for r in fast if r.ttft_ms is not None])
    kinds: dict[str, int] = {}
    for r in results:
        for e in r.errors:
            kinds[e] = kinds.get(e, 0) + 1
    report.errors = sum(kinds.values())
    report.error_kinds = kinds
    report.reconnects = sum(r.reconnects for r in results)
    report.completed = sum(r.done for r in results)
    report.heartbeats = sum(r.heartbeats for r in results)
    report.loadgen_cpu_s = round(loadgen_cpu, 2)
    report.loadgen_cpu_pct = round(100 * loadgen_cpu / report.wall_s / max(1, args.processes), 1)
    if args.scenario == "slow":
        slow = [r for r in results if r.slow]
        report.extra["slow_readers"] = len(slow)
        report.extra["slow_events"] = sum(r.events for r in slow)
    if args.scenario == "resume-storm":
        report.extra["caught_up_s"] = report.wall_s
    if probe is not None:
        report.server_cpu_s = round(probe.cpu_seconds() - cpu_before, 2)
        after = probe.rss()
        report.server_rss_mb = {
            "before": round(rss_before / 2**20, 1),
            "after": round(after / 2**20, 1),
            "growth": round((after - rss_before) / 2**20, 1),
        }
        if args.scenario == "idle" and peak:
            per_conn = (peak[0] - rss_before) / max(1, len(jobs))
            report.server_rss_mb["during"] = round(peak[0] / 2**20, 1)
            report.extra["rss_per_connection_kb"] = round(per_conn / 1024, 1)
            report.extra["fd_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return report


def render(report: Report) -> str:
    """The human table."""
    rows = [
        ("scenario", report.scenario),
        ("target", report.url),
        ("parameters", ", ".join(f"{k}={v}" for k, v in report.params.items())),
        ("readers (completed)", f"{report.readers} ({report.completed})"),
        (
            "events delivered",
            f"{report.events:,} in {report.wall_s:.1f} s = {report.events_per_s:,.0f}/s",
        ),
    ]
    if report.latency_ms:
        lat = report.latency_ms
        rows.append(
            (
                "emit → receive ms",
                f"p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
            )
        )
    if report.ttft_ms:
        t = report.ttft_ms
        rows.append(
            (
                "time to first token ms",
                f"p50 {t['p50']}  p90 {t['p90']}  p99 {t['p99']}  max {t['max']}",
            )
        )
    rows.append(
        ("errors / reconnects", f"{report.errors} {report.error_kinds or ''} / {report.reconnects}")
    )
    if report.heartbeats:
        rows.append(("heartbeats received", str(report.heartbeats)))
    rows.append(
        (
            "loadgen CPU",
            f"{report.loadgen_cpu_s} s ({report.loadgen_cpu_pct}% of a core per process)",
        )
    )
    if report.server_rss_mb:
        rows.append(
            ("server RSS MiB", ", ".join(f"{k} {v}" for k, v in report.server_rss_mb.items()))
        )
    if report.server_cpu_s is not None:
        rows.append(("server CPU", f"{report.server_cpu_s} s"))
    for k, v in report.extra.items():
        rows.append((k.replace("_", " "), str(v)))
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 72 + "+"
    out = [line] + [f"| {k.ljust(width)} | {v[:70].ljust(70)} |" for k, v in rows] + [line]
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[0] if __doc__ else None
    parser.epilog = "Scenarios: " + "; ".join(SCENARIOS) + ". See `rivulet bench --help`."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("url", nargs="?", help="the deployment's base URL (omit with --spawn)")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="steady",
        help="steady: N streams x R tokens/s, a reader each; fanout: 1 stream x "
        "N readers; slow: some readers take 1 event/s; resume-storm: N "
        "readers B events behind reconnect at once; idle: N readers, "
        "heartbeats only",
    )
    parser.add_argument(
        "--streams", type=int, default=10, help="generations (steady, slow, resume-storm)"
    )
    parser.add_argument(
        "--readers", type=int, default=100, help="readers (fanout, resume-storm, idle)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per generation")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per generation")
    parser.add_argument(
        "--slow-fraction", type=float, default=0.2, help="share of slow readers (slow)"
    )
    parser.add_argument(
        "--slow-seconds", type=float, default=5.0, help="how long slow readers read (slow)"
    )
    parser.add_argument(
        "--behind", type=int, default=500, help="events each reader is behind (resume-storm)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds idle readers stay (idle)"
    )
    parser.add_argument(
        "--fanout-stall",
        type=float,
        default=2.0,
        help="seconds before the first token so fanout readers attach (fanout)",
    )
    parser.add_argument("--processes", type=int, default=1, help="loadgen processes")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RIVULET_BENCH_API_KEY"),
        help="API key (env RIVULET_BENCH_API_KEY)",
    )
    parser.add_argument("--spawn", action="store_true", help="start a local rivulet serve to test")
    parser.add_argument("--redis", help="with --spawn: REDIS_URL for the spawned server")
    parser.add_argument(
        "--server-pid", type=int, help="PID of a local server to measure (RSS, CPU)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.spawn):
        print("rivulet bench: give a URL, or --spawn for a local server", file=sys.stderr)
        return 2
    _use_uvloop()
    _raise_fd_limit(args.readers + args.streams)
    with contextlib.ExitStack() as stack:
        probe: ProcessProbe | None
        if args.spawn:
            url, probe = stack.enter_context(spawn_server(args.redis))
        else:
            url, probe = (
                args.url.rstrip("/"),
                ProcessProbe(args.server_pid) if args.server_pid else None,
            )
        report = run_scenario(args, url, probe)
    print(json.dumps(asdict(report), indent=2) if args.json else render(report))
    return 1 if report.errors or report.completed < report.readers else 0
