"""Generations on the deployed topology: real SDKs → fake provider, two replicas, one Redis.

What a user trusts Rivulet with: a browser that drops its connection three times, at random
points, reconnecting to *another* replica with ``Last-Event-ID``, still sees every event once,
in order; a worker killed mid-answer leaves one terminal event; a cancel on one replica aborts
the provider call running on another.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from service.generation.providers.fake_script import script
from tests.rivulet_process import fake_provider, rivulet_command, rivulet_serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

from tests.rivulet_process import RivuletProcess

MESSAGES = [{"role": "user", "content": "Explain durable streams in one paragraph."}]
Events = list[dict[str, Any]]
Cluster = tuple["RivuletProcess", "RivuletProcess", "RivuletProcess"]


def _env(redis_url: str, fake: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "RIVULET_REDIS_KEY_PREFIX": f"gen-{os.getpid()}-{random.randrange(1 << 30)}",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": f"{fake}/v1",
        "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
        "ANTHROPIC_BASE_URL": fake,
        "RIVULET_CANCEL_WITHOUT_READER": "0",
        # info, so the checks that no secret reaches a log line look at real log lines.
        "RIVULET_LOG_LEVEL": "info",
        **extra,
    }


def _events(
    url: str, last_event_id: str | None, stop_after: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """Read an EventSource response like a browser would; drop it after ``stop_after`` events.

    Returns the events (with ``id``) and whether the stream ended by itself.
    """
    headers = {"accept": "text/event-stream"}
    if last_event_id:
        headers["last-event-id"] = last_event_id
    out: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        event: dict[str, Any] = {}
        for line in resp.iter_lines():
            if line == "":
                if "data" in event:
                    out.append(event)
                    if stop_after is not None and len(out) >= stop_after:
                        return out, False
                event = {}
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event[name] = json.loads(value) if name == "data" else value
    return out, True


def _follow_with_drops(url: str, drops: int, rng: random.Random) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    last: str | None = None
    for _ in range(drops):
        part, ended = _events(url, last, stop_after=rng.randint(1, 8))
        got += part
        last = got[-1]["id"] if got else last
        if ended:
            return got
    part, _ = _events(url, last, stop_after=None)
    return got + part


@pytest.fixture
def cluster(
    redis_server: str, tmp_path: Path
) -> Iterator[tuple[RivuletProcess, RivuletProcess, RivuletProcess]]:
    with fake_provider(tmp_path) as fake:
        env = _env(redis_server, fake.url)
        with (
            rivulet_serve(tmp_path, env, name="a") as a,
            rivulet_serve(tmp_path, env, name="b") as b,
        ):
            yield a, b, fake


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_three_reconnects_to_another_replica_see_every_event_once_in_order(
    cluster: Cluster, provider: str
) -> None:
    a, b, _ = cluster
    r = httpx.post(
        f"{a.url}/v1/generations",
        json={
            "provider": provider,
            "model": f"{provider}-test-model",
            "messages": MESSAGES,
            "params": {"fake": {"tokens": 40, "rate": 40}},
        },
    )
    assert r.status_code == 201, r.text
    gen = r.json()
    events_on_b = f"{b.url}/v1/generations/{gen['id']}/events"
    got = _follow_with_drops(events_on_b, drops=3, rng=random.Random(provider))

    reference, ended = _events(f"{a.url}/v1/generations/{gen['id']}/events", None, None)
    assert ended
    # Neither the provider key nor the prompt ever reaches a log line (both replicas).
    for replica in (a, b):
        logs = replica.log_path.read_text()
        assert "sk-test-not-a-real-key" not in logs
        assert "sk-ant-test-not-a-real-key" not in logs
        assert MESSAGES[0]["content"] not in logs
        assert "generation.created" in logs or "delivery.resumed" in logs
    assert got == reference  # every event, once, in order, same ids
    types = [e["data"]["type"] for e in got]
    assert types == ["content"] * 40 + ["finish"]
    assert got[-1]["data"]["reason"] == "stop"
    assert got[-1]["data"]["usage"]["output_tokens"] == 40


def test_cancel_on_one_replica_aborts_the_provider_call_on_another(
    redis_server: str, tmp_path: Path
) -> None:
    with fake_provider(tmp_path) as fake:
        env = _env(redis_server, fake.url)
        # Only b runs workers, so the provider call is certainly on b.
        with (
            rivulet_serve(tmp_path, {**env, "RIVULET_WORKERS": "0"}, name="api") as a,
            rivulet_serve(tmp_path, env, name="worker") as b,
        ):
            r = httpx.post(
                f"{a.url}/v1/generations",
                json={
                    "provider": "openai",
                    "model": "gpt-test",
                    "messages": MESSAGES,
                    "params": {"fake": {"tokens": 400, "rate": 10}},
                },
            )
            gen = r.json()
            deadline = time.monotonic() + 10
            while not _fake_requests(fake.url):
                assert time.monotonic() < deadline, "the provider was never called"
                time.sleep(0.05)
            time.sleep(0.3)
            r = httpx.delete(f"{a.url}/v1/generations/{gen['id']}")
            assert r.status_code == 200
            deadline = time.monotonic() + 10
            while True:
                calls = _fake_requests(fake.url)
                if calls and calls[-1]["client_disconnected"]:
                    break
                assert time.monotonic() < deadline, f"provider call not aborted: {calls}"
                time.sleep(0.05)
            assert calls[-1]["tokens_sent"] < 400
            events, ended = _events(f"{b.url}/v1/generations/{gen['id']}/events", None, None)
            assert ended
            assert events[-1]["data"] == {"type": "finish", "reason": "cancelled"}
            assert sum(e["data"]["type"] in ("finish", "error") for e in events) == 1


def _fake_requests(fake_url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{fake_url}/_fake/requests").json())


@pytest.mark.parametrize(
    ("provider", "terminal"),
    [("fake", {"type": "finish", "reason": "stop"}), ("openai", "worker_lost")],
)
def test_a_worker_killed_mid_answer_leaves_exactly_one_terminal_event(
    redis_server: str, tmp_path: Path, provider: str, terminal: Any
) -> None:
    with fake_provider(tmp_path) as fake:
        env = _env(redis_server, fake.url, RIVULET_LEASE_SECONDS="1.5")
        with rivulet_serve(tmp_path, {**env, "RIVULET_WORKERS": "0"}, name="api") as api:
            with rivulet_command(tmp_path, ["worker"], env, "doomed") as doomed:
                r = httpx.post(
                    f"{api.url}/v1/generations",
                    json={
                        "provider": provider,
                        "model": "m",
                        "messages": MESSAGES,
                        "params": {"fake": {"tokens": 60, "rate": 30}},
                    },
                )
                gen = r.json()
                stream = f"{api.url}/v1/stream/generations/{gen['id']}"
                deadline = time.monotonic() + 15
                while len(httpx.get(stream).json()) < 10:
                    assert time.monotonic() < deadline, doomed.log_tail()
                    time.sleep(0.05)
                os.kill(doomed.proc.pid, signal.SIGKILL)
                doomed.proc.wait(5)
                killed_at = time.monotonic()
            with rivulet_command(tmp_path, ["worker"], env, "successor"):
                events, ended = _events(f"{api.url}/v1/generations/{gen['id']}/events", None, None)
                took = time.monotonic() - killed_at
    assert ended
    data = [e["data"] for e in events]
    assert sum(d["type"] in ("finish", "error") for d in data) == 1
    if provider == "fake":
        # Deterministic: the successor continues exactly where the stream stopped.
        assert {k: data[-1][k] for k in ("type", "reason")} == terminal
        deltas = [d["delta"] for d in data if d["type"] == "content"]
        assert deltas == script(MESSAGES, "m", {"fake": {"tokens": 60, "rate": 30}})
    else:
        assert data[-1]["type"] == "error"
        assert data[-1]["error"]["type"] == terminal
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    # Lease 1.5 s: the successor (started after the kill, ~1 s to boot) takes over once the
    # lease lapses and the stream is complete a few seconds later.
    assert took < 10
