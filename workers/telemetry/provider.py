"""The SDK ``TracerProvider`` the settings ask for (or none: tracing off). Parent-based trace-id
ratio sampling; a ``BatchSpanProcessor`` over the chosen exporter, wrapped to count exported and
lost spans. Batches are large (4,096 spans or every second; 16,384 may wait): each export call
costs the worker far more than its bytes (docs/decisions/0007). Nothing is registered globally:
the caller owns the provider and shuts it down (which flushes it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    SamplingResult,
    TraceIdRatioBased,
)

log = logging.getLogger(__name__)
Exporter = Literal["none", "console", "otlp-grpc", "otlp-http"]
INSTRUMENTATION = "inferstream"
MAX_QUEUE, MAX_BATCH, DELAY_MS, TIMEOUT_MS = 16384, 4096, 1000, 10_000
Counter = Callable[[int], None]


class RatioOrLinked(TraceIdRatioBased):
    """The trace-id ratio rule for a new trace, except that a root linked to a sampled span (a
    batch step's span over sampled events) is kept with them."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        if any(link.context.trace_flags.sampled for link in kwargs.get("links") or ()):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, kwargs.get("attributes"))
        return super().should_sample(*args, **kwargs)


class CountingProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it exported and those lost (``on_export``,
    ``on_drop``): to a full queue (which drops its oldest), a failed export, a shutdown."""

    def __init__(self, exporter: SpanExporter, on_export: Counter | None = None,
                 on_drop: Counter | None = None) -> None:  # fmt: skip
        self.exported = self.dropped = 0
        self.on_export, self.on_drop = on_export, on_drop
        super().__init__(_Counted(exporter, self.count), MAX_QUEUE, DELAY_MS, MAX_BATCH, TIMEOUT_MS)

    def on_end(self, span: ReadableSpan) -> None:
        if self.done or len(self.queue) >= self.max_queue_size:
            self.count(1, ok=False)
        super().on_end(span)

    def count(self, n: int, ok: bool) -> None:
        if ok:
            self.exported += n
        else:
            self.dropped += n
        if (callback := self.on_export if ok else self.on_drop) is not None:
            callback(n)


class _Counted(SpanExporter):
    def __init__(self, exporter: SpanExporter, count: Callable[[int, bool], None]) -> None:
        self.exporter, self.count = exporter, count

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:  # an exporter's bug loses these spans, never the worker
            log.exception("span export failed")
            result = SpanExportResult.FAILURE
        self.count(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]


def build_tracer_provider(
    exporter: Exporter, endpoint: str | None, service_name: str, *, sample_ratio: float = 0.1,
    span_exporter: SpanExporter | None = None, resource_attributes: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None, on_export: Counter | None = None,
    on_drop: Counter | None = None,
) -> TracerProvider | None:  # fmt: skip
    """The provider for ``exporter`` ("none": None, tracing off) keeping ``sample_ratio`` of new
    traces (a parent's decision is followed). ``span_exporter`` (a test's) replaces the exporter.
    OTLP endpoints: gRPC ``host:port`` (``https://``: TLS), HTTP ``http(s)://host:port[/path]``
    (``/v1/traces`` added to a bare host); ``headers`` go with every export. The resource is the
    SDK's: ``service.name``, ``resource_attributes``, ``OTEL_RESOURCE_ATTRIBUTES``."""
    if span_exporter is None:
        if exporter == "none":
            return None
        span_exporter = span_exporter_for(exporter, endpoint, dict(headers or {}))
    resource = Resource.create({SERVICE_NAME: service_name, **(resource_attributes or {})})
    sampler = ParentBased(RatioOrLinked(sample_ratio))
    provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(CountingProcessor(span_exporter, on_export, on_drop))
    return provider


def span_exporter_for(
    kind: Exporter, endpoint: str | None, headers: dict[str, str]
) -> SpanExporter:
    """The SDK's exporter for ``kind`` (not "none"), sending ``headers`` with every export."""
    if kind == "console":
        return ConsoleSpanExporter(service_name=None)
    if kind == "otlp-grpc":
        target = endpoint or "localhost:4317"
        insecure = not target.startswith("https://")
        return GrpcExporter(target, insecure, headers=headers, timeout=TIMEOUT_MS // 1000)
    if kind == "otlp-http":
        url = (endpoint or "http://localhost:4318").rstrip("/")
        url += "/v1/traces" if url.count("/") <= 2 else ""  # a bare scheme://host:port
        return HttpExporter(url, headers=headers, timeout=TIMEOUT_MS // 1000)
    raise ValueError(f"unknown trace exporter {kind!r} (none, console, otlp-grpc, otlp-http)")
