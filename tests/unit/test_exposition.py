"""Reading an exposition: quantiles from buckets, rates between scrapes, counter resets."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from streams.exposition import Scrape, mean, parse_exposition, quantile, rate, rates_by, window
from workers.telemetry.metrics import Metrics


def test_quantile_interpolates_like_promql() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.15)
    assert quantile(0.99, buckets) == pytest.approx(0.2 + 0.3 * 9 / 10)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1  # in +Inf: last bound
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.5, []) is None


def test_quantiles_of_a_real_histogram() -> None:
    m = Metrics(CollectorRegistry())
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        m.observe_e2e(ms / 1000.0)
    s = Scrape(parse_exposition(m.exposition().decode()), 0.0)
    buckets = s.buckets("inferstream_e2e_latency_seconds")
    assert quantile(0.5, buckets) == pytest.approx(0.5, abs=0.01)
    assert quantile(0.99, buckets) == pytest.approx(0.99, abs=0.01)


def scrape(at: float, **counts: float) -> Scrape:
    return Scrape(
        {("c_total", frozenset({("k", k)})): v for k, v in counts.items()}
        | {
            ("h_sum", frozenset()): counts.get("a", 0.0) * 2,
            ("h_count", frozenset()): counts.get("a", 0.0),
        },
        at,
    )


def test_rates_and_resets() -> None:
    before, now = scrape(10.0, a=100, b=5), scrape(12.0, a=300, b=2)
    assert rate(now, before, "c_total", k="a") == 100.0
    assert rate(now, None, "c_total") is None
    assert rates_by(now, before, "c_total", "k") == {"a": 100.0, "b": 1.0}  # b reset: from 0
    assert mean(now, before, "h") == 2.0
    assert mean(now, now, "h") == 2.0  # idle: the whole histogram
    assert window([(1.0, 5.0), (2.0, 9.0)], [(1.0, 2.0), (2.0, 3.0)]) == [(1.0, 3.0), (2.0, 6.0)]
    assert window([(1.0, 1.0)], [(1.0, 4.0)]) == [(1.0, 1.0)]  # reset
