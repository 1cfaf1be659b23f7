"""The OpenTelemetry SDK ``TracerProvider`` the settings ask for (or none: tracing off)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

Exporter = Literal["none", "console", "otlp-grpc", "otlp-http"]


def build_tracer_provider(
    exporter: Exporter,
    endpoint: str | None,
    service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    sample_ratio: float = 1.0,
    batch: bool | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """The SDK provider for ``exporter``; ``None`` for "none" (callers then trace with a no-op).

    ``span_exporter`` (a test's in-memory exporter, a benchmark's null one) replaces the chosen
    exporter. Spans go through a ``BatchSpanProcessor`` (export off the event path) unless
    ``batch`` is False; a given ``span_exporter`` defaults to a synchronous ``SimpleSpanProcessor``.
    Sampling follows the parent's decision, else keeps ``sample_ratio`` of new traces. The caller
    owns the provider: ``shutdown()`` flushes it.
    """
    if span_exporter is None and exporter == "none":
        return None
    target = span_exporter if span_exporter is not None else _exporter(exporter, endpoint)
    resource = Resource.create({SERVICE_NAME: service_name, **(resource_attributes or {})})
    sampler = ParentBased(TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    use_batch = batch if batch is not None else span_exporter is None
    provider.add_span_processor(
        BatchSpanProcessor(target) if use_batch else SimpleSpanProcessor(target)
    )
    return provider


def _exporter(exporter: Exporter, endpoint: str | None) -> SpanExporter:
    # Imported here: the OTLP exporters pull in grpc, protobuf, requests; unneeded when off.
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=None)
    if exporter == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint)
    if exporter == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        if endpoint is not None and endpoint.rstrip("/").count("/") <= 2:  # scheme://host:port
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint)
    raise ValueError(f"unknown trace exporter {exporter!r} (none, console, otlp-grpc, otlp-http)")
