"""Real ``rivulet serve`` processes on one real Redis: what a multi-replica deployment relies on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import free_port
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from pathlib import Path

S = "/v1/stream"
TEXT = {"content-type": "text/plain"}


def _sse_reader(url: str, until: str, out: list[str], ready: threading.Event) -> None:
    """Read an SSE response line by line until ``until`` appears (or 20 s pass)."""
    with httpx.Client(timeout=20) as client, client.stream("GET", url) as resp:
        assert resp.status_code == 200
        ready.set()
        for line in resp.iter_lines():
            out.append(line)
            if until in line:
                return


def test_stream_written_through_one_process_is_read_live_through_another(
    redis_server: str, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_server, "RIVULET_REDIS_KEY_PREFIX": f"mp-{os.getpid()}"}
    with (
        rivulet_serve(tmp_path, env, name="writer") as a,
        rivulet_serve(tmp_path, env, name="reader") as b,
    ):
        r = httpx.put(f"{a.url}{S}/chat", headers={"content-type": "application/json"})
        assert r.status_code == 201
        tail = r.headers["stream-next-offset"]
        lines: list[str] = []
        ready = threading.Event()
        reader = threading.Thread(
            target=_sse_reader,
            args=(f"{b.url}{S}/chat?offset={tail}&live=sse", "streamClosed", lines, ready),
        )
        reader.start()
        assert ready.wait(10)
        time.sleep(0.2)  # let the reader reach the tail and wait on the hub
        for i in range(3):
            r = httpx.post(
                f"{a.url}{S}/chat",
                content=json.dumps({"token": i}),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 204
        r = httpx.post(f"{a.url}{S}/chat", headers={"stream-closed": "true"})
        assert r.status_code == 204
        reader.join(20)
        assert not reader.is_alive(), "reader on the other process never saw the close"

    data = [json.loads(line[5:]) for line in lines if line.startswith("data:[")]
    tokens = [msg["token"] for batch in data for msg in batch]
    assert tokens == [0, 1, 2], lines
    controls = [json.loads(line[5:]) for line in lines if line.startswith("data:{")]
    assert controls[-1]["streamClosed"] is True
    assert controls[-1]["streamNextOffset"] == r.headers["stream-next-offset"]


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    args = [binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    args += ["--port", str(port), "--dir", str(workdir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_redis_outage_is_503_json_and_service_recovers(tmp_path: Path) -> None:
    port = free_port()
    redis = _start_redis(port, tmp_path)
    try:
        env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        with rivulet_serve(tmp_path, env, name="outage") as server:
            r = httpx.put(
                f"{server.url}{S}/o", content=b"a", headers={"content-type": "text/plain"}
            )
            assert r.status_code == 201
            _stop(redis)
            r = httpx.post(
                f"{server.url}{S}/o",
                content=b"b",
                headers={"content-type": "text/plain"},
                timeout=30,
            )
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "BACKEND_UNAVAILABLE"
            assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
            assert httpx.get(f"{server.url}/livez").status_code == 200
            redis = _start_redis(port, tmp_path)
            # Redis came back empty (no persistence here): the service must answer again.
            deadline = time.monotonic() + 15
            while httpx.get(f"{server.url}/readyz", timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "service did not reconnect to Redis"
                time.sleep(0.2)
            r = httpx.put(
                f"{server.url}{S}/o", content=b"c", headers={"content-type": "text/plain"}
            )
            assert r.status_code == 201
            assert httpx.get(f"{server.url}{S}/o").text == "c"
    finally:
        _stop(redis)


def test_serve_refuses_to_start_when_redis_is_unreachable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RIVULET_", "REDIS_URL"))},
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "RIVULET_PORT": str(free_port()),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "app.start_failed" in proc.stderr + proc.stdout


def test_serve_rejects_bad_settings_with_a_clear_message() -> None:
    env = {**os.environ, "RIVULET_PORT": "99999"}
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "RIVULET_PORT must be 1..65535" in proc.stderr
