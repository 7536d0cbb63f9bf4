"""``rivulet doctor URL``: check from the outside that an edge streams Rivulet correctly.

Streaming breaks at the edge more than anywhere else: a proxy that buffers, a read timeout
shorter than the silence between tokens, gzip on ``text/event-stream``, a stripped
``Last-Event-ID``. The doctor creates short generations on the deployment's fake provider
(scripted, at a slow known token rate, each token stamped with its emit time) and reads them
through the URL the user's clients use, like a browser's EventSource would:

1. a probe: a one-token generation, to learn the server's heartbeat interval
   (``Rivulet-Heartbeat`` header) and that the URL, the API key and the fake provider work;
2. the main generation: ``tokens`` at ``rate`` per second, then a silence longer than the
   heartbeat interval (``--long``: longer than the common 60 s proxy defaults), then the
   rest. The first connection is closed on purpose after the first token that follows the
   silence, and the doctor reconnects with ``Last-Event-ID`` until the terminal event.

Every check is PASS, WARN, FAIL or SKIP (not measurable here), with the figure measured and,
for WARN and FAIL, the exact fix. Exit code 1 when any check fails.

Timing uses the fake's stamps: each token's delay is ``receipt - emit``; clock offset
between the machines cancels out because only the *spread* of delays matters. An edge that
buffers delivers early tokens late and late ones early, so the spread grows to the length of
the answer; a streaming edge keeps it at a few milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx

from service.api.generations import HEARTBEAT_HEADER
from service.api.middleware import REPLICA_HEADER as _REPLICA_HEADER
from service.generation.providers.fake_script import unstamp

__all__ = ["Check", "Connection", "Plan", "add_arguments", "analyse", "diagnose", "main"]

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]

DEFAULT_HEARTBEAT: Final = 15.0
MAX_CONNECTIONS: Final = 20  # reconnects the doctor makes before it gives up
# The service's own header names, from where it sets them.
REPLICA_HEADER: Final = _REPLICA_HEADER.decode()
STALL: Final = 1.5  # seconds from the POST to the first token
LONG_SILENCE: Final = 75.0  # longer than the 60 s read timeout most proxies default to

FIX_BUFFERING: Final = (
    "turn response buffering off for the event stream: nginx `proxy_buffering off;` (and no "
    "`proxy_ignore_headers X-Accel-Buffering`); ingress-nginx annotation "
    '`nginx.ingress.kubernetes.io/proxy-buffering: "off"`; NGINX Gateway Fabric '
    "ProxySettingsPolicy `buffering.disable: true`; Caddy: remove `response_buffers` / "
    "`buffer_responses`; HAProxy: no response filter (compression, cache) on this path"
)
FIX_COMPRESSION: Final = (
    "exclude text/event-stream from compression (a compressor may hold events until its block "
    "fills: nginx does with proxy_buffering on; and every hop after the edge now sees a "
    "compressed stream it may buffer): nginx `gzip_types` without text/event-stream (or "
    "`gzip off;` in this location); "
    "HAProxy `compression type` without it; Caddy `encode` with a matcher that excludes it; "
    "ingress-nginx: no `use-gzip`/`enable-brotli` for text/event-stream"
)
FIX_HEADERS: Final = (
    "pass the service's response headers through unchanged: `Content-Type: "
    "text/event-stream`, `Cache-Control: no-cache`, no `Content-Length` (a Content-Length "
    "means the edge collected the whole body first); don't cache this path"
)
FIX_RESUME: Final = (
    "forward the `Last-Event-ID` request header to the service unchanged and never cache "
    "event streams (nginx: no `proxy_cache` on this path; CDNs: bypass for "
    "text/event-stream)"
)


def fix_idle(heartbeat: float) -> str:
    """The fix for an edge that cuts a silent stream."""
    floor = max(60, math.ceil(4 * heartbeat))
    return (
        f"let a response stay open while only heartbeats flow (every {heartbeat:g} s): raise the "
        f"edge's read/idle timeout to at least {floor} s and its request/route timeout to "
        "0 (none) or hours: nginx `proxy_read_timeout`/`proxy_send_timeout`; ingress-nginx "
        "`proxy-read-timeout`/`proxy-send-timeout` annotations; HAProxy `timeout server` and "
        "`timeout client`; Gateway API HTTPRoute `timeouts.request: 0s` (Envoy's route timeout "
        "defaults to 15 s) and Envoy Gateway BackendTrafficPolicy timeouts; NGINX Gateway "
        "Fabric keeps nginx's 60 s read timeout, so keep the heartbeat well under it"
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    measured: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """The main generation the doctor asks for."""

    tokens: int
    rate: float
    pause_after: int
    pause: float
    heartbeat: float

    def fake_params(self) -> dict[str, Any]:
        return {
            # The reader attaches before the first token: its delay is not a connect time.
            "stall_before_first": STALL,
            "tokens": self.tokens,
            "rate": self.rate,
            "pause_after": self.pause_after,
            "pause": self.pause,
            "stamp": True,
        }

    @property
    def duration(self) -> float:
        """Seconds the answer takes to produce."""
        return STALL + (self.tokens - 1) / self.rate + self.pause


@dataclass(slots=True)
class Token:
    id: str
    received: float  # this machine's monotonic clock
    emitted: float  # the provider's wall clock


@dataclass(slots=True)
class Connection:
    """What one EventSource-style connection saw."""

    opened: float
    http_version: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    terminal: list[str] = field(default_factory=list)
    last_comment: str = ""
    last_byte: float = 0.0
    closed: float = 0.0
    end: Literal["terminal", "server", "cut", "doctor", "error"] = "error"
    detail: str = ""

    @property
    def replica(self) -> str | None:
        return self.headers.get(REPLICA_HEADER)


class DoctorError(Exception):
    """The doctor could not run its checks (URL, auth, fake provider): one FAIL line."""


# -- reading -----------------------------------------------------------------------------------


class _SSE:
    """An incremental ``text/event-stream`` reader: bytes in, (kind, value) out."""

    def __init__(self) -> None:
        self._buf = b""
        self._cr = b""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, str, str | None]]:
        """``("comment", text, None)``, ``("event", data, id)`` or ``("id", id, id)`` (an id
        with no data: it still moves the resume point) for each complete item."""
        # CRLF and a bare CR end a line too; a CR at the end of a chunk waits for the next
        # one, which may start with its LF.
        data = self._cr + chunk
        self._cr = b"\r" if data.endswith(b"\r") else b""
        if self._cr:
            data = data[:-1]
        self._buf += data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[tuple[str, str, str | None]] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                return out
            line = self._buf[:end].decode("utf-8", "replace")
            self._buf = self._buf[end + 1 :]
            if not line:
                if self._data:
                    out.append(("event", "\n".join(self._data), self._id))
                elif self._id is not None:
                    out.append(("id", self._id, self._id))
                self._data, self._id = [], None
            elif line.startswith(":"):
                out.append(("comment", line[1:].strip(), None))
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name == "id":
                    self._id = value


async def _read(
    client: httpx.AsyncClient,
    url: str,
    last_id: str | None,
    conn: Connection,
    *,
    stop_after_pause: int | None,
    timeout: httpx.Timeout | None = None,
) -> str | None:
    """Read one connection into ``conn``; return the last event id it saw."""
    headers = {"accept": "text/event-stream", "accept-encoding": "gzip, deflate"}
    if last_id is not None:
        headers["last-event-id"] = last_id
    parser = _SSE()
    try:
        async with client.stream(
            "GET", url, headers=headers, timeout=timeout or client.timeout
        ) as response:
            conn.http_version = response.http_version
            conn.status = response.status_code
            conn.headers = {k.lower(): v for k, v in response.headers.items()}
            if response.status_code == 204:
                conn.end, conn.closed = "terminal", time.monotonic()
                return last_id
            if response.status_code != 200:
                body = (await response.aread())[:300].decode("utf-8", "replace")
                conn.end, conn.detail = "error", f"HTTP {response.status_code}: {body}"
                conn.closed = time.monotonic()
                return last_id
            async for chunk in response.aiter_bytes():
                now = time.monotonic()
                conn.last_byte = now
                for kind, value, event_id in parser.feed(chunk):
                    if kind == "comment":
                        conn.last_comment = value
                        if value == "keep-alive":
                            conn.heartbeats.append(now)
                        continue
                    if event_id is not None:
                        last_id = event_id  # the last event *handled*, for Last-Event-ID
                    if kind == "id":
                        continue
                    try:
                        event = json.loads(value)
                    except ValueError:
                        continue
                    if event.get("type") == "content":
                        try:
                            _, emitted = unstamp(str(event.get("delta", "")))
                        except ValueError:  # not stamped: a fake older than the doctor
                            emitted = math.nan
                        conn.tokens.append(Token(event_id or "", now, emitted))
                        if stop_after_pause is not None and len(conn.tokens) > stop_after_pause:
                            conn.end, conn.closed = "doctor", time.monotonic()
                            return last_id
                    elif event.get("type") in ("finish", "error"):
                        conn.terminal.append(str(event.get("type")))
                        conn.end, conn.closed = "terminal", time.monotonic()
                        return last_id
            ended_by_server = conn.last_comment in ("reconnect", "draining")
            conn.end = "server" if ended_by_server else "cut"
            conn.detail = "" if ended_by_server else "ended without a final event"
    except httpx.DecodingError as exc:
        conn.end, conn.detail = "error", f"the edge's compressed body did not decode ({exc})"
    except (httpx.RemoteProtocolError, httpx.NetworkError, httpx.ReadTimeout) as exc:
        # Once the response has started, a broken, reset or silent connection is the edge
        # (or the network) cutting the stream; before it, the edge could not be reached.
        started = conn.status != 0
        if started:
            conn.end = "cut"
            conn.detail = (
                "nothing arrived before the doctor's read timeout"
                if isinstance(exc, httpx.ReadTimeout)
                else "reset"
                if isinstance(exc, httpx.NetworkError)
                else "broken mid-response"
            )
        else:
            conn.end, conn.detail = "error", f"{type(exc).__name__}: {exc}"
    except httpx.TransportError as exc:
        conn.end, conn.detail = "error", f"{type(exc).__name__}: {exc}"
    conn.closed = time.monotonic()
    return last_id


def _auth(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


async def _create(
    client: httpx.AsyncClient, base: str, api_key: str | None, fake: dict[str, Any]
) -> str:
    """Create a generation on the fake provider; the path (and query) of its events URL."""
    body = {
        "provider": "fake",
        "model": "fake-1",
        "messages": [{"role": "user", "content": "rivulet doctor"}],
        "params": {"fake": fake},
    }
    try:
        # Not following redirects: a POST redirected to a GET would look like a 404.
        r = await client.post(
            f"{base}/v1/generations", json=body, headers=_auth(api_key), follow_redirects=False
        )
    except httpx.HTTPError as exc:
        raise DoctorError(f"cannot reach {base}: {type(exc).__name__}: {exc}") from exc
    if r.is_redirect:
        raise DoctorError(
            f"{base}/v1/generations redirects (HTTP {r.status_code}) to "
            f"{r.headers.get('location', '?')}: run the doctor against the final URL"
        )
    if r.status_code in (401, 403):
        hint = (
            "the API key was refused (it needs the generate scope)"
            if api_key
            else "pass an API key with the generate scope (--api-key)"
        )
        raise DoctorError(f"HTTP {r.status_code} creating a generation: {hint}")
    if r.status_code == 404:
        raise DoctorError(
            f"HTTP 404 for {base}/v1/generations: is this the URL of a Rivulet deployment "
            "(including any path prefix the edge adds)?"
        )
    if r.status_code not in (200, 201):
        raise DoctorError(f"HTTP {r.status_code} creating a generation: {r.text[:300]}")
    try:
        events_url = str(r.json()["events_url"])
    except (ValueError, KeyError, TypeError) as exc:
        reply = r.text[:200]
        raise DoctorError(f"the reply to POST /v1/generations is not Rivulet's: {reply}") from exc
    # The service builds URLs from what it sees (often its own address behind the edge, and
    # without a prefix the edge strips): keep what follows /v1/ and the read token, and go
    # through the user's URL.
    parts = urlsplit(events_url)
    path = parts.path[parts.path.find("/v1/") :] if "/v1/" in parts.path else parts.path
    return f"{base}{path}" + (f"?{parts.query}" if parts.query else "")


async def diagnose(
    url: str,
    *,
    api_key: str | None = None,
    long: bool = False,
    tokens: int = 8,
    rate: float = 4.0,
    pause: float | None = None,
) -> tuple[Plan | None, list[Check]]:
    """Run the checks against ``url``; the plan used and the report."""
    base = url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=True) as client:
            probe_path = await _create(
                client, base, api_key, {"tokens": 1, "rate": 0, "stamp": True}
            )
            probe = Connection(opened=time.monotonic())
            await _read(client, probe_path, None, probe, stop_after_pause=None)
            if probe.end == "error":
                raise DoctorError(f"reading the probe's events failed: {probe.detail}")
            heartbeat = _advertised_heartbeat(probe.headers.get(HEARTBEAT_HEADER))
            advertised = heartbeat is not None
            heartbeat = heartbeat or DEFAULT_HEARTBEAT
            silence = pause if pause is not None else _silence(heartbeat, long)
            plan = Plan(tokens, rate, max(1, tokens // 2), silence, heartbeat)
            path = await _create(client, base, api_key, plan.fake_params())
            read_timeout = plan.duration + 2 * heartbeat + 15
            connections = await _follow(client, path, plan, read_timeout)
    except DoctorError as exc:
        return None, [Check("reach", "FAIL", str(exc), "see the message")]
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return None, [Check("reach", "FAIL", f"{type(exc).__name__}: {exc}", "see the message")]
    checks = analyse(plan, connections, heartbeat_advertised=advertised, long=long)
    return plan, checks


def _advertised_heartbeat(value: str | None) -> float | None:
    """The server's heartbeat interval from its header (None: absent or unusable)."""
    try:
        seconds = float(value) if value else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _silence(heartbeat: float, long: bool) -> float:
    if long:
        return max(LONG_SILENCE, heartbeat * 2.5)
    return heartbeat + max(3.0, heartbeat / 2)


