"""The span pipeline the settings ask for (or none: tracing off), and the sink that hands spans
to any OpenTelemetry SDK ``SpanExporter`` (console, a test's in-memory one) as ``ReadableSpan``s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from workers.telemetry.otlp import Encoder
from workers.telemetry.otlp_export import GrpcTransport, HttpTransport, OtlpSink
from workers.telemetry.spans import Child, SpanData, SpanPipeline, child_span

Exporter = Literal["none", "console", "otlp-grpc", "otlp-http"]
INSTRUMENTATION = "inferstream"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def build_span_pipeline(
    exporter: Exporter,
    endpoint: str | None,
    service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    sample_ratio: float = 1.0,
    batch: bool | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    on_drop: Callable[[int], None] | None = None,
    on_export: Callable[[int], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SpanPipeline | None:
    """The pipeline for ``exporter``; ``None`` for "none" (callers then trace with a no-op).

    ``span_exporter`` (a test's in-memory exporter) replaces the chosen exporter and, unless
    ``batch``, gets each span as it ends. OTLP exporters encode ``SpanData`` directly (``otlp``);
    "console" goes through the SDK's ``ConsoleSpanExporter``. ``headers`` go with every OTLP
    request (a collector's API key). The resource is the SDK's (``Resource.create``: the service
    name, the SDK's own attributes, ``OTEL_RESOURCE_ATTRIBUTES``). The OpenTelemetry batch
    settings ``OTEL_BSP_SCHEDULE_DELAY`` (ms), ``OTEL_BSP_MAX_QUEUE_SIZE``,
    ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and ``OTEL_BSP_EXPORT_TIMEOUT`` (ms) are read from
    ``environ`` (the process environment) when set; the defaults are the pipeline's (1 s, 16,384,
    4,096) and 10 s. The caller owns the pipeline: ``shutdown()`` flushes it."""
    if span_exporter is None and exporter == "none":
        return None
    bsp = batch_settings(os.environ if environ is None else environ)
    timeout_s = bsp.pop("timeout_s", 10.0)
    resource = Resource.create({SERVICE_NAME: service_name, **(resource_attributes or {})})
    sink: OtlpSink | SdkSink
    if span_exporter is not None:
        sink = SdkSink(span_exporter, resource)
    elif exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        sink = SdkSink(ConsoleSpanExporter(service_name=None), resource)
    elif exporter == "otlp-grpc":
        sink = OtlpSink(
            Encoder(resource, INSTRUMENTATION),
            GrpcTransport(endpoint, headers),
            timeout_s=timeout_s,
        )
    elif exporter == "otlp-http":
        sink = OtlpSink(
            Encoder(resource, INSTRUMENTATION),
            HttpTransport(endpoint, headers),
            timeout_s=timeout_s,
        )
    else:
        raise ValueError(
            f"unknown trace exporter {exporter!r} (none, console, otlp-grpc, otlp-http)"
        )
    synchronous = not batch if batch is not None else span_exporter is not None
    return SpanPipeline(
        sink, sample_ratio=sample_ratio, synchronous=synchronous, on_drop=on_drop,
        on_export=on_export, **bsp,
    )  # fmt: skip


_BSP = {  # variable: (keyword, scale to its unit)
    "OTEL_BSP_SCHEDULE_DELAY": ("delay_s", 0.001),
    "OTEL_BSP_MAX_QUEUE_SIZE": ("max_queue", 1),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("max_batch", 1),
    "OTEL_BSP_EXPORT_TIMEOUT": ("timeout_s", 0.001),
}


def batch_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``OTEL_BSP_*`` variables that are set, as ``SpanPipeline``/``OtlpSink`` keywords; a
    value that is not a positive integer is an error (at start, not a silent default)."""
    out: dict[str, Any] = {}
    for name, (keyword, scale) in _BSP.items():
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        if not raw.isdigit() or int(raw) <= 0:
            raise ValueError(f"{name}={raw!r}: expected a positive integer")
        out[keyword] = int(raw) * scale if scale != 1 else int(raw)
    return out


class SdkSink:
    """Hands spans to an SDK ``SpanExporter`` as the SDK's own ``ReadableSpan``s."""

    def __init__(self, exporter: SpanExporter, resource: Resource) -> None:
        self.exporter, self.resource = exporter, resource
        self.scope = InstrumentationScope(INSTRUMENTATION)

    @staticmethod
    def prepare(span: SpanData) -> list[SpanData]:
        return [span]

    @staticmethod
    def prepare_event(span: SpanData, children: Sequence[Child]) -> list[SpanData]:
        parent = span.context()
        return [*(child_span(parent, c) for c in children), span]

    def export(self, items: Sequence[list[SpanData]]) -> bool:
        result = self.exporter.export([self.readable(s) for spans in items for s in spans])
        return result is SpanExportResult.SUCCESS

    def readable(self, s: SpanData) -> ReadableSpan:
        state = TraceState.from_header([s.state]) if s.state else None
        context = SpanContext(s.trace_id, s.span_id, False, _SAMPLED, state)
        parent = (
            SpanContext(s.trace_id, s.parent_id, s.parent_remote, _SAMPLED, state)
            if s.parent_id
            else None
        )
        status = Status(StatusCode(s.status[0]), s.status[1]) if s.status else Status()
        return ReadableSpan(
            name=s.name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=s.all_attributes(),
            events=[Event(name, dict(attrs), at) for name, at, attrs in s.events or ()],
            links=[
                Link(SpanContext(link.trace_id, link.span_id, link.remote, _SAMPLED))
                for link in s.links or ()
            ],
            kind=SpanKind(s.kind),
            status=status,
            start_time=s.start,
            end_time=s.end,
            instrumentation_scope=self.scope,
        )

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]
