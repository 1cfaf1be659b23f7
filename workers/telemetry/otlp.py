"""OTLP trace encoding: ``SpanData`` straight to OTLP protobuf bytes (sent by ``otlp_export``).

The encoder writes the wire format of ``opentelemetry.proto`` 1.x (``ExportTraceServiceRequest``)
by hand: the SDK's encoder builds a protobuf object per span, attribute and id (~60 µs a span
here); in Python this one joins cached byte strings (~2-3 µs a span), and its hot path, an
event's spans (``Encoder.event``), is also written in C (``_otlp.c``: ~0.4 µs a span), which
writes the same bytes and hands back to Python what it does not handle (tests/unit/telemetry/
test_otlp_native.py). The output parses to the same message as the SDK's ``encode_spans`` of the
same spans (tests/unit/telemetry/test_otlp.py checks it field by field, for C and Python),
including the span flags that say whether the parent is remote.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import AttributeValue

from workers.telemetry.spans import Child, Shared, SpanData, TraceCtx, child_span, new_span_id

NativeEvent = Callable[[SpanData, Sequence[Child], Callable[[], int]], bytes | None]
_native_event: NativeEvent | None
try:  # the hot path in C (_otlp.c), built by `pip install -e .`; the same bytes, ~6x faster
    from workers.telemetry._otlp import event as _native_event
except ImportError:  # pragma: no cover - installed without a C compiler: Python does it all
    _native_event = None

NATIVE = _native_event is not None

HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200  # SpanFlags: the SDK always says whether it knows
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL = [bytes([i]) for i in range(128)]
_CACHE_LIMIT = 4096
_TIMES = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8), fixed64
# span flags (field 16, fixed32): whether the parent is remote, with and without a Status before
_FLAGS_LOCAL = b"\x85\x01" + HAS_IS_REMOTE.to_bytes(4, "little")
_FLAGS_REMOTE = b"\x85\x01" + (HAS_IS_REMOTE | IS_REMOTE).to_bytes(4, "little")
_UNSET_LOCAL, _UNSET_REMOTE = b"\x7a\x00" + _FLAGS_LOCAL, b"\x7a\x00" + _FLAGS_REMOTE


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` (one key byte, or two) then the length and bytes."""
    return tag + varint(len(payload)) + payload


def any_value(value: AttributeValue) -> bytes:
    """An ``AnyValue`` body, typed as the SDK's encoder types it (bool before int)."""
    if isinstance(value, str):
        return field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if isinstance(value, Sequence):  # ArrayValue { repeated AnyValue values = 1 }
        return field(b"\x2a", b"".join(field(b"\x0a", any_value(v)) for v in value))
    return field(b"\x0a", str(value).encode())


def key_value(key: str, value: AttributeValue) -> bytes:
    """A ``KeyValue`` body."""
    return field(b"\x0a", key.encode()) + field(b"\x12", any_value(value))


def _event(event: tuple[str, int, Mapping[str, AttributeValue]]) -> bytes:
    """A ``Span.events`` field."""
    name, at, attrs = event
    body = b"\x09" + _FIXED64(at) + field(b"\x12", name.encode())
    body += b"".join(field(b"\x1a", key_value(k, v)) for k, v in attrs.items())
    return field(b"\x5a", body)


def _status(status: tuple[int, str] | None, parent_remote: bool) -> bytes:
    """The ``Span.status`` field (the SDK always sends one, UNSET by default) and the span flags
    that follow it (whether the parent is remote)."""
    if status is None:
        return _UNSET_REMOTE if parent_remote else _UNSET_LOCAL
    code, message = status
    body = (field(b"\x12", message.encode()) if message else b"") + b"\x18" + varint(code)
    return field(b"\x7a", body) + (_FLAGS_REMOTE if parent_remote else _FLAGS_LOCAL)


def _link(link: TraceCtx) -> bytes:
    """A ``Span.links`` field (its flags say whether the linked span is remote)."""
    body = b"\x0a\x10" + link.trace_id.to_bytes(16, "big") + b"\x12\x08" + link.span_id.to_bytes(8)
    flags = HAS_IS_REMOTE | (IS_REMOTE if link.remote else 0)
    return field(b"\x6a", body + b"\x35" + flags.to_bytes(4, "little"))


