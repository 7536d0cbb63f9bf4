"""``rivulet worker`` as its own process (the chart's worker Deployment): probes, metrics, limits.

A worker Deployment is only operable if Kubernetes can probe it, Prometheus can scrape it and
its generations give back the API's concurrency slots when they end — a worker that forgot
that would leave every API key at 429 after ``RIVULET_MAX_CONCURRENT_GENERATIONS`` answers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import TYPE_CHECKING

import httpx

from tests.rivulet_process import rivulet_command, rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

KEY = "worker-process-test-key-0001"
AUTH = {"authorization": f"Bearer {KEY}"}


def _generate(api: str) -> str:
    r = httpx.post(
        f"{api}/v1/generations",
        headers=AUTH,
        json={
            "provider": "fake",
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "params": {"fake": {"tokens": 5, "rate": 200}},
        },
    )
    assert r.status_code == 201, r.text
    gen_id: str = r.json()["id"]
    return gen_id


def _wait_done(api: str, gen_id: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        r = httpx.get(f"{api}/v1/stream/generations/{gen_id}", headers=AUTH)
        if r.headers.get("stream-closed") == "true":
            return
        assert time.monotonic() < deadline, "generation did not finish"
        time.sleep(0.05)


def test_worker_process_serves_probes_metrics_and_releases_concurrency_slots(
    redis_server: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_server,
        "RIVULET_REDIS_KEY_PREFIX": f"wp-{os.getpid()}-{random.randrange(1 << 30)}",
        "RIVULET_API_KEYS": KEY,
        "RIVULET_MAX_CONCURRENT_GENERATIONS": "1",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
    }
    # The worker binds a non-loopback address with no API keys: it serves no data, so that is
    # allowed for it (and only for it).
    worker_env = {k: v for k, v in env.items() if k != "RIVULET_API_KEYS"} | {
        "RIVULET_HOST": "0.0.0.0"
    }
    with (
        rivulet_serve(tmp_path, {**env, "RIVULET_WORKERS": "0"}, name="api") as api,
        rivulet_command(tmp_path, ["worker"], worker_env, "worker") as worker,
    ):
        assert httpx.get(f"{worker.url}/livez").json() == {"status": "ok"}
        ready = httpx.get(f"{worker.url}/readyz").json()
        assert ready["status"] == "ok"
        assert ready["queue_depth"] == 0

        # With a limit of one generation at a time, three in a row only work if the worker
        # process releases each slot when its generation ends.
        for _ in range(3):
            gen_id = _generate(api.url)
            _wait_done(api.url, gen_id)
            deadline = time.monotonic() + 5
            while httpx.get(f"{worker.url}/readyz").json()["active"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        metrics = httpx.get(f"{worker.url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        generations = [
            line
            for line in metrics.text.splitlines()
            if line.startswith("rivulet_generations") and not line.startswith("#")
        ]
        assert generations, metrics.text[:2000]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in generations) >= 3

        # SIGTERM: the worker shuts its lifespan down cleanly within its grace (uvicorn then
        # re-raises the signal, so the exit status is "terminated by SIGTERM").
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) in (0, -signal.SIGTERM), worker.log_tail()
        assert "worker.process_stopped" in worker.log_tail()
    # Every line a log pipeline gets from a worker pod is one JSON object (RIVULET_LOG_FORMAT).
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
