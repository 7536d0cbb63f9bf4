"""The worker: claims generation jobs and turns provider streams into appends to the log.

One job, one run:

1. **Fenced writer.** The worker appends as idempotent producer ``(generation id, epoch =
   attempt - 1, seq)``. A worker that lost its lease and wakes up later is rejected by the log
   (stale epoch) before it can write a single chunk after its successor started.
2. **Exactly one terminal event.** ``finish``/``error`` is written *and* the stream closed in
   one atomic append, so whoever terminates first (this worker, a cancel from any replica, a
   successor after a crash) wins and every later terminal write is refused.
3. **Retries before the first token** with exponential backoff and jitter; after the first
   token a failure ends the stream with an ``error`` event (a new answer would not continue
   the old one).
4. **Takeover.** A reclaimed job whose stream already holds content from the dead worker can't
   be continued by a non-deterministic provider; it ends with ``error`` (``worker_lost``).
   The fake provider is deterministic, so it resumes where the stream stopped instead.
5. **Cancel** is a close: ``DELETE /v1/generations/{id}`` (any replica) appends ``finish``
   (``cancelled``) and closes the stream. The worker watches its stream on the live-tail hub,
   sees the close and cancels the provider call, which aborts its HTTP request. With no reader
   attached (any replica) for ``cancel_without_reader`` seconds, it cancels itself the same way.
6. **Batching.** Deltas that arrive while an append is in flight are appended together in the
   next call, so a fast provider costs one log write per batch, not per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from service.generation.events import (
    ContentDelta,
    ErrorEvent,
    Event,
    Finish,
    ProviderError,
    decode_event,
    encode_event,
)
from service.generation.jobs import GenerationJob
from service.generation.providers.base import Provider
from service.generation.queue import Job, JobQueue, LeaseLost
from service.log import (
    ZERO,
    BackendUnavailable,
    ChunkLog,
    LogError,
    Producer,
    StaleEpoch,
    StreamClosed,
    StreamGone,
    StreamNotFound,
)
from service.telemetry import (
    TRACE_ANNOTATION,
    GenAICall,
    Telemetry,
    extract,
    get_logger,
    traceparent_of,
)

__all__ = ["Worker", "WorkerSettings"]

log = get_logger("service.worker")

JSON = "application/json"
_APPEND_RETRIES = 5
_MAX_ATTEMPTS = 5


_RECANCEL_EVERY = 0.5


def _report_loop_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("worker.loop_crashed", error=repr(task.exception()))


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has really finished.

    The cancellation is repeated until the task ends: on Python 3.11 redis-py can swallow a
    cancellation that lands mid-command (see ``RedisJobQueue.claim``), and a heartbeat loop
    that lost its one cancellation would run forever and hang shutdown (seen once in ~30
    runs of the graceful-shutdown test).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_EVERY)
    if not task.cancelled():
        task.exception()  # retrieved: the caller only wants it gone


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The knobs of a worker (from :class:`service.settings.Settings`)."""

    concurrency: int = 4
    lease: float = 15.0
    retries: int = 2
    backoff: float = 0.5
    cancel_without_reader: float = 30.0
    shutdown_grace: float = 10.0
    max_batch: int = 256


class _Fenced(Exception):
    """Another writer owns the stream now (stale epoch) or it is already closed."""


class _Writer:
    """Appends events as one idempotent producer; retries transient failures with the same
    sequence number, so a retried append can never be written twice."""

    def __init__(self, chunk_log: ChunkLog, path: str, producer_id: str, epoch: int) -> None:
        self._log = chunk_log
        self._path = path
        self._id = producer_id
        self._epoch = epoch
        self._seq = 0
        self.closed = False
        # An append whose outcome we never learned (cancelled or failed mid-flight) may have
        # landed under the current seq; then a "duplicate" answer to the *next* batch means
        # "that one landed", not "this one did", and ours must be sent again.
        self._uncertain = False

    async def fence(self) -> None:
        """Claim this epoch with an empty producer append (seq 0)."""
        await self._append([])

    async def write(self, events: list[Event], *, close: bool = False) -> None:
        await self._append([encode_event(e) for e in events], close=close)

    async def _append(self, items: list[bytes], *, close: bool = False) -> None:
        while True:
            producer = Producer(self._id, self._epoch, self._seq)
            was_uncertain, self._uncertain = self._uncertain, True
            result = None
            for attempt in range(_APPEND_RETRIES):
                try:
                    result = await self._log.append(
                        self._path,
                        items,
                        content_type=JSON if items else None,
                        producer=producer,
                        close=close,
                    )
                    break
                except BackendUnavailable:
                    if attempt == _APPEND_RETRIES - 1:
                        raise
                    await asyncio.sleep(0.2 * 2**attempt)
                except (StaleEpoch, StreamClosed, StreamNotFound, StreamGone) as exc:
                    raise _Fenced(type(exc).__name__) from exc
            self._uncertain = False
            self._seq += 1
            if result is not None and result.duplicate and was_uncertain:
                continue
            break
        self.closed = self.closed or close


