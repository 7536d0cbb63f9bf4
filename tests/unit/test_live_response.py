"""LiveStreamingResponse: the body streams in the request task; a client disconnect ends it
quietly, and any other cancellation (a server shutdown) still propagates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.delivery.response import LiveStreamingResponse


class Client:
    """The ASGI receive side: an empty body, then (when told) a disconnect."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._body_given = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def _forever(closed: list[bool]) -> Any:
    try:
        while True:
            yield b"data: x\n\n"
            await asyncio.sleep(0.01)
    finally:
        closed.append(True)


def test_a_disconnect_ends_the_body_and_the_response_returns_normally() -> None:
    async def run() -> tuple[list[bool], Client]:
        closed: list[bool] = []
        client = Client()
        response = LiveStreamingResponse(iterator=_forever(closed))
        task = asyncio.create_task(response({}, client.receive, client.send))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        client.gone.set()
        await asyncio.wait_for(task, 2)  # returns: no CancelledError escapes
        assert not task.cancelled()
        return closed, client

    closed, client = asyncio.run(run())
    assert closed == [True]  # the generator's cleanup ran
    assert client.sent[0]["type"] == "http.response.start"
    assert sum(m.get("body") == b"data: x\n\n" for m in client.sent) >= 2


def test_an_outside_cancellation_still_propagates() -> None:
    async def run() -> bool:
        closed: list[bool] = []
        client = Client()
        response = LiveStreamingResponse(iterator=_forever(closed))
        task = asyncio.create_task(response({}, client.receive, client.send))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()  # a shutdown, not the client
        with pytest.raises(asyncio.CancelledError):
            await task
        return closed == [True]

    assert asyncio.run(run())


def test_a_disconnect_after_the_body_ended_cancels_nothing_else() -> None:
    async def finite() -> Any:
        yield b"data: only\n\n"

    async def run() -> str:
        client = Client()
        response = LiveStreamingResponse(iterator=finite())
        await response({}, client.receive, client.send)  # type: ignore[arg-type]
        client.gone.set()  # the client leaves just after the end
        await asyncio.sleep(0.05)  # the request task goes on to other work, uncancelled
        return "still running"

    assert asyncio.run(run()) == "still running"
