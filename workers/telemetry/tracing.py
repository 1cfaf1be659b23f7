"""Tracing of events through the worker: W3C trace context in Kafka headers, messaging spans.

One event's trace::

    producer span (upstream, from the ``traceparent`` header; or none: a new trace starts)
    └─ process conversations.in   CONSUMER  messaging.* attributes (semconv)
       ├─ decode, context, policy, batch_wait, inference, filter, watermark   (``stage``/``record``)
       └─ publish conversations.out  PRODUCER  → its context goes into the output's headers

A batch step (one Triton call for many events) is one span in a trace of its own, linked to every
event's span (``batch_span``), recorded when any of its events is sampled; each event also gets a
child span of the same name, times and attributes (batch size, backend, model), linked back to the
batch span, so one event's trace covers every stage.

An event's span is a ``spans.SpanData`` record (see ``spans`` for why not the SDK's ``Span``:
~20x less CPU per span); its child spans are kept as tuples on its ``EventSpan`` and go to the
``SpanPipeline`` with it, in one piece, when the event ends: the exporter then encodes the whole
event at once, sharing its trace id and parent (``otlp.Encoder.event``). The helpers take the
``EventSpan``; contexts are ``TraceCtx`` values passed explicitly, never "current": one batch
interleaves many events. Costs: with tracing off (``KafkaTracing()``) every
helper returns a shared no-op and the incoming ``traceparent``/``tracestate`` pass through
unchanged to the output headers. With tracing on, an event whose parent is not sampled gets no
spans at all (parent-based sampling) and passes its headers through; a new trace is kept with
probability ``sample_ratio`` (the SDK's trace-id ratio rule), and an unsampled one still gets a
``traceparent`` (flags 00) on its output so downstream follows the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from time import time_ns
from types import TracebackType
from typing import Generic, TypeVar

from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.util.types import AttributeValue

from workers.telemetry import propagation as prop
from workers.telemetry.propagation import Headers
from workers.telemetry.provider import INSTRUMENTATION, Exporter, build_span_pipeline
from workers.telemetry.spans import (
    CONSUMER,
    EMPTY,
    INTERNAL,
    PRODUCER,
    Attributes,
    Child,
    Shared,
    SpanData,
    SpanPipeline,
    TraceCtx,
    error_status,
    new_span_id,
    new_trace_id,
)

__all__ = [
    "EMPTY", "INSTRUMENTATION", "NOT_TRACED", "BatchSpan", "EventSpan", "Exporter", "Headers",
    "KafkaTracing", "Produced", "SpanPipeline", "TraceCtx", "build_span_pipeline",
]  # fmt: skip
T = TypeVar("T")
ATTR_MODEL_NAME = "inferstream.model.name"
ATTR_MODEL_VERSION = "inferstream.model.version"
ATTR_BACKEND = "inferstream.backend"
ATTR_BATCH_SIZE = "inferstream.batch.size"
STAGES = ("decode", "context", "policy", "batch_wait", "inference", "filter", "watermark")
KAFKA = msg.MessagingSystemValues.KAFKA.value


class EventSpan:
    """One event's trace: its processing span (None: not recorded), the context passed on
    (``ctx``), and its finished child spans, kept as ``Child`` tuples and handed to the pipeline
    with the event's span in one piece when it ``end``s (once)."""

    __slots__ = ("children", "ctx", "pipeline", "span")

    def __init__(
        self, span: SpanData | None, ctx: TraceCtx, pipeline: SpanPipeline | None = None
    ) -> None:
        self.span, self.ctx, self.pipeline = span, ctx, pipeline
        self.children: list[Child] | None = [] if span is not None else None

    def end(self, error: BaseException | None = None) -> None:
        span, children = self.span, self.children
        if span is not None and children is not None and self.pipeline is not None:
            self.span = self.children = None  # once: a later stage records nothing
            self.pipeline.end_event(span, children, error)

    def __enter__(self) -> EventSpan:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(exc)


NOT_TRACED = EventSpan(None, EMPTY)


class _Stage(AbstractContextManager[None]):
    """Times one stage of an event; on exit, its child span (failed by an exception, which
    propagates) joins the event's."""

    __slots__ = ("attrs", "children", "name", "start")

    def __init__(self, children: list[Child], name: str, attrs: Attributes | None) -> None:
        self.children, self.name, self.attrs = children, name, attrs
        self.start = time_ns()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.children.append(
            (self.name, INTERNAL, self.start, time_ns(), None, self.attrs, None, exc, 0)
        )


