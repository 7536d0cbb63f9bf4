"""A wire-compatible fake provider server on a free loopback port, in a background thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from service.generation.fake_server import create_fake_app
from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

API_KEY = "sk-rivulet-test-7f3a9c"
"""A dummy key; tests assert it never shows up in errors or logs."""


@dataclass(frozen=True, slots=True)
class FakeServer:
    url: str

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """``GET /_fake/requests``, optionally only those for ``model``."""
        records: list[dict[str, Any]] = httpx.get(f"{self.url}/_fake/requests").json()
        return [r for r in records if model is None or r["model"] == model]

    def wait_for(self, model: str, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll the request log until ``predicate(records for model)`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.requests(model)
            if predicate(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"fake server never got there: {records}")
            time.sleep(0.02)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    """The fake provider in a uvicorn thread; stopped (by flag, then join) at the end."""
    for _ in range(3):
        port = free_port()
        config = uvicorn.Config(
            create_fake_app(),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-provider", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if server.started:
            break
        server.should_exit = True
        thread.join(timeout=5)
    else:
        pytest.fail("the fake provider server did not start")
    try:
        yield FakeServer(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
