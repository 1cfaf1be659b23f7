"""Metrics: each method moves its series; exposition round trip; no global registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from streams.exposition import parse_exposition
from workers.telemetry.metrics import Metrics


def lab(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def scrape(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse_exposition(m.exposition().decode())


def test_counters_equal_what_was_sent_dead_lettered_and_produced(metrics: Metrics) -> None:
    for i in range(500):
        metrics.event_in("conversations.in")
        if i % 25 == 0:
            metrics.dead_letter("conversations.in", "bad_json" if i % 50 else "empty_text")
        else:
            metrics.event_out("conversations.out")
    metrics.event_out("analytics.events", 480)
    s = scrape(metrics)
    assert s[("inferstream_events_in_total", lab(topic="conversations.in"))] == 500
    assert s[("inferstream_events_out_total", lab(topic="conversations.out"))] == 480
    assert s[("inferstream_events_out_total", lab(topic="analytics.events"))] == 480
    dead = s[("inferstream_dead_letters_total", lab(topic="conversations.in", reason="bad_json"))]
    empty = s[
        ("inferstream_dead_letters_total", lab(topic="conversations.in", reason="empty_text"))
    ]
    assert (dead, empty) == (10, 10)


def test_histograms(metrics: Metrics) -> None:
    metrics.observe_e2e(0.04)
    metrics.observe_e2e(-1.0)  # a clock skew is clamped, not a negative latency
    metrics.observe_stage("inference", 0.012)
    with metrics.time_stage("decode"):
        pass
    metrics.observe_batch(24)
    metrics.observe_cost("acme", "openvino-fp32", 2e-6)
    s = scrape(metrics)
    assert s[("inferstream_e2e_latency_seconds_count", lab())] == 2
    assert s[("inferstream_e2e_latency_seconds_bucket", lab(le="0.05"))] == 2
    assert s[("inferstream_e2e_latency_seconds_sum", lab())] == pytest.approx(0.04)
    assert s[("inferstream_stage_latency_seconds_count", lab(stage="inference"))] == 1
    assert s[("inferstream_stage_latency_seconds_count", lab(stage="decode"))] == 1
    assert s[("inferstream_batch_size_bucket", lab(le="16.0"))] == 0
    assert s[("inferstream_batch_size_bucket", lab(le="32.0"))] == 1
    cost = lab(tenant="acme", backend="openvino-fp32")
    assert s[("inferstream_event_cost_usd_sum", cost)] == pytest.approx(2e-6)
    assert s[("inferstream_event_cost_usd_bucket", cost | {("le", "0.003")})] == 1


def test_gauges_and_decisions(metrics: Metrics) -> None:
    with metrics.inflight():
        assert scrape(metrics)[("inferstream_inflight_batches", lab())] == 1
    metrics.set_lag("conversations.in", 3, 120)
    metrics.set_lag("conversations.in", 1, -5)
    metrics.route("tensorrt-fp16", 8)
    metrics.route("openvino-fp32")
    metrics.set_route_available("gpu", False)
    metrics.filter_decision("mask")
    metrics.policy_denial("unknown_tenant")
    metrics.triton_error("unavailable")
    metrics.set_table_size("policies", 12)
    s = scrape(metrics)
    assert s[("inferstream_inflight_batches", lab())] == 0
    assert s[("inferstream_consumer_lag", lab(topic="conversations.in", partition="3"))] == 120
    assert s[("inferstream_consumer_lag", lab(topic="conversations.in", partition="1"))] == 0
    assert s[("inferstream_routed_events_total", lab(backend="tensorrt-fp16", device="gpu"))] == 8
    assert s[("inferstream_routed_events_total", lab(backend="openvino-fp32", device="cpu"))] == 1
    assert s[("inferstream_route_available", lab(device="gpu"))] == 0
    assert s[("inferstream_filter_decisions_total", lab(action="mask"))] == 1
    assert s[("inferstream_policy_denials_total", lab(reason="unknown_tenant"))] == 1
    assert s[("inferstream_triton_errors_total", lab(kind="unavailable"))] == 1
    assert s[("inferstream_table_entries", lab(table="policies"))] == 12
    metrics.clear_lag("conversations.in", 3)
    metrics.clear_lag("conversations.in", 9)  # never set: no error
    metrics.set_lag("conversations.in", 1, 4)
    s = scrape(metrics)
    assert ("inferstream_consumer_lag", lab(topic="conversations.in", partition="3")) not in s
    assert s[("inferstream_consumer_lag", lab(topic="conversations.in", partition="1"))] == 4


def test_registries_are_injected_not_global() -> None:
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.event_in("t")
    assert ("inferstream_events_in_total", lab(topic="t")) not in scrape(b)
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)


def test_sample_names(metrics: Metrics) -> None:
    names = metrics.sample_names()
    assert {"inferstream_events_in_total", "inferstream_e2e_latency_seconds_bucket"} <= names
    assert {"inferstream_consumer_lag", "inferstream_event_cost_usd_count"} <= names
    assert all(n.startswith("inferstream_") for n in names)
