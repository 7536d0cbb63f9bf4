"""EventSource frames are encoded once per event per process, whatever the readers."""

from __future__ import annotations

from litestar.response.sse import ServerSentEventMessage

from service.delivery import eventsource
from service.log import Chunk, Offset


def test_equal_events_share_one_encoding_and_the_cache_stays_bounded() -> None:
    first = Chunk(b'{"type":"content","delta":"hi"}', Offset(3, 90))
    again = Chunk(bytes(bytearray(first.data)), Offset(3, 90))  # equal, not the same object
    frame = eventsource._frame(first)
    assert frame == ServerSentEventMessage(data=first.data.decode(), id=str(first.end)).encode()
    assert eventsource._frame(again) is frame
    other = Chunk(first.data, Offset(4, 120))  # same bytes elsewhere: its own id
    assert b"id: 0000000000000004_0000000000000120" in eventsource._frame(other)
    for i in range(eventsource._FRAMES_MAX + 10):
        eventsource._frame(Chunk(b'{"n":%d}' % i, Offset(i + 1, i)))
    assert len(eventsource._FRAMES) <= eventsource._FRAMES_MAX
    big = Chunk(b'"' + b"x" * (eventsource._FRAME_CACHE_LIMIT + 1) + b'"', Offset(1, 1))
    size = len(eventsource._FRAMES)
    assert eventsource._frame(big).startswith(b"id: ")
    assert len(eventsource._FRAMES) == size  # big frames are not kept
