"""OpenTelemetry wiring: tracing (off unless configured), metrics (always, Prometheus + OTLP).

Tracing is configured only by the standard ``OTEL_*`` variables: it is on when
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or ``console``) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and off otherwise or
with ``OTEL_SDK_DISABLED=true``. Off means *no* instrumentation is installed at all (no ASGI
middleware, no Redis hooks) and the tracer is the API's no-op one: zero cost beyond a
function call. The OTLP exporter reads the rest of its configuration (headers, protocol,
timeouts, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) itself.

Metrics are always collected and served as Prometheus text at ``/metrics``; with
``OTEL_METRICS_EXPORTER=otlp`` (or an OTLP endpoint) they are also pushed over OTLP.

Tests build :class:`Telemetry` directly with in-memory exporters instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from prometheus_client import CollectorRegistry

from service.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

    from service.settings import Settings

__all__ = ["Telemetry"]

SCOPE = "rivulet"


@dataclass(slots=True)
class Telemetry:
    """The process's tracer, meter and metric instruments."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider
    registry: CollectorRegistry
    record_content: bool = False
    metrics: Metrics = field(init=False)
    tracer: trace.Tracer = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.meter_provider.get_meter(SCOPE))
        self.tracer = (
            self.tracer_provider.get_tracer(SCOPE)
            if self.tracer_provider is not None
            else trace.NoOpTracer()
        )

    @property
    def tracing(self) -> bool:
        """Whether spans are recorded at all."""
        return self.tracer_provider is not None

    @classmethod
    def create(
        cls,
        *,
        tracer_provider: TracerProvider | None = None,
        readers: list[MetricReader] | None = None,
        record_content: bool = False,
    ) -> Telemetry:
        """Telemetry with a private Prometheus registry (so several apps can share a process)."""
        registry = CollectorRegistry()
        all_readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
        all_readers += readers or []
        meter_provider = MeterProvider(
            metric_readers=all_readers,
            resource=_resource(),
            # The SDK's default offers every measurement taken inside a sampled span to an
            # exemplar reservoir: profiled at ~20% of delivery throughput with tracing on, for
            # exemplars the Prometheus text endpoint doesn't even show.
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        return cls(tracer_provider, meter_provider, registry, record_content)

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        """Telemetry as the ``OTEL_*`` variables (read by ``Settings``) ask for."""
        tracer_provider: TracerProvider | None = None
        if settings.tracing_exporter is not None:
            tracer_provider = TracerProvider(resource=_resource())
            if settings.tracing_exporter == "console":
                exporter = ConsoleSpanExporter()
                tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        readers: list[MetricReader] = []
        if settings.metrics_otlp:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        return cls.create(
            tracer_provider=tracer_provider,
            readers=readers,
            record_content=settings.trace_content,
        )

    def instrument_redis(self, *backends: object) -> None:
        """With tracing on, one span per Redis command of each backend that has a client (a
        script per log operation, never per chunk; the instrumentation sanitizes arguments to
        ``EVALSHA ? ?``)."""
        if self.tracer_provider is None:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        for backend in backends:
            client = getattr(backend, "redis_client", None)
            if client is not None:
                RedisInstrumentor().instrument_client(client, tracer_provider=self.tracer_provider)

    def shutdown(self) -> None:
        """Flush and stop exporters."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _resource() -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; default the name.
    base = Resource.create()
    if str(base.attributes.get("service.name", "")).startswith("unknown_service"):
        base = base.merge(Resource.create({"service.name": "rivulet"}))
    return base
