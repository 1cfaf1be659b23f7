"""Tracing of events through the worker: W3C trace context in Kafka headers, messaging spans.

One event's trace::

    producer span (upstream, from the ``traceparent`` header; or none: a new trace starts)
    └─ process conversations.in   CONSUMER  messaging.* attributes (semconv)
       ├─ decode, context, policy, batch_wait, inference, filter, watermark   (``stage``/``record``)
       └─ publish conversations.out  PRODUCER  → its context goes into the output's headers

A batch step (one Triton call for many events) is one span in a trace of its own, linked to every
event's span (``batch_span``); each event also gets a child span of the same name, times and
attributes (batch size, backend, model), linked back to the batch span, so one event's trace covers
every stage.

Contexts are passed explicitly (an ``opentelemetry.context.Context`` per event) and spans are not
made "current": one batch interleaves many events. Costs: with tracing off (``KafkaTracing()``)
every helper returns a shared no-op and the incoming ``traceparent``/``tracestate`` pass through
unchanged to the output headers. With tracing on, an event whose parent is not sampled gets no
spans at all (what parent-based sampling decides anyway) and passes its context through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.trace import INVALID_SPAN, Link, NoOpTracer, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from workers.telemetry import propagation as prop
from workers.telemetry.propagation import EMPTY, Headers
from workers.telemetry.provider import Exporter, build_tracer_provider

__all__ = [
    "BatchSpan", "EventSpan", "Exporter", "Headers", "KafkaTracing", "Produced",
    "build_tracer_provider",
]  # fmt: skip
T = TypeVar("T")
INSTRUMENTATION = "inferstream"
ATTR_MODEL_NAME = "inferstream.model.name"
ATTR_MODEL_VERSION = "inferstream.model.version"
ATTR_BACKEND = "inferstream.backend"
ATTR_BATCH_SIZE = "inferstream.batch.size"
STAGES = ("decode", "context", "policy", "batch_wait", "inference", "filter", "watermark")
KAFKA = msg.MessagingSystemValues.KAFKA.value


class _Ends(AbstractContextManager[T]):
    """Enter: the value; exit: end ``span``, marked failed by an exception (which propagates)."""

    __slots__ = ("span", "value")

    def __init__(self, span: Span, value: T) -> None:
        self.span, self.value = span, value

    def __enter__(self) -> T:
        return self.value

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            _fail(self.span, exc)
        self.span.end()


@dataclass(slots=True)
class EventSpan:
    """An event's processing span and the context its stage spans hang from; ``end()`` it once."""

    span: Span
    ctx: Context

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            _fail(self.span, error)
        self.span.end()

    def __enter__(self) -> EventSpan:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(exc)


@dataclass(slots=True)
class Produced:
    """A producer span and the headers (``traceparent``, ``tracestate``) for its output record."""

    span: Span
    headers: dict[str, bytes]


@dataclass(slots=True)
class BatchSpan:
    """One span over a batch step; ``set`` attributes that its per-event copies also get."""

    span: Span
    ctx: Context
    attributes: dict[str, AttributeValue] = field(default_factory=dict)

    def set(self, key: str, value: AttributeValue) -> None:
        if self.span is not INVALID_SPAN:  # the shared no-op keeps nothing
            self.attributes[key] = value
            self.span.set_attribute(key, value)


