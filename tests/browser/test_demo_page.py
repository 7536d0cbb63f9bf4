"""The demo page in real headless Chromium: tokens render live and survive a dropped connection.

Between the browser and ``rivulet serve`` sits a tiny TCP proxy the test can cut. Mid-answer
every connection is severed; the page's EventSource reconnects with ``Last-Event-ID`` and the
text on the page must equal the full answer, with no token missing or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import free_port
from tests.rivulet_process import rivulet_serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class CuttableProxy:
    """Forwards 127.0.0.1:port to a target; :meth:`cut` drops every open connection."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.cuts = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Sever every connection, as a flaky network or a proxy restart would."""

        def _cut() -> None:
            for w in list(self._writers):
                w.transport.abort()
            self.cuts += 1

        self._loop.call_soon_threadsafe(_cut)


@pytest.fixture
def server_behind_proxy(tmp_path: Path) -> Iterator[tuple[str, str, CuttableProxy]]:
    with rivulet_serve(tmp_path, {"RIVULET_SSE_RETRY_MS": "300"}, name="demo") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with CuttableProxy(port) as proxy:
            yield server.url, f"http://127.0.0.1:{proxy.port}", proxy


def test_page_renders_the_full_answer_across_a_dropped_connection(server_behind_proxy) -> None:
    from playwright.sync_api import sync_playwright

    direct, via_proxy, proxy = server_behind_proxy
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{via_proxy}/?autostart=1&tokens=80&rate=25")
            # Wait until part of the answer is on the page, then cut the network under it.
            page.wait_for_function("document.getElementById('answer').textContent.length > 40")
            proxy.cut()
            page.wait_for_function("document.body.dataset.done !== undefined", timeout=20000)
            shown = page.inner_text("#answer")
            status = page.inner_text("#status")
            gen_id = page.evaluate("document.body.dataset.generation")
            done = page.evaluate("document.body.dataset.done")
        finally:
            browser.close()
    assert proxy.cuts == 1
    assert done == "stop"
    assert "reconnects: 1" in status or "reconnects: 2" in status, status
    events = httpx.get(f"{direct}/v1/stream/generations/{gen_id}").json()
    full = "".join(e["delta"] for e in events if e["type"] == "content")
    assert sum(e["type"] == "content" for e in events) == 80
    assert shown == full
