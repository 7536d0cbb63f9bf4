"""Faults under a live stream: the worker SIGKILLed mid-generation, Redis killed and restarted.
Every event exactly once, in order, one terminal event; nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx

from service.generation.providers.fake_script import script
from tests.deployed.sse import Follow, assert_exactly_once, follow_to_end
from tests.deployed.test_streaming import MESSAGES, start_generation

if TYPE_CHECKING:
    from tests.deployed.topology import Topology


def _stream_len(base: str, gen_id: str) -> int:
    r = httpx.get(f"{base}/v1/stream/generations/{gen_id}", timeout=5)
    r.raise_for_status()
    return len(r.json())


def test_sigkill_of_the_worker_mid_generation_a_new_worker_finishes_it(
    deployed: Topology,
) -> None:
    tokens, rate = 60, 20
    gen = start_generation(deployed.ingress, "fake", tokens, rate)
    deadline = time.monotonic() + 15
    while _stream_len(deployed.ingress, gen["id"]) < 15:
        assert time.monotonic() < deadline, deployed.logs("worker")[-2000:]
        time.sleep(0.05)
    deployed.kill("worker")
    killed_at = time.monotonic()
    deployed.add_worker("worker-2")
    try:
        follow = follow_to_end(f"{deployed.ingress}/v1/generations/{gen['id']}/events")
        took = time.monotonic() - killed_at
        logs = deployed.logs("worker-2")
    finally:
        deployed.nodes.pop("worker-2").stop()
    # The deterministic fake resumes exactly where the stream stopped: the whole answer,
    # each token once, then one finish.
    assert_exactly_once(
        follow, script(MESSAGES, "test-model", {"fake": {"tokens": tokens, "rate": rate}})
    )
    assert (follow.data[-1]["type"], follow.data[-1]["reason"]) == ("finish", "stop")
    assert "worker.lease_reclaimed" in logs
    assert took < 20, f"takeover took {took:.1f}s"


def test_redis_killed_and_restarted_mid_stream_loses_nothing_acknowledged(
    deployed: Topology,
) -> None:
    tokens, rate = 60, 10
    gen = start_generation(deployed.ingress, "fake", tokens, rate)
    url = f"{deployed.ingress}/v1/generations/{gen['id']}/events"
    follow = Follow()
    not_ready: list[int] = []
    seen_before_kill: list[int] = []

    def outage() -> None:
        seen_before_kill.append(_stream_len(deployed.ingress, gen["id"]))
        deployed.kill("redis")  # SIGKILL: AOF with appendfsync always is all that is left
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = httpx.get(f"{deployed.url('api-a')}/readyz", timeout=5)
            if r.status_code == 503:
                not_ready.append(r.status_code)
                break
            time.sleep(0.1)
        time.sleep(2.0)
        deployed.revive("redis")

    fault = threading.Timer(1.5, outage)
    fault.start()
    follow_to_end(url, follow, deadline_s=120)
    fault.join()

    assert not_ready == [503], "the API kept saying ready while Redis was down"
    assert httpx.get(f"{deployed.url('api-a')}/readyz", timeout=5).status_code == 200
    assert_exactly_once(
        follow, script(MESSAGES, "test-model", {"fake": {"tokens": tokens, "rate": rate}})
    )
    # Everything appended before the kill is still in the log after it, in the same place.
    stored = httpx.get(f"{deployed.ingress}/v1/stream/generations/{gen['id']}", timeout=5).json()
    assert len(stored) == len(follow.events)
    assert seen_before_kill[0] >= 5