@dataclass(slots=True)
class Produced:
    """The producer span's context (None: not recorded) and the headers (``traceparent``,
    ``tracestate``) for its output record."""

    ctx: TraceCtx | None
    headers: dict[str, bytes]


class _Produce(AbstractContextManager[Produced]):
    __slots__ = ("attrs", "children", "name", "produced", "shared", "start")

    def __init__(
        self,
        children: list[Child],
        name: str,
        shared: Shared,
        attrs: Attributes | None,
        produced: Produced,
    ) -> None:
        self.children, self.name, self.produced = children, name, produced
        self.shared, self.attrs = shared, attrs
        self.start = time_ns()

    def __enter__(self) -> Produced:
        return self.produced

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span_id = self.produced.ctx.span_id  # type: ignore[union-attr]
        self.children.append(
            (
                self.name,
                PRODUCER,
                self.start,
                time_ns(),
                self.shared,
                self.attrs,
                None,
                exc,
                span_id,
            )
        )


@dataclass(slots=True)
class BatchSpan:
    """One span over a batch step; ``set`` attributes that its per-event copies also get."""

    span: SpanData | None
    ctx: TraceCtx
    attributes: dict[str, AttributeValue] = field(default_factory=dict)

    def set(self, key: str, value: AttributeValue) -> None:
        if self.span is not None:  # the shared no-op keeps nothing
            self.attributes[key] = value
            self.span.set_attribute(key, value)


class _Nothing(AbstractContextManager[T], Generic[T]):
    """What the helpers return when no span is recorded: nothing to end."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __enter__(self) -> T:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN: _Nothing[None] = _Nothing(None)
_NO_BATCH = _Nothing(BatchSpan(None, EMPTY))


class _Batch(AbstractContextManager[BatchSpan]):
    """The batch span (a new trace unless ``parent``) and, on exit, each event's copy of it."""

    def __init__(
        self,
        pipeline: SpanPipeline,
        name: str,
        events: list[EventSpan],
        kind: int,
        per_event: bool,
        parent: TraceCtx,
        attrs: dict[str, AttributeValue],
    ) -> None:
        self.pipeline, self.events, self.per_event = pipeline, events, per_event
        if not parent.valid:  # the root of a trace of its own, kept with its sampled events
            parent = TraceCtx(new_trace_id(), 0, True)
        span = SpanData(parent, name, kind, None, attrs, [e.ctx for e in events])
        self.batch = BatchSpan(span, span.context(), dict(attrs))

    def __enter__(self) -> BatchSpan:
        return self.batch

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self.batch.span
        assert span is not None
        self.pipeline.end(span, exc)
        if self.per_event:  # one attributes dict and one link list, shared by the copies
            status = error_status(exc) if exc is not None else None
            copy: Child = (
                span.name, INTERNAL, span.start, span.end, None, self.batch.attributes,
                [self.batch.ctx], status, 0,
            )  # fmt: skip
            for ev in self.events:
                if ev.children is not None:
                    ev.children.append(copy)