async def _follow(
    client: httpx.AsyncClient, path: str, plan: Plan, read_timeout: float
) -> list[Connection]:
    """EventSource semantics: reconnect with ``Last-Event-ID`` until the terminal event."""
    timeout = httpx.Timeout(30.0, read=read_timeout)
    deadline = time.monotonic() + plan.duration + 4 * plan.heartbeat + 60
    connections: list[Connection] = []
    last_id: str | None = None
    while time.monotonic() < deadline and len(connections) < MAX_CONNECTIONS:
        conn = Connection(opened=time.monotonic())
        # The first connection is closed on purpose after the first token past the silence,
        # so resume is always exercised.
        stop = plan.pause_after if not connections else None
        last_id = await _read(client, path, last_id, conn, stop_after_pause=stop, timeout=timeout)
        connections.append(conn)
        if conn.end == "terminal" or (conn.end == "error" and not conn.tokens):
            break
        await asyncio.sleep(0.2)
    return connections


# -- judging -----------------------------------------------------------------------------------


def analyse(
    plan: Plan, connections: list[Connection], *, heartbeat_advertised: bool, long: bool
) -> list[Check]:
    """The report for what the connections saw (pure: unit-testable without a network)."""
    first = connections[0]
    resume = _resume(plan, connections)
    return [
        _headers(first),
        _compression(first),
        _buffering(plan, connections),
        _heartbeats(plan, connections, heartbeat_advertised),
        _idle(plan, connections, long, resumed=resume.status == "PASS"),
        resume,
        _cross_replica(connections),
    ]


