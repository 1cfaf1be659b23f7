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

Spans are ``spans.SpanData`` records handed to a ``SpanPipeline`` (see ``spans`` for why not the
SDK's ``Span``: ~20x less CPU per span); contexts are ``TraceCtx`` values passed explicitly, never
"current": one batch interleaves many events. Costs: with tracing off (``KafkaTracing()``) every
helper returns a shared no-op and the incoming ``traceparent``/``tracestate`` pass through
unchanged to the output headers. With tracing on, an event whose parent is not sampled gets no
spans at all (parent-based sampling) and passes its headers through; a new trace is kept with
probability ``sample_ratio`` (the SDK's trace-id ratio rule), and an unsampled one still gets a
``traceparent`` (flags 00) on its output so downstream follows the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
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
    SpanData,
    SpanPipeline,
    TraceCtx,
    new_span_id,
    new_trace_id,
)

__all__ = [
    "EMPTY", "INSTRUMENTATION", "BatchSpan", "EventSpan", "Exporter", "Headers", "KafkaTracing",
    "Produced", "SpanPipeline", "TraceCtx", "build_span_pipeline",
]  # fmt: skip
T = TypeVar("T")
ATTR_MODEL_NAME = "inferstream.model.name"
ATTR_MODEL_VERSION = "inferstream.model.version"
ATTR_BACKEND = "inferstream.backend"
ATTR_BATCH_SIZE = "inferstream.batch.size"
STAGES = ("decode", "context", "policy", "batch_wait", "inference", "filter", "watermark")
KAFKA = msg.MessagingSystemValues.KAFKA.value


class _Ends(AbstractContextManager[T], Generic[T]):
    """Enter: the value; exit: end ``span``, marked failed by an exception (which propagates)."""

    __slots__ = ("pipeline", "span", "value")

    def __init__(self, pipeline: SpanPipeline, span: SpanData, value: T) -> None:
        self.pipeline, self.span, self.value = pipeline, span, value

    def __enter__(self) -> T:
        return self.value

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.pipeline.end(self.span, exc)


@dataclass(slots=True)
class EventSpan:
    """An event's processing span (None: not recorded) and the context its stage spans hang
    from; ``end()`` it once."""

    span: SpanData | None
    ctx: TraceCtx
    pipeline: SpanPipeline | None = None

    def end(self, error: BaseException | None = None) -> None:
        if self.span is not None and self.pipeline is not None:
            self.pipeline.end(self.span, error)

    def __enter__(self) -> EventSpan:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(exc)


@dataclass(slots=True)
class Produced:
    """A producer span (None: not recorded) and the headers (``traceparent``, ``tracestate``)
    for its output record."""

    span: SpanData | None
    headers: dict[str, bytes]


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


_NO_SPAN: _Nothing[SpanData | None] = _Nothing(None)
_NO_BATCH = _Nothing(BatchSpan(None, EMPTY))


class _Batch(AbstractContextManager[BatchSpan]):
    """The batch span (a new trace unless ``parent``) and, on exit, each event's copy of it."""

    def __init__(
        self,
        pipeline: SpanPipeline,
        name: str,
        contexts: list[TraceCtx],
        kind: int,
        per_event: bool,
        parent: TraceCtx,
        attrs: dict[str, AttributeValue],
    ) -> None:
        self.pipeline, self.contexts, self.per_event = pipeline, contexts, per_event
        if not parent.valid:  # the root of a trace of its own, kept with its sampled events
            parent = TraceCtx(new_trace_id(), 0, True)
        span = SpanData(parent, name, kind, None, attrs, contexts)
        self.batch = BatchSpan(span, span.context(), dict(attrs))

    def __enter__(self) -> BatchSpan:
        return self.batch

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self.batch.span
        assert span is not None
        end = self.pipeline.end
        end(span, exc)
        if self.per_event:
            link, attrs = [self.batch.ctx], self.batch.attributes
            for ctx in self.contexts:
                copy = SpanData(ctx, span.name, INTERNAL, span.start, dict(attrs), link)
                end(copy, exc, at=span.end, record=False)


class KafkaTracing:
    """Span helpers for a Kafka consumer/producer over ``pipeline`` (default: off, no-op)."""

    def __init__(
        self, pipeline: SpanPipeline | None = None, *, consumer_group: str | None = None
    ) -> None:
        self.pipeline = pipeline
        self.enabled = pipeline is not None
        self.consumer_group = consumer_group

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
        attrs: dict[str, AttributeValue] = {
            msg.MESSAGING_SYSTEM: KAFKA,
            msg.MESSAGING_OPERATION_TYPE: "process",
            msg.MESSAGING_OPERATION_NAME: "process",
            msg.MESSAGING_DESTINATION_NAME: topic,
            msg.MESSAGING_DESTINATION_PARTITION_ID: str(partition),
            msg.MESSAGING_KAFKA_OFFSET: offset,
        }
        group = consumer_group or self.consumer_group
        if group:
            attrs[msg.MESSAGING_CONSUMER_GROUP_NAME] = group
        _set_key(attrs, key)
        span = SpanData(parent, f"process {topic}", CONSUMER, None, attrs)
        return EventSpan(span, span.context(), pipeline)

    def stage(
        self, name: str, ctx: TraceCtx, **attrs: AttributeValue
    ) -> AbstractContextManager[SpanData | None]:
        """A child span of ``ctx`` around one stage; an exception marks it failed and propagates."""
        if self.pipeline is None or not ctx.recording:
            return _NO_SPAN
        span = SpanData(ctx, name, INTERNAL, None, attrs or None)
        return _Ends(self.pipeline, span, span)

    def record(
        self, name: str, ctx: TraceCtx, start_ns: int, end_ns: int, **attrs: AttributeValue
    ) -> None:
        """A finished child span of ``ctx`` from ``start_ns`` to ``end_ns`` (``time.time_ns``)."""
        if self.pipeline is not None and ctx.recording:
            span = SpanData(ctx, name, INTERNAL, start_ns, attrs or None)
            self.pipeline.end(span, at=end_ns)

    def batch_span(
        self,
        name: str,
        event_contexts: Sequence[TraceCtx],
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
        sampled = [ctx for ctx in event_contexts if ctx.recording]
        if not sampled:
            return _NO_BATCH
        attrs[ATTR_BATCH_SIZE] = len(event_contexts)
        return _Batch(self.pipeline, name, sampled, kind, per_event, parent or EMPTY, attrs)

    def produce_span(
        self, topic: str, ctx: TraceCtx, *, key: bytes | None = None, partition: int | None = None
    ) -> AbstractContextManager[Produced]:
        """The PRODUCER ``publish <topic>`` span, child of ``ctx``; its ``headers`` carry it on."""
        if self.pipeline is None or not ctx.recording:
            return _Nothing(Produced(None, self.inject(ctx)))
        attrs: dict[str, AttributeValue] = {
            msg.MESSAGING_SYSTEM: KAFKA,
            msg.MESSAGING_OPERATION_TYPE: "publish",
            msg.MESSAGING_OPERATION_NAME: "send",
            msg.MESSAGING_DESTINATION_NAME: topic,
        }
        if partition is not None:
            attrs[msg.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
        _set_key(attrs, key)
        span = SpanData(ctx, f"publish {topic}", PRODUCER, None, attrs)
        return _Ends(self.pipeline, span, Produced(span, prop.headers_for(span.context())))


def _set_key(attrs: dict[str, AttributeValue], key: bytes | None) -> None:
    if key:  # semconv: a key with no canonical string form is left out
        with suppress(UnicodeDecodeError):
            attrs[msg.MESSAGING_KAFKA_MESSAGE_KEY] = key.decode()
