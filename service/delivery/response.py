"""A streaming response that runs in the request's own task (live reads hold one open).

Litestar's :class:`~litestar.response.streaming.ASGIStreamingResponse` streams the body in a
child task of an anyio task group, beside the request task that waits for the client to
disconnect. That costs every open connection a task group, a cancel scope and a second task
for as long as it is open, and a live reader holds one open for up to a minute, most of it
idle. Here the body is streamed by the request task itself and one small task waits for the
disconnect; when it comes, it cancels the request task, and the cancellation it caused is
absorbed here (an outside cancellation, such as a server shutdown, still propagates). The
encoded headers are let go once sent.

The frames are Litestar's (``ServerSentEventMessage``); only the scheduling differs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from litestar.datastructures import MutableScopeHeaders
from litestar.response.streaming import ASGIStreamingResponse

if TYPE_CHECKING:
    from litestar.types import Receive, Send

__all__ = ["LiveStreamingResponse"]


async def _until_disconnect(receive: Receive) -> None:
    # A GET may still be handed its (empty) body first.
    while (await receive())["type"] != "http.disconnect":
        pass


class LiveStreamingResponse(ASGIStreamingResponse):
    """:class:`ASGIStreamingResponse` without the per-connection task group."""

    async def start_response(self, send: Send) -> None:
        await super().start_response(send)
        # The headers are on the wire: don't hold them for as long as the connection lasts.
        self.headers = MutableScopeHeaders()

    async def send_body(self, send: Send, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        streaming = True
        cancelled_here = False

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            nonlocal cancelled_here
            # Checked when the callback runs, not when it was scheduled: a disconnect right
            # after the body ended must not cancel whatever the task does next.
            if streaming and not watcher.cancelled():
                cancelled_here = True
                task.cancel()

        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            # Absorb only the cancellation this response asked for, and only if nothing else
            # asked too (uncancel() counts the requests still pending).
            if not cancelled_here or task.uncancel() > 0:
                raise
        finally:
            streaming = False
            watcher.cancel()
