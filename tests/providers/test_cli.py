"""``rivulet fake-provider``: the subcommand that tests, benchmarks and local dev start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port


def test_rivulet_fake_provider_command_serves_until_sigterm(tmp_path) -> None:
    port = free_port()
    log = tmp_path / "fake.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "fake-provider", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/_fake/requests", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        assert response.json() == []
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # uvicorn re-raises the signal it caught once it has shut down cleanly.
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()
    assert f"http://127.0.0.1:{port}/v1" in log.read_text()
