"""Percentiles and the summary of one measured phase."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def dist(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of a sample (milliseconds in, milliseconds out), n as a float."""
    if not values:
        return {"n": 0.0}
    return {
        "n": float(len(values)),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "mean": round(sum(values) / len(values), 2),
        "max": round(max(values), 2),
    }


def steady_rate(times: Sequence[float], lo: float = 0.1, hi: float = 0.9) -> float:
    """Completions per second between the lo and hi quantiles of completion times: the drain
    rate of a backlog without its ramp-up and its tail."""
    if len(times) < 10:
        if len(times) < 2:
            return math.nan
        span = max(times) - min(times)
        return (len(times) - 1) / span if span > 0 else math.nan
    ordered = sorted(times)
    a, b = int(lo * (len(ordered) - 1)), int(hi * (len(ordered) - 1))
    span = ordered[b] - ordered[a]
    return (b - a) / span if span > 0 else math.nan


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)
