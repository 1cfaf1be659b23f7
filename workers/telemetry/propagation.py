"""W3C trace context (``traceparent``, ``tracestate``) in Kafka record headers.

Kafka headers arrive as ``[(name, bytes)]`` (aiokafka) or a mapping; names are matched without
case. A context that records nothing (tracing off, or a parent not sampled) holds the two headers
as they came and puts them back on the output unchanged, so downstream consumers still continue
the producer's trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from workers.telemetry.spans import EMPTY, TraceCtx

Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None

TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$")


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


def context_from(traceparent: str | None, tracestate: str | None) -> TraceCtx:
    """The remote parent a (valid) ``traceparent`` names, holding both headers as consumed;
    ``EMPTY`` when there is none or it is invalid (all-zero ids, version ff, version 00 with
    more than four fields)."""
    if traceparent is None:
        return EMPTY
    parts = traceparent.split("-")
    version, trace_hex, span_hex, flags = parts[:4]
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if version == "ff" or (version == "00" and len(parts) > 4) or not trace_id or not span_id:
        return EMPTY
    return TraceCtx(
        trace_id, span_id, bool(int(flags, 16) & 1), tracestate or "", True,
        (traceparent, tracestate),
    )  # fmt: skip


def held_headers(held: tuple[str, str | None]) -> dict[str, bytes]:
    traceparent, tracestate = held
    out = {"traceparent": traceparent.encode()}
    if tracestate:
        out["tracestate"] = tracestate.encode()
    return out


def headers_for(ctx: TraceCtx) -> dict[str, bytes]:
    """The headers that continue ``ctx`` (what ``TraceContextTextMapPropagator`` writes)."""
    if not ctx.valid:
        return {}
    flags = "01" if ctx.sampled else "00"
    out = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags}".encode()}
    if ctx.state:
        out["tracestate"] = ctx.state.encode()
    return out
