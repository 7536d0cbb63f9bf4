"""SIGTERM on a replica: readers told to reconnect, its generation handed over, nothing lost."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import TYPE_CHECKING

import httpx

from service.generation.providers.fake_script import script
from tests.integration.test_generation_cluster import _events
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

MESSAGES = [{"role": "user", "content": "shutdown"}]
PARAMS = {"fake": {"tokens": 120, "rate": 20}}  # ~6 s: outlives the 1 s shutdown grace


def test_sigterm_hands_readers_and_jobs_to_another_replica(
    redis_server: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_server,
        "RIVULET_REDIS_KEY_PREFIX": f"drain-{os.getpid()}",
        "RIVULET_SHUTDOWN_GRACE": "1",
        "RIVULET_LEASE_SECONDS": "5",
        "RIVULET_CANCEL_WITHOUT_READER": "0",
        "RIVULET_WORKERS": "1",
    }
    with rivulet_serve(tmp_path, env, name="doomed") as a:
        gen = httpx.post(
            f"{a.url}/v1/generations", json={"messages": MESSAGES, "params": PARAMS}
        ).json()
        stream = f"{a.url}/v1/stream/generations/{gen['id']}"
        deadline = time.monotonic() + 10
        while len(httpx.get(stream).json()) < 5:  # a's worker has it and is writing
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with rivulet_serve(tmp_path, env, name="heir") as b:
            host, port = a.url.removeprefix("http://").split(":")
            reader = socket.create_connection((host, int(port)))
            reader.sendall(
                f"GET /v1/generations/{gen['id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            time.sleep(0.3)
            sigterm_at = time.monotonic()
            os.kill(a.proc.pid, signal.SIGTERM)
            received = b""
            reader.settimeout(10)
            while chunk := reader.recv(65536):
                received += chunk
            closed_after = time.monotonic() - sigterm_at
            a.proc.wait(15)
            # The reader was told to come back soon, and the connection ended promptly.
            assert b"retry: 250" in received
            assert closed_after < 3
            # b takes the job over and finishes it; the answer is whole, nothing doubled.
            events, ended = _events(f"{b.url}/v1/generations/{gen['id']}/events", None, None)
    assert ended
    data = [e["data"] for e in events]
    assert [d["delta"] for d in data if d["type"] == "content"] == script(
        MESSAGES, "fake-1", PARAMS
    )
    assert data[-1]["type"] == "finish"
    assert sum(d["type"] in ("finish", "error") for d in data) == 1
