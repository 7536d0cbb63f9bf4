"""``/metrics`` serves every metric family, and the values move with traffic."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from service.telemetry import Telemetry

pytestmark = pytest.mark.asyncio

FAMILIES = {
    "rivulet_sse_connections_active",
    "rivulet_sse_connection_duration_seconds",
    "rivulet_delivery_events",
    "rivulet_delivery_bytes",
    "rivulet_delivery_lag_seconds",
    "rivulet_generations",
    "rivulet_generation_duration_seconds",
    "rivulet_queue_depth",
    "rivulet_log_appends",
    "rivulet_log_errors",
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_token_usage",
    "gen_ai_client_operation_time_to_first_chunk_seconds",
}


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value, summed over label sets that differ only by le/quantile."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if key.split("{", 1)[0] == name and all(w in key for w in want)
    )


async def _scrape(client: AsyncTestClient) -> tuple[set[str], dict[str, float]]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(r.text)}
    return families, _samples(r.text)


async def test_metrics_families_exist_and_values_move() -> None:
    telemetry = Telemetry.create()
    app = create_app(Settings(workers=1, cancel_without_reader=0), telemetry=telemetry)
    async with AsyncTestClient(app) as client:
        await asyncio.sleep(0.05)  # the queue depth sampler's first reading
        _, before = await _scrape(client)
        body = {
            "messages": [{"role": "user", "content": "count me"}],
            "params": {"fake": {"tokens": 5, "rate": 0}},
        }
        gen = (await client.post("/v1/generations", json=body)).json()
        r = await client.get(urlsplit(gen["events_url"]).path)
        assert r.status_code == 200
        await client.get("/v1/stream/no-such-stream")  # one counted log error
        await asyncio.sleep(0.05)
        families, after = await _scrape(client)

    assert families >= FAMILIES, FAMILIES - families
    # Counters moved by what this test did, and only by that.
    delta = {
        name: _total(after, name) - _total(before, name)
        for name in (
            "rivulet_delivery_events_total",
            "rivulet_generations_total",
            "rivulet_log_appends_total",
            "rivulet_log_errors_total",
            "gen_ai_client_token_usage_count",
            "rivulet_delivery_lag_seconds_count",
        )
    }
    assert delta["rivulet_delivery_events_total"] == 6  # 5 content + 1 finish
    assert delta["rivulet_generations_total"] == 1
    assert delta["rivulet_log_appends_total"] >= 1
    assert delta["rivulet_log_errors_total"] == 1
    assert delta["gen_ai_client_token_usage_count"] == 2  # input and output
    # One lag observation per written batch (1 to 6 batches, depending on timing).
    assert 1 <= delta["rivulet_delivery_lag_seconds_count"] <= 6
    assert _total(after, "rivulet_generations_total", rivulet_generation_outcome="finished") == 1
    assert _total(after, "rivulet_sse_connections_active") == 0  # opened and closed again
    assert _total(before, "rivulet_generations_total") == 0
