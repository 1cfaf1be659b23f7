"""The hand-written OTLP encoder against the SDK's own encoder, and the exporter's retry policy."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from workers.telemetry.otlp import Encoder, varint
from workers.telemetry.otlp_export import ExportError, OtlpSink
from workers.telemetry.propagation import context_from
from workers.telemetry.provider import INSTRUMENTATION, SdkSink
from workers.telemetry.spans import (
    CLIENT,
    CONSUMER,
    EMPTY,
    PRODUCER,
    Child,
    Shared,
    SpanData,
    TraceCtx,
)
from workers.telemetry.tracing import KafkaTracing, SpanPipeline

RESOURCE = Resource.create({SERVICE_NAME: "inferstream-test", "service.instance.id": "w-1"})
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def spans() -> list[SpanData]:
    """Every shape the worker makes: remote parent with tracestate, local children, a root,
    links, every attribute type, an error with its exception event."""
    remote = context_from(TRACEPARENT, "vendor=a,other=b")
    consume = SpanData(remote, "process conversations.in", CONSUMER, 1_700_000_000_000_000_001)
    consume.attributes = {
        "messaging.system": "kafka", "messaging.kafka.offset": 2**40, "neg": -5, "ratio": 0.25,
        "flag": True, "off": False, "tags": ("a", "b"), "empty": "",
    }  # fmt: skip
    consume.end = consume.start + 1_234_567
    stage = SpanData(consume.context(), "decode")
    stage.end = stage.start + 10
    try:
        raise ValueError("bad json: ü")
    except ValueError as exc:
        stage.fail(exc)
    batch = SpanData(TraceCtx(0x1234, 0, True), "inference", CLIENT, None, {"n": 3}, [
        consume.context(), TraceCtx(7, 9, True, remote=True),
    ])  # fmt: skip
    batch.end = batch.start + 5_000_000
    copy = SpanData(consume.context(), "inference", links=[batch.context()])
    copy.status = (2, "")
    copy.end = batch.end
    publish = SpanData(consume.context(), "publish conversations.out", PRODUCER)
    publish.set_attribute("messaging.destination.name", "conversations.out")
    publish.end = publish.start + 1
    return [consume, stage, batch, copy, publish]


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
def test_encoding_parses_to_what_the_sdk_encoder_makes(native: bool) -> None:
    made = spans()
    ours = Encoder(RESOURCE, INSTRUMENTATION, native=native).request(made)
    sdk = SdkSink(None, RESOURCE)  # type: ignore[arg-type]
    expected = encode_spans([sdk.readable(s) for s in made])
    parsed = ExportTraceServiceRequest.FromString(ours)
    assert parsed == expected
    # and field by field where a mismatch would matter most
    got = parsed.resource_spans[0].scope_spans[0].spans
    assert got[0].parent_span_id.hex() == "00f067aa0ba902b7"
    assert got[0].trace_state == "vendor=a,other=b"
    assert got[0].flags == 0x300  # parent is remote
    assert got[1].flags == 0x100 and got[1].status.code == 2
    assert got[1].events[0].name == "exception"
    assert len(got[2].links) == 2 and got[2].links[1].flags == 0x300


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
def test_an_events_spans_encode_as_the_sdk_encodes_them(native: bool) -> None:
    """``Encoder.event`` (children kept as tuples, shared pieces made once) against the SDK's
    encoder of the same spans: stages with and without attributes, two events sharing one batch
    step's copy (links, attributes, an error status), a producer span with its id chosen
    early, a failed stage with its exception event, a remote parent with tracestate."""
    enc = Encoder(RESOURCE, INSTRUMENTATION, native=native)
    sdk = SdkSink(None, RESOURCE)  # type: ignore[arg-type]
    batch_ctx = TraceCtx(0xABC, 0xDEF, True)
    copy: Child = (
        "inference", 0, 10, 20, None, {"n": 2, "backend": "cpu"}, [batch_ctx], (2, "x: y"), 0,
    )  # fmt: skip
    other: Child = ("inference", 0, 30, 40, None, {"n": 1}, [TraceCtx(5, 6, True)], None, 0)
    topic = Shared({"messaging.system": "kafka", "messaging.destination.name": "out"})
    try:
        raise KeyError("k")
    except KeyError as exc:
        failed: Child = ("decode", 0, 1, 2, None, None, None, exc, 0)
    chosen: list[bytes] = []
    for parent, children in (
        (context_from(TRACEPARENT, "vendor=a"), [
            ("decode", 0, 1, 2, None, None, None, None, 0),
            ("policy", 0, 2, 3, None, {"a": "b"}, None, None, 0),
            copy, ("publish out", PRODUCER, 5, 6, topic, {"k": "v"}, None, None, 0x77), failed,
        ]),
        (EMPTY, [copy, other, ("filter", 0, 7, 8, None, None, None, None, 0),
                 ("publish out", PRODUCER, 8, 9, topic, None, None, None, 0)]),
        (EMPTY, []),
    ):  # fmt: skip
        span = SpanData(
            parent, "process in", CONSUMER, 1, {"messaging.kafka.offset": 3}, None, topic
        )
        span.end = 9
        got = ExportTraceServiceRequest.FromString(enc.wrap([enc.event(span, children)]))
        ids = [s.span_id for s in got.resource_spans[0].scope_spans[0].spans]
        chosen += ids
        made = SdkSink.prepare_event(span, children)
        assert len(ids) == len(made) == len(children) + 1 and len(set(ids)) == len(ids)
        for s, span_id in zip(made, ids, strict=True):  # the ids the encoder chose
            s.span_id = int.from_bytes(span_id)
        got_events = [e for s in got.resource_spans[0].scope_spans[0].spans for e in s.events]
        for s in made:  # the exception event's time is when it was encoded
            if s.events:
                s.events = [(n, got_events[0].time_unix_nano, a) for n, _, a in s.events]
        assert got == encode_spans([sdk.readable(s) for s in made])
    assert (0x77).to_bytes(8) in chosen  # the producer span keeps the id its headers carry


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
def test_encoding_is_stable_with_the_caches_warm(native: bool) -> None:
    enc = Encoder(RESOURCE, INSTRUMENTATION, native=native)
    batch = spans()
    assert enc.request(batch) == enc.request(batch)


def test_varint() -> None:
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(300) == b"\xac\x02"
    assert varint(2**64 - 1) == b"\xff" * 9 + b"\x01"


def test_a_traced_event_encodes_to_its_trace() -> None:
    """KafkaTracing → pipeline → OTLP bytes: the event's spans, ids and parentage survive."""
    sent: list[bytes] = []
    sink = OtlpSink(Encoder(RESOURCE, INSTRUMENTATION), _Transport(sent))
    pipeline = SpanPipeline(sink, synchronous=True)
    t = KafkaTracing(pipeline, consumer_group="g")
    ev = t.consume_span("in", 0, 1, b"k", parent_ctx=t.extract([("traceparent", TRACEPARENT)]))
    with t.stage("decode", ev):
        pass
    with t.produce_span("out", ev) as produced:
        pass
    ev.end()
    assert len(sent) == 1  # the event's spans travel together
    got = ExportTraceServiceRequest.FromString(sent[0]).resource_spans[0].scope_spans[0].spans
    assert [s.name for s in got] == ["decode", "publish out", "process in"]
    assert {s.trace_id.hex() for s in got} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    consume_id = got[2].span_id
    assert got[0].parent_span_id == consume_id == got[1].parent_span_id
    assert produced.headers["traceparent"].decode().split("-")[2] == got[1].span_id.hex()


class _Transport:
    def __init__(self, sent: list[bytes], errors: list[ExportError] | None = None) -> None:
        self.sent, self.errors, self.calls = sent, list(errors or []), 0

    def send(self, body: bytes, timeout_s: float) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(body)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("errors", "ok", "calls"),
    [
        ([], True, 1),
        ([ExportError("busy", retryable=True, retry_after_s=0.01)] * 2, True, 3),
        ([ExportError("bad request", retryable=False)], False, 1),
    ],
)
def test_export_retries_only_what_is_retryable(
    errors: list[ExportError], ok: bool, calls: int
) -> None:
    transport = _Transport([], errors)
    sink = OtlpSink(Encoder(RESOURCE, INSTRUMENTATION), transport, timeout_s=5)
    span = SpanData(EMPTY, "x")
    assert sink.export([sink.prepare(span)]) is ok
    assert transport.calls == calls


def test_export_gives_up_at_its_deadline() -> None:
    transport = _Transport([], [ExportError("down", retryable=True)] * 100)
    sink = OtlpSink(Encoder(RESOURCE, INSTRUMENTATION), transport, timeout_s=0.3)
    assert sink.export([sink.prepare(SpanData(EMPTY, "x"))]) is False
    assert 1 <= transport.calls <= 3
