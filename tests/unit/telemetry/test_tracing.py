"""Tracing helpers with an in-memory exporter: propagation, span tree, links, semconv names."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.trace import SpanKind, StatusCode

from workers.telemetry.spans import EMPTY, Child, SpanData
from workers.telemetry.tracing import (
    ATTR_BACKEND,
    ATTR_BATCH_SIZE,
    ATTR_MODEL_NAME,
    STAGES,
    KafkaTracing,
    SpanPipeline,
    build_span_pipeline,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01".encode()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> KafkaTracing:
    pipeline = build_span_pipeline("none", None, "inferstream-test", span_exporter=exporter)
    return KafkaTracing(pipeline, consumer_group="inferstream")


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def hexid(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def run_event(t: KafkaTracing, headers: object, offset: int = 7) -> dict[str, bytes]:
    """One event through every stage, the way the conversation handler drives the helpers."""
    ev = t.consume_span("conversations.in", 2, offset, b"conv-1", parent_ctx=t.extract(headers))  # type: ignore[arg-type]
    with ev:
        for stage in ("decode", "context", "policy"):
            with t.stage(stage, ev):
                pass
        t.record("batch_wait", ev, 1_000, 2_000)
        with t.batch_span("inference", [ev], kind=SpanKind.CLIENT) as batch:
            batch.set(ATTR_MODEL_NAME, "minilm_cpu")
            batch.set(ATTR_BACKEND, "openvino-fp32")
        for stage in ("filter", "watermark"):
            with t.stage(stage, ev):
                pass
        with t.produce_span("conversations.out", ev, key=b"conv-1") as produced:
            return produced.headers


def test_one_event_one_trace_covering_every_stage(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    headers = run_event(tracing, [("traceparent", TRACEPARENT), ("other", b"x")])
    spans = by_name(exporter.get_finished_spans())
    consume = spans["process conversations.in"][0]
    produce = spans["publish conversations.out"][0]
    in_trace = [
        s for group in spans.values() for s in group if hexid(s.context.trace_id, 32) == TRACE
    ]
    names = {s.name for s in in_trace}
    assert set(STAGES) | {"process conversations.in", "publish conversations.out"} <= names
    assert consume.parent is not None and hexid(consume.parent.span_id, 16) == PARENT
    assert consume.parent.is_remote
    for s in in_trace:
        if s is not consume:
            assert s.parent is not None and s.parent.span_id == consume.context.span_id, s.name
    # the Triton span of this event's trace carries the batch size, backend and model
    infer = next(s for s in in_trace if s.name == "inference")
    assert infer.attributes[ATTR_BATCH_SIZE] == 1
    assert infer.attributes[ATTR_BACKEND] == "openvino-fp32"
    assert infer.attributes[ATTR_MODEL_NAME] == "minilm_cpu"
    # the output's headers continue the trace from the producer span
    version, trace_id, span_id, flags = headers["traceparent"].decode().split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert span_id == hexid(produce.context.span_id, 16)
    wait = next(s for s in in_trace if s.name == "batch_wait")
    assert (wait.start_time, wait.end_time) == (1_000, 2_000)


def test_semconv_messaging_attributes(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    run_event(tracing, {"traceparent": TRACEPARENT}, offset=41)
    spans = by_name(exporter.get_finished_spans())
    consume = spans["process conversations.in"][0]
    assert consume.kind is SpanKind.CONSUMER
    assert dict(consume.attributes or {}) == {
        msg.MESSAGING_SYSTEM: "kafka",
        msg.MESSAGING_OPERATION_TYPE: "process",
        msg.MESSAGING_OPERATION_NAME: "process",
        msg.MESSAGING_DESTINATION_NAME: "conversations.in",
        msg.MESSAGING_DESTINATION_PARTITION_ID: "2",
        msg.MESSAGING_KAFKA_OFFSET: 41,
        msg.MESSAGING_CONSUMER_GROUP_NAME: "inferstream",
        msg.MESSAGING_KAFKA_MESSAGE_KEY: "conv-1",
    }
    produce = spans["publish conversations.out"][0]
    assert produce.kind is SpanKind.PRODUCER
    assert produce.attributes is not None
    assert produce.attributes[msg.MESSAGING_SYSTEM] == "kafka"
    assert produce.attributes[msg.MESSAGING_OPERATION_TYPE] == "publish"
    assert produce.attributes[msg.MESSAGING_DESTINATION_NAME] == "conversations.out"
    assert msg.MESSAGING_CONSUMER_GROUP_NAME not in produce.attributes


def test_no_or_bad_traceparent_starts_a_trace(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    for headers in (None, [], [("traceparent", b"garbage")], {"tracestate": b"a=b"}):
        exporter.clear()
        out = run_event(tracing, headers)
        consume = by_name(exporter.get_finished_spans())["process conversations.in"][0]
        assert consume.parent is None
        assert out["traceparent"].decode().split("-")[1] == hexid(consume.context.trace_id, 32)


def test_headers_mapping_any_case_and_tracestate(tracing: KafkaTracing) -> None:
    ctx = tracing.extract({"TraceParent": TRACEPARENT, "tracestate": b"vendor=1"})
    assert tracing.trace_id(ctx) == TRACE
    ev = tracing.consume_span("t", 0, 0, None, parent_ctx=ctx)
    out = tracing.inject(ev.ctx)
    ev.end()
    assert out["tracestate"] == b"vendor=1"
    assert tracing.trace_id(ev.ctx) == TRACE


def test_batch_span_links_every_event(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    events = [
        tracing.consume_span("t", 0, i, None, parent_ctx=tracing.extract(None)) for i in range(3)
    ]
    with tracing.batch_span("inference", events, kind=SpanKind.CLIENT.value) as b:
        b.set(ATTR_BACKEND, "tensorrt-fp16")
    for e in events:
        e.end()
    spans = exporter.get_finished_spans()
    batch = next(s for s in spans if s.name == "inference" and s.kind is SpanKind.CLIENT)
    event_ids = {e.ctx.span_id for e in events}
    assert {link.context.span_id for link in batch.links} == event_ids
    assert batch.parent is None  # its own trace
    assert batch.attributes is not None and batch.attributes[ATTR_BATCH_SIZE] == 3
    copies = [s for s in spans if s.name == "inference" and s is not batch]
    assert len(copies) == 3
    for c in copies:
        assert c.parent is not None and c.parent.span_id in event_ids
        assert [link.context.span_id for link in c.links] == [batch.context.span_id]
        assert c.attributes is not None and c.attributes[ATTR_BACKEND] == "tensorrt-fp16"
        assert (c.start_time, c.end_time) == (batch.start_time, batch.end_time)
    assert len({c.context.trace_id for c in copies}) == 3


def test_failures_mark_spans(tracing: KafkaTracing, exporter: InMemorySpanExporter) -> None:
    ev = tracing.consume_span("t", 0, 0, b"\xff", parent_ctx=tracing.extract(None))
    with pytest.raises(RuntimeError), tracing.stage("decode", ev):
        raise RuntimeError("bad")
    with pytest.raises(TimeoutError), tracing.batch_span("inference", [ev]):
        raise TimeoutError("triton")
    ev.end(ValueError("dead letter"))
    spans = exporter.get_finished_spans()
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert len(spans) == 4  # decode, batch, its per-event copy, process
    consume = next(s for s in spans if s.kind is SpanKind.CONSUMER)
    assert consume.attributes is not None
    assert msg.MESSAGING_KAFKA_MESSAGE_KEY not in consume.attributes  # not valid UTF-8


def test_off_passes_trace_context_through_unchanged() -> None:
    off = KafkaTracing()
    assert not off.enabled
    headers = [("traceparent", TRACEPARENT), ("tracestate", b"vendor=1")]
    ev = off.consume_span("t", 0, 0, b"k", parent_ctx=off.extract(headers))
    assert ev.span is None
    with off.stage("decode", ev) as s1, off.stage("filter", ev) as s2:
        assert s1 is None and s2 is None
    with off.batch_span("inference", [ev]) as b:
        b.set(ATTR_BACKEND, "x")
        assert b.attributes == {}
    off.record("batch_wait", ev, 1, 2)
    with off.produce_span("out", ev) as produced:
        assert produced.headers == dict(headers)
    ev.end()
    assert off.trace_id(ev.ctx) == TRACE
    assert off.inject(off.extract(None)) == {}
    assert off.trace_id(off.extract(None)) == ""
    assert off.stage("a", ev) is off.stage("b", ev)  # shared, nothing allocated


def test_sampled_out_traces_still_propagate(exporter: InMemorySpanExporter) -> None:
    pipeline = build_span_pipeline("none", None, "t", span_exporter=exporter, sample_ratio=0.0)
    t = KafkaTracing(pipeline)
    out = run_event(t, None)
    assert exporter.get_finished_spans() == ()
    assert out["traceparent"].decode().endswith("-00")  # not sampled, still a valid context
    out = run_event(t, [("traceparent", TRACEPARENT)])  # a sampled parent is followed
    assert exporter.get_finished_spans()


def test_build_span_pipeline_choices() -> None:
    from workers.telemetry.otlp_export import GrpcTransport, HttpTransport, OtlpSink
    from workers.telemetry.provider import SdkSink

    assert build_span_pipeline("none", None, "svc") is None
    for kind, endpoint, sink, transport in (
        ("console", None, SdkSink, None),
        ("otlp-grpc", "http://127.0.0.1:4317", OtlpSink, GrpcTransport),
        ("otlp-http", "http://127.0.0.1:4318", OtlpSink, HttpTransport),
    ):
        pipeline = build_span_pipeline(kind, endpoint, "svc")  # type: ignore[arg-type]
        assert isinstance(pipeline, SpanPipeline) and isinstance(pipeline.sink, sink)
        assert not pipeline.synchronous  # export happens off the event path
        if isinstance(pipeline.sink, OtlpSink):
            assert isinstance(pipeline.sink.transport, transport)  # type: ignore[arg-type]
        pipeline.shutdown()
    with pytest.raises(ValueError, match="unknown trace exporter"):
        build_span_pipeline("jaeger", None, "svc")  # type: ignore[arg-type]


def test_otlp_http_endpoint_gets_the_traces_path() -> None:
    from workers.telemetry.otlp_export import HttpTransport

    assert HttpTransport("http://c:4318").url == "http://c:4318/v1/traces"
    assert HttpTransport("http://c:4318/x/v1/traces").url == "http://c:4318/x/v1/traces"
    assert HttpTransport(None).url == "http://localhost:4318/v1/traces"


def test_unsampled_parent_passes_through_without_spans(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    unsampled = f"00-{TRACE}-{PARENT}-00".encode()
    out = run_event(tracing, [("traceparent", unsampled), ("tracestate", b"v=1")])
    assert exporter.get_finished_spans() == ()
    assert out == {"traceparent": unsampled, "tracestate": b"v=1"}


def test_injected_headers_match_the_w3c_propagator(tracing: KafkaTracing) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.trace.span import TraceState

    ctx = tracing.extract([("traceparent", TRACEPARENT), ("tracestate", b"a=1,b=2")])
    ev = tracing.consume_span("t", 0, 0, None, parent_ctx=ctx)
    with tracing.produce_span("out", ev) as produced:
        assert produced.ctx is not None
        sc = SpanContext(
            produced.ctx.trace_id, produced.ctx.span_id, False, TraceFlags(1),
            TraceState.from_header(["a=1,b=2"]),
        )  # fmt: skip
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(
            carrier, context=trace.set_span_in_context(NonRecordingSpan(sc))
        )
    ev.end()
    assert produced.headers == {k: v.encode() for k, v in carrier.items()}
    assert tracing.inject(ev.ctx)["traceparent"].decode().split("-")[2] == format(
        ev.ctx.span_id, "016x"
    )


def test_extract_agrees_with_the_w3c_propagator() -> None:
    """Valid and invalid traceparents read as the SDK's propagator reads them."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    cases = [
        TRACEPARENT.decode(),
        f"00-{TRACE}-{PARENT}-00",
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{PARENT}-01",  # version ff
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"cc-{TRACE}-{PARENT}-01-future",  # a later version may add fields
        "00-xyz",
    ]
    for header in cases:
        ours = KafkaTracing.extract([("traceparent", header.encode())])
        sc = trace.get_current_span(
            TraceContextTextMapPropagator().extract({"traceparent": header})
        ).get_span_context()
        assert ours.valid == sc.is_valid, header
        if sc.is_valid:
            assert (ours.trace_id, ours.span_id, ours.sampled, ours.remote) == (
                sc.trace_id, sc.span_id, sc.trace_flags.sampled, True,
            ), header  # fmt: skip