class _Nothing(AbstractContextManager[T]):
    """What the helpers return when no span is recorded: one shared object, nothing to end."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __enter__(self) -> T:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN: _Nothing[Span] = _Nothing(INVALID_SPAN)
_NO_BATCH = _Nothing(BatchSpan(INVALID_SPAN, EMPTY))


class KafkaTracing:
    """Span helpers for a Kafka consumer/producer, over ``tracer`` (default: off, no-op)."""

    def __init__(self, tracer: Tracer | None = None, *, consumer_group: str | None = None) -> None:
        self.tracer: Tracer = tracer if tracer is not None else NoOpTracer()
        self.enabled = not isinstance(self.tracer, NoOpTracer)
        self.consumer_group = consumer_group
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_provider(
        cls, provider: trace.TracerProvider | None, *, consumer_group: str | None = None
    ) -> KafkaTracing:
        tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None
        return cls(tracer, consumer_group=consumer_group)

    # --- propagation ---------------------------------------------------------------------------
    def extract(self, headers: Headers) -> Context:
        """The upstream context from W3C ``traceparent``/``tracestate`` headers (empty if none)."""
        traceparent, tracestate = prop.trace_headers(headers)
        if traceparent is None:
            return EMPTY
        if not self.enabled:
            return prop.passthrough_context(traceparent, tracestate)
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        return self._propagator.extract(carrier, context=EMPTY)

    def inject(self, ctx: Context) -> dict[str, bytes]:
        """Headers carrying ``ctx``'s span (tracing off: the extracted headers, unchanged)."""
        held = prop.passthrough(ctx)
        if held is not None:
            return prop.passthrough_headers(held)
        if not self.enabled:
            return {}
        return prop.headers_for(trace.get_current_span(ctx).get_span_context())

    @staticmethod
    def trace_id(ctx: Context) -> str:
        """The 32-hex trace id of ``ctx`` (for logs, envelopes, analytics); "" when none."""
        held = prop.passthrough(ctx)
        if held is not None:
            return held[0][3:35]
        sc = trace.get_current_span(ctx).get_span_context()
        return format(sc.trace_id, "032x") if sc.is_valid else ""

    # --- spans ---------------------------------------------------------------------------------
    def consume_span(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        consumer_group: str | None = None,
        parent_ctx: Context | None = None,
    ) -> EventSpan:
        """Start the CONSUMER ``process <topic>`` span of one record, child of ``parent_ctx``."""
        parent = parent_ctx if parent_ctx is not None else EMPTY
        if not self.enabled:
            return EventSpan(INVALID_SPAN, parent)
        if _unsampled(parent):  # pass the upstream context through, as no span is recorded
            return EventSpan(trace.get_current_span(parent), parent)
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
        span = self.tracer.start_span(
            f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attrs
        )
        return EventSpan(span, trace.set_span_in_context(span, parent))

    def stage(
        self, name: str, ctx: Context, **attrs: AttributeValue
    ) -> AbstractContextManager[Span]:
        """A child span of ``ctx`` around one stage; an exception marks it failed and propagates."""
        if not self.enabled or _unsampled(ctx):
            return _NO_SPAN
        span = self.tracer.start_span(name, context=ctx, attributes=attrs or None)
        return _Ends(span, span)

    def record(
        self, name: str, ctx: Context, start_ns: int, end_ns: int, **attrs: AttributeValue
    ) -> None:
        """A finished child span of ``ctx`` from ``start_ns`` to ``end_ns`` (``time.time_ns``)."""
        if self.enabled and not _unsampled(ctx):
            span = self.tracer.start_span(
                name, context=ctx, start_time=start_ns, attributes=attrs or None
            )
            span.end(end_time=end_ns)

    def batch_span(
        self,
        name: str,
        event_contexts: Sequence[Context],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        per_event: bool = True,
        parent: Context | None = None,
        **attrs: AttributeValue,
    ) -> AbstractContextManager[BatchSpan]:
        """One span over a batch step, linked to each event's span (a new trace unless ``parent``);
        with ``per_event``, each event also gets a child span ``name`` with the same times and
        attributes, linked to the batch span. Events that are not sampled are left out."""
        if not self.enabled:
            return _NO_BATCH
        sampled = [ctx for ctx in event_contexts if not _unsampled(ctx)]
        if not sampled:
            return _NO_BATCH
        attrs[ATTR_BATCH_SIZE] = len(event_contexts)
        return self._batch(name, sampled, kind, per_event, parent or EMPTY, attrs)

    @contextmanager
    def _batch(
        self,
        name: str,
        contexts: list[Context],
        kind: SpanKind,
        per_event: bool,
        parent: Context,
        attrs: dict[str, AttributeValue],
    ) -> Iterator[BatchSpan]:
        links = [Link(sc) for sc in map(_span_context, contexts) if sc.is_valid]
        start = time.time_ns()
        span = self.tracer.start_span(
            name, context=parent, kind=kind, links=links, attributes=attrs, start_time=start
        )
        batch = BatchSpan(span, trace.set_span_in_context(span, parent), dict(attrs))
        error: BaseException | None = None
        try:
            yield batch
        except BaseException as exc:
            error = exc
            _fail(span, exc)
            raise
        finally:
            end = time.time_ns()
            span.end(end_time=end)
            if per_event:
                link = [Link(span.get_span_context())]
                for ctx in contexts:
                    copy = self.tracer.start_span(
                        name, context=ctx, links=link, attributes=batch.attributes, start_time=start
                    )
                    if error is not None:
                        _fail(copy, error, record=False)
                    copy.end(end_time=end)

    def produce_span(
        self, topic: str, ctx: Context, *, key: bytes | None = None, partition: int | None = None
    ) -> AbstractContextManager[Produced]:
        """The PRODUCER ``publish <topic>`` span, child of ``ctx``; its ``headers`` carry it on."""
        if not self.enabled or _unsampled(ctx):
            return _Nothing(Produced(INVALID_SPAN, self.inject(ctx)))
        attrs: dict[str, AttributeValue] = {
            msg.MESSAGING_SYSTEM: KAFKA,
            msg.MESSAGING_OPERATION_TYPE: "publish",
            msg.MESSAGING_OPERATION_NAME: "send",
            msg.MESSAGING_DESTINATION_NAME: topic,
        }
        if partition is not None:
            attrs[msg.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
        _set_key(attrs, key)
        span = self.tracer.start_span(
            f"publish {topic}", context=ctx, kind=SpanKind.PRODUCER, attributes=attrs
        )
        return _Ends(span, Produced(span, prop.headers_for(span.get_span_context())))


def _span_context(ctx: Context) -> trace.SpanContext:
    return trace.get_current_span(ctx).get_span_context()


def _unsampled(ctx: Context) -> bool:
    """A valid span context not sampled: its children would not be recorded either."""
    sc = trace.get_current_span(ctx).get_span_context()
    return sc.is_valid and not sc.trace_flags.sampled


def _set_key(attrs: dict[str, AttributeValue], key: bytes | None) -> None:
    if key:  # semconv: a key with no canonical string form is left out
        with suppress(UnicodeDecodeError):
            attrs[msg.MESSAGING_KAFKA_MESSAGE_KEY] = key.decode()


def _fail(span: Span, error: BaseException, *, record: bool = True) -> None:
    if record:
        span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
