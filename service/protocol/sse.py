"""Durable Streams SSE framing: ``data`` events paired with ``control`` events.

This is the protocol's own dialect, not generic SSE: the conformance suite matches
``data:<payload>`` with no space after the colon, and every data event must be followed,
in the same write, by a ``control`` event carrying the resumable offset. Litestar's
``ServerSentEventMessage`` always writes ``data: `` with a space, so the few lines of framing
live here; the browser-facing EventSource delivery uses Litestar's encoder.

Injection safety: a payload is split on every line terminator SSE knows (CRLF, CR, LF) and
each piece becomes its own ``data:`` line, so model or user text can never end an event or
start a field; the reader's parser rejoins the pieces with LF.
"""

from __future__ import annotations

import base64
import json
import re

from service.log import Chunk

__all__ = ["comment", "control_event", "data_event", "encode_payload"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_payload(chunks: tuple[Chunk, ...] | list[Chunk], kind: str) -> str:
    """The text of one data event for ``kind`` ``json``, ``text`` or ``binary``."""
    if kind == "json":
        return "[" + ",".join(c.data.decode() for c in chunks) + "]"
    raw = b"".join(c.data for c in chunks)
    if kind == "binary":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8", errors="replace")


def data_event(payload: str) -> str:
    """An ``event: data`` block; one ``data:`` line per payload line."""
    lines = _LINE_BREAK.split(payload)
    # Parsers drop one space after "data:": a line that starts with a space gets an extra
    # one, so " hello" arrives as " hello" (and "hello" still goes out as "data:hello").
    return (
        "event: data\n"
        + "".join(f"data: {line}\n" if line.startswith(" ") else f"data:{line}\n" for line in lines)
        + "\n"
    )


def control_event(next_offset: str, *, cursor: str | None, up_to_date: bool, closed: bool) -> str:
    """An ``event: control`` block; a closed stream's final control carries no cursor."""
    body: dict[str, object] = {"streamNextOffset": next_offset}
    if closed:
        body["streamClosed"] = True
    else:
        body["streamCursor"] = cursor
    if up_to_date:
        body["upToDate"] = True
    return "event: control\ndata:" + json.dumps(body, separators=(",", ":")) + "\n\n"


def comment(text: str) -> str:
    """A comment line: keeps idle proxies from timing the connection out."""
    return f": {text}\n\n"
