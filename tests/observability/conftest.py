"""In-memory span exporter and helpers to look at span trees."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.telemetry import Telemetry

if TYPE_CHECKING:
    from collections.abc import Iterator


class Spans:
    """Finished spans, with lookups by name and parent."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    @property
    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {self.names()}"
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = parent.context.span_id
        return [s for s in self.all if s.parent is not None and s.parent.span_id == pid]

    def names(self) -> list[str]:
        return sorted(s.name for s in self.all)


def attrs(span: ReadableSpan, *keys: str) -> dict[str, Any]:
    """The span's attributes (only ``keys`` when given), as plain values."""
    found = dict(span.attributes or {})
    if keys:
        found = {k: found.get(k) for k in keys}
    return {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in found.items()}


@pytest.fixture
def spans_and_telemetry() -> Iterator[tuple[Spans, Telemetry]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.create(tracer_provider=provider)
    yield Spans(exporter), telemetry
    provider.shutdown()