class Worker:
    """Runs up to ``concurrency`` generations at once until stopped."""

    def __init__(
        self,
        chunk_log: ChunkLog,
        queue: JobQueue,
        providers: Mapping[str, Provider],
        settings: WorkerSettings,
        name: str | None = None,
        telemetry: Telemetry | None = None,
        on_finished: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._on_finished = on_finished
        self._telemetry = telemetry or Telemetry.create()
        self._log = chunk_log
        self._queue = queue
        self._providers = providers
        self._settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{random.randrange(1 << 16):04x}"  # noqa: S311
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the claim loop in a task of its own; :meth:`stop` ends it."""
        self._loop = asyncio.create_task(self.run(), name=f"worker-{self.name}")
        self._loop.add_done_callback(_report_loop_end)

    @property
    def alive(self) -> bool:
        """The claim loop started with :meth:`start` is still running."""
        return self._loop is not None and not self._loop.done()

    @property
    def active(self) -> int:
        """Generations in progress in this worker."""
        return len(self._running)

    async def run(self) -> None:
        """Claim and run jobs until :meth:`stop`."""
        log.info("worker.started", worker=self.name, concurrency=self._settings.concurrency)
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                break
            try:
                # Free slots, this one included: a burst is claimed in one round trip.
                free = self._settings.concurrency - len(self._running)
                job = await self._queue.claim(self.name, timeout=1.0, prefetch=free)
            except LogError as exc:
                self._slots.release()
                log.warning("worker.claim_failed", worker=self.name, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if job is None:
                self._slots.release()
                continue
            if self._stopping.is_set():
                # Claimed while stopping: hand it straight back for another worker.
                with contextlib.suppress(LogError):
                    await self._queue.release(job)
                self._slots.release()
                break
            task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._slots.release()

    def stop_claiming(self) -> None:
        """Take no new jobs (running ones go on)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Stop claiming; let running jobs finish within the grace, then hand them back."""
        self._stopping.set()
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=self._settings.shutdown_grace)
            await asyncio.gather(*(_cancel(task) for task in pending))
        if self._loop is not None:
            await _cancel(self._loop)
        log.info("worker.stopped", worker=self.name)

    # -- one job ---------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        try:
            gen = GenerationJob.decode(job.payload)
        except (ValueError, KeyError) as exc:
            log.error("worker.bad_job", job=job.id, error=str(exc))
            await self._queue.ack(job)
            return
        telemetry = self._telemetry
        request = gen.request
        # A child of the POST /v1/generations span, whichever replica took that request.
        span = telemetry.tracer.start_span(
            "rivulet.generation",
            context=extract(gen.trace),
            attributes={
                "rivulet.generation.id": gen.id,
                "rivulet.job.attempt": job.attempt,
                "rivulet.worker": self.name,
                "gen_ai.provider.name": request.provider,
                "gen_ai.request.model": request.model,
            },
        )
        started = time.perf_counter()
        outcome = "released"
        with trace.use_span(span, end_on_exit=False):
            bound = log.bind(generation=gen.id, attempt=job.attempt, worker=self.name)
            if job.attempt > 1:
                telemetry.metrics.reclaimed.add(1)
                bound.info("worker.lease_reclaimed")
            bound.info("generation.started", provider=request.provider, model=request.model)
            traceparent = traceparent_of(span)
            if traceparent is not None:
                # Every reader's delivery span links to this one, on any replica.
                with contextlib.suppress(LogError, ValueError):
                    await self._log.annotate(gen.path, TRACE_ANNOTATION, traceparent)
            writer = _Writer(self._log, gen.path, gen.id, job.attempt - 1)
            heartbeat = asyncio.create_task(self._heartbeat(job))
            try:
                outcome = await self._generate(gen, job, writer, heartbeat)
            except asyncio.CancelledError:
                # Shutdown: hand the job back so another worker takes it over at once.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._queue.release(job))
                bound.info("generation.released")
                raise
            finally:
                await _cancel(heartbeat)
                span.set_attribute("rivulet.generation.outcome", outcome)
                span.end()
                attrs = {
                    "gen_ai.provider.name": request.provider,
                    "gen_ai.request.model": request.model,
                    "rivulet.generation.outcome": outcome,
                }
                telemetry.metrics.generations.add(1, attrs)
                telemetry.metrics.generation_duration.record(time.perf_counter() - started, attrs)
            if outcome == "fenced":
                bound.info("generation.fenced")
                return
            with contextlib.suppress(LeaseLost, LogError):
                await self._queue.ack(job)
            if self._on_finished is not None and gen.owner:
                # Frees the owner's concurrent-generation slot (it also expires by itself).
                with contextlib.suppress(Exception):
                    await self._on_finished(gen.owner, gen.id)
            bound.info("generation.done", outcome=outcome)

    async def _heartbeat(self, job: Job) -> None:
        interval = self._settings.lease / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._queue.heartbeat(job, self.name)
            except LeaseLost:
                return  # the log fences us; the generation task notices on its next write
            except LogError as exc:
                log.warning("worker.heartbeat_failed", job=job.id, error=str(exc))

    async def _prior(self, gen: GenerationJob) -> tuple[bool, list[str]] | None:
        """What a previous attempt left: (terminated, content deltas); None if nothing."""
        info = await self._log.info(gen.path)
        if info.next_offset == ZERO:
            return None
        deltas: list[str] = []
        pos = ZERO
        while True:
            result = await self._log.read(gen.path, pos, 1 << 20)
            for chunk in result.chunks:
                ev = decode_event(chunk.data)
                if ev["type"] == "content":
                    deltas.append(str(ev.get("delta", "")))
            pos = result.next_offset
            if result.up_to_date:
                return result.closed, deltas

    async def _generate(
        self, gen: GenerationJob, job: Job, writer: _Writer, heartbeat: asyncio.Task[None]
    ) -> str:
        if job.attempt > _MAX_ATTEMPTS:
            # A job that keeps killing its workers must not be retried forever.
            with contextlib.suppress(_Fenced, LogError):
                await self._terminate(
                    writer, ErrorEvent("worker_lost", "the generation failed repeatedly")
                )
            return "too_many_attempts"
        if job.attempt > 1:
            # Fence the predecessor *before* reading what it left, so nothing it might still
            # append can slip between that read and our first write (a resumed answer would
            # otherwise repeat it).
            try:
                await writer.fence()
            except _Fenced as exc:
                if not isinstance(exc.__cause__, StreamClosed):
                    return "fenced"
                # Already terminated (its worker died before acking): _prior says so.
        try:
            prior = await self._prior(gen)
        except (StreamNotFound, StreamGone):
            return "stream_gone"
        except ValueError:
            prior = (False, ["?"])  # a foreign entry: never resume over it, end cleanly
        skip = 0
        if prior is not None:
            terminated, deltas = prior
            if terminated:
                return "already_terminated"
            provider = self._providers.get(gen.request.provider)
            if provider is None or not provider.deterministic:
                await self._terminate(
                    writer,
                    ErrorEvent("worker_lost", "the worker generating this answer stopped"),
                )
                return "worker_lost"
            skip = len(deltas)
        provider = self._providers.get(gen.request.provider)
        if provider is None:
            await self._terminate(
                writer,
                ErrorEvent(
                    "invalid_request", f"provider {gen.request.provider!r} is not configured"
                ),
            )
            return "no_provider"
        produce = asyncio.create_task(self._produce(gen, provider, writer, skip))
        watch = asyncio.create_task(self._watch_cancel(gen))
        try:
            done, _ = await asyncio.wait(
                {produce, watch, heartbeat}, return_when=asyncio.FIRST_COMPLETED
            )
            if produce not in done:
                # Cancelled (stream closed by someone else), no reader, or lease lost: abort
                # the provider call by cancelling the task that iterates it.
                await _cancel(produce)
                watched = (
                    watch.result()
                    if watch in done and not watch.cancelled() and watch.exception() is None
                    else None
                )
                if watched == "no_reader":
                    try:
                        await self._terminate(writer, Finish("cancelled"))
                    except (_Fenced, LogError):
                        return "fenced"  # no terminal written: a successor takes over
                    return "cancelled_no_reader"
                if heartbeat in done:
                    return "fenced"
                return "cancelled"
            try:
                return produce.result()
            except (_Fenced, LogError):
                return "fenced"  # the log refused or kept failing: a successor takes over
        finally:
            # Also on our own cancellation (shutdown): never leave a provider call running.
            await _cancel(produce)
            await _cancel(watch)

    async def _terminate(self, writer: _Writer, event: Event) -> None:
        await writer.write([event], close=True)

    async def _produce(
        self, gen: GenerationJob, provider: Provider, writer: _Writer, skip: int
    ) -> str:
        s = self._settings
        pending: list[Event] = []
        wake = asyncio.Event()
        finished: list[Event] = []

        async def pump() -> None:
            # Drains ``pending`` into the log: one append per batch, in order.
            while True:
                await wake.wait()
                wake.clear()
                while pending:
                    batch = pending[: s.max_batch]
                    del pending[: len(batch)]
                    close = bool(finished) and not pending and batch[-1] is finished[0]
                    await writer.write(batch, close=close)
                if finished and writer.closed:
                    return

        appender = asyncio.create_task(pump())
        sent = 0
        request = gen.request
        call = GenAICall(
            self._telemetry.tracer,
            self._telemetry.metrics,
            provider=request.provider,
            model=request.model,
            params=request.params,
            messages=[(m.role, m.content) for m in request.messages],
            record_content=self._telemetry.record_content,
        )
        ended = False
        try:
            for attempt in range(s.retries + 1):
                try:
                    skipped = 0
                    # aclosing: leaving the loop early must close the provider's HTTP
                    # response now, not whenever the generator is garbage-collected.
                    async with contextlib.aclosing(provider.stream(gen.request)) as events:
                        async for ev in events:
                            if appender.done():
                                appender.result()  # re-raise a failed append
                            if isinstance(ev, ContentDelta):
                                call.chunk(ev.delta)
                                if skipped < skip:
                                    skipped += 1
                                    continue
                                sent += 1
                                pending.append(ev)
                                wake.set()
                            else:
                                finished.append(ev)
                                break
                        else:
                            finished.append(
                                ErrorEvent("provider_error", "the provider ended early")
                            )
                    break
                except ProviderError as exc:
                    if not exc.retryable or sent > 0 or attempt == s.retries:
                        finished.append(exc.event())
                        break
                    delay = s.backoff * 2**attempt * (0.5 + random.random())  # noqa: S311
                    call.retry(attempt + 1, exc.kind, round(delay, 3))
                    log.info(
                        "generation.retry",
                        generation=gen.id,
                        attempt=attempt + 1,
                        kind=exc.kind,
                        delay_s=round(delay, 3),
                    )
                    await asyncio.sleep(delay)
                except (_Fenced, LogError):
                    raise
                except Exception as exc:  # a provider bug must still end the stream
                    log.exception("generation.provider_crashed", generation=gen.id)
                    finished.append(
                        ErrorEvent("internal", f"the provider failed ({type(exc).__name__})")
                    )
                    break
            terminal = finished[0]
            if isinstance(terminal, Finish):
                call.finish(
                    terminal.reason,
                    response_id=terminal.response_id,
                    response_model=terminal.response_model,
                    input_tokens=terminal.usage.input_tokens if terminal.usage else None,
                    output_tokens=terminal.usage.output_tokens if terminal.usage else None,
                )
            elif isinstance(terminal, ErrorEvent):
                call.fail(terminal.kind, terminal.message)
            ended = True
            pending.append(terminal)
            wake.set()
            await appender
        finally:
            if not ended:
                call.fail("cancelled", "the provider call was cancelled")
            await _cancel(appender)
        terminal = finished[0]
        return (
            "finished" if isinstance(terminal, Finish) else f"error:{getattr(terminal, 'kind', '')}"
        )

    async def _watch_cancel(self, gen: GenerationJob) -> str:
        """Returns ``closed`` when someone else closes the stream, ``no_reader`` when nobody
        has read it for the configured grace."""
        grace = self._settings.cancel_without_reader
        loop = asyncio.get_running_loop()
        check_every = max(0.05, grace / 4) if grace > 0 else None
        last_reader = loop.time()
        next_check = loop.time() + (check_every or 0)
        async with self._log.hub.watch(gen.path) as w:
            # A close may have landed before we started watching.
            with contextlib.suppress(LogError):
                if (await self._log.info(gen.path)).closed:
                    return "closed"
            while True:
                timeout = None if check_every is None else max(0.0, next_check - loop.time())
                if await w.wait(timeout):
                    notices, overflow = w.drain()
                    if overflow or any(n.closed or n.deleted or n.resync for n in notices):
                        try:
                            if (await self._log.info(gen.path)).closed:
                                return "closed"
                        except (StreamNotFound, StreamGone):
                            return "closed"
                        except LogError:
                            pass  # a blip: the writer rides it out, so does the watcher
                now = loop.time()
                if check_every is not None and now >= next_check:
                    # At most one presence check per interval, not one per append notice.
                    next_check = now + check_every
                    try:
                        present = await self._queue.has_reader(gen.id)
                    except LogError:
                        present = True  # unknown: never cancel on a storage blip
                    if present:
                        last_reader = now
                    elif now - last_reader >= grace:
                        return "no_reader"