class Encoder:
    """``SpanData`` → ``ExportTraceServiceRequest`` bytes for one resource and scope.

    ``native`` (default: when built): ``event`` and ``span`` go through the C encoder
    (``_otlp.c``), which writes the very bytes this class writes in Python and hands back what it
    does not handle (an exception event, an attribute value of another type) to the Python
    code."""

    def __init__(
        self,
        resource: Resource,
        scope_name: str,
        scope_version: str | None = None,
        *,
        native: bool = NATIVE,
    ):
        if native and _native_event is None:
            raise RuntimeError("the C OTLP encoder is not built (pip install -e .)")
        self._native = _native_event if native else None
        res = b"".join(field(b"\x0a", key_value(k, v)) for k, v in resource.attributes.items())
        self._resource = field(b"\x0a", res)  # ResourceSpans.resource
        self._schema = field(b"\x1a", resource.schema_url.encode()) if resource.schema_url else b""
        scope = field(b"\x0a", scope_name.encode())
        if scope_version:
            scope += field(b"\x12", scope_version.encode())
        self._scope = field(b"\x0a", scope)  # ScopeSpans.scope
        self._keys: dict[str, bytes] = {}  # KeyValue.key fields
        self._stage_heads: dict[str, bytes] = {}  # INTERNAL spans' name and kind fields
        self._shared: dict[int, tuple[Shared, bytes]] = {}
        self._heads: dict[tuple[str, int], bytes] = {}  # name and kind fields
        self._shared_links: object = None  # the last batch copy's links, and its encoded
        self._shared_bytes = b""  # attributes and links

    def request(self, spans: Sequence[SpanData]) -> bytes:
        return self.wrap([self.span(s) for s in spans])

    def wrap(self, encoded: Sequence[bytes]) -> bytes:
        """The request around spans already encoded by ``span``."""
        body = b"".join([self._scope, *encoded])
        resource_spans = self._resource + field(b"\x12", body) + self._schema
        return field(b"\x0a", resource_spans)

    def span(self, s: SpanData) -> bytes:
        """``ScopeSpans.spans`` entry (field 2) holding one ``Span``."""
        if self._native is not None:
            out = self._native(s, (), new_span_id)
            if out is not None:
                return out
        return self._span(s)

    def _span(self, s: SpanData) -> bytes:
        """``span`` in Python: constant pieces are cached and the common case is one join."""
        head = self._heads.get((s.name, s.kind))
        if head is None:
            head = self._head(s.name, s.kind)
        parts = [b"\x0a\x10", s.trace_id.to_bytes(16), b"\x12\x08", s.span_id.to_bytes(8)]
        if s.state:
            parts.append(field(b"\x1a", s.state.encode()))
        if s.parent_id:
            parts += (b"\x22\x08", s.parent_id.to_bytes(8))
        parts += (head, _TIMES(0x39, s.start, 0x41, s.end))
        if s.shared:
            parts.append(self.shared(s.shared))
        if s.attributes:
            attr = self.attribute
            parts += [attr(k, v) for k, v in s.attributes.items()]
        if s.events:
            parts += map(_event, s.events)
        if s.links:
            parts += map(_link, s.links)
        parts.append(_status(s.status, s.parent_remote))
        body = b"".join(parts)
        return b"\x12" + varint(len(body)) + body

    def event(self, span: SpanData, children: Sequence[Child]) -> bytes:
        """An event's span and its ``children`` (child spans of it), as consecutive
        ``ScopeSpans.spans`` entries: children first, in order, then the event's span. The
        pieces every child shares (trace id, tracestate, parent id) are made once, and the
        common child (a stage: no attributes, links or error) is one join."""
        if self._native is not None:
            encoded = self._native(span, children, new_span_id)
            if encoded is not None:
                return encoded
        out = []
        if children:
            state = field(b"\x1a", span.state.encode()) if span.state else b""
            trace = b"\x0a\x10" + span.trace_id.to_bytes(16) + b"\x12\x08"  # ... its span id
            under = state + b"\x22\x08" + span.span_id.to_bytes(8)
            heads, times, unset = self._stage_heads, _TIMES, _UNSET_LOCAL
            for c in children:
                name, kind, start, end, shared, attrs, links, error, span_id = c
                if kind or error is not None or links is not None or shared is not None or attrs:
                    out.append(self._child(c, span, trace, under))
                    continue
                head = heads.get(name)
                if head is None:
                    head = self._head(name, kind)
                body = b"".join((
                    trace, (span_id or new_span_id()).to_bytes(8), under, head,
                    times(0x39, start, 0x41, end), unset,
                ))  # fmt: skip
                n = len(body)
                out.append((b"\x12" + _SMALL[n] if n < 128 else b"\x12" + varint(n)) + body)
        out.append(self._span(span))
        return b"".join(out)

    def _child(self, c: Child, parent: SpanData, trace: bytes, under: bytes) -> bytes:
        name, kind, start, end, shared, attrs, links, error, span_id = c
        if error is not None and not isinstance(error, tuple):  # rare: an exception event
            return self._span(child_span(parent.context(), c))
        head = self._heads.get((name, kind))
        if head is None:
            head = self._head(name, kind)
        parts = [
            trace, (span_id or new_span_id()).to_bytes(8), under, head,
            _TIMES(0x39, start, 0x41, end),
        ]  # fmt: skip
        if shared:
            parts.append(self.shared(shared))
        if links is not None and links is self._shared_links:  # the batch's copies share these
            parts.append(self._shared_bytes)
        elif attrs or links:
            attr = self.attribute
            tail = b"".join([attr(k, v) for k, v in attrs.items()]) if attrs else b""
            if links:  # a batch step's copy: its other events' copies have the same tail
                tail += b"".join(map(_link, links))
                self._shared_links, self._shared_bytes = links, tail
            parts.append(tail)
        parts.append(_status(error, False))
        body = b"".join(parts)
        return b"\x12" + varint(len(body)) + body

    def _head(self, name: str, kind: int) -> bytes:
        """A span's name and kind fields (cached)."""
        head = field(b"\x2a", name.encode()) + b"\x30" + varint(kind + 1)
        if len(self._heads) < _CACHE_LIMIT:
            self._heads[(name, kind)] = head
            if kind == 0:  # INTERNAL: a stage's, looked up by name alone
                self._stage_heads[name] = head
        return head

    def shared(self, attrs: Shared) -> bytes:
        """``Span.attributes`` fields for attributes many spans share, encoded once."""
        entry = self._shared.get(id(attrs))
        if entry is not None and entry[0] is attrs:
            return entry[1]
        attr = self.attribute
        encoded = b"".join([attr(k, v) for k, v in attrs.items()])
        if len(self._shared) < _CACHE_LIMIT:
            self._shared[id(attrs)] = (attrs, encoded)  # held: its id is not reused
        return encoded

    def attribute(self, key: str, value: AttributeValue) -> bytes:
        """A ``Span.attributes`` field. Values are encoded each time (what repeats is in
        ``Shared`` attributes, encoded once); the key's field is cached."""
        head = self._keys.get(key)
        if head is None:
            head = field(b"\x0a", key.encode())
            if len(self._keys) < _CACHE_LIMIT:
                self._keys[key] = head
        kind = type(value)
        if kind is str:  # e.g. a message key: seldom the same twice
            raw = value.encode()  # type: ignore[union-attr]
            n = len(raw)
            any_value_body = (b"\x0a" + _SMALL[n] if n < 128 else b"\x0a" + varint(n)) + raw
        elif kind is int:  # an offset, a size
            any_value_body = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)  # type: ignore[operator]
        else:
            any_value_body = any_value(value)
        n = len(any_value_body)
        body = head + (b"\x12" + _SMALL[n] if n < 128 else b"\x12" + varint(n)) + any_value_body
        n = len(body)
        return (b"\x4a" + _SMALL[n] if n < 128 else b"\x4a" + varint(n)) + body