def _headers(conn: Connection) -> Check:
    h = conn.headers
    problems = []
    if not h.get("content-type", "").startswith("text/event-stream"):
        problems.append(f"Content-Type is {h.get('content-type', 'missing')!r}")
    if "no-cache" not in h.get("cache-control", "") and "no-store" not in h.get(
        "cache-control", ""
    ):
        problems.append(f"Cache-Control is {h.get('cache-control', 'missing')!r}")
    if "content-length" in h:
        problems.append(f"Content-Length: {h['content-length']} is set")
    if conn.status != 200:
        problems.append(f"status {conn.status or 'none'} ({conn.detail})")
    version = conn.http_version or "?"
    measured = (
        f"{version}, {h.get('content-type', '-')}, Cache-Control {h.get('cache-control', '-')}, "
        + (
            "no Content-Length"
            if "content-length" not in h
            else f"Content-Length {h['content-length']}"
        )
    )
    if problems:
        return Check("headers", "FAIL", "; ".join(problems), FIX_HEADERS)
    if version == "HTTP/1.0":
        return Check(
            "headers",
            "WARN",
            measured,
            "speak HTTP/1.1 or HTTP/2 to clients (HTTP/1.0 has no chunked encoding: every "
            "stream costs a connection close)",
        )
    return Check("headers", "PASS", measured)


