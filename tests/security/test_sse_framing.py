"""SSE framing can't be broken from model output or user input (property-tested).

Whatever text a model or a user produces — CR, LF, CRLF, NUL, Unicode line separators,
``data:``/``event:``/``id:``/``retry:`` look-alikes — it stays inside one event, and a real SSE
parser (httpx's line decoder + httpx-sse's event decoder) gets back exactly what was sent.
"""

from __future__ import annotations

import json

from httpx._decoders import LineDecoder
from httpx_sse._decoders import SSEDecoder
from hypothesis import example, given, settings
from hypothesis import strategies as st
from litestar.response.sse import ServerSentEventMessage

from service import jsonwire
from service.generation.events import ContentDelta, encode_event
from service.log import Chunk, Offset
from service.protocol import sse

_PIECES = [*'abc :{}"\\\x00\r\n\t\u2028\u2029\x85\x0b\x0c', "data:", "event:", "id:", "retry:"]
HOSTILE = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join) | st.text(max_size=80)


def _parse(wire: str) -> list[tuple[str, str, str]]:
    """(event, data, id) of every dispatched event, as a browser-grade parser sees them."""
    decoder, out = SSEDecoder(), []
    lines_decoder = LineDecoder()
    lines = lines_decoder.decode(wire) + lines_decoder.flush()
    for line in lines:
        event = decoder.decode(line)
        if event is not None:
            out.append((event.event, event.data, event.id))
    return out


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
@example('line1\nevent: finish\ndata: {"type":"finish"}\n\nid: 9999')
@example("\r\r\n\n\x00")
def test_eventsource_events_carry_any_text_in_one_event(text: str) -> None:
    payload = encode_event(ContentDelta(text)).decode()
    offset = "0000000000000007_0000000000000123"
    wire = ServerSentEventMessage(data=payload, id=offset).encode().decode()
    events = _parse(wire)
    assert len(events) == 1
    name, data, event_id = events[0]
    assert name == "message"
    assert event_id == offset
    assert json.loads(data) == {"type": "content", "delta": text}


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
@example('x\nevent: control\ndata: {"injected":true}\n\n')
@example("a\r\nevent: data\r\ndata: fake\r\n\r\nb")
def test_durable_streams_text_events_cannot_be_split_or_injected(text: str) -> None:
    # Plain text is sent as it is: the spec ends lines only at CR/LF/CRLF, but this parser
    # (like other splitlines-based ones) also splits at U+2028 and friends, which a text
    # stream may legitimately hold. JSON streams escape those (see the other tests).
    text = "".join(c for c in text if c not in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    chunk = Chunk(text.encode(), Offset(1, len(text.encode())))
    wire = sse.data_event(sse.encode_payload([chunk], "text")) + sse.control_event(
        str(chunk.end), cursor="1", up_to_date=True, closed=False
    )
    events = _parse(wire)
    assert [e[0] for e in events] == ["data", "control"]
    # The parser rejoins data lines with LF: every line ending arrives as LF, nothing else moves.
    assert events[0][1] == text.replace("\r\n", "\n").replace("\r", "\n")
    assert json.loads(events[1][1]) == {
        "streamNextOffset": str(chunk.end),
        "streamCursor": "1",
        "upToDate": True,
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE, min_size=1, max_size=5))
def test_durable_streams_json_batches_round_trip(texts: list[str]) -> None:
    chunks = [
        Chunk(jsonwire.dumps({"t": t}).encode(), Offset(i + 1, i + 1)) for i, t in enumerate(texts)
    ]
    wire = sse.data_event(sse.encode_payload(chunks, "json"))
    events = _parse(wire)
    assert len(events) == 1
    assert json.loads(events[0][1]) == [{"t": t} for t in texts]
