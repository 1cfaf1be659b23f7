"""``inferstream experiment report NAME``: agreement, latency and error rates per model version,
with 95 % confidence intervals, from the ``experiments.events`` records of one experiment.

Records go out at least once, so the last record per event id counts. Intervals: Wilson's for
proportions (error rate, label agreement), the normal approximation for means (score delta,
entity F1), and the distribution-free order-statistic interval for percentiles (latency).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.experiments.guard import nearest_rank

Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None

    def show(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        if self.value is None:
            return "n/a"
        if self.low is None or self.high is None:
            return f"{self.value * scale:.{digits}f}{unit}"
        lo, hi = self.low * scale, self.high * scale
        return f"{self.value * scale:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def wilson(successes: int, n: int) -> Interval:
    if n == 0:
        return Interval(None, None, None)
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: list[float]) -> Interval:
    n = len(values)
    if n == 0:
        return Interval(None, None, None)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def quantile_interval(values: list[float], q: float) -> Interval:
    """The ``q`` quantile (0 < q < 1, nearest rank) with its order-statistic 95 % interval."""
    n = len(values)
    if n == 0:
        return Interval(None, None, None)
    xs = sorted(values)
    at = nearest_rank(n, q)
    spread = Z95 * math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(n * q - spread), math.ceil(n * q + spread) + 1
    if lo < 1 or hi > n:  # too few events for an interval at this quantile
        return Interval(xs[at - 1], None, None)
    return Interval(xs[at - 1], xs[lo - 1], xs[hi - 1])


@dataclass(frozen=True, slots=True)
class ArmReport:
    label: str  # "primary inferstream_cpu:1"
    events: int
    error_rate: Interval
    p50_ms: Interval
    p99_ms: Interval


@dataclass(frozen=True, slots=True)
class ShadowReport:
    label: str
    compared: int
    shed: int
    error_rate: Interval
    agreement: Interval
    score_delta: Interval
    entity_f1: Interval
    p50_ms: Interval
    p99_ms: Interval


@dataclass(frozen=True, slots=True)
class Report:
    experiment: str
    events: int
    duplicates: int
    versions: tuple[int, ...]
    arms: tuple[ArmReport, ...]
    shadows: tuple[ShadowReport, ...]

    def lines(self) -> list[str]:
        versions = ", ".join(str(v) for v in self.versions) or "none"
        out = [
            f"experiment {self.experiment}: {self.events} events (configuration versions "
            f"{versions}; {self.duplicates} repeated records ignored); 95 % intervals in []",
            "served arms:",
        ]
        for a in self.arms:
            out.append(
                f"  {a.label}: {a.events} events, errors {a.error_rate.show(100, 2, '%')}, "
                f"model p50 {a.p50_ms.show(unit=' ms')}, p99 {a.p99_ms.show(unit=' ms')}"
            )
        if self.shadows:
            out.append("shadows (against the served answer of the same event):")
        for s in self.shadows:
            out.append(
                f"  {s.label}: {s.compared} compared, {s.shed} shed, errors "
                f"{s.error_rate.show(100, 2, '%')}, label agreement "
                f"{s.agreement.show(100, 1, '%')}, score delta {s.score_delta.show(1, 4)}, "
                f"entity F1 {s.entity_f1.show(1, 3)}, model p50 {s.p50_ms.show(unit=' ms')}, "
                f"p99 {s.p99_ms.show(unit=' ms')}"
            )
        return out


def _label(outcome: Mapping[str, Any]) -> str:
    return f"{outcome.get('model')}:{outcome.get('version') or 'default'}"


def _latencies(outcomes: list[Mapping[str, Any]]) -> list[float]:
    return [float(o["inference_ms"]) for o in outcomes if o.get("inference_ms") is not None]


def build_report(experiment: str, records: Iterable[Mapping[str, Any]]) -> Report:
    """The report of ``experiment`` from decoded ``experiments.events`` records (any order of
    arrival; the last record of an event id counts)."""
    latest: dict[str, Mapping[str, Any]] = {}
    seen = 0
    for rec in records:
        if rec.get("experiment") != experiment or not isinstance(rec.get("event_id"), str):
            continue
        seen += 1
        latest[rec["event_id"]] = rec
    served: dict[str, list[Mapping[str, Any]]] = {}
    shadows: dict[str, list[Mapping[str, Any]]] = {}
    shed: dict[str, int] = {}
    for rec in latest.values():
        s = rec.get("served") or {}
        served.setdefault(f"{s.get('arm', '?')} {_label(s)}", []).append(s)
        for sh in rec.get("shadows") or []:
            shadows.setdefault(_label(sh), []).append(sh)
        for v in rec.get("shed") or []:
            shed[_label(v)] = shed.get(_label(v), 0) + 1
    arms = []
    for label, outs in sorted(served.items()):
        lat = _latencies(outs)
        errors = sum(1 for o in outs if o.get("error"))
        arms.append(
            ArmReport(
                label,
                len(outs),
                wilson(errors, len(outs)),
                quantile_interval(lat, 0.5),
                quantile_interval(lat, 0.99),
            )
        )
    shadow_reports = []
    for label in sorted(set(shadows) | set(shed)):
        outs = shadows.get(label, [])
        judged = [o for o in outs if o.get("agree") is not None]
        lat = _latencies(outs)
        shadow_reports.append(
            ShadowReport(
                label,
                len(outs),
                shed.get(label, 0),
                wilson(sum(1 for o in outs if o.get("error")), len(outs)),
                wilson(sum(1 for o in judged if o["agree"]), len(judged)),
                mean_interval([float(o["score_delta"]) for o in judged]),
                mean_interval([float(o["entity_f1"]) for o in judged]),
                quantile_interval(lat, 0.5),
                quantile_interval(lat, 0.99),
            )
        )
    versions = tuple(sorted({int(r.get("experiment_version", 0)) for r in latest.values()}))
    return Report(
        experiment,
        len(latest),
        seen - len(latest),
        versions,
        tuple(arms),
        tuple(shadow_reports),
    )
