"""W3C trace context (``traceparent``, ``tracestate``) in Kafka record headers.

Kafka headers arrive as ``[(name, bytes)]`` (aiokafka) or a mapping; names are matched without
case. With tracing off the two headers are kept as they came (a "pass-through" context) and put
back on the output unchanged, so downstream consumers still continue the producer's trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None

TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$")
_PASSTHROUGH = "inferstream.passthrough-trace-headers"  # a Context key, tracing off only
EMPTY = Context()


def trace_headers(headers: Headers) -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` from Kafka headers; a malformed traceparent reads as None."""
    if not headers:
        return None, None
    items: Iterable[tuple[str, bytes]]
    if isinstance(headers, list | tuple):  # aiokafka's shape first: the ABC check is slower
        items = headers
    else:
        items = headers.items() if isinstance(headers, Mapping) else headers
    traceparent = tracestate = None
    for name, value in items:
        low = name.lower()
        if low == "traceparent" or low == "tracestate":
            text = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
            if low == "traceparent":
                traceparent = text.strip()
            else:
                tracestate = text.strip()
    if traceparent is not None and not TRACEPARENT_RE.match(traceparent):
        traceparent = None
    return traceparent, tracestate


def passthrough_context(traceparent: str, tracestate: str | None) -> Context:
    return Context({_PASSTHROUGH: (traceparent, tracestate)})


def passthrough(ctx: Context) -> tuple[str, str | None] | None:
    """The headers a pass-through context holds, or None."""
    return cast(tuple[str, str | None] | None, ctx.get(_PASSTHROUGH))


def passthrough_headers(held: tuple[str, str | None]) -> dict[str, bytes]:
    traceparent, tracestate = held
    out = {"traceparent": traceparent.encode()}
    if tracestate:
        out["tracestate"] = tracestate.encode()
    return out


def headers_for(sc: SpanContext) -> dict[str, bytes]:
    """The headers that continue ``sc`` (what ``TraceContextTextMapPropagator`` writes)."""
    if not sc.is_valid:
        return {}
    out = {"traceparent": f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}".encode()}
    state = sc.trace_state.to_header() if sc.trace_state else ""
    if state:
        out["tracestate"] = state.encode()
    return out
