"""Tracing helpers on the SDK with an in-memory exporter: Kafka headers, the span tree, links,
semconv names, and what tracing off and sampling out do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.trace import SpanKind, StatusCode

from workers.telemetry.provider import build_tracer_provider
from workers.telemetry.tracing import (
    ATTR_BACKEND,
    ATTR_BATCH_SIZE,
    ATTR_MODEL_NAME,
    HEADERS,
    STAGES,
    Headers,
    KafkaTracing,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01".encode()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = build_tracer_provider("none", None, "test", span_exporter=exporter, sample_ratio=1)
    assert provider is not None
    yield provider
    provider.shutdown()  # type: ignore[no-untyped-call]


@pytest.fixture
def tracing(provider: TracerProvider) -> KafkaTracing:
    return KafkaTracing(provider, consumer_group="inferstream")


def finished(t: KafkaTracing, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert isinstance(t.provider, TracerProvider) and t.provider.force_flush()
    return list(exporter.get_finished_spans())


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def run_event(t: KafkaTracing, headers: Headers, offset: int = 7) -> dict[str, bytes]:
    """One event through every stage, the way the conversation handler drives the helpers."""
    ev = t.consume_span("conversations.in", 2, offset, b"conv-1", parent_ctx=t.extract(headers))
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
        ev.end()
        return produced.headers


def test_kafka_headers_getter_and_setter() -> None:
    headers = [("TraceParent", b"a"), ("x", None), ("traceparent", b"b"), ("other", b"c")]
    assert HEADERS.get(headers, "traceparent") == ["a", "b"]
    assert HEADERS.get(headers, "x") is None and HEADERS.get(None, "traceparent") is None
    assert HEADERS.keys(headers) == ["TraceParent", "x", "traceparent", "other"]
    out: list[tuple[str, bytes]] = []
    HEADERS.set(out, "traceparent", "v")
    as_dict: dict[str, bytes] = {}
    HEADERS.set(as_dict, "tracestate", "a=1")
    assert out == [("traceparent", b"v")] and as_dict == {"tracestate": b"a=1"}


def test_headers_round_trip_through_the_w3c_propagator(tracing: KafkaTracing) -> None:
    ctx = tracing.extract([("TRACEPARENT", TRACEPARENT), ("tracestate", b"vendor=1")])
    assert tracing.trace_id(ctx) == TRACE
    span = trace.get_current_span(ctx).get_span_context()
    assert span.is_remote and span.trace_flags.sampled and format(span.span_id, "016x") == PARENT
    assert tracing.inject(ctx) == {"traceparent": TRACEPARENT, "tracestate": b"vendor=1"}
    for bad in (None, [], [("traceparent", b"garbage")], [("traceparent", b"00-" + b"0" * 50)]):
        empty = tracing.extract(bad)
        assert tracing.trace_id(empty) == "" and tracing.inject(empty) == {}


def test_one_event_one_trace_covering_every_stage(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    headers = run_event(tracing, [("traceparent", TRACEPARENT), ("other", b"x")])
    spans = finished(tracing, exporter)
    in_trace = [s for s in spans if format(s.context.trace_id, "032x") == TRACE]
    names = {s.name for s in in_trace}
    assert set(STAGES) | {"process conversations.in", "publish conversations.out"} <= names
    (consume,) = named(spans, "process conversations.in")
    assert consume.parent is not None and consume.parent.is_remote
    assert format(consume.parent.span_id, "016x") == PARENT
    for s in in_trace:
        if s is not consume:
            assert s.parent is not None and s.parent.span_id == consume.context.span_id, s.name
    infer = next(s for s in in_trace if s.name == "inference")
    assert infer.attributes is not None and infer.attributes[ATTR_BATCH_SIZE] == 1
    assert (infer.attributes[ATTR_BACKEND], infer.attributes[ATTR_MODEL_NAME]) == (
        "openvino-fp32", "minilm_cpu",
    )  # fmt: skip
    (publish,) = named(spans, "publish conversations.out")
    assert headers["traceparent"] == f"00-{TRACE}-{publish.context.span_id:016x}-01".encode()
    (wait,) = named(spans, "batch_wait")
    assert (wait.start_time, wait.end_time) == (1_000, 2_000)


def test_semconv_messaging_attributes(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    run_event(tracing, [("traceparent", TRACEPARENT)], offset=41)
    spans = finished(tracing, exporter)
    (consume,) = named(spans, "process conversations.in")
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
    (produce,) = named(spans, "publish conversations.out")
    assert produce.kind is SpanKind.PRODUCER and produce.attributes is not None
    assert produce.attributes[msg.MESSAGING_OPERATION_TYPE] == "publish"
    assert produce.attributes[msg.MESSAGING_DESTINATION_NAME] == "conversations.out"
    assert msg.MESSAGING_CONSUMER_GROUP_NAME not in produce.attributes


def test_no_or_bad_traceparent_starts_a_trace(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    for headers in (None, [], [("traceparent", b"garbage")], [("tracestate", b"a=b")]):
        exporter.clear()
        out = run_event(tracing, headers)
        (consume,) = named(finished(tracing, exporter), "process conversations.in")
        assert consume.parent is None
        assert out["traceparent"].decode().split("-")[1] == f"{consume.context.trace_id:032x}"


def test_batch_span_links_every_event_and_each_gets_a_copy(
    tracing: KafkaTracing, exporter: InMemorySpanExporter
) -> None:
    events = [tracing.consume_span("t", 0, i, None) for i in range(3)]
    with tracing.batch_span("inference", events, kind=SpanKind.CLIENT) as b:
        b.set(ATTR_BACKEND, "tensorrt-fp16")
        current = trace.get_current_span().get_span_context()
    for e in events:
        e.end()
    spans = finished(tracing, exporter)
    (batch,) = [s for s in spans if s.name == "inference" and s.kind is SpanKind.CLIENT]
    assert current == batch.context  # the current span while open: log lines carry it
    event_ids = {e.ctx.span_id for e in events}
    assert {link.context.span_id for link in batch.links} == event_ids
    assert batch.parent is None  # its own trace
    assert batch.attributes is not None and batch.attributes[ATTR_BATCH_SIZE] == 3
    copies = [s for s in spans if s.name == "inference" and s is not batch]
    assert {c.parent.span_id for c in copies if c.parent} == event_ids
    for c in copies:
        assert [link.context.span_id for link in c.links] == [batch.context.span_id]
        assert c.attributes is not None and c.attributes[ATTR_BACKEND] == "tensorrt-fp16"
        assert (c.start_time, c.end_time) == (batch.start_time, batch.end_time)


def test_failures_mark_spans(tracing: KafkaTracing, exporter: InMemorySpanExporter) -> None:
    ev = tracing.consume_span("t", 0, 0, b"\xff", parent_ctx=tracing.extract(None))
    with pytest.raises(RuntimeError), tracing.stage("decode", ev):
        raise RuntimeError("bad")
    with pytest.raises(TimeoutError), tracing.batch_span("inference", [ev]):
        raise TimeoutError("triton")
    ev.end(ValueError("dead letter"))
    ev.end()  # once: nothing more
    spans = finished(tracing, exporter)
    assert len(spans) == 4  # decode, batch, its per-event copy, process
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    (consume,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert consume.status.description == "ValueError: dead letter"
    assert [e.name for e in consume.events] == ["exception"]
    assert msg.MESSAGING_KAFKA_MESSAGE_KEY not in (consume.attributes or {})  # not UTF-8


def test_off_passes_trace_context_through() -> None:
    off = KafkaTracing()
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
        assert produced.headers == dict(headers) and produced.ctx is None
    ev.end()
    assert off.trace_id(ev.ctx) == TRACE
    assert off.stage("a", ev) is off.stage("b", ev)  # shared, nothing allocated


def test_sampled_out_events_make_no_spans_but_propagate(exporter: InMemorySpanExporter) -> None:
    provider = build_tracer_provider("none", None, "t", span_exporter=exporter, sample_ratio=0)
    t = KafkaTracing(provider)
    out = run_event(t, None)
    assert finished(t, exporter) == []
    assert out["traceparent"].endswith(b"-00")  # not sampled, still a valid context
    unsampled = f"00-{TRACE}-{PARENT}-00".encode()
    out = run_event(t, [("traceparent", unsampled), ("tracestate", b"v=1")])
    assert finished(t, exporter) == []
    assert out["traceparent"].startswith(f"00-{TRACE}-".encode()) and out["tracestate"] == b"v=1"
    run_event(t, [("traceparent", TRACEPARENT)])  # a sampled parent is followed
    assert {s.name for s in finished(t, exporter)} >= set(STAGES)