def _compression(conn: Connection) -> Check:
    encoding = conn.headers.get("content-encoding", "")
    if encoding and encoding != "identity":
        return Check(
            "compression",
            "FAIL",
            f"text/event-stream came back with Content-Encoding: {encoding}",
            FIX_COMPRESSION,
        )
    return Check("compression", "PASS", "not compressed (asked with Accept-Encoding: gzip)")


def _delays(conn: Connection) -> list[float]:
    return [t.received - t.emitted for t in conn.tokens]


def _unstamped(connections: list[Connection]) -> bool:
    return any(math.isnan(t.emitted) for c in connections for t in c.tokens)


UNSTAMPED: Final = "tokens carry no emit time (a server older than this doctor): not timed"


def _buffering(plan: Plan, connections: list[Connection]) -> Check:
    if _unstamped(connections):
        return Check("buffering", "SKIP", UNSTAMPED)
    best = max(connections, key=lambda c: len(c.tokens))
    if len(best.tokens) < 2:
        return Check(
            "buffering",
            "FAIL" if all(c.end == "cut" for c in connections) else "WARN",
            "fewer than 2 tokens arrived on any one connection: nothing to time",
            FIX_BUFFERING,
        )
    delays = _delays(best)
    spread = max(delays) - min(delays)
    span = best.tokens[-1].emitted - best.tokens[0].emitted
    measured = (
        f"{len(best.tokens)} tokens produced over {span:.1f} s arrived with delays within "
        + (f"{spread * 1000:.0f} ms" if spread >= 0.001 else "1 ms")
        + " of each other"
    )
    if spread <= max(0.5, 1.5 / plan.rate):
        return Check("buffering", "PASS", measured)
    status: Status = "FAIL" if spread > max(1.5, span / 4) else "WARN"
    return Check("buffering", status, measured + ": the edge holds tokens back", FIX_BUFFERING)


