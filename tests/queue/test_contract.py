"""JobQueue contract tests, run against every backend (``ids=["memory", "redis"]``).

Leases are :data:`LEASE` (0.5 s) long; timing assertions allow generous slack above the
expected time but none below it, so they catch both "never happens" and "happens too early".
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from service.generation.queue import Job, JobQueue, LeaseLost
from tests.queue.conftest import LEASE

pytestmark = pytest.mark.asyncio

SLACK = 1.0
"""Upper bound on the delay of anything that should happen promptly."""


async def _claim(queue: JobQueue, worker: str, timeout: float = 2.0) -> Job:
    job = await queue.claim(worker, timeout)
    assert job is not None, f"{worker} got no job within {timeout}s"
    return job


async def _timed_claim(queue: JobQueue, worker: str, timeout: float) -> tuple[Job | None, float]:
    started = time.monotonic()
    job = await queue.claim(worker, timeout)
    return job, time.monotonic() - started


async def test_jobs_are_claimed_in_fifo_order_with_their_payloads(queue: JobQueue) -> None:
    for i in range(5):
        await queue.enqueue(f"job-{i}", f"payload {i}".encode())

    jobs = [await _claim(queue, "w1") for _ in range(5)]

    assert [(j.id, j.payload, j.attempt) for j in jobs] == [
        (f"job-{i}", f"payload {i}".encode(), 1) for i in range(5)
    ]
    assert len({j.receipt for j in jobs}) == 5


async def test_binary_payload_round_trips(queue: JobQueue) -> None:
    payload = bytes(range(256)) * 4
    await queue.enqueue("bin", payload)

    job = await _claim(queue, "w1")

    assert job.payload == payload


async def test_claim_on_an_empty_queue_returns_none_after_the_timeout(queue: JobQueue) -> None:
    job, elapsed = await _timed_claim(queue, "w1", 0.3)

    assert job is None
    assert 0.28 <= elapsed < 0.3 + SLACK


async def test_claim_with_zero_timeout_does_not_wait(queue: JobQueue) -> None:
    job, elapsed = await _timed_claim(queue, "w1", 0)
    assert job is None
    assert elapsed < 0.2

    await queue.enqueue("a", b"")
    job, _ = await _timed_claim(queue, "w1", 0)
    assert job is not None
    assert job.id == "a"


async def test_concurrent_claimers_on_two_replicas_each_get_a_job_once(
    queue: JobQueue, peer: JobQueue
) -> None:
    total = 40
    claimed: list[tuple[str, str, int]] = []

    async def worker(name: str, q: JobQueue) -> None:
        while True:
            job = await q.claim(name, 0.3)
            if job is None:
                return
            claimed.append((job.id, name, job.attempt))
            await asyncio.sleep(0.01)  # hold it a moment, so leases overlap
            await q.ack(job)

    tasks = [asyncio.create_task(worker(f"w{i}", queue if i % 2 else peer)) for i in range(12)]
    await asyncio.sleep(0.1)  # most workers are waiting in claim now
    for i in range(total):
        await (queue if i % 2 else peer).enqueue(f"job-{i}", b"x")
    await asyncio.wait_for(asyncio.gather(*tasks), 10)

    ids = [job_id for job_id, _, _ in claimed]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(total))
    assert len(set(ids)) == total, "a job was delivered twice"
    assert {attempt for _, _, attempt in claimed} == {1}
    assert len({name for _, name, _ in claimed}) > 1, "only one worker ever got work"
    assert await queue.depth() == 0


async def test_lapsed_lease_goes_to_the_next_claimer_and_fences_the_old_worker(
    queue: JobQueue, peer: JobQueue
) -> None:
    await queue.enqueue("job", b"p")
    first = await _claim(queue, "w1")
    assert first.attempt == 1

    # w2 is already waiting when the lease lapses: it must notice without a new job arriving.
    second, elapsed = await _timed_claim(peer, "w2", LEASE + 3.0)

    assert second is not None
    assert (second.id, second.payload, second.attempt) == ("job", b"p", 2)
    assert LEASE * 0.9 <= elapsed < LEASE + SLACK
    with pytest.raises(LeaseLost):
        await queue.heartbeat(first, "w1")
    await peer.heartbeat(second, "w2")  # the new owner's lease is fine


async def test_a_worker_that_reclaims_its_own_job_is_fenced_by_attempt(
    queue: JobQueue,
) -> None:
    """Same worker name, new delivery: the stale Job handle must not renew the new lease."""
    await queue.enqueue("job", b"p")
    stale = await _claim(queue, "w1")
    await asyncio.sleep(LEASE + 0.1)
    fresh = await _claim(queue, "w1", 0)

    assert fresh.attempt == stale.attempt + 1
    with pytest.raises(LeaseLost):
        await queue.heartbeat(stale, "w1")
    await queue.heartbeat(fresh, "w1")


async def test_heartbeats_keep_the_lease(queue: JobQueue, peer: JobQueue) -> None:
    await queue.enqueue("job", b"p")
    job = await _claim(queue, "w1")
    beats = 0

    async def keep_alive() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(LEASE / 4)
            await queue.heartbeat(job, "w1")
            beats += 1

    pulse = asyncio.create_task(keep_alive())
    try:
        # Two and a half leases: without the heartbeats the job would lapse twice over.
        stolen, elapsed = await _timed_claim(peer, "w2", LEASE * 2.5)
        assert stolen is None
        assert elapsed >= LEASE * 2.5 * 0.95
        assert beats >= 6
    finally:
        pulse.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pulse

    # Once the heartbeats stop, the lease lapses as usual.
    taken = await _claim(peer, "w2", LEASE + SLACK)
    assert (taken.id, taken.attempt) == ("job", 2)


async def test_ack_removes_the_job_for_good(queue: JobQueue, peer: JobQueue) -> None:
    await queue.enqueue("done", b"1")
    await queue.enqueue("other", b"2")
    assert await queue.depth() == 2
    job = await _claim(queue, "w1")
    assert job.id == "done"
    assert await queue.depth() == 2, "a job in progress still counts"

    await queue.ack(job)

    assert await queue.depth() == 1
    assert await peer.depth() == 1
    with pytest.raises(LeaseLost):
        await queue.heartbeat(job, "w1")
    # Past the acked job's lease: it is not reclaimed; the next claim gets the other job.
    await asyncio.sleep(LEASE + 0.1)
    other = await _claim(peer, "w2", 0)
    assert (other.id, other.attempt) == ("other", 1)
    await peer.ack(other)
    await queue.ack(other)  # acking twice is harmless
    assert await queue.depth() == 0
    nothing, _ = await _timed_claim(peer, "w3", 0.2)
    assert nothing is None


async def test_release_hands_the_job_back_at_once_with_a_higher_attempt(
    queue: JobQueue, peer: JobQueue
) -> None:
    await queue.enqueue("job", b"p")
    first = await _claim(queue, "w1")

    await queue.release(first)

    second, elapsed = await _timed_claim(peer, "w2", 2.0)
    assert second is not None
    assert (second.id, second.payload, second.attempt) == ("job", b"p", 2)
    assert elapsed < LEASE / 2, "a released job must not wait for its lease to lapse"
    with pytest.raises(LeaseLost):
        await queue.heartbeat(first, "w1")

    # A stale handle can't give away the new owner's job.
    await queue.release(first)
    await peer.heartbeat(second, "w2")
    nothing, _ = await _timed_claim(queue, "w3", 0.1)
    assert nothing is None

    # Released again, and again one higher.
    await peer.release(second)
    third = await _claim(queue, "w1", 0)
    assert third.attempt == 3
    assert await queue.depth() == 1


async def test_a_waiting_claimer_is_woken_by_a_release(queue: JobQueue, peer: JobQueue) -> None:
    await queue.enqueue("job", b"p")
    first = await _claim(queue, "w1")
    waiter = asyncio.create_task(_timed_claim(peer, "w2", 5.0))
    await asyncio.sleep(0.1)

    await queue.release(first)
    job, elapsed = await asyncio.wait_for(waiter, 6.0)

    assert job is not None
    assert job.attempt == 2
    # Woken by the release (or, for Redis, at the latest by the lease-lapse deadline the
    # waiter computed); either way well before its own timeout.
    assert elapsed < LEASE + SLACK


async def test_attempts_increase_across_lapses_and_releases(queue: JobQueue) -> None:
    await queue.enqueue("job", b"p")
    attempts = [(await _claim(queue, "w1")).attempt]
    job = await _claim(queue, "w2", LEASE + SLACK)  # lapse
    attempts.append(job.attempt)
    await queue.release(job)
    job = await _claim(queue, "w3", 0)  # release
    attempts.append(job.attempt)
    await queue.release(job)
    job = await _claim(queue, "w1", 0)  # released twice in a row
    attempts.append(job.attempt)

    assert attempts == [1, 2, 3, 4]


async def test_idempotency_keys_bind_once_and_expire(queue: JobQueue, peer: JobQueue) -> None:
    assert await queue.remember_key("k", "job-a", ttl=0.3) is None
    assert await peer.remember_key("k", "job-b", ttl=0.3) == "job-a"
    assert await queue.remember_key("k", "job-c", ttl=0.3) == "job-a"
    assert await peer.remember_key("other", "job-d", ttl=0.3) is None

    await asyncio.sleep(0.45)

    assert await peer.remember_key("k", "job-e", ttl=5) is None
    assert await queue.remember_key("k", "job-f", ttl=5) == "job-e"


async def test_concurrent_binds_of_one_key_agree_on_one_winner(
    queue: JobQueue, peer: JobQueue
) -> None:
    results = await asyncio.gather(
        *((queue if i % 2 else peer).remember_key("race", f"job-{i}", 5) for i in range(20))
    )

    winners = [f"job-{i}" for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert {r for r in results if r is not None} == set(winners)


async def test_reader_presence_lasts_its_ttl(queue: JobQueue, peer: JobQueue) -> None:
    assert await queue.has_reader("job") is False

    await queue.touch_reader("job", ttl=0.3)

    assert await queue.has_reader("job") is True
    assert await peer.has_reader("job") is True, "presence is visible from every replica"
    assert await peer.has_reader("another-job") is False
    await asyncio.sleep(0.2)
    await peer.touch_reader("job", ttl=0.3)  # a touch extends it
    await asyncio.sleep(0.2)
    assert await queue.has_reader("job") is True
    await asyncio.sleep(0.2)
    assert await queue.has_reader("job") is False


async def test_a_waiting_claim_wakes_when_another_replica_enqueues(
    queue: JobQueue, peer: JobQueue
) -> None:
    waiter = asyncio.create_task(queue.claim("w1", 10.0))
    await asyncio.sleep(0.3)  # blocked by now (XREADGROUP BLOCK for Redis)
    assert not waiter.done()

    started = time.monotonic()
    await peer.enqueue("job", b"p")
    job = await asyncio.wait_for(waiter, 10.0)

    assert job is not None
    assert (job.id, job.attempt) == ("job", 1)
    assert time.monotonic() - started < 0.5


async def test_a_waiting_claim_does_not_stall_other_calls(queue: JobQueue) -> None:
    waiters = [asyncio.create_task(queue.claim(f"w{i}", 3.0)) for i in range(3)]
    await asyncio.sleep(0.2)

    started = time.monotonic()
    await queue.touch_reader("job", 5)
    assert await queue.has_reader("job") is True
    assert await queue.remember_key("k", "job", 5) is None
    assert await queue.depth() == 0
    await queue.enqueue("job", b"p")
    assert time.monotonic() - started < 0.5

    done, _ = await asyncio.wait(waiters, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    job = next(iter(done)).result()
    assert job is not None
    assert job.id == "job"
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_a_cancelled_claim_loses_no_job(queue: JobQueue, peer: JobQueue) -> None:
    """A worker shutting down mid-claim: the job reaches someone, at the latest after a lease."""
    waiter = asyncio.create_task(queue.claim("w1", 10.0))
    await asyncio.sleep(0.2)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter

    await peer.enqueue("job", b"p")
    job = await _claim(peer, "w2", LEASE + SLACK)

    assert job.id == "job"


async def test_cancelled_claims_stop_at_once_and_take_nothing(queue: JobQueue) -> None:
    """Cancelled right as the reader passes from one claim to the next (the moment a lost
    cancellation would let a claim run on and reclaim a job nobody works on)."""
    await queue.enqueue("job", b"p")
    waiters = [asyncio.create_task(queue.claim(f"w{i}", 5.0)) for i in range(3)]
    done, rest = await asyncio.wait(waiters, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    winner = next(iter(done)).result()
    assert winner is not None

    started = time.monotonic()
    for w in rest:
        w.cancel()
    results = await asyncio.wait_for(asyncio.gather(*rest, return_exceptions=True), 2.0)

    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert time.monotonic() - started < 0.3
    # Past the winner's lease: no cancelled claim lives on to reclaim the job.
    await asyncio.sleep(LEASE + 0.2)
    winner_name = f"w{waiters.index(next(iter(done)))}"
    await queue.heartbeat(winner, winner_name)
