"""API keys, read tokens and prompt text never reach logs or spans."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest
import structlog
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from service.telemetry import configure_logging
from tests.observability.conftest import Spans
from tests.security.test_auth import GEN, READER, SECRET, bearer

pytestmark = pytest.mark.asyncio

PROMPT = "confidential prompt 91c4e"


async def test_secrets_are_absent_from_logs_and_spans(
    spans_and_telemetry: tuple[Spans, object], capsys: pytest.CaptureFixture[str]
) -> None:
    spans, telemetry = spans_and_telemetry
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", "debug")
    try:
        settings = Settings(
            api_keys=f"{GEN}:generate,{READER}:read",
            read_token_secret=SECRET,
            cancel_without_reader=0,
        )
        app = create_app(settings, telemetry=telemetry)  # type: ignore[arg-type]
        async with AsyncTestClient(app) as client:
            body = {
                "messages": [{"role": "user", "content": PROMPT}],
                "params": {"fake": {"tokens": 3, "rate": 0}},
            }
            gen = (await client.post("/v1/generations", json=body, headers=bearer(GEN))).json()
            token = gen["read_token"]
            events = urlsplit(gen["events_url"])
            r = await client.get(f"{events.path}?{events.query}")
            assert r.status_code == 200
            r = await client.get(
                urlsplit(gen["stream_url"]).path, params={"token": token, "offset": "-1"}
            )
            assert r.status_code == 200
            r = await client.get(urlsplit(gen["stream_url"]).path, headers=bearer(READER))
            assert r.status_code == 200
            r = await client.get("/v1/stream/nope", headers=bearer("wrong-key-0123456789abcdef"))
            assert r.status_code == 401
            for _ in range(100):
                if len(spans.named("sse.deliver")) >= 1:
                    break
                await asyncio.sleep(0.02)
        captured = capsys.readouterr()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()
    output = captured.out + captured.err
    assert "generation.created" in output  # the logs are there, at debug level even
    span_text = repr(
        [(s.name, dict(s.attributes or {}), [e.attributes for e in s.events]) for s in spans.all]
    )
    assert spans.all
    for secret in (GEN, READER, token, SECRET, PROMPT, "wrong-key-0123456789abcdef"):
        assert secret not in output, secret
        assert secret not in span_text, secret
