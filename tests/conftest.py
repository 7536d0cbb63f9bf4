"""Fixtures shared by every test suite: a real, throwaway ``redis-server``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_START_TIMEOUT = 10.0
_START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its PID: politely first, then for sure."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _start(
    binary: str, workdir: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``redis-server`` on ``port`` (default: a free one, retried when another process
    grabbed it)."""
    log_path = workdir / "redis.log"
    for _ in range(_START_ATTEMPTS if port is None else 1):
        port = port or free_port()
        args = [binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        args += ["--port", str(port), "--dir", str(workdir)]
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(args, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers_ping(port):
                return proc, port
            time.sleep(0.05)
        _stop(proc)
    output = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not answer PING after {_START_ATTEMPTS} tries:\n{output}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server`` for the session (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: the Redis tests need a real server "
            "(install it, e.g. `apt-get install redis-server`)",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    proc, port = _start(binary, workdir)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            _stop(proc)
