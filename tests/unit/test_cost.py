"""Cost per event and the analytics record."""

from __future__ import annotations

import orjson
import pytest

from workers.cost import (
    ANALYTICS_SCHEMA,
    BUDGET_USD_PER_EVENT,
    CostModel,
    analytics_record,
    device_of,
)

MODEL = CostModel(gpu_usd_per_hour=3.6, cpu_usd_per_hour=0.36)


def test_device_of_backend() -> None:
    assert device_of("tensorrt-fp16") == "gpu"
    assert device_of("openvino-fp32") == "cpu"
    assert device_of("OpenVINO-int8") == "cpu"
    assert device_of("onnx-cuda") == "unknown"


def test_each_event_pays_its_share_of_the_batch() -> None:
    # $3.60/h = $0.001/s; a 0.5 s batch of 10 events on the GPU = $0.00005 each
    assert MODEL.per_event(0.5, 10, "tensorrt-fp16") == pytest.approx(5e-5)
    assert MODEL.per_event(0.5, 10, "openvino-fp32") == pytest.approx(5e-6)
    assert MODEL.per_event(0.5, 1, "mystery") == pytest.approx(5e-4)  # the higher price
    assert MODEL.per_event(-1.0, 4, "tensorrt-fp16") == 0.0
    total = sum(MODEL.per_events(0.5, [1, 3], "tensorrt-fp16"))
    assert total == pytest.approx(5e-4)
    assert MODEL.per_events(0.5, [1, 3], "tensorrt-fp16")[1] == pytest.approx(3.75e-4)
    assert MODEL.per_events(0.5, [0, 0], "tensorrt-fp16") == pytest.approx([2.5e-4, 2.5e-4])
    assert MODEL.per_events(0.5, [], "tensorrt-fp16") == []
    with pytest.raises(ValueError):
        MODEL.per_event(0.5, 0, "tensorrt-fp16")
    with pytest.raises(ValueError):
        CostModel(-1.0, 0.1)
    assert BUDGET_USD_PER_EVENT == 0.003


def test_analytics_record_is_versioned_and_compact() -> None:
    raw = analytics_record(
        event_id="e1",
        conversation_id="c1",
        tenant="acme",
        status="ok",
        source_topic="conversations.in",
        partition=2,
        offset=41,
        worker="w1",
        event_ts=1_700_000_000.0,
        produced_at=1_700_000_000.25,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        label="billing",
        policy_version=3,
        filter_action="mask",
        model_name="minilm_cpu",
        model_version="1",
        backend="openvino-fp32",
        batch_size=8,
        batch_inference_ms=12.34567,
        latency_ms={"decode": 0.1234, "inference": 12.34567, "end_to_end": 250.0},
        cost_usd=MODEL.per_event(0.01234567, 8, "openvino-fp32"),
    )
    rec = orjson.loads(raw)
    assert rec["schema"] == ANALYTICS_SCHEMA == "inferstream.analytics/v1"
    assert list(rec) == [
        "schema", "event_id", "conversation_id", "trace_id", "tenant", "status", "label",
        "decisions", "model", "backend", "device", "batch", "latency_ms", "cost_usd", "source",
        "worker", "event_ts", "produced_at",
    ]  # fmt: skip
    assert rec["decisions"] == {
        "policy": "allow", "policy_reason": None, "policy_version": 3, "filter": "mask",
    }  # fmt: skip
    assert rec["device"] == "cpu"
    assert rec["batch"] == {"size": 8, "inference_ms": 12.346}
    assert rec["latency_ms"] == {"decode": 0.123, "inference": 12.346, "end_to_end": 250.0}
    assert rec["cost_usd"] == pytest.approx(0.01234567 * 0.0001 / 8)
    assert rec["source"] == {"topic": "conversations.in", "partition": 2, "offset": 41}
    assert b"text" not in raw and len(raw) < 700


def test_analytics_record_of_a_denied_event() -> None:
    rec = orjson.loads(
        analytics_record(
            event_id="e2",
            conversation_id="c2",
            tenant="nobody",
            status="denied",
            source_topic="conversations.in",
            partition=0,
            offset=1,
            worker="w1",
            event_ts=1.0,
            produced_at=2.0,
            policy="deny",
            policy_reason="unknown_tenant",
        )
    )
    assert rec["model"] is None and rec["backend"] is None and rec["batch"] is None
    assert rec["trace_id"] is None and rec["cost_usd"] == 0.0
    assert rec["decisions"]["policy_reason"] == "unknown_tenant"