class _GatedSink:
    """Holds the pipeline's thread inside ``export`` until the test opens the gate."""

    def __init__(self) -> None:
        import threading

        self.entered, self.gate = threading.Event(), threading.Event()
        self.names: list[str] = []

    @staticmethod
    def prepare(span: SpanData) -> SpanData:
        return span

    @staticmethod
    def prepare_event(span: SpanData, children: Sequence[Child]) -> SpanData:
        return span

    def export(self, spans: Sequence[SpanData]) -> bool:
        self.entered.set()
        assert self.gate.wait(10)
        self.names += [s.name for s in spans]
        return True

    def shutdown(self) -> None:
        pass


def test_pipeline_exports_in_order_off_the_event_path_and_counts_drops() -> None:
    sink, lost, sent = _GatedSink(), [], []
    pipeline = SpanPipeline(
        sink, max_queue=5, max_batch=2, delay_s=60.0, on_drop=lost.append, on_export=sent.append
    )
    root = SpanData(EMPTY, "root").context()

    def add(name: str) -> None:
        span = SpanData(root, name)
        span.end = span.start
        pipeline.add(span)

    add("s0")
    add("s1")  # a full batch wakes the thread, which blocks exporting s0, s1
    assert sink.entered.wait(10)
    for i in range(2, 8):  # s2..s6 fill the queue of 5; s7 has no room
        add(f"s{i}")
    assert (pipeline.dropped, lost) == (1, [1])
    sink.gate.set()
    assert pipeline.force_flush(10)
    assert sink.names == [f"s{i}" for i in range(7)]
    assert pipeline.exported == sum(sent) == 7
    pipeline.shutdown()
    add("late")  # after shutdown: dropped and counted, never exported
    assert pipeline.dropped == 2 and sink.names[-1] == "s6"


