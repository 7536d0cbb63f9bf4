"""Bad input gets a clear 4xx with a JSON body naming the problem, and writes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

S = "/v1/stream"


@pytest_asyncio.fixture
async def client() -> AsyncIterator[AsyncTestClient]:
    app = create_app(Settings(max_body_bytes=1024, long_poll_timeout=0.2))
    async with AsyncTestClient(app) as c:
        yield c


async def _text_stream(client: AsyncTestClient, name: str, body: str = "abc") -> str:
    r = await client.put(f"{S}/{name}", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 201
    return str(r.headers["stream-next-offset"])


async def _assert_unchanged(client: AsyncTestClient, name: str, body: str, tail: str) -> None:
    r = await client.get(f"{S}/{name}")
    assert r.status_code == 200
    assert r.text == body
    assert r.headers["stream-next-offset"] == tail


def _error(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("ttl", ["+10", "010", "1.5", "1e3", "-1", "ten", " 10"])
async def test_malformed_ttl_is_rejected_and_creates_nothing(client, ttl: str) -> None:
    r = await client.put(f"{S}/t", headers={"content-type": "text/plain", "stream-ttl": ttl})
    _error(r, 400, "BAD_REQUEST")
    assert (await client.head(f"{S}/t")).status_code == 404


async def test_ttl_and_expires_at_together_is_rejected(client) -> None:
    r = await client.put(
        f"{S}/t",
        headers={
            "content-type": "text/plain",
            "stream-ttl": "60",
            "stream-expires-at": "2099-01-01T00:00:00Z",
        },
    )
    _error(r, 400, "CONFLICTING_EXPIRY")
    assert (await client.head(f"{S}/t")).status_code == 404


async def test_invalid_json_append_writes_nothing(client) -> None:
    r = await client.put(f"{S}/j", content=b'{"a":1}', headers={"content-type": "application/json"})
    tail = r.headers["stream-next-offset"]
    for bad in (b"{nope", b"[1,", b"NaN", b'{"a": Infinity}', b"[1e400]", b"[]", b"\xff\xfe"):
        r = await client.post(f"{S}/j", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] in {"INVALID_JSON", "EMPTY_BODY"}
    r = await client.get(f"{S}/j")
    assert r.json() == [{"a": 1}]
    assert r.headers["stream-next-offset"] == tail


async def test_empty_append_and_missing_content_type(client) -> None:
    tail = await _text_stream(client, "e")
    _error(await client.post(f"{S}/e", content=b""), 400, "EMPTY_BODY")
    _error(await client.post(f"{S}/e", content=b"x"), 400, "MISSING_CONTENT_TYPE")
    await _assert_unchanged(client, "e", "abc", tail)


async def test_content_type_mismatch_is_409(client) -> None:
    tail = await _text_stream(client, "c")
    r = await client.post(f"{S}/c", content=b"{}", headers={"content-type": "application/json"})
    _error(r, 409, "CONTENT_TYPE_MISMATCH")
    await _assert_unchanged(client, "c", "abc", tail)


async def test_unknown_stream_is_404_for_every_method(client) -> None:
    _error(await client.get(f"{S}/missing"), 404, "STREAM_NOT_FOUND")
    _error(
        await client.post(f"{S}/missing", content=b"x", headers={"content-type": "text/plain"}),
        404,
        "STREAM_NOT_FOUND",
    )
    _error(await client.delete(f"{S}/missing"), 404, "STREAM_NOT_FOUND")
    _error(await client.get(f"{S}/missing?offset=-1&live=sse"), 404, "STREAM_NOT_FOUND")
    assert (await client.head(f"{S}/missing")).status_code == 404


async def test_oversized_body_is_413_and_writes_nothing(client) -> None:
    tail = await _text_stream(client, "big")
    r = await client.post(f"{S}/big", content=b"x" * 2048, headers={"content-type": "text/plain"})
    _error(r, 413, "PAYLOAD_TOO_LARGE")
    await _assert_unchanged(client, "big", "abc", tail)


@pytest.mark.parametrize(
    "offset",
    ["", "abc", "0,1", "0000000000000000", "-2", "0000000000000000_000000000000000x", "now2"],
)
async def test_malformed_offsets_are_400(client, offset: str) -> None:
    await _text_stream(client, "o")
    _error(await client.get(f"{S}/o", params={"offset": offset}), 400, "INVALID_OFFSET")


async def test_offset_that_is_not_a_position_is_400(client) -> None:
    await _text_stream(client, "p")
    # Well-formed, but no entry ends at byte 2 of this stream.
    r = await client.get(f"{S}/p", params={"offset": "0000000000000001_0000000000000002"})
    _error(r, 400, "INVALID_OFFSET")


async def test_live_modes_need_an_offset(client) -> None:
    await _text_stream(client, "l")
    _error(await client.get(f"{S}/l?live=sse"), 400, "OFFSET_REQUIRED")
    _error(await client.get(f"{S}/l?live=long-poll"), 400, "OFFSET_REQUIRED")
    _error(await client.get(f"{S}/l?offset=-1&live=websocket"), 400, "INVALID_LIVE_MODE")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"producer-id": "p"}, "BAD_REQUEST"),
        ({"producer-id": "p", "producer-epoch": "0"}, "BAD_REQUEST"),
        ({"producer-id": "", "producer-epoch": "0", "producer-seq": "0"}, "BAD_REQUEST"),
        ({"producer-id": "p", "producer-epoch": "x", "producer-seq": "0"}, "BAD_REQUEST"),
        (
            {"producer-id": "p", "producer-epoch": "0", "producer-seq": "9007199254740992"},
            "BAD_REQUEST",
        ),
    ],
)
async def test_bad_producer_headers_are_400_and_write_nothing(client, headers, code) -> None:
    tail = await _text_stream(client, "pr")
    r = await client.post(
        f"{S}/pr", content=b"x", headers={"content-type": "text/plain", **headers}
    )
    _error(r, 400, code)
    await _assert_unchanged(client, "pr", "abc", tail)


@pytest.mark.parametrize("path", ["a/%2E%2E/b", "a/%2E/b", "a%00b", "a%0Ab", "x" * 1100])
async def test_hostile_paths_are_rejected(client, path: str) -> None:
    r = await client.put(f"{S}/{path}", headers={"content-type": "text/plain"})
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json()["error"]["code"] == "INVALID_PATH"


async def test_fork_headers_without_source_are_400(client) -> None:
    r = await client.put(
        f"{S}/f", headers={"content-type": "text/plain", "stream-fork-sub-offset": "0"}
    )
    _error(r, 400, "BAD_REQUEST")
    r = await client.put(
        f"{S}/f", headers={"content-type": "text/plain", "stream-forked-from": "/elsewhere/x"}
    )
    _error(r, 400, "INVALID_FORK")


async def test_health_endpoints(client) -> None:
    r = await client.get("/livez")
    assert r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.json() == {"status": "ok", "backend": "memory"}


@pytest.mark.parametrize(
    "expires", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:30:00+01:00", "2026-13-01T00:00:00Z"]
)
async def test_expires_at_outside_representable_time_is_400(client, expires: str) -> None:
    r = await client.put(
        f"{S}/far", headers={"content-type": "text/plain", "stream-expires-at": expires}
    )
    _error(r, 400, "BAD_REQUEST")
    assert (await client.head(f"{S}/far")).status_code == 404


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_generation_streams_are_read_only_over_the_protocol(client, method: str) -> None:
    r = await client.request(
        method, f"{S}/generations/abc", content=b"x", headers={"content-type": "text/plain"}
    )
    _error(r, 403, "READ_ONLY_STREAM")
