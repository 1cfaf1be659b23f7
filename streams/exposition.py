"""Reading a Prometheus text exposition: parse, sum series, rates between two scrapes, and
quantiles from histogram buckets (the same interpolation as PromQL's ``histogram_quantile``).
Used by tests and by ``inferstream top``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]
Buckets = list[tuple[float, float]]  # (upper bound "le", cumulative count), sorted by bound


def parse_exposition(text: str) -> dict[Series, float]:
    """``{(sample name, frozenset(labels)): value}`` of a text exposition."""
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape: its samples and when it was taken (monotonic seconds)."""

    samples: Mapping[Series, float]
    at: float

    def total(self, name: str, **match: str) -> float:
        """Sum of ``name``'s series whose labels include ``match``."""
        want = set(match.items())
        return sum(v for (n, labels), v in self.samples.items() if n == name and want <= labels)

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """``name`` summed by the value of ``label`` (series without it are left out)."""
        want = set(match.items())
        out: dict[str, float] = defaultdict(float)
        for (n, labels), v in self.samples.items():
            if n == name and want <= labels:
                value = dict(labels).get(label)
                if value is not None:
                    out[value] += v
        return dict(out)

    def buckets(self, histogram: str, **match: str) -> Buckets:
        """Cumulative bucket counts of ``histogram`` (summed over other labels), by bound."""
        sums = self.by(f"{histogram}_bucket", "le", **match)
        return sorted((float(le), count) for le, count in sums.items())


def rate(now: Scrape, before: Scrape | None, name: str, **match: str) -> float | None:
    """Per-second increase of a counter between two scrapes (a reset counts from zero)."""
    if before is None or now.at <= before.at:
        return None
    a, b = before.total(name, **match), now.total(name, **match)
    return (b - a if b >= a else b) / (now.at - before.at)


def rates_by(
    now: Scrape, before: Scrape | None, name: str, label: str, **match: str
) -> dict[str, float]:
    if before is None or now.at <= before.at:
        return {}
    a, b = before.by(name, label, **match), now.by(name, label, **match)
    dt = now.at - before.at
    return {k: (v - a.get(k, 0.0) if v >= a.get(k, 0.0) else v) / dt for k, v in b.items()}


def window(now: Buckets, before: Buckets | None) -> Buckets:
    """The buckets of the observations made between two scrapes (all of them if no earlier)."""
    if not before:
        return now
    prev = dict(before)
    diff = [(le, count - prev.get(le, 0.0)) for le, count in now]
    return now if any(c < 0 for _, c in diff) else diff  # reset: the whole current histogram


def quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``buckets``; None without observations."""
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):  # beyond the last finite bound: report that bound
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def mean(now: Scrape, before: Scrape | None, histogram: str, **match: str) -> float | None:
    """Mean of the observations between two scrapes (all of them without an earlier one)."""
    s, c = now.total(f"{histogram}_sum", **match), now.total(f"{histogram}_count", **match)
    if before is not None:
        s0, c0 = (
            before.total(f"{histogram}_sum", **match),
            before.total(f"{histogram}_count", **match),
        )
        if c > c0:  # else: idle (or reset) since the last scrape: the whole histogram
            s, c = s - s0, c - c0
    return s / c if c > 0 else None
