import math
import random
from typing import Any

import orjson
import pytest

from workers.experiments.compare import Outcome, event_record
from workers.experiments.config import Arm, Experiment, Variant
from workers.experiments.report import (
    Z95,
    Interval,
    build_report,
    mean_interval,
    quantile_interval,
    wilson,
)

# --- Wilson -----------------------------------------------------------------------------------


def test_wilson_of_nothing_is_unknown() -> None:
    assert wilson(0, 0) == Interval(None, None, None)


@pytest.mark.parametrize(
    ("k", "n", "value", "low", "high"),
    [
        (0, 10, 0.0, 0.0, 0.2775),  # z² / (n + z²) = 3.8415 / 13.8415
        (5, 10, 0.5, 0.2366, 0.7634),
        (10, 10, 1.0, 0.7225, 1.0),
        (1, 1, 1.0, 0.2065, 1.0),
        (81, 263, 0.3080, 0.2553, 0.3662),
    ],
)
def test_wilson_known_values(k: int, n: int, value: float, low: float, high: float) -> None:
    got = wilson(k, n)
    assert got.value == pytest.approx(value, abs=1e-4)
    assert got.low == pytest.approx(low, abs=1e-4)
    assert got.high == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (3, 20), (37, 100), (999, 1000), (2, 5000)])
def test_wilson_bounds_solve_the_score_equation(k: int, n: int) -> None:
    """The Wilson bounds are the two roots π of (p - π)² = z² π (1 - π) / n."""
    got = wilson(k, n)
    p = k / n
    assert got.low is not None and got.high is not None
    assert 0.0 <= got.low < p < got.high <= 1.0
    for pi in (got.low, got.high):
        assert (p - pi) ** 2 == pytest.approx(Z95**2 * pi * (1 - pi) / n, rel=1e-9)