def _heartbeats(plan: Plan, connections: list[Connection], advertised: bool) -> Check:
    """Heartbeats during the silence: how late each arrived versus when it was due."""
    h = plan.heartbeat
    if _unstamped(connections):
        return Check("heartbeats", "SKIP", UNSTAMPED)
    note = "" if advertised else f" (server did not say its interval; assumed {h:g} s)"
    # Without the server's word on the interval, a mismatch is a doubt, not a verdict.
    bad: Status = "FAIL" if advertised else "WARN"
    first_id = min((t.id for c in connections for t in c.tokens), default=None)
    for conn in connections:
        before = conn.tokens[: plan.pause_after]
        if len(before) < plan.pause_after or not before or before[0].id != first_id:
            continue  # this connection did not see the whole run-up to the silence
        # Map the provider's clock onto ours with the smallest delay seen (clock offset).
        offset = min(_delays(conn))
        silence_start = before[-1].emitted + offset
        end = (
            conn.tokens[plan.pause_after].received
            if len(conn.tokens) > plan.pause_after
            else conn.closed
        )
        alive = end - silence_start
        expected = int(min(alive, plan.pause) // h)
        if expected == 0:
            if conn.end == "cut" and alive < plan.pause:
                return Check(
                    "heartbeats",
                    "WARN",
                    f"the stream was cut {alive:.1f} s into the silence, before the first "
                    f"heartbeat was due ({h:g} s){note}",
                    "see idle timeout",
                )
            return Check(
                "heartbeats",
                "SKIP",
                f"the {plan.pause:g} s silence is shorter than the {h:g} s heartbeat{note}",
            )
        beats = [t for t in conn.heartbeats if silence_start < t <= end + 0.5]
        late = [t - (silence_start + (i + 1) * h) for i, t in enumerate(beats)]
        worst = max(late, default=math.inf)
        measured = (
            f"{len(beats)} heartbeat(s) in {min(alive, plan.pause):.1f} s of silence "
            f"(interval {h:g} s){note}"
        )
        if len(beats) + 1 < expected or (not beats and expected >= 1):
            return Check(
                "heartbeats",
                bad,
                measured + f", {expected} due: the edge drops or holds SSE comments",
                FIX_BUFFERING,
            )
        if worst > max(1.0, h / 2):
            return Check(
                "heartbeats",
                bad,
                measured + f", up to {worst:.1f} s late: the edge holds them back",
                FIX_BUFFERING,
            )
        return Check(
            "heartbeats", "PASS", measured + f", at most {max(worst, 0) * 1000:.0f} ms late"
        )
    return Check(
        "heartbeats", "WARN", "no connection lived through the silence to time it", fix_idle(h)
    )


def _idle(plan: Plan, connections: list[Connection], long: bool, *, resumed: bool) -> Check:
    cuts = [c for c in connections if c.end == "cut"]
    if cuts:
        c = cuts[0]
        idle = c.closed - (c.last_byte or c.opened)
        age = c.closed - c.opened
        how = f", {c.detail}" if c.detail else ""
        return Check(
            "idle timeout",
            "FAIL",
            f"the edge cut a stream {idle:.1f} s after its last byte ({age:.1f} s after it "
            f"opened{how}; {len(cuts)} cut(s))"
            + ("; the reconnects resumed exactly" if resumed else ""),
            fix_idle(plan.heartbeat),
        )
    # The server ends a connection at its own cap (RIVULET_SSE_MAX_DURATION, ': reconnect'),
    # so a silence longer than that spans connections: say how long one stayed open.
    longest = max(c.closed - c.opened for c in connections)
    measured = (
        f"a {plan.pause:g} s silence between tokens (heartbeats only) passed; connections "
        f"stayed open up to {longest:.0f} s"
    )
    if not long and plan.pause < 60:
        measured += " (--long: 75 s)"
    return Check("idle timeout", "PASS", measured)


def _resume(plan: Plan, connections: list[Connection]) -> Check:
    ids = [t.id for c in connections for t in c.tokens]
    terminals = [k for c in connections for k in c.terminal]
    reconnects = len(connections) - 1
    problems = []
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} token(s) delivered twice")
    if len(set(ids)) != plan.tokens:
        problems.append(f"{len(set(ids))} of {plan.tokens} tokens arrived")
    if ids != sorted(ids):  # offsets are fixed-width: text order is log order
        problems.append("tokens arrived out of order")
    if terminals != ["finish"]:
        problems.append(f"terminal events: {terminals or 'none'}")
    errors = [c.detail for c in connections if c.end == "error"]
    if errors:
        problems.append(errors[0])
    if not terminals and len(connections) >= MAX_CONNECTIONS:
        problems.append(f"gave up after {len(connections)} connections (see idle timeout)")
    if problems:
        return Check("resume", "FAIL", "; ".join(problems), FIX_RESUME)
    if reconnects == 0:
        return Check("resume", "WARN", "no reconnect happened: resume was not exercised")
    return Check(
        "resume",
        "PASS",
        f"{reconnects} reconnect(s) with Last-Event-ID: {plan.tokens} tokens once each, in "
        "order, one finish",
    )


