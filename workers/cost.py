"""Compute cost per event, and the analytics record (topic ``analytics.events``).

Cost model: a backend's capacity is priced per hour (``gpu_usd_per_hour`` for a GPU,
``cpu_usd_per_hour`` for the CPU capacity that serves a model); one Triton batch call holds one unit
of that capacity for its wall time, and each event of the batch pays an equal share (or a share
by weight, e.g. its tokens: ``per_events``). The backend name decides the device: ``tensorrt-*``
runs on a GPU, ``openvino-*`` on CPUs; an unknown backend is priced at the higher of the two prices
so that a budget is never under-reported. The target is ``BUDGET_USD_PER_EVENT`` ($0.003 per call).

Schema ``inferstream.analytics/v1`` — one compact UTF-8 JSON object per processed event (orjson),
key = ``conversation_id``; no text, no scores; fields are never removed or renamed within v1 (new
optional fields may be added; readers ignore unknown fields)::

    schema           "inferstream.analytics/v1"
    event_id         str            the input event's id
    conversation_id  str
    trace_id         str | null     32 hex (W3C) of the event's trace
    tenant           str
    status           str            ok | denied | blocked | dead_letter
    label            str | null     the model's label (status ok)
    decisions        {policy: "allow"|"deny", policy_reason: str|null, policy_version: int|null,
                      filter: "pass"|"mask"|"block"|null}
    model            {name: str, version: str} | null
    backend          str | null     e.g. "openvino-fp32", "tensorrt-fp16"
    device           str | null     gpu | cpu | unknown
    batch            {size: int, inference_ms: float} | null
    latency_ms       {stage: float}  per stage: decode, context, policy, batch_wait, inference,
                                     filter, watermark, produce (those that ran), and end_to_end
    cost_usd         float          this event's compute cost (0.0 when no inference ran)
    source           {topic: str, partition: int, offset: int}
    worker           str            the worker that processed it
    event_ts         float          the event's own timestamp (epoch seconds)
    produced_at      float          when its result was produced (epoch seconds)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

ANALYTICS_SCHEMA = "inferstream.analytics/v1"
ANALYTICS_TOPIC = "analytics.events"
BUDGET_USD_PER_EVENT = 0.003
GPU_BACKENDS = ("tensorrt",)
CPU_BACKENDS = ("openvino",)
Device = Literal["gpu", "cpu", "unknown"]


def device_of(backend: str) -> Device:
    """``tensorrt-fp16`` → gpu, ``openvino-fp32`` → cpu, anything else → unknown."""
    family = backend.split("-", 1)[0].lower()
    if family in GPU_BACKENDS:
        return "gpu"
    if family in CPU_BACKENDS:
        return "cpu"
    return "unknown"


@dataclass(frozen=True, slots=True)
class CostModel:
    """Prices of capacity per hour (USD), from settings."""

    gpu_usd_per_hour: float
    cpu_usd_per_hour: float

    def __post_init__(self) -> None:
        if self.gpu_usd_per_hour < 0 or self.cpu_usd_per_hour < 0:
            raise ValueError("prices per hour must be >= 0")

    def usd_per_second(self, backend: str) -> float:
        device = device_of(backend)
        if device == "gpu":
            return self.gpu_usd_per_hour / 3600.0
        if device == "cpu":
            return self.cpu_usd_per_hour / 3600.0
        return max(self.gpu_usd_per_hour, self.cpu_usd_per_hour) / 3600.0

    def per_event(self, batch_seconds: float, batch_size: int, backend: str) -> float:
        """One event's equal share of a batch call that took ``batch_seconds`` on ``backend``."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return max(0.0, batch_seconds) * self.usd_per_second(backend) / batch_size

    def per_events(
        self, batch_seconds: float, weights: Sequence[float], backend: str
    ) -> list[float]:
        """Each event's share in proportion to its weight (e.g. tokens); equal if all weigh 0."""
        if not weights:
            return []
        total_usd = max(0.0, batch_seconds) * self.usd_per_second(backend)
        total_w = float(sum(max(0.0, w) for w in weights))
        if total_w <= 0.0:
            return [total_usd / len(weights)] * len(weights)
        return [total_usd * max(0.0, w) / total_w for w in weights]


def analytics_record(
    *,
    event_id: str,
    conversation_id: str,
    tenant: str,
    status: str,
    source_topic: str,
    partition: int,
    offset: int,
    worker: str,
    event_ts: float,
    produced_at: float,
    trace_id: str | None = None,
    label: str | None = None,
    policy: str = "allow",
    policy_reason: str | None = None,
    policy_version: int | None = None,
    filter_action: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    backend: str | None = None,
    batch_size: int | None = None,
    batch_inference_ms: float | None = None,
    latency_ms: Mapping[str, float] | None = None,
    cost_usd: float = 0.0,
) -> bytes:
    """One ``inferstream.analytics/v1`` record (see the module docstring), as JSON bytes."""
    record = {
        "schema": ANALYTICS_SCHEMA,
        "event_id": event_id,
        "conversation_id": conversation_id,
        "trace_id": trace_id or None,
        "tenant": tenant,
        "status": status,
        "label": label,
        "decisions": {
            "policy": policy,
            "policy_reason": policy_reason,
            "policy_version": policy_version,
            "filter": filter_action,
        },
        "model": None if model_name is None else {"name": model_name, "version": model_version},
        "backend": backend,
        "device": None if backend is None else device_of(backend),
        "batch": None
        if batch_size is None
        else {"size": batch_size, "inference_ms": _ms(batch_inference_ms or 0.0)},
        "latency_ms": {k: _ms(v) for k, v in (latency_ms or {}).items()},
        "cost_usd": cost_usd,
        "source": {"topic": source_topic, "partition": partition, "offset": offset},
        "worker": worker,
        "event_ts": event_ts,
        "produced_at": produced_at,
    }
    return orjson.dumps(record)


def _ms(value: float) -> float:
    return round(max(0.0, value), 3)
