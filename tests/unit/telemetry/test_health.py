"""Liveness and readiness from named checks, with a fake clock."""

from __future__ import annotations

import json

from workers.telemetry.health import Health


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**kw: object) -> tuple[Health, Clock]:
    clock = Clock()
    return Health(clock=clock, wall_clock=lambda: 1_700_000_000.0, **kw), clock  # type: ignore[arg-type]


def test_ready_needs_every_check_ok_and_fresh() -> None:
    h, clock = make(max_age_s=30.0)
    ok, body = h.ready()
    assert not ok and body["checks"]["kafka"]["detail"] == "not reported yet"
    h.set("kafka", True, "assigned 4 partitions")
    h.set("triton", True, "minilm_cpu v1 ready")
    assert not h.ready()[0]  # tables not recovered yet
    h.set("tables", True, "recovered")
    ok, body = h.ready()
    assert ok and body["status"] == "ok"
    assert body["checks"]["triton"] == {
        "ok": True, "detail": "minilm_cpu v1 ready", "fresh": True, "age_s": 0.0,
        "updated_at": 1_700_000_000.0,
    }  # fmt: skip
    json.dumps(body)
    clock.now += 31.0  # kafka and triton went stale; tables never do
    ok, body = h.ready()
    assert not ok and not body["checks"]["kafka"]["fresh"] and body["checks"]["tables"]["fresh"]
    h.set("kafka", True)
    h.set("triton", False, "model not ready")
    ok, body = h.ready()
    assert not ok and body["checks"]["triton"]["detail"] == "model not ready"
    h.set("triton", True)
    h.set("extra", False, "informative only")  # not required: reported, does not block
    ok, body = h.ready()
    assert ok and body["checks"]["extra"]["ok"] is False


def test_live_unless_fatal_or_stalled() -> None:
    h, clock = make(stall_s=10.0)
    assert h.live()[0]
    h.beat()
    clock.now += 5.0
    ok, body = h.live()
    assert ok and body["last_beat_s"] == 5.0
    clock.now += 6.0
    ok, body = h.live()
    assert not ok and body["stalled"] is True
    h.beat()
    assert h.live()[0]
    for name in ("kafka", "triton", "tables"):
        h.set(name, True)
    h.fatal("signing key unreadable")
    ok, body = h.live()
    assert not ok and body["fatal"] == "signing key unreadable"
    assert not h.ready()[0]
    json.dumps(body)
