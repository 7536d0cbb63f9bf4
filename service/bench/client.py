"""The load generator's reader: one SSE connection on raw asyncio streams.

No HTTP library on the hot path: a request line, the response head, HTTP/1.1 chunked framing
(or a plain body), and a minimal Server-Sent Events parser that yields ``(id, data)`` and counts
comment heartbeats. It is cheap enough that one loadgen process holds thousands of readers;
its own CPU is reported so a reader of the results can tell when it saturates.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Endpoint", "SSEConnection", "SSEError", "open_sse", "post_json"]


class SSEError(Exception):
    """The server answered something other than an event stream (status in ``status``)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the deployment is: host, port, and the path prefix of its base URL."""

    host: str
    port: int
    prefix: str = ""
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), parts.path.rstrip("/"), tls)


@dataclass(slots=True)
class SSEConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    chunked: bool
    heartbeats: int = 0
    _buffer: bytes = field(default=b"", repr=False)

    async def _body(self) -> bytes:
        """The next piece of the response body; b"" at its end."""
        if not self.chunked:
            return await self.reader.read(65536)
        size_line = await self.reader.readline()
        if not size_line:
            return b""
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await self.reader.readline()
            return b""
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)  # CRLF after the chunk
        return data

    async def events(self) -> AsyncIterator[tuple[str | None, str]]:
        """``(id, data)`` per event, until the server ends the response."""
        while True:
            while b"\n\n" not in self._buffer:
                piece = await self._body()
                if not piece:
                    return
                self._buffer += piece.replace(b"\r\n", b"\n")
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            event_id: str | None = None
            control = False
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    if not line.startswith(b": rivulet"):
                        self.heartbeats += 1
                elif line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                elif line.startswith(b"id:"):
                    event_id = line[3:].strip().decode()
                elif line.startswith(b"event:"):
                    # Durable Streams' offset/cursor frames are bookkeeping, not content.
                    control = line[6:].strip() == b"control"
            if data and not control:
                yield event_id, b"\n".join(data).decode()

    def close(self) -> None:
        self.writer.close()


async def _connect(
    endpoint: Endpoint, recv_buffer: int | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if recv_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
        await asyncio.wait_for(loop.sock_connect(sock, infos[0][4]), timeout)
    except BaseException:
        sock.close()
        raise
    ssl_context = None
    if endpoint.tls:
        import ssl

        ssl_context = ssl.create_default_context()
    return await asyncio.open_connection(
        sock=sock,
        ssl=ssl_context,
        server_hostname=endpoint.host if endpoint.tls else None,
        limit=1 << 20,
    )


async def post_json(
    endpoint: Endpoint,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """POST a JSON body on a connection of its own; ``(status, body)``.

    Not an HTTP library on purpose: a pooled client (httpx/httpcore) scans every pooled
    connection for each request, which at hundreds of concurrent requests made the loadgen's
    POSTs, not the server, the slowest part of the run (measured: 100 POSTs on reused
    connections took 1.3 s, on fresh ones 0.18 s).
    """
    reader, writer = await _connect(endpoint, None, timeout)
    try:
        lines = [
            f"POST {endpoint.prefix}{path} HTTP/1.1",
            f"Host: {endpoint.host}:{endpoint.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        data = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, data
    finally:
        writer.close()


async def open_sse(
    endpoint: Endpoint,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    recv_buffer: int | None = None,
    timeout: float = 30.0,
) -> SSEConnection:
    """GET ``path`` and read the response head; raise :class:`SSEError` unless it is 200."""
    reader, writer = await _connect(endpoint, recv_buffer, timeout)
    lines = [
        f"GET {endpoint.prefix}{path} HTTP/1.1",
        f"Host: {endpoint.host}:{endpoint.port}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    parsed: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
    conn = SSEConnection(
        reader, writer, status, parsed, parsed.get("transfer-encoding", "").lower() == "chunked"
    )
    if status != 200:
        body = b""
        if status != 204:
            length = int(parsed.get("content-length", "0") or 0)
            body = await reader.read(min(length, 4096)) if length else b""
        conn.close()
        raise SSEError(status, body)
    return conn