def test_wilson_narrows_with_more_events() -> None:
    widths = []
    for n in (10, 100, 1000, 10000):
        got = wilson(n // 10, n)
        assert got.low is not None and got.high is not None
        widths.append(got.high - got.low)
    assert widths == sorted(widths, reverse=True)


# --- means ------------------------------------------------------------------------------------


def test_mean_interval() -> None:
    assert mean_interval([]) == Interval(None, None, None)
    assert mean_interval([0.25]) == Interval(0.25, None, None)
    got = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = Z95 * math.sqrt(2.5) / math.sqrt(5)  # sample sd = sqrt(2.5)
    assert got.value == 3.0
    assert got.low == pytest.approx(3.0 - half) and got.high == pytest.approx(3.0 + half)
    assert mean_interval([0.5, 0.5, 0.5]) == Interval(0.5, 0.5, 0.5)


# --- quantiles --------------------------------------------------------------------------------


def test_quantile_interval_without_data_or_with_too_little() -> None:
    assert quantile_interval([], 0.5) == Interval(None, None, None)
    assert quantile_interval([7.0], 0.5) == Interval(7.0, None, None)
    assert quantile_interval([3.0, 1.0, 2.0, 5.0, 4.0], 0.5) == Interval(3.0, None, None)
    assert quantile_interval([float(v) for v in range(100)], 0.99) == Interval(98.0, None, None)


def test_quantile_interval_on_known_ranks() -> None:
    xs = [float(v) for v in range(1000, 0, -1)]  # 1 .. 1000 in any order
    got = quantile_interval(xs, 0.5)
    spread = Z95 * math.sqrt(1000 * 0.25)  # 30.99
    assert got.value == 500.0
    assert got.low == math.floor(500 - spread) == 469.0
    assert got.high == math.ceil(500 + spread) + 1 == 532.0
    p99 = quantile_interval(xs, 0.99)
    assert p99.value == 990.0
    assert p99.low is not None and p99.high is not None
    assert p99.low < 990.0 < p99.high <= 1000.0


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantile_interval_holds_the_true_quantile_of_uniform_data(q: float) -> None:
    rng = random.Random(20260101)
    values = [rng.random() for _ in range(1000)]
    got = quantile_interval(values, q)
    assert got.value is not None and got.low is not None and got.high is not None
    assert got.low <= got.value <= got.high
    assert got.low <= q <= got.high
    assert got.high - got.low < 0.1


def test_quantile_interval_covers_the_median_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials, covered = 400, 0
    for _ in range(trials):
        got = quantile_interval([rng.random() for _ in range(101)], 0.5)
        assert got.low is not None and got.high is not None
        covered += got.low <= 0.5 <= got.high
    assert covered / trials >= 0.92


def test_quantile_rank_is_exact_when_q_times_n_is_whole() -> None:
    assert quantile_interval([float(v) for v in range(1, 101)], 0.07).value == 7.0


def test_interval_show() -> None:
    assert Interval(None, None, None).show() == "n/a"
    assert Interval(12.345, None, None).show(unit=" ms") == "12.3 ms"
    assert Interval(0.0123, 0.01, 0.02).show(100, 2, "%") == "1.23% [1.00, 2.00]"
    assert Interval(-0.01234, -0.02, 0.0).show(1, 4) == "-0.0123 [-0.0200, 0.0000]"


# --- the report -------------------------------------------------------------------------------


def outcome(
    model: str,
    version: str,
    *,
    arm: str | None = None,
    ms: float | None = 10.0,
    error: str | None = None,
    agree: bool | None = None,
    score_delta: float | None = None,
    entity_f1: float | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "version": version,
        "label": None if error else "cancel",
        "score": None if error else 0.9,
        "entities": 0,
        "inference_ms": None if error else ms,
        "error": error,
    }
    if arm is not None:
        out["arm"] = arm
    else:
        out |= {"agree": agree, "score_delta": score_delta, "entity_f1": entity_f1}
    return out


def record(
    event_id: Any,
    served: dict[str, Any],
    *,
    shadows: tuple[dict[str, Any], ...] = (),
    shed: tuple[dict[str, str], ...] = (),
    experiment: str = "exp",
    version: int = 1,
) -> dict[str, Any]:
    return {
        "schema": "inferstream.experiment_event/v1",
        "experiment": experiment,
        "experiment_version": version,
        "event_id": event_id,
        "conversation_id": f"c-{event_id}",
        "tenant": "acme",
        "ts": 0.0,
        "worker": "w",
        "served": served,
        "shadows": list(shadows),
        "shed": list(shed),
    }


def test_report_of_nothing() -> None:
    report = build_report("exp", [record("e-1", outcome("m", "1", arm="primary"), experiment="x")])
    assert report.events == 0 and report.duplicates == 0 and report.versions == ()
    assert report.arms == () and report.shadows == ()
    lines = report.lines()
    assert "0 events" in lines[0] and "versions none" in lines[0]
    assert lines[1] == "served arms:" and len(lines) == 2


def test_last_record_of_an_event_counts_and_duplicates_are_counted() -> None:
    records = [
        record("e-1", outcome("m", "1", arm="primary", error="boom"), version=1),
        record("e-2", outcome("m", "1", arm="primary", ms=20.0), version=1),
        record("e-1", outcome("m", "1", arm="primary", ms=30.0), version=2),  # replaces the first
        record("e-2", outcome("m", "1", arm="primary", ms=20.0), version=1),  # the same again
        record("e-3", outcome("m", "1", arm="primary"), experiment="other"),  # another experiment
        record(None, outcome("m", "1", arm="primary", error="x")),  # no event id: skipped
        record(17, outcome("m", "1", arm="primary", error="x")),  # a non-string event id too
    ]
    report = build_report("exp", records)
    assert report.experiment == "exp"
    assert report.events == 2 and report.duplicates == 2
    assert report.versions == (1, 2)
    (arm,) = report.arms
    assert arm.label == "primary m:1" and arm.events == 2
    assert arm.error_rate.value == 0.0  # e-1's failure was replaced
    assert arm.p50_ms.value == 20.0 and arm.p99_ms.value == 30.0


def test_arms_are_grouped_by_arm_and_model_version() -> None:
    records = []
    for i in range(30):
        records.append(record(f"p-{i}", outcome("m", "1", arm="primary", ms=float(i))))
    for i in range(10):
        failed = i < 2
        records.append(
            record(f"c-{i}", outcome("fp32", "", arm="candidate", error="boom" if failed else None))
        )
    records.append(record("q-0", {"model": "m", "version": "1"}))  # no arm
    report = build_report("exp", records)
    assert [a.label for a in report.arms] == ["? m:1", "candidate fp32:default", "primary m:1"]
    by = {a.label: a for a in report.arms}
    cand = by["candidate fp32:default"]
    assert cand.events == 10
    assert cand.error_rate == wilson(2, 10)
    assert cand.p50_ms.value == 10.0  # latencies of the 8 answered events only
    prim = by["primary m:1"]
    assert prim.events == 30 and prim.error_rate == wilson(0, 30)
    assert prim.p50_ms.value == 14.0 and prim.p99_ms.value == 29.0
    assert by["? m:1"].events == 1


def test_shadow_agreement_score_delta_entity_f1_and_shed() -> None:
    served = outcome("m", "1", arm="primary")
    good = [
        outcome("m", "2", agree=True, score_delta=0.02, entity_f1=1.0),
        outcome("m", "2", agree=True, score_delta=0.04, entity_f1=0.5),
        outcome("m", "2", agree=False, score_delta=-0.3, entity_f1=0.0),
        outcome("m", "2", agree=True, score_delta=0.0, entity_f1=1.0, ms=40.0),
    ]
    records = [record(f"e-{i}", served, shadows=(s,)) for i, s in enumerate(good)]
    records.append(record("e-f", served, shadows=(outcome("m", "2", error="timeout"),)))
    records.append(record("e-s1", served, shed=({"model": "m", "version": "2"},)))
    records.append(record("e-s2", served, shed=({"model": "m", "version": "3"},)))
    records.append(record("e-s3", served, shed=({"model": "m", "version": "3"},)))
    report = build_report("exp", records)
    assert [s.label for s in report.shadows] == ["m:2", "m:3"]
    v2, v3 = report.shadows
    assert v2.compared == 5 and v2.shed == 1
    assert v2.error_rate == wilson(1, 5)
    assert v2.agreement == wilson(3, 4)  # the failed copy is not judged
    assert v2.score_delta == mean_interval([0.02, 0.04, -0.3, 0.0])
    assert v2.score_delta.value == pytest.approx(-0.06)
    assert v2.entity_f1.value == pytest.approx(0.625)
    assert v2.p50_ms.value == 10.0 and v2.p99_ms.value == 40.0
    assert v3.compared == 0 and v3.shed == 2
    assert v3.agreement == Interval(None, None, None)
    assert v3.p50_ms == Interval(None, None, None)
    (arm,) = report.arms
    assert arm.events == 8


def test_report_of_real_event_records() -> None:
    primary, cand, shadow = Variant("m", "1"), Variant("fp32", "1"), Variant("m", "2")
    exp = Experiment(
        "exp", "*", 3, primary, candidates=(Arm(cand, 0.5),), shadows=(Arm(shadow, 1.0),)
    )
    records = []
    arms: dict[str, int] = {}
    for i in range(200):
        a = exp.assign(f"conv-{i}")
        arms[a.arm] = arms.get(a.arm, 0) + 1
        served = Outcome(a.served, "cancel", {"cancel": 0.9, "refund": 0.1}, inference_ms=10.0)
        copy = Outcome(shadow, "cancel", {"cancel": 0.8, "refund": 0.2}, inference_ms=12.0)
        raw = event_record(
            a,
            event_id=f"e-{i}",
            conversation_id=f"conv-{i}",
            tenant="acme",
            served=served,
            shadows=[copy] if shadow in a.shadows else [],
            shed=[],
            ts=float(i),
            worker="w",
        )
        records.append(orjson.loads(raw))
    report = build_report("exp", records + records[:10])  # ten delivered twice
    assert report.events == 200 and report.duplicates == 10 and report.versions == (3,)
    by = {a.label: a.events for a in report.arms}
    assert by == {"candidate fp32:1": arms["candidate"], "primary m:1": arms["primary"]}
    (s,) = report.shadows
    assert s.label == "m:2" and s.compared == 200 and s.shed == 0
    assert s.agreement.value == 1.0
    assert s.score_delta.value == pytest.approx(-0.1)
    assert s.entity_f1.value == 1.0


def test_lines_mention_every_arm_and_shadow() -> None:
    served = outcome("m", "1", arm="primary")
    records = [
        record(
            "e-1",
            served,
            shadows=(outcome("m", "2", agree=True, score_delta=0.1, entity_f1=1.0),),
        ),
        record(
            "e-2",
            outcome("fp32", "1", arm="candidate", error="boom"),
            shed=({"model": "m", "version": "3"},),
            version=4,
        ),
        record(
            "e-2",
            outcome("fp32", "1", arm="candidate", ms=5.0),
            shed=({"model": "m", "version": "3"},),
            version=4,
        ),
    ]
    report = build_report("exp", records)
    lines = report.lines()
    text = "\n".join(lines)
    assert all(isinstance(line, str) for line in lines)
    assert lines[0].startswith("experiment exp: 2 events (configuration versions 1, 4; 1 repeated")
    assert "primary m:1: 1 events" in text
    assert "candidate fp32:1: 1 events" in text
    assert "shadows (against the served answer of the same event):" in text
    assert "m:2: 1 compared, 0 shed" in text
    assert "label agreement 100.0% [" in text
    assert "m:3: 0 compared, 1 shed, errors n/a, label agreement n/a" in text