class KafkaTracing:
    """Span helpers for a Kafka consumer/producer over ``pipeline`` (default: off, no-op)."""

    def __init__(
        self, pipeline: SpanPipeline | None = None, *, consumer_group: str | None = None
    ) -> None:
        self.pipeline = pipeline
        self.consumer_group = consumer_group
        self._shared: dict[tuple[str, str, int | None, str | None], Shared] = {}

    @property
    def enabled(self) -> bool:
        """Tracing is on: there is a pipeline to take spans."""
        return self.pipeline is not None

    # --- propagation ---------------------------------------------------------------------------
    @staticmethod
    def extract(headers: Headers) -> TraceCtx:
        """The upstream context from W3C ``traceparent``/``tracestate`` headers (EMPTY if none)."""
        return prop.context_from(*prop.trace_headers(headers))

    @staticmethod
    def inject(ctx: TraceCtx) -> dict[str, bytes]:
        """Headers carrying ``ctx`` (a context that records nothing: its headers, unchanged)."""
        if ctx.held is not None:
            return prop.held_headers(ctx.held)
        return prop.headers_for(ctx)

    @staticmethod
    def trace_id(ctx: TraceCtx) -> str:
        """The 32-hex trace id of ``ctx`` (for logs, envelopes, analytics); "" when none."""
        return format(ctx.trace_id, "032x") if ctx.trace_id else ""

    # --- spans ---------------------------------------------------------------------------------
    def consume_span(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        consumer_group: str | None = None,
        parent_ctx: TraceCtx | None = None,
    ) -> EventSpan:
        """Start the CONSUMER ``process <topic>`` span of one record, child of ``parent_ctx``."""
        parent = parent_ctx if parent_ctx is not None else EMPTY
        pipeline = self.pipeline
        if pipeline is None or (parent.valid and not parent.sampled):
            return EventSpan(None, parent)  # pass the upstream context through
        if not parent.valid:
            trace_id = new_trace_id()
            if not pipeline.sampled(trace_id):  # downstream learns the decision (flags 00)
                return EventSpan(None, TraceCtx(trace_id, new_span_id(), False))
            parent = TraceCtx(trace_id, 0, True)
        group = consumer_group or self.consumer_group
        shared = self._shared.get(("process", topic, partition, group))
        if shared is None:
            shared = self._share(("process", topic, partition, group))
        attrs: Attributes = {msg.MESSAGING_KAFKA_OFFSET: offset}
        if key:
            _set_key(attrs, key)
        span = SpanData(parent, f"process {topic}", CONSUMER, None, attrs, None, shared)
        return EventSpan(span, span.context(), pipeline)

    def _share(self, what: tuple[str, str, int | None, str | None]) -> Shared:
        """The messaging attributes every record of one topic (partition) shares, made once."""
        operation, topic, partition, group = what
        shared = Shared({
            msg.MESSAGING_SYSTEM: KAFKA,
            msg.MESSAGING_OPERATION_TYPE: operation if operation == "process" else "publish",
            msg.MESSAGING_OPERATION_NAME: operation,
            msg.MESSAGING_DESTINATION_NAME: topic,
        })  # fmt: skip
        if partition is not None:
            shared[msg.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
        if group:
            shared[msg.MESSAGING_CONSUMER_GROUP_NAME] = group
        if len(self._shared) < 4096:
            self._shared[what] = shared
        return shared

    def stage(
        self, name: str, event: EventSpan, **attrs: AttributeValue
    ) -> AbstractContextManager[None]:
        """A child span of ``event``'s around one stage; an exception marks it failed and
        propagates."""
        children = event.children
        if children is None:
            return _NO_SPAN
        return _Stage(children, name, attrs or None)

    def record(
        self, name: str, event: EventSpan, start_ns: int, end_ns: int, **attrs: AttributeValue
    ) -> None:
        """A finished child span of ``event``'s from ``start_ns`` to ``end_ns``
        (``time.time_ns``)."""
        if event.children is not None:
            event.children.append(
                (name, INTERNAL, start_ns, end_ns, None, attrs or None, None, None, 0)
            )

    def batch_span(
        self,
        name: str,
        events: Sequence[EventSpan],
        *,
        kind: int = INTERNAL,
        per_event: bool = True,
        parent: TraceCtx | None = None,
        **attrs: AttributeValue,
    ) -> AbstractContextManager[BatchSpan]:
        """One span over a batch step, linked to each event's span (a new trace unless ``parent``);
        with ``per_event``, each event also gets a child span ``name`` with the same times and
        attributes, linked to the batch span. Events that are not sampled are left out; a batch
        with none sampled records nothing."""
        if self.pipeline is None:
            return _NO_BATCH
        sampled = [ev for ev in events if ev.children is not None]
        if not sampled:
            return _NO_BATCH
        attrs[ATTR_BATCH_SIZE] = len(events)
        return _Batch(self.pipeline, name, sampled, kind, per_event, parent or EMPTY, attrs)

    def produce_span(
        self,
        topic: str,
        event: EventSpan,
        *,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> AbstractContextManager[Produced]:
        """The PRODUCER ``publish <topic>`` span, a child of ``event``'s; its ``headers`` carry
        it on."""
        children = event.children
        if children is None:
            return _Nothing(Produced(None, self.inject(event.ctx)))
        shared = self._shared.get(("send", topic, partition, None))
        if shared is None:
            shared = self._share(("send", topic, partition, None))
        attrs: Attributes | None = None
        if key:
            attrs = {}
            _set_key(attrs, key)
        parent = event.ctx
        ctx = TraceCtx(parent.trace_id, new_span_id(), True, parent.state)
        produced = Produced(ctx, prop.headers_for(ctx))
        return _Produce(children, f"publish {topic}", shared, attrs, produced)


def _set_key(attrs: dict[str, AttributeValue], key: bytes) -> None:
    # semconv: a key with no canonical string form is left out (try: suppress() costs ~0.4 µs)
    try:  # noqa: SIM105
        attrs[msg.MESSAGING_KAFKA_MESSAGE_KEY] = key.decode()
    except UnicodeDecodeError:
        pass
