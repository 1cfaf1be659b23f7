"""Events traced through the worker on the OpenTelemetry SDK, with W3C trace context in Kafka
headers. An event's trace: the producer's span (from ``traceparent``; none: a new trace) ─
``process <topic>`` (CONSUMER, messaging semconv) ─ the stages (``STAGES``) and ``publish <topic>``
(PRODUCER; its context goes into the output's headers). A batch step (one Triton call) is a span
in a trace of its own, linked to each sampled event's span; each of those events gets a copy
(same times and attributes, linked back). Contexts are passed explicitly (a batch interleaves
events); a stage, batch or publish span is the current span while open, so log lines carry its
ids. Off (``KafkaTracing()``), or for an event not sampled, no span is made and the event's
context still goes on to the output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from workers.telemetry.provider import INSTRUMENTATION

ATTR_MODEL_NAME, ATTR_MODEL_VERSION = "inferstream.model.name", "inferstream.model.version"
ATTR_BACKEND, ATTR_BATCH_SIZE = "inferstream.backend", "inferstream.batch.size"
STAGES = ("decode", "context", "policy", "batch_wait", "inference", "filter", "watermark")
Headers = Sequence[tuple[str, bytes | None]] | None  # aiokafka's record headers
OutHeaders = list[tuple[str, bytes]] | dict[str, bytes]
Attrs = dict[str, AttributeValue]


class KafkaHeaders(Getter[Headers], Setter[OutHeaders]):
    """Kafka headers for the propagator; names are matched without case."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        return [v.decode("latin-1") for k, v in carrier or () if v and k.lower() == key] or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier or ()]

    def set(self, carrier: OutHeaders, key: str, value: str) -> None:
        if isinstance(carrier, dict):
            carrier[key] = value.encode()
        else:
            carrier.append((key, value.encode()))


PROPAGATOR, HEADERS = TraceContextTextMapPropagator(), KafkaHeaders()
TRACEPARENT = "traceparent"


class EventSpan:
    """One event's ``process`` span (None: tracing off) and the context that its child spans and
    its output continue. ``end`` it once (again: nothing), failed by ``error`` if any."""

    __slots__ = ("context", "span")

    def __init__(self, span: Span | None, context: Context) -> None:
        self.span, self.context = span, context

    @property
    def recording(self) -> bool:
        return self.span is not None and self.span.is_recording()

    @property
    def ctx(self) -> SpanContext:
        return trace.get_current_span(self.context).get_span_context()

    def end(self, error: BaseException | None = None) -> None:
        if self.span is not None and self.span.is_recording():
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(_failed(error))
            self.span.end()


@dataclass(slots=True)
class Produced:
    ctx: SpanContext | None  # the publish span's (None: not recorded)
    headers: dict[str, bytes]  # traceparent, tracestate: for the output record


@dataclass(slots=True)
class BatchSpan:
    span: Span | None
    attributes: Attrs = field(default_factory=dict)

    def set(self, key: str, value: AttributeValue) -> None:
        """An attribute of the batch span and of its per-event copies."""
        if self.span is not None:  # the shared no-op keeps nothing
            self.attributes[key] = value
            self.span.set_attribute(key, value)


NOT_TRACED = EventSpan(None, Context())
_NO_SPAN: nullcontext[None] = nullcontext()
_NO_BATCH = nullcontext(BatchSpan(None))
_UNSET = Status(StatusCode.UNSET)


