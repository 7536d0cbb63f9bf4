"""Through nginx configured as the chart's ingress: streaming is incremental, and a client whose
replica is SIGKILLed mid-stream resumes on the other one with every event exactly once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from service.generation.providers.fake_script import script
from tests.deployed.sse import Follow, assert_exactly_once, follow_to_end
from tests.deployed.topology import nginx_conf

if TYPE_CHECKING:
    from pathlib import Path

    from tests.deployed.topology import Topology

MESSAGES = [{"role": "user", "content": "Explain durable streams."}]


def start_generation(base: str, provider: str, tokens: int, rate: float) -> dict[str, Any]:
    r = httpx.post(
        f"{base}/v1/generations",
        json={
            "provider": provider,
            "model": "test-model",
            "messages": MESSAGES,
            "params": {"fake": {"tokens": tokens, "rate": rate}},
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    gen: dict[str, Any] = r.json()
    return gen


def _timed_follow(base: str, tokens: int, rate: float) -> tuple[Follow, float]:
    started = time.monotonic()
    gen = start_generation(base, "openai", tokens, rate)
    follow = follow_to_end(f"{base}/v1/generations/{gen['id']}/events")
    assert_exactly_once(
        follow, script(MESSAGES, "test-model", {"fake": {"tokens": tokens, "rate": rate}})
    )
    return follow, started


def test_tokens_arrive_through_the_ingress_while_the_provider_is_producing(
    deployed: Topology, tmp_path: Path
) -> None:
    # 30 tokens at 10/s: the provider (the real OpenAI SDK against the fake) takes ~3 s.
    follow, started = _timed_follow(deployed.ingress, tokens=30, rate=10)
    first, last = follow.arrivals[0], follow.arrivals[-1]
    spread = last - first
    assert first - started < 2.0, f"first token after {first - started:.2f}s"
    assert spread > 2.0, f"events arrived in a burst ({spread:.2f}s): something buffered"

    # The control: the same ingress with buffering on (X-Accel-Buffering ignored) and gzip for
    # event streams. Same generation shape; this time everything arrives at the end, so the
    # check above would have caught it.
    config = tmp_path / "buffering.conf"
    config.write_text(nginx_conf(buffering=True))
    buffering = deployed.add_ingress("ingress-buffering", config)
    try:
        control, _ = _timed_follow(buffering, tokens=30, rate=10)
    finally:
        deployed.nodes.pop("ingress-buffering").stop()
    control_spread = control.arrivals[-1] - control.arrivals[0]
    assert control_spread < 0.5, f"the buffering control streamed ({control_spread:.2f}s)"


def test_sigkill_of_the_serving_replica_resumes_on_the_other_through_nginx(
    deployed: Topology,
) -> None:
    tokens, rate = 80, 20
    gen = start_generation(deployed.ingress, "anthropic", tokens, rate)
    url = f"{deployed.ingress}/v1/generations/{gen['id']}/events"
    victims: list[str] = []

    def kill_first_server(replica: str) -> None:
        # The first connection's replica dies 1 s into the stream (about 20 events in).
        if not victims:
            victims.append(replica)
            threading.Timer(1.0, deployed.kill, args=(replica,)).start()

    follow = follow_to_end(url, on_open=kill_first_server)
    (victim,) = victims
    assert victim in ("api-a", "api-b"), follow.replicas

    assert_exactly_once(
        follow, script(MESSAGES, "test-model", {"fake": {"tokens": tokens, "rate": rate}})
    )
    assert follow.reconnects >= 1, "the kill never cut the stream"
    survivor = "api-b" if victim == "api-a" else "api-a"
    assert follow.replicas[-1] == survivor, follow.replicas
    assert deployed.container(victim).status == "exited"
