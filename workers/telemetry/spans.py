"""Spans as plain records, and the pipeline that takes finished ones off the event path.

Why not the SDK's ``Span``: on this 2-core machine the OpenTelemetry Python SDK spent ~57 µs to
create and end one span and its OTLP encoder ~60 µs to encode it; an event has nine spans, so
tracing every event cost ~1.1 ms of CPU per event (bench/tracing.py). Here an event's span is
one slotted object (``SpanData``: ids, name, kind, times, attributes, links, status, events) and
its child spans are ``Child`` tuples, kept on the event until it ends. The whole event then goes
to a ``SpanPipeline`` as one item (``end_event``), is turned into what its ``Sink`` queues (OTLP
bytes for all of its spans at once, ``otlp_export.OtlpSink``; or ``SpanData`` records converted
to the SDK's ``ReadableSpan`` for any SDK ``SpanExporter``, ``provider.SdkSink``: console,
in-memory),
and a background thread exports the queue in batches. Spans outside any event (a batch step's
own span) go one by one (``end``). The meanings are the SDK's: parent-based sampling with the
SDK's trace-id ratio bound, W3C ids, the SDK's status codes and span kinds.

The queue is bounded: when the exporter falls behind, new spans are dropped and counted
(``dropped``, and ``on_drop``), never buffered without limit and never waited for on the event
path. Exported spans are counted too (``exported``, ``on_export``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

Attributes = dict[str, AttributeValue]
TRACE_ID_LIMIT = (1 << 64) - 1  # TraceIdRatioBased compares the low 64 bits to its bound
INTERNAL, CLIENT, PRODUCER, CONSUMER = (
    SpanKind.INTERNAL.value, SpanKind.CLIENT.value, SpanKind.PRODUCER.value,
    SpanKind.CONSUMER.value,
)  # fmt: skip
ERROR = StatusCode.ERROR.value


@dataclass(slots=True)
class TraceCtx:
    """Where an event is in its trace: the span that new spans hang from (W3C fields). A value:
    never changed once made (not ``frozen``: that makes each one ~2.5x dearer to build).

    ``trace_id == 0``: no trace. ``held``: the ``traceparent``/``tracestate`` headers exactly as
    consumed, for a context that records nothing (tracing off, or a parent not sampled), so they
    pass through to the output unchanged."""

    trace_id: int = 0
    span_id: int = 0
    sampled: bool = False
    state: str = ""  # the W3C tracestate header, passed on unchanged
    remote: bool = False  # the span is upstream (from a header), not ours
    held: tuple[str, str | None] | None = None

    @property
    def valid(self) -> bool:
        return self.trace_id != 0 and self.span_id != 0

    @property
    def recording(self) -> bool:
        """Spans made under this context are kept (a valid, sampled parent)."""
        return self.sampled and self.trace_id != 0


EMPTY = TraceCtx()


class SpanData:
    """One span: made started, ``finish``ed once, then read by a sink. Ids are ints (W3C)."""

    __slots__ = (
        "attributes", "end", "events", "kind", "links", "name", "parent_id", "parent_remote",
        "shared", "span_id", "start", "state", "status", "trace_id",
    )  # fmt: skip

    def __init__(
        self,
        parent: TraceCtx,
        name: str,
        kind: int = INTERNAL,
        start: int | None = None,
        attributes: Attributes | None = None,
        links: list[TraceCtx] | None = None,
        shared: Shared | None = None,
    ) -> None:
        self.trace_id = parent.trace_id
        self.span_id = _bits(64) or new_span_id()
        self.parent_id = parent.span_id
        self.parent_remote = parent.remote
        self.state = parent.state
        self.name = name
        self.kind = kind
        self.start = time.time_ns() if start is None else start
        self.end = 0
        self.attributes = attributes
        self.shared = shared  # attributes before ``attributes``, the same for many spans
        self.links = links
        self.status: tuple[int, str] | None = None  # (StatusCode value, description); None: unset
        self.events: list[tuple[str, int, Attributes]] | None = None  # (name, time, attributes)

    def all_attributes(self) -> Attributes:
        """``shared`` then ``attributes``, in one dict."""
        return {**(self.shared or {}), **(self.attributes or {})}

    def context(self) -> TraceCtx:
        """The context that makes this span the parent of the next ones."""
        return TraceCtx(self.trace_id, self.span_id, True, self.state)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def fail(self, error: BaseException | Status, *, record: bool = True) -> None:
        """Status ERROR; with ``record``, an ``exception`` event as the SDK's record_exception.
        ``error`` may be a ready ``Status`` (no event)."""
        if isinstance(error, tuple):
            self.status = error
            return
        self.status = error_status(error)
        if record:
            stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            event: Attributes = {
                "exception.type": type(error).__qualname__,
                "exception.message": str(error),
                "exception.stacktrace": stack,
                "exception.escaped": "False",
            }
            self.events = [*(self.events or ()), ("exception", time.time_ns(), event)]


Status = tuple[int, str]  # (StatusCode value, description)
# A finished child of an event's span, kept as a tuple until the event ends (a tuple is ~10x
# cheaper to make than a SpanData): name, kind, start, end, shared attributes, attributes,
# links, error (an exception: status and exception event; a Status: status only), span id (0:
# not chosen yet).
Child = tuple[
    str, int, int, int, "Shared | None", Attributes | None, list[TraceCtx] | None,
    BaseException | Status | None, int,
]  # fmt: skip


class Shared(dict[str, AttributeValue]):
    """Attributes that many spans share (a topic's messaging attributes): never changed once
    made, so an exporter may encode them once and reuse the bytes (by identity)."""

    __slots__ = ()


def error_status(error: BaseException) -> Status:
    return (ERROR, f"{type(error).__name__}: {error}")


def child_span(parent: TraceCtx, child: Child) -> SpanData:
    """The ``SpanData`` a ``Child`` of ``parent`` stands for."""
    name, kind, start, end, shared, attributes, links, error, span_id = child
    span = SpanData(parent, name, kind, start, attributes, links, shared)
    if span_id:
        span.span_id = span_id
    span.end = end
    if error is not None:
        span.fail(error)
    return span


_bits = random.getrandbits


def new_span_id() -> int:
    span_id = random.getrandbits(64)
    while not span_id:  # pragma: no cover - one in 2**64
        span_id = random.getrandbits(64)
    return span_id


def new_trace_id() -> int:
    trace_id = random.getrandbits(128)
    while not trace_id & TRACE_ID_LIMIT:  # pragma: no cover - all-zero low half
        trace_id = random.getrandbits(128)
    return trace_id


class Sink(Protocol):
    """Where finished spans go. ``prepare`` turns one span, and ``prepare_event`` an event's span
    with its children, into what is queued (on the thread that ends them: an encoder's bytes, or
    the spans themselves); ``export`` takes a batch of those (on the pipeline's thread)."""

    def prepare(self, span: SpanData) -> Any: ...

    def prepare_event(self, span: SpanData, children: Sequence[Child]) -> Any: ...

    def export(self, items: Sequence[Any]) -> bool: ...

    def shutdown(self) -> None: ...


class SpanPipeline:
    """Samples new traces, queues finished spans and exports them in batches off the event path.

    ``sample_ratio``: the share of new traces kept (the SDK's ``TraceIdRatioBased`` bound; a
    parent's decision is always followed). ``synchronous``: export as spans end, in the caller's
    thread (tests). Otherwise a daemon thread exports when ``max_batch`` spans wait or every
    ``delay_s``; at most ``max_queue`` spans wait, newer ones are dropped and counted. An event's
    spans travel as one queue item (``end_event``): one hand-over per event, not per span. A sink
    with ``max_request_bytes`` (its items are bytes) gets batches of at most about that size.

    Few, large exports: each export costs the worker far more than its bytes (a gRPC or HTTP
    call from a second thread, GIL hand-overs with the event loop): on a live worker, exporting
    every 512 spans (5 calls a second at full sampling) cost ~0.2 ms of CPU per event, once a
    second ~0.05 ms (docs/benchmarks.md). Hence 4,096 spans a batch and 16,384 queued (the SDK's
    defaults, 512 and 2,048, would drop spans at this worker's rate)."""

    def __init__(
        self,
        sink: Sink,
        *,
        sample_ratio: float = 1.0,
        synchronous: bool = False,
        max_queue: int = 16384,
        max_batch: int = 4096,
        delay_s: float = 1.0,
        on_drop: Callable[[int], None] | None = None,
        on_export: Callable[[int], None] | None = None,
    ) -> None:
        if not 0 < max_batch <= max_queue or delay_s <= 0:
            raise ValueError(
                f"span pipeline: need 0 < max_batch ({max_batch}) <= max_queue ({max_queue}) "
                f"and delay_s ({delay_s}) > 0"
            )
        self.sink = sink
        self.sample_ratio = sample_ratio
        self._bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        self.synchronous = synchronous
        self.max_queue, self.max_batch, self.delay_s = max_queue, max_batch, delay_s
        self.on_drop, self.on_export = on_drop, on_export
        self.dropped = self.exported = 0
        self._room = 0 if synchronous else max_queue  # spans the queue takes; 0 once closed
        self._prepare, self._prepare_event = sink.prepare, sink.prepare_event
        self._queue: deque[tuple[int, Any]] = deque()  # (spans in it, item)
        self._max_bytes: int | None = getattr(sink, "max_request_bytes", None)
        self._waiting = 0  # spans in the queue
        self._lock = threading.Lock()  # the queue and its count
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        if not synchronous:
            self._thread = threading.Thread(target=self._run, name="inferstream-spans", daemon=True)
            self._thread.start()

    def sampled(self, trace_id: int) -> bool:
        """Whether a new trace with this id is kept (what ``TraceIdRatioBased`` decides)."""
        return trace_id & TRACE_ID_LIMIT < self._bound

    def add(self, span: SpanData) -> None:
        """A finished span (the event path: no wait)."""
        self._put(1, self._prepare, span)

    def end(
        self,
        span: SpanData,
        error: BaseException | None = None,
        *,
        at: int | None = None,
        record: bool = True,
    ) -> None:
        """End ``span`` now (or ``at``), failed by ``error`` if any (``record``: with its
        exception event), and ``add`` it."""
        span.end = time.time_ns() if at is None else at
        if error is not None:
            span.fail(error, record=record)
        self.add(span)

    def end_event(
        self, span: SpanData, children: Sequence[Child], error: BaseException | None = None
    ) -> None:
        """End an event's ``span`` now, failed by ``error`` if any, and add it with its
        finished ``children`` (child spans of it) as one item."""
        span.end = time.time_ns()
        if error is not None:
            span.fail(error)
        self._put(len(children) + 1, self._prepare_event, span, children)

    def _put(self, n: int, prepare: Callable[..., Any], *args: Any) -> None:
        """Queue ``prepare(*args)``, ``n`` spans, if they fit (else drop and count them)."""
        with self._lock:
            waiting = self._waiting
            room = waiting + n <= self._room
            if room:
                self._waiting = waiting + n
        direct = not room and self.synchronous and not self._closed
        if not room and not direct:  # full, or shut down
            self._drop(n)
            return
        try:
            item = prepare(*args)
        except Exception:  # a sink bug loses these spans, never the event
            log.exception("span encoding failed")
            if room:
                with self._lock:
                    self._waiting -= n
            self._drop(n)
            return
        if direct:
            self._export([item], n)
            return
        self._queue.append((n, item))
        if waiting < self.max_batch <= waiting + n:
            self._wake.set()

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export every queued span; True when done within ``timeout_s``."""
        if self._thread is None or not self._thread.is_alive():
            return not self._queue
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Flush, stop the thread, shut the sink down; spans added later are dropped."""
        if self._closed:
            return
        self.force_flush(timeout_s)
        self._closed, self._room = True, 0
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.sink.shutdown()

    def _run(self) -> None:
        queue, wake = self._queue, self._wake
        while True:
            wake.wait(self.delay_s)
            wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
            max_bytes = self._max_bytes
            while queue:
                batch, n, size = [], 0, 0
                while queue and n < self.max_batch and (max_bytes is None or size < max_bytes):
                    spans, item = queue.popleft()
                    batch.append(item)
                    n += spans
                    if max_bytes is not None:
                        size += len(item)
                with self._lock:
                    self._waiting -= n
                self._export(batch, n)
            for done in flushes:
                done.set()
            if self._closed and not queue:
                return

    def _export(self, items: list[Any], n: int) -> None:
        try:
            ok = self.sink.export(items)
        except Exception:  # a sink bug must not stop tracing (nor the worker)
            log.exception("span export failed")
            ok = False
        if ok:
            self.exported += n
            if self.on_export is not None:
                self.on_export(n)
        else:
            self._drop(n)

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.on_drop is not None:
            self.on_drop(n)