class KafkaTracing:
    """Span helpers for a Kafka consumer/producer over ``provider`` (default: off, no-op)."""

    def __init__(
        self, provider: trace.TracerProvider | None = None, *, consumer_group: str | None = None
    ) -> None:
        self.provider, self.consumer_group = provider, consumer_group
        self.tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None

    @staticmethod
    def extract(headers: Headers) -> Context:
        """The upstream context in W3C ``traceparent``/``tracestate`` headers (empty if none)."""
        if not headers or not any(k.lower() == TRACEPARENT for k, _ in headers):
            return Context()  # most records: skip the propagator's parsing
        return PROPAGATOR.extract(headers, Context(), HEADERS)

    @staticmethod
    def inject(context: Context) -> dict[str, bytes]:
        """The headers that continue ``context`` (none for an empty one)."""
        headers: dict[str, bytes] = {}
        PROPAGATOR.inject(headers, context, HEADERS)
        return headers

    @staticmethod
    def trace_id(ctx: SpanContext | Context) -> str:
        """The 32-hex trace id (for logs, envelopes, analytics); "" when none."""
        if isinstance(ctx, Context):
            ctx = trace.get_current_span(ctx).get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else ""

    def consume_span(
        self, topic: str, partition: int, offset: int, key: bytes | None,
        consumer_group: str | None = None, parent_ctx: Context | None = None,
    ) -> EventSpan:  # fmt: skip
        """Start the CONSUMER ``process <topic>`` span of one record, child of ``parent_ctx``."""
        parent = parent_ctx if parent_ctx is not None else Context()
        if self.tracer is None:
            return EventSpan(None, parent)  # the upstream context passes through
        attrs = _messaging("process", topic, partition, key)
        attrs[msg.MESSAGING_KAFKA_OFFSET] = offset
        if group := consumer_group or self.consumer_group:
            attrs[msg.MESSAGING_CONSUMER_GROUP_NAME] = group
        span = self.tracer.start_span(f"process {topic}", parent, SpanKind.CONSUMER, attrs)
        return EventSpan(span, trace.set_span_in_context(span, parent))

    def stage(
        self, name: str, event: EventSpan, **attrs: AttributeValue
    ) -> AbstractContextManager[object]:
        """A child span of ``event``'s around one stage; an exception fails it and propagates."""
        if self.tracer is None or not event.recording:
            return _NO_SPAN
        return _Open(self.tracer.start_span(name, event.context, attributes=attrs or None))

    def record(
        self, name: str, event: EventSpan, start_ns: int, end_ns: int, **attrs: AttributeValue
    ) -> None:
        """A finished child span of ``event``'s from ``start_ns`` to ``end_ns`` (``time_ns``)."""
        if self.tracer is not None and event.recording:
            span = self.tracer.start_span(name, event.context, start_time=start_ns)
            span.set_attributes(attrs)
            span.end(end_ns)

    def batch_span(
        self, name: str, events: Sequence[EventSpan], *, kind: SpanKind = SpanKind.INTERNAL,
        per_event: bool = True, parent: Context | None = None, **attrs: AttributeValue,
    ) -> AbstractContextManager[BatchSpan]:  # fmt: skip
        """One span over a batch step (a new trace unless ``parent``), linked to each sampled
        event's span; ``per_event``: each of those events also gets a copy, linked back."""
        tracer, sampled = self.tracer, [ev for ev in events if ev.recording]
        if tracer is None or not sampled:
            return _NO_BATCH
        attrs[ATTR_BATCH_SIZE] = len(events)
        start, links = time_ns(), [Link(ev.ctx) for ev in sampled]
        span = tracer.start_span(name, parent or Context(), kind, attrs, links, start)
        batch, back = BatchSpan(span, dict(attrs)), [Link(span.get_span_context())]

        def copies(end: int, status: Status) -> None:
            for ev in sampled if per_event else ():
                copy = tracer.start_span(
                    name, ev.context, attributes=batch.attributes, links=back, start_time=start
                )
                copy.set_status(status)
                copy.end(end)

        return _Open(span, batch, copies)

    def produce_span(self, topic: str, event: EventSpan, *, key: bytes | None = None,
                     partition: int | None = None) -> AbstractContextManager[Produced]:  # fmt: skip
        """The PRODUCER ``publish <topic>`` span, a child of ``event``'s; its ``headers`` carry it
        on (not recorded: they carry the event's context)."""
        if self.tracer is None or not event.recording:
            return nullcontext(Produced(None, self.inject(event.context)))
        attrs = _messaging("send", topic, partition, key)
        span = self.tracer.start_span(f"publish {topic}", event.context, SpanKind.PRODUCER, attrs)
        return _Open(span, Produced(span.get_span_context(), self.inject(_current(span))))


class _Open(AbstractContextManager[Any]):
    """A started span, the current one until exit, then ended (failed by an exception, which
    propagates) and handed to ``then``; ``__enter__`` returns ``value``."""

    __slots__ = ("context", "span", "then", "token", "value")

    def __init__(self, span: Span, value: object = None,
                 then: Callable[[int, Status], None] | None = None) -> None:  # fmt: skip
        self.span, self.value, self.then, self.context = span, value, then, _current(span)

    def __enter__(self) -> Any:
        self.token = attach(self.context)
        return self.value

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> None:
        detach(self.token)
        status, end = _UNSET, time_ns()
        if exc is not None:
            status = _failed(exc)
            self.span.record_exception(exc)
            self.span.set_status(status)
        self.span.end(end)
        if self.then is not None:
            self.then(end, status)


def _messaging(operation: str, topic: str, partition: int | None, key: bytes | None) -> Attrs:
    attrs: Attrs = {
        msg.MESSAGING_SYSTEM: "kafka", msg.MESSAGING_OPERATION_NAME: operation,
        msg.MESSAGING_OPERATION_TYPE: "process" if operation == "process" else "publish",
        msg.MESSAGING_DESTINATION_NAME: topic,
    }  # fmt: skip
    if partition is not None:
        attrs[msg.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    try:  # semconv: a key with no canonical string form is left out
        if key:
            attrs[msg.MESSAGING_KAFKA_MESSAGE_KEY] = key.decode()
    except UnicodeDecodeError:
        pass
    return attrs


def _current(span: Span) -> Context:
    return trace.set_span_in_context(span, Context())


def _failed(error: BaseException) -> Status:
    return Status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
