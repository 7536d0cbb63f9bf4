"""No write without a valid key; read tokens open exactly one stream until they expire."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from service.api.auth import ReadTokens
from service.app import create_app
from service.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


ADMIN = "admin-key-0123456789abcdef"
GEN = "generate-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"
WRITER = "writer-key-0123456789abcdef"
SECRET = "s" * 40
KEYS = f"{ADMIN},{GEN}:generate,{READER}:read,{WRITER}:streams:write"
TEXT = {"content-type": "text/plain"}
BODY = {"messages": [{"role": "user", "content": "hi"}], "params": {"fake": {"rate": 0}}}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[AsyncTestClient]:
    settings = Settings(api_keys=KEYS, read_token_secret=SECRET, cancel_without_reader=0, workers=1)
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


def _denied(r: Any, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == {401: "UNAUTHORIZED", 403: "FORBIDDEN"}[status]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


WRITES = [
    ("PUT", "/v1/stream/w", "streams:write"),
    ("POST", "/v1/stream/w", "streams:write"),
    ("DELETE", "/v1/stream/w", "streams:write"),
    ("POST", "/v1/generations", "generate"),
    ("DELETE", "/v1/generations/abc", "generate"),
    ("GET", "/api/stream?prompt=x&messageId=m", "generate"),
]


@pytest.mark.parametrize(("method", "url", "scope"), WRITES)
@pytest.mark.asyncio
async def test_every_write_needs_a_valid_key_with_its_scope(client, method, url, scope) -> None:
    kwargs: dict[str, Any] = (
        {"json": BODY}
        if url == "/v1/generations"
        else {
            "content": b"x",
            "headers": TEXT,
        }
    )
    headers = kwargs.pop("headers", {})
    _denied(await client.request(method, url, headers=headers, **kwargs), 401)
    _denied(
        await client.request(method, url, headers={**headers, **bearer("x" * 20)}, **kwargs), 401
    )
    wrong = READER if scope != "read" else WRITER
    _denied(await client.request(method, url, headers={**headers, **bearer(wrong)}, **kwargs), 403)
    right = GEN if scope == "generate" else WRITER
    r = await client.request(method, url, headers={**headers, **bearer(right)}, **kwargs)
    assert r.status_code not in (401, 403), r.text
    r = await client.request(method, url, headers={**headers, **bearer(ADMIN)}, **kwargs)
    assert r.status_code not in (401, 403), r.text


@pytest.mark.asyncio
async def test_reads_need_a_read_key_or_a_token_for_that_stream(client) -> None:
    assert (
        await client.put("/v1/stream/a", content=b"A", headers={**TEXT, **bearer(WRITER)})
    ).status_code == 201
    assert (
        await client.put("/v1/stream/b", content=b"B", headers={**TEXT, **bearer(WRITER)})
    ).status_code == 201
    _denied(await client.get("/v1/stream/a"), 401)
    assert (await client.head("/v1/stream/a")).status_code == 401
    assert (await client.get("/v1/stream/a", headers=bearer(READER))).text == "A"
    tokens = ReadTokens(SECRET.encode(), 60)
    token_a = tokens.issue("a")
    assert (await client.get("/v1/stream/a", params={"token": token_a})).text == "A"
    assert (await client.get("/v1/stream/a", headers=bearer(token_a))).text == "A"
    _denied(await client.get("/v1/stream/b", params={"token": token_a}), 401)
    expired = tokens.issue("a", now=time.time() - 120)
    _denied(await client.get("/v1/stream/a", params={"token": expired}), 401)
    head, payload, sig = token_a.split(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    for tampered in (
        f"{head}.{forged_payload}.{sig}",
        f"{head}.{payload}.{sig[:-2]}xx",
        token_a + "x",
        "v1.garbage",
        "v1...",
    ):
        _denied(await client.get("/v1/stream/a", params={"token": tampered}), 401)
    other_secret = ReadTokens(b"t" * 40, 60).issue("a")
    _denied(await client.get("/v1/stream/a", params={"token": other_secret}), 401)
    # A read token never authorizes a write.
    r = await client.post("/v1/stream/a", content=b"x", headers={**TEXT, **bearer(token_a)})
    _denied(r, 401)


@pytest.mark.asyncio
async def test_a_generation_comes_with_a_token_for_its_events_only(client) -> None:
    r = await client.post("/v1/generations", json=BODY, headers=bearer(GEN))
    assert r.status_code == 201
    gen = r.json()
    assert gen["read_token"]
    events = urlsplit(gen["events_url"])
    assert events.query == f"token={gen['read_token']}"
    r = await client.get(f"{events.path}?{events.query}")
    assert r.status_code == 200
    assert '"type":"finish"' in r.text
    other = (await client.post("/v1/generations", json=BODY, headers=bearer(GEN))).json()
    r = await client.get(f"/v1/generations/{other['id']}/events?{events.query}")
    _denied(r, 401)


@pytest.mark.asyncio
async def test_key_file_rotation_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    old, new = "old-key-0123456789abcdef", "new-key-0123456789abcdef"
    path.write_text(f"# rotated by the operator\n{old}:streams:write\n")
    app = create_app(Settings(api_keys_file=str(path), read_token_secret=SECRET))
    async with AsyncTestClient(app) as client:
        r = await client.put("/v1/stream/k", headers={**TEXT, **bearer(old)})
        assert r.status_code == 201
        path.write_text(f"{new}:streams:write\n")
        app.state.auth.keys.reload()  # what SIGHUP (or the mtime check) does
        _denied(
            await client.post("/v1/stream/k", content=b"x", headers={**TEXT, **bearer(old)}), 401
        )
        r = await client.post("/v1/stream/k", content=b"x", headers={**TEXT, **bearer(new)})
        assert r.status_code == 204
        path.write_text("not a valid key file :: ???\n")
        app.state.auth.keys.reload()  # a broken file keeps the last good keys
        r = await client.post("/v1/stream/k", content=b"y", headers={**TEXT, **bearer(new)})
        assert r.status_code == 204


def test_refuses_to_serve_a_public_address_without_keys() -> None:
    with pytest.raises(SettingsError, match="without API keys"):
        Settings.from_env({"RIVULET_HOST": "0.0.0.0"})
    assert Settings.from_env({"RIVULET_HOST": "0.0.0.0", "RIVULET_AUTH": "none"}).auth == "none"
    assert Settings.from_env({"RIVULET_HOST": "0.0.0.0", "RIVULET_API_KEYS": ADMIN}).api_keys
    assert Settings.from_env({}).auth_open  # loopback default: open (with a warning)


@pytest.mark.asyncio
async def test_cors_is_off_by_default_and_an_allowlist_when_set() -> None:
    async with AsyncTestClient(create_app(Settings())) as client:
        r = await client.get("/livez", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    settings = Settings(cors_origins=("https://app.example",))
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.get("/livez", headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-credentials" not in r.headers
        r = await client.get("/livez", headers={"origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"


def test_keys_are_validated_with_clear_messages() -> None:
    from service.api.auth import KeysError, parse_keys

    with pytest.raises(KeysError, match="entry 1: a key must be"):
        parse_keys("short", "RIVULET_API_KEYS")
    with pytest.raises(KeysError, match="unknown scopes"):
        parse_keys(f"{ADMIN}:root", "RIVULET_API_KEYS")
    keys = parse_keys(f"{ADMIN}, {GEN}:generate+read", "x")
    assert [sorted(k.scopes) for k in keys] == [
        ["admin", "generate", "read", "streams:write"],
        ["generate", "read"],
    ]
    assert json.dumps([k.fingerprint for k in keys])  # fingerprints, never keys, for logs


@pytest.mark.asyncio
async def test_public_read_streams_are_readable_without_credentials(client) -> None:
    headers = {**TEXT, **bearer(WRITER)}
    r = await client.put(
        "/v1/stream/pub", content=b"P", headers={**headers, "stream-public-read": "true"}
    )
    assert r.status_code == 201
    assert (await client.put("/v1/stream/priv", content=b"X", headers=headers)).status_code == 201
    assert (await client.get("/v1/stream/pub")).text == "P"
    assert (await client.head("/v1/stream/pub")).status_code == 200
    _denied(await client.get("/v1/stream/priv"), 401)
    # Public-read never means public-write, and a bad token is still refused.
    _denied(await client.post("/v1/stream/pub", content=b"x", headers=TEXT), 401)
    _denied(await client.get("/v1/stream/pub", params={"token": "v1.bad.token"}), 401)
    r = await client.put("/v1/stream/bad", headers={**headers, "stream-public-read": "maybe"})
    assert r.status_code == 400
    body = {**BODY, "public_read": True}
    gen = (await client.post("/v1/generations", json=body, headers=bearer(GEN))).json()
    r = await client.get(f"/v1/generations/{gen['id']}/events")
    assert r.status_code == 200
