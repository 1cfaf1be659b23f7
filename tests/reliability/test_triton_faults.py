"""Triton stopped for 10 s mid-stream, and Triton slow (a delaying proxy): nothing is lost or
duplicated, nothing is dead-lettered (unavailable and deadline errors are retried), the lag
drains, and the worker's memory stays bounded while it waits (backpressure)."""

from __future__ import annotations

import time

import pytest

from streams import local
from streams.settings import Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io
from tests.reliability.grpc_proxy import TritonProxy
from tests.reliability.support import (
    RssSampler,
    allow_tenants,
    as_records,
    collect,
    output_records,
    valid_turns,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TENANTS = ("acme", "globex")
OUTAGE_S = 10.0
# Peak RSS growth allowed over the worker's RSS once it has served its first events: the input
# waiting during an outage must stay in Kafka, not pile up in the worker.
RSS_GROWTH_LIMIT_MIB = 150


def test_triton_outage_of_10s_loses_nothing_and_the_lag_drains(
    start_worker: WorkerFactory, services: Settings
) -> None:
    worker, settings = start_worker()
    pid = worker.pid()
    assert pid is not None
    allow_tenants(settings, TENANTS)
    warmup = valid_turns("warm", 50, TENANTS)
    first = valid_turns("pre", 600, TENANTS)
    during = valid_turns("during", 600, TENANTS)
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(warmup))
    wait_until(lambda: output_records(settings) >= len(warmup), 60)

    with RssSampler(pid) as rss:
        t0 = time.time()
        kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(first))
        wait_until(lambda: output_records(settings) >= len(warmup) + 100, 60, every_s=0.2)
        stopping = time.time()
        try:
            local.triton(services, "stop")
            stopped = time.time()
            kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(during))
            time.sleep(max(0.0, OUTAGE_S - (time.time() - stopped)))
        finally:
            local.triton(services, "start")
        ready = time.time()
        want = {e.event_id for e in warmup + first + during}
        out = collect(settings, want, timeout_s=120)
        lag_wait = wait_until(
            lambda: (
                kafka_io.group_lag(settings.bootstrap_servers, settings.app_id, settings.topic_in)
                == 0
            ),
            60,
        )
    ids = out.ids()
    missing = want - set(ids)
    doubled = {i: n for i, n in ids.items() if n > 1}
    growth_mib = (rss.peak_kib - rss.first_kib) / 1024
    first_after = out.first_produced_after(ready)
    print(
        f"\ntriton outage: {out.produced_between(t0, stopping)} results before the stop; stop "
        f"took {stopped - stopping:.1f}s; down {ready - stopped:.1f}s (restart included) with "
        f"{out.produced_between(stopping, ready)} results meanwhile; first result "
        f"{first_after if first_after is None else round(first_after, 1)}s after Triton was "
        f"ready, last {out.last_produced() - ready:.1f}s after; group lag 0 {lag_wait:.1f}s "
        f"after all results were read; {len(want)} events, missing {len(missing)}, duplicated "
        f"{len(doubled)}, dead letters {len(out.dead)}; {rss.describe()}, growth "
        f"{growth_mib:.0f} MiB"
    )
    assert not missing, sorted(missing)[:20]
    assert not doubled, sorted(doubled.items())[:20]
    assert not out.dead, out.dead[:3]
    assert worker.pid() == pid, worker.tail()
    assert growth_mib < RSS_GROWTH_LIMIT_MIB, rss.describe()


def test_slow_triton_loses_nothing(start_worker: WorkerFactory, triton_proxy: TritonProxy) -> None:
    """Every ModelInfer call delayed by 300 ms (below the 2 s deadline), then by 3 s (beyond it:
    calls time out and are retried) for 10 s, then no delay."""
    worker, settings = start_worker(
        INFERSTREAM_TRITON_URL=triton_proxy.endpoint, INFERSTREAM_INFERENCE_TIMEOUT_S="2"
    )
    pid = worker.pid()
    assert pid is not None
    allow_tenants(settings, TENANTS)
    slow = valid_turns("slow", 300, TENANTS)
    stalled = valid_turns("stalled", 300, TENANTS)

    with RssSampler(pid) as rss:
        triton_proxy.delay_s = 0.3
        t0 = time.time()
        kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(slow))
        first = collect(settings, {e.event_id for e in slow}, timeout_s=120, settle_s=0.5)
        slow_s = time.time() - t0
        inference_ms = sorted(r["latency_ms"]["inference"] for r in first.results)
        calls_slow = triton_proxy.infer_calls

        triton_proxy.delay_s = 3.0
        stalling = time.time()
        kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(stalled))
        time.sleep(10)
        triton_proxy.delay_s = 0.0
        released = time.time()
        want = {e.event_id for e in slow + stalled}
        out = collect(settings, want, timeout_s=120)
    ids = out.ids()
    missing = want - set(ids)
    doubled = {i: n for i, n in ids.items() if n > 1}
    p50 = inference_ms[len(inference_ms) // 2] if inference_ms else float("nan")
    print(
        f"\nslow triton: 300 events at +300 ms per call in {slow_s:.1f}s over {calls_slow} calls "
        f"(inference p50 {p50:.0f} ms, min {inference_ms[0] if inference_ms else 0:.0f} ms); at "
        f"+3 s per call (2 s deadline) {out.produced_between(stalling, released)} results in "
        f"10 s; after the delay went, all in {out.last_produced() - released:.1f}s; "
        f"{triton_proxy.infer_calls} calls in all; {len(want)} events, missing {len(missing)}, "
        f"duplicated {len(doubled)}, dead letters {len(out.dead)}; {rss.describe()}"
    )
    assert inference_ms and inference_ms[0] >= 300.0
    assert not missing, sorted(missing)[:20]
    assert not doubled, sorted(doubled.items())[:20]
    assert not out.dead, out.dead[:3]
    assert worker.pid() == pid, worker.tail()
