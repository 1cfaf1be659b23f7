"""The C encoder (``workers/telemetry/_otlp.c``) writes exactly the bytes of the Python one, for
every shape of event, and hands back to Python what it does not handle."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.unit.telemetry.test_otlp import RESOURCE, spans
from workers.telemetry import otlp
from workers.telemetry.otlp import Encoder
from workers.telemetry.provider import INSTRUMENTATION
from workers.telemetry.spans import Child, Shared, SpanData, TraceCtx

ids64 = st.integers(1, 2**64 - 1)
ctxs = st.builds(
    TraceCtx,
    trace_id=st.integers(1, 2**128 - 1),
    span_id=ids64,
    sampled=st.just(True),
    state=st.sampled_from(["", "vendor=a,other=b"]),
    remote=st.booleans(),
)
values = st.one_of(
    st.text(max_size=200),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
)
attrs = st.one_of(st.none(), st.dictionaries(st.text(max_size=30), values, max_size=4))
statuses = st.one_of(st.none(), st.tuples(st.sampled_from([0, 1, 2]), st.text(max_size=40)))
times = st.integers(0, 2**63 - 1)
children = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=140),  # a name past 127 bytes: two-byte lengths
        st.sampled_from([0, 1, 2, 3, 4]),
        times,
        times,
        st.one_of(st.none(), st.builds(Shared, attrs.filter(bool))),
        attrs,
        st.one_of(st.none(), st.lists(ctxs, max_size=3)),
        statuses,
        st.one_of(st.just(0), ids64),
    ),
    max_size=10,
)


def _event(parent: TraceCtx, name: str, kind: int, a: Any, links: Any, status: Any) -> SpanData:
    span = SpanData(parent, name, kind, 123, a, links, Shared({"messaging.system": "kafka"}))
    span.end, span.status = 456, status
    return span


@settings(max_examples=300, deadline=None)
@given(
    parent=ctxs,
    name=st.text(min_size=1, max_size=50),
    kind=st.sampled_from([0, 1, 2, 3, 4]),
    a=attrs,
    links=st.one_of(st.none(), st.lists(ctxs, max_size=3)),
    status=statuses,
    kids=children,
)
def test_c_and_python_write_the_same_bytes(
    parent: TraceCtx, name: str, kind: int, a: Any, links: Any, status: Any, kids: list[Child]
) -> None:
    span = _event(parent, name, kind, a, links, status)
    kids = [(*c[:8], c[8] or 1 + i) for i, c in enumerate(kids)]  # ids chosen: comparable
    native = Encoder(RESOURCE, INSTRUMENTATION, native=True)
    python = Encoder(RESOURCE, INSTRUMENTATION, native=False)
    assert otlp._native_event is not None
    assert otlp._native_event(span, kids, otlp.new_span_id) == python.event(span, kids)
    assert native.event(span, kids) == python.event(span, kids)
    assert native.span(span) == python.span(span)


def test_a_child_without_an_id_gets_a_new_one() -> None:
    span = _event(TraceCtx(5, 6, True), "process in", 4, None, None, None)
    kids: list[Child] = [("decode", 0, 1, 2, None, None, None, None, 0)] * 2
    got = Encoder(RESOURCE, INSTRUMENTATION, native=True).request([span])  # warm
    assert got
    drawn = iter([0xAA, 0xBB])
    out = otlp._native_event(span, kids, lambda: next(drawn))  # type: ignore[misc]
    assert out is not None
    assert (0xAA).to_bytes(8) in out and (0xBB).to_bytes(8) in out


def test_what_c_does_not_handle_goes_to_python() -> None:
    """An exception event, an attribute value of another type (a tuple), an exception as a
    child's error: the C encoder returns None and Encoder writes it in Python, the same bytes
    as the pure-Python encoder."""
    native = Encoder(RESOURCE, INSTRUMENTATION, native=True)
    python = Encoder(RESOURCE, INSTRUMENTATION, native=False)
    for s in spans():  # a failed span with its exception event, a tuple-valued attribute
        assert native.span(s) == python.span(s)
    odd = [s for s in spans() if s.events or any(
        isinstance(v, tuple) for v in (s.attributes or {}).values())]  # fmt: skip
    assert odd and all(otlp._native_event(s, (), otlp.new_span_id) is None for s in odd)
    try:
        raise KeyError("k")
    except KeyError as exc:
        failed: Child = ("decode", 0, 1, 2, None, None, None, exc, 7)
    span = _event(TraceCtx(5, 6, True), "process in", 4, None, None, None)
    assert otlp._native_event(span, [failed], otlp.new_span_id) is None
    got, expected = (
        ExportTraceServiceRequest.FromString(enc.wrap([enc.event(span, [failed])]))
        for enc in (native, python)
    )
    for request in (got, expected):  # the exception event's time is when it was encoded
        for s in request.resource_spans[0].scope_spans[0].spans:
            for e in s.events:
                e.time_unix_nano = 0
    assert got == expected and got.resource_spans[0].scope_spans[0].spans[0].events
