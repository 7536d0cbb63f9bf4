"""Start real ``rivulet serve`` processes for tests, and stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class RivuletProcess:
    """A running server: its base URL, PID and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _ready(url: str, path: str = "/readyz") -> bool:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def rivulet_serve(
    workdir: Path, env: dict[str, str] | None = None, name: str = "rivulet"
) -> Iterator[RivuletProcess]:
    """Run ``rivulet serve`` on a free loopback port until the block exits."""
    with rivulet_command(workdir, ["serve"], env, name) as server:
        yield server


@contextlib.contextmanager
def fake_provider(workdir: Path) -> Iterator[RivuletProcess]:
    """Run ``rivulet fake-provider`` (OpenAI- and Anthropic-compatible) on a free port."""
    port = free_port()
    with rivulet_command(
        workdir,
        ["fake-provider", "--host", "127.0.0.1", "--port", str(port)],
        {},
        "fake-provider",
        port=port,
        ready_path="/_fake/requests",
    ) as server:
        yield server


@contextlib.contextmanager
def rivulet_command(
    workdir: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    name: str = "rivulet",
    *,
    port: int | None = None,
    ready_path: str | None = "/readyz",
) -> Iterator[RivuletProcess]:
    """Run ``rivulet <args>`` until the block exits; wait for ``ready_path`` to answer 200."""
    port = port or free_port()
    log_path = workdir / f"{name}-{port}.log"
    full_env = {
        # Hermetic: a developer's own keys or Redis must never leak into a test server.
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RIVULET_", "REDIS_URL", "OPENAI_", "ANTHROPIC_"))
        },
        "RIVULET_HOST": "127.0.0.1",
        "RIVULET_PORT": str(port),
        "RIVULET_LOG_FORMAT": "json",
        **(env or {}),
    }
    argv = [sys.executable, "-m", "service.cli", *args]
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(argv, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = RivuletProcess(url, proc, log_path)
    try:
        deadline = time.monotonic() + 20
        while ready_path is not None and not _ready(url, ready_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rivulet {args[0]} did not become ready:\n{server.log_tail()}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
