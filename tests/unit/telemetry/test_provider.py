"""The tracer provider: parent-based ratio sampling, the counting batch processor, exporters."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from workers.telemetry import provider as prov
from workers.telemetry.provider import CountingProcessor, build_tracer_provider, span_exporter_for


def parent(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return set_span_in_context(NonRecordingSpan(SpanContext(0xAB, 0xCD, True, flags)))


def tracer(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("none", None, "t", span_exporter=exporter, sample_ratio=ratio)
    assert provider is not None
    return provider, exporter


def test_a_parents_decision_is_followed_whatever_the_ratio() -> None:
    never, _ = tracer(0.0)
    always, _ = tracer(1.0)
    assert never.get_tracer("t").start_span("child", parent(sampled=True)).is_recording()
    assert not always.get_tracer("t").start_span("child", parent(sampled=False)).is_recording()


def test_new_traces_are_kept_at_about_the_ratio() -> None:
    provider, _ = tracer(0.25)
    t = provider.get_tracer("t")
    kept = sum(t.start_span("root", Context()).is_recording() for _ in range(4000))
    assert 850 < kept < 1150  # 1,000 expected; 5 standard deviations ~ ±137


def test_a_root_linked_to_a_sampled_span_is_kept() -> None:
    provider, _ = tracer(0.0)
    t = provider.get_tracer("t")
    sampled, unsampled = (
        SpanContext(0xAB, 0xCD, False, TraceFlags(f)) for f in (TraceFlags.SAMPLED, 0)
    )
    assert t.start_span("batch", Context(), links=[Link(unsampled), Link(sampled)]).is_recording()
    assert not t.start_span("batch", Context(), links=[Link(unsampled)]).is_recording()


class Gated(SpanExporter):
    """Holds the processor's thread inside ``export`` until the test opens the gate."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.entered, self.gate, self.result = threading.Event(), threading.Event(), result
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.gate.wait(10)
        self.names += [s.name for s in spans]
        return self.result


def test_the_processor_counts_exported_and_dropped_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "MAX_QUEUE", 4)
    monkeypatch.setattr(prov, "MAX_BATCH", 2)
    monkeypatch.setattr(prov, "DELAY_MS", 60_000)  # the thread wakes for full batches only
    exporter, sent, lost = Gated(), list[int](), list[int]()
    provider = TracerProvider(shutdown_on_exit=False)
    processor = CountingProcessor(exporter, sent.append, lost.append)
    provider.add_span_processor(processor)
    t = provider.get_tracer("t")
    for name in ("s0", "s1"):  # a full batch wakes the thread, which blocks exporting them
        t.start_span(name).end()
    assert exporter.entered.wait(10)
    for i in range(2, 8):  # s2..s5 fill the queue of 4; s6 and s7 push out the oldest
        t.start_span(f"s{i}").end()
    assert (processor.dropped, lost) == (2, [1, 1])
    exporter.gate.set()
    assert processor.force_flush(10000)
    assert exporter.names == ["s0", "s1", "s4", "s5", "s6", "s7"]
    assert processor.exported == sum(sent) == 6
    provider.shutdown()  # type: ignore[no-untyped-call]
    t.start_span("late").end()  # after shutdown: counted as lost
    assert processor.dropped == 3


def test_failed_or_broken_exports_count_as_dropped() -> None:
    class Broken(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            raise RuntimeError("exporter bug")

    for exporter in (Gated(SpanExportResult.FAILURE), Broken()):
        if isinstance(exporter, Gated):
            exporter.gate.set()
        lost: list[int] = []
        provider = TracerProvider(shutdown_on_exit=False)
        processor = CountingProcessor(exporter, on_drop=lost.append)
        provider.add_span_processor(processor)
        provider.get_tracer("t").start_span("x").end()
        assert processor.force_flush(10000)
        assert (processor.exported, processor.dropped, lost) == (0, 1, [1])
        provider.shutdown()  # type: ignore[no-untyped-call]


def test_exporters_by_name() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert build_tracer_provider("none", None, "svc") is None
    assert isinstance(span_exporter_for("console", None, {}), ConsoleSpanExporter)
    grpc = span_exporter_for("otlp-grpc", "127.0.0.1:4317", {"x-api-key": "k"})
    assert isinstance(grpc, Grpc) and grpc._endpoint == "127.0.0.1:4317"
    for endpoint, url in (
        (None, "http://localhost:4318/v1/traces"),
        ("http://c:4318", "http://c:4318/v1/traces"),
        ("https://c/x/v1/traces", "https://c/x/v1/traces"),
    ):
        http = span_exporter_for("otlp-http", endpoint, {})
        assert isinstance(http, Http) and http._endpoint == url
    with pytest.raises(ValueError, match="unknown trace exporter"):
        span_exporter_for("jaeger", None, {})  # type: ignore[arg-type]
    provider = build_tracer_provider("otlp-http", "http://127.0.0.1:9", "svc", sample_ratio=0.5)
    assert provider is not None and provider.resource.attributes["service.name"] == "svc"
    assert provider.sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.5}")
    provider.shutdown()  # type: ignore[no-untyped-call]
