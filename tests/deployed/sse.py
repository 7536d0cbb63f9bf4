"""An EventSource, in Python: follow a generation's events, reconnect with ``Last-Event-ID``.

Records each event's id, parsed data and arrival time, the replica that served each
connection (``Rivulet-Replica``) and how many times it reconnected, so scenarios can assert
"every event exactly once, in order, one terminal event" across whatever they break.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = ("finish", "error")


@dataclass
class Follow:
    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)
    reconnects: int = 0
    ended: bool = False
    # Statuses other than 200/204 (a proxy's 502 while a replica restarts): a browser's
    # EventSource gives up on those, so scenarios assert there were none.
    bad_statuses: list[int] = field(default_factory=list)

    @property
    def last_id(self) -> str | None:
        return self.events[-1]["id"] if self.events else None

    @property
    def data(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events]

    def terminal_count(self) -> int:
        return sum(d.get("type") in TERMINAL for d in self.data)


OnOpen = Callable[[str], None]


def read_once(
    url: str,
    follow: Follow,
    stop_after: int | None = None,
    timeout: float = 30.0,
    on_open: OnOpen | None = None,
) -> None:
    """One connection: read until the stream ends, ``stop_after`` events, or the connection
    breaks (raises ``httpx.TransportError``). ``on_open`` gets the serving replica's name."""
    headers = {"accept": "text/event-stream"}
    if follow.last_id:
        headers["last-event-id"] = follow.last_id
    read = 0
    with (
        httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0)) as client,
        client.stream("GET", url, headers=headers) as resp,
    ):
        if resp.status_code not in (200, 204):
            follow.bad_statuses.append(resp.status_code)
            raise AssertionError(f"GET {url}: {resp.status_code} {resp.read()[:300]!r}")
        follow.replicas.append(resp.headers.get("rivulet-replica", "?"))
        if on_open is not None:
            on_open(follow.replicas[-1])
        if resp.status_code == 204:  # after the end: nothing more, ever
            follow.ended = True
            return
        event: dict[str, Any] = {}
        for line in resp.iter_lines():
            if line == "":
                if "data" in event:
                    follow.events.append(event)
                    follow.arrivals.append(time.monotonic())
                    read += 1
                    if event["data"].get("type") in TERMINAL:
                        follow.ended = True
                        return
                    if stop_after is not None and read >= stop_after:
                        return
                event = {}
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event[name] = json.loads(value) if name == "data" else value


def follow_to_end(
    url: str,
    follow: Follow | None = None,
    deadline_s: float = 90.0,
    retry_s: float = 0.3,
    on_open: OnOpen | None = None,
) -> Follow:
    """Follow until the terminal event, reconnecting (with Last-Event-ID) after any drop.
    ``on_open`` is called for each connection with the replica serving it."""
    follow = follow or Follow()
    deadline = time.monotonic() + deadline_s
    while not follow.ended:
        if time.monotonic() > deadline:
            raise AssertionError(f"no terminal event after {deadline_s}s: {follow.data[-3:]}")
        try:
            read_once(url, follow, on_open=on_open)
        except (httpx.TransportError, AssertionError) as exc:
            if isinstance(exc, AssertionError) and "502" not in str(exc) and "503" not in str(exc):
                raise
        if not follow.ended:
            follow.reconnects += 1
            time.sleep(retry_s)
    return follow


def assert_exactly_once(follow: Follow, expected_deltas: list[str] | None = None) -> None:
    """Every event once, in order, one terminal event last; ids strictly increasing."""
    ids = [e["id"] for e in follow.events]
    assert len(set(ids)) == len(ids), "an event was delivered twice"
    assert ids == sorted(ids), "events out of order"
    assert follow.terminal_count() == 1, follow.data[-5:]
    assert follow.bad_statuses == [], (
        f"a browser EventSource would have given up: {follow.bad_statuses}"
    )
    assert follow.data[-1]["type"] in TERMINAL
    if expected_deltas is not None:
        deltas = [d["delta"] for d in follow.data if d["type"] == "content"]
        assert deltas == expected_deltas