def test_export_batches_are_cut_by_request_size() -> None:
    """A sink that caps its requests gets batches of about that many bytes, in order."""

    class SizedSink:
        max_request_bytes = 10

        def __init__(self) -> None:
            self.batches: list[list[bytes]] = []

        @staticmethod
        def prepare(span: SpanData) -> bytes:
            return span.name.encode()

        @staticmethod
        def prepare_event(span: SpanData, children: Sequence[Child]) -> bytes:
            return span.name.encode()

        def export(self, items: Sequence[bytes]) -> bool:
            self.batches.append(list(items))
            return True

        def shutdown(self) -> None:
            pass

    sink = SizedSink()
    pipeline = SpanPipeline(sink, max_batch=100, delay_s=60.0)
    root = SpanData(EMPTY, "root").context()
    for i in range(7):
        pipeline.end(SpanData(root, f"s{i:03d}"))  # 4 bytes each
    assert pipeline.force_flush(10)
    assert [len(b) for b in sink.batches] == [3, 3, 1]  # 12 bytes: the first to reach 10
    assert [x for b in sink.batches for x in b] == [f"s{i:03d}".encode() for i in range(7)]
    assert pipeline.exported == 7
    pipeline.shutdown()


def test_batch_settings_from_the_otel_environment() -> None:
    from workers.telemetry.otlp_export import OtlpSink
    from workers.telemetry.provider import batch_settings

    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
        "OTEL_BSP_EXPORT_TIMEOUT": "3000",
    }
    assert batch_settings(env) == {
        "delay_s": 0.25, "max_queue": 100, "max_batch": 10, "timeout_s": 3.0,
    }  # fmt: skip
    pipeline = build_span_pipeline("otlp-http", "http://127.0.0.1:9", "svc", environ=env)
    assert pipeline is not None and isinstance(pipeline.sink, OtlpSink)
    assert (pipeline.delay_s, pipeline.max_queue, pipeline.max_batch) == (0.25, 100, 10)
    assert pipeline.sink.timeout_s == 3.0
    pipeline.shutdown()
    defaults = build_span_pipeline("otlp-http", "http://127.0.0.1:9", "svc", environ={})
    assert defaults is not None
    assert (defaults.delay_s, defaults.max_queue, defaults.max_batch) == (1.0, 16384, 4096)
    defaults.shutdown()
    for bad in ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, {"OTEL_BSP_SCHEDULE_DELAY": "1.5s"}):
        with pytest.raises(ValueError, match="positive integer"):
            batch_settings(bad)
    with pytest.raises(ValueError, match="max_batch"):
        build_span_pipeline(
            "console", None, "svc", environ={"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "99999"}
        )


def test_a_sink_that_fails_to_encode_loses_spans_not_the_event() -> None:
    class Broken:
        @staticmethod
        def prepare(span: SpanData) -> bytes:
            raise RuntimeError("encoder bug")

        prepare_event = staticmethod(lambda span, children: Broken.prepare(span))

        def export(self, items: Sequence[bytes]) -> bool:
            raise AssertionError("nothing to export")

        def shutdown(self) -> None:
            pass

    for synchronous in (True, False):
        lost: list[int] = []
        pipeline = SpanPipeline(Broken(), synchronous=synchronous, on_drop=lost.append)
        t = KafkaTracing(pipeline)
        ev = t.consume_span("t", 0, 0, None, parent_ctx=t.extract(None))
        with t.stage("decode", ev):
            pass
        ev.end()  # no exception reaches the caller
        assert pipeline.dropped == 2 and lost == [2]
        pipeline.shutdown()