def _cross_replica(connections: list[Connection]) -> Check:
    replicas = [c.replica for c in connections if c.status == 200]
    if not any(replicas):
        return Check(
            "cross-replica",
            "SKIP",
            "the service does not name its replica (RIVULET_REPLICA_HEADER=true shows it)",
        )
    path = " -> ".join(r or "?" for r in replicas)
    if len(set(replicas)) > 1:
        return Check("cross-replica", "PASS", f"resumed on another replica: {path}")
    return Check(
        "cross-replica",
        "WARN",
        f"every connection landed on one replica ({path}): resume across replicas was not "
        "exercised",
        "run more than one replica, or check for session affinity at the edge (it's not "
        "needed: any replica resumes any stream)",
    )


# -- output ------------------------------------------------------------------------------------


def render(url: str, plan: Plan | None, checks: list[Check]) -> str:
    """The human-readable report."""
    lines = [f"rivulet doctor {url}"]
    if plan is not None:
        lines.append(
            f"  {plan.tokens} tokens at {plan.rate:g}/s with a {plan.pause:g} s silence after "
            f"token {plan.pause_after}; server heartbeat {plan.heartbeat:g} s"
        )
    lines.append("")
    width = max(len(c.name) for c in checks)
    for c in checks:
        lines.append(f"  {c.name:<{width}}  {c.status:<4}  {c.measured}")
    fixes = [c for c in checks if c.status in ("WARN", "FAIL") and c.fix]
    if fixes:
        lines.append("\nHow to fix:")
        for c in fixes:
            lines.append(f"  {c.name} ({c.status}): {c.fix}")
    failed = sum(c.status == "FAIL" for c in checks)
    lines.append("")
    lines.append(f"{failed} failed" if failed else "no failures")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the deployment's public base URL (what clients use)")
    parser.add_argument(
        "--api-key", help="API key with the generate scope (when the deployment has auth on)"
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"make the silence {LONG_SILENCE:g} s, past the common 60 s proxy timeouts "
        "(takes minutes)",
    )
    parser.add_argument("--tokens", type=int, default=8, help="answer length (default 8)")
    parser.add_argument("--rate", type=float, default=4.0, help="tokens per second (default 4)")
    parser.add_argument(
        "--pause",
        type=float,
        help="seconds of silence mid-answer (default: heartbeat + max(3, heartbeat/2))",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    if args.tokens < 4 or args.rate <= 0:
        print("rivulet doctor: --tokens must be at least 4 and --rate positive", file=sys.stderr)
        return 2
    plan, checks = asyncio.run(
        diagnose(
            args.url,
            api_key=args.api_key,
            long=args.long,
            tokens=args.tokens,
            rate=args.rate,
            pause=args.pause,
        )
    )
    failed = any(c.status == "FAIL" for c in checks)
    if args.json:
        report = {
            "url": args.url,
            "ok": not failed,
            "plan": None if plan is None else asdict(plan),
            "checks": [asdict(c) for c in checks],
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(args.url, plan, checks))
    return 1 if failed else 0
