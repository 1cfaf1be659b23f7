import numpy as np
import orjson
import pytest

from workers.experiments.compare import (
    EVENT_SCHEMA,
    Outcome,
    Span,
    compare,
    entity_f1,
    event_record,
)
from workers.experiments.config import Arm, Experiment, Variant
from workers.inference.classifier import Prediction
from workers.inference.entities import Entity

PRIMARY = Variant("inferstream_cpu", "1")
FP32 = Variant("inferstream_cpu_fp32", "1")
V2 = Variant("inferstream_cpu", "2")
V3 = Variant("inferstream_cpu", "")

A: Span = ("PHONE", 0, 5)
B: Span = ("EMAIL", 10, 20)
C: Span = ("SYMPTOM", 30, 35)
D: Span = ("PHONE", 0, 6)  # same type, different end: a different span


def spans(*items: Span) -> frozenset[Span]:
    return frozenset(items)


def outcome(
    variant: Variant = PRIMARY,
    label: str = "cancel",
    scores: dict[str, float] | None = None,
    entities: frozenset[Span] = frozenset(),
    inference_ms: float = 12.5,
) -> Outcome:
    return Outcome(
        variant,
        label,
        {"cancel": 0.91, "refund": 0.09} if scores is None else scores,
        entities,
        inference_ms,
    )


# --- entity F1 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (spans(), spans(), 1.0),
        (spans(A), spans(), 0.0),
        (spans(), spans(A), 0.0),
        (spans(A, B), spans(C), 0.0),
        (spans(A), spans(D), 0.0),
        (spans(A, B), spans(A, B), 1.0),
        (spans(A, B), spans(A), 2 / 3),  # precision 1, recall 1/2
        (spans(A), spans(A, B, C), 0.5),  # precision 1/3, recall 1
        (spans(A, B), spans(A, C), 0.5),
    ],
)
def test_entity_f1_on_known_sets(a: frozenset[Span], b: frozenset[Span], expected: float) -> None:
    assert entity_f1(a, b) == pytest.approx(expected)
    assert entity_f1(b, a) == pytest.approx(expected)  # F1 is symmetric


# --- outcomes ---------------------------------------------------------------------------------


def test_outcome_of_a_prediction() -> None:
    prediction = Prediction(
        label="cancel",
        scores={"cancel": 0.8, "refund": 0.2},
        embedding=np.zeros(4, np.float32),
        model_name="inferstream_cpu",
        model_version="1",
        backend="openvino-int8",
        inference_ms=12.3456789,
        batch_size=4,
        truncated=False,
        entities=(
            Entity("PHONE", 0, 5, 0.9),
            Entity("PHONE", 0, 5, 0.7),  # the same span twice counts once
            Entity("EMAIL", 10, 20, 0.8),
        ),
    )
    out = Outcome.of(PRIMARY, prediction)
    assert out.variant == PRIMARY and out.label == "cancel" and out.error is None
    assert out.entities == spans(A, B)
    assert out.score == 0.8
    assert out.to_dict() == {
        "model": "inferstream_cpu",
        "version": "1",
        "label": "cancel",
        "score": 0.8,
        "entities": 2,
        "inference_ms": 12.346,
        "error": None,
    }


def test_failed_outcome() -> None:
    out = Outcome.failed(FP32, ValueError("bad shape"))
    assert out.error == "ValueError: bad shape"
    assert out.label is None and out.score is None and out.inference_ms is None
    assert out.to_dict() == {
        "model": "inferstream_cpu_fp32",
        "version": "1",
        "label": None,
        "score": None,
        "entities": 0,
        "inference_ms": None,
        "error": "ValueError: bad shape",
    }
    assert Outcome.failed(FP32, "timeout").error == "timeout"
    assert Outcome.failed(FP32, "x" * 1000).error == "x" * 300


def test_score_is_the_labels_probability_rounded() -> None:
    out = outcome(scores={"cancel": 0.123456789})
    assert out.score == 0.123456789
    assert out.to_dict()["score"] == 0.123457
    assert outcome(scores={"other": 1.0}).score is None  # label missing from the scores
    assert Outcome(PRIMARY, "cancel").score is None  # no scores at all


# --- compare ----------------------------------------------------------------------------------


def test_compare_agreeing_answers() -> None:
    served = outcome(entities=spans(A, B))
    other = outcome(
        V2, scores={"cancel": 0.93, "refund": 0.07}, entities=spans(A), inference_ms=30.1
    )
    got = compare(served, other)
    assert got == {
        "model": "inferstream_cpu",
        "version": "2",
        "label": "cancel",
        "score": 0.93,
        "entities": 1,
        "inference_ms": 30.1,
        "error": None,
        "agree": True,
        "score_delta": 0.02,
        "entity_f1": 0.666667,
    }


def test_compare_disagreeing_answers_uses_the_served_labels_probability() -> None:
    served = outcome(scores={"cancel": 0.6, "refund": 0.4}, entities=spans(A))
    other = outcome(V2, label="refund", scores={"cancel": 0.25, "refund": 0.75})
    got = compare(served, other)
    assert got["agree"] is False
    assert got["label"] == "refund" and got["score"] == 0.75
    assert got["score_delta"] == pytest.approx(0.25 - 0.6)
    assert got["entity_f1"] == 0.0


def test_compare_label_missing_from_the_others_scores_counts_as_zero() -> None:
    served = outcome(label="cancel", scores={"cancel": 0.7})
    other = outcome(V2, label="refund", scores={"refund": 1.0})
    got = compare(served, other)
    assert got["agree"] is False and got["score_delta"] == -0.7
    assert got["entity_f1"] == 1.0  # neither found entities


@pytest.mark.parametrize(
    ("served", "other"),
    [
        (Outcome.failed(PRIMARY, "boom"), outcome(V2)),
        (outcome(), Outcome.failed(V2, RuntimeError("down"))),
        (Outcome.failed(PRIMARY, "boom"), Outcome.failed(V2, "down")),
        (Outcome(PRIMARY), outcome(V2)),  # served without an answer
        (outcome(), Outcome(V2, "cancel")),  # other without scores
    ],
)
def test_compare_is_none_when_either_side_failed(served: Outcome, other: Outcome) -> None:
    got = compare(served, other)
    assert got["agree"] is None and got["score_delta"] is None and got["entity_f1"] is None
    assert got["model"] == "inferstream_cpu" and got["version"] == "2"
    assert got["error"] == other.error


# --- the event record -------------------------------------------------------------------------


def test_event_record_shape() -> None:
    exp = Experiment(
        "fp32-canary",
        "*",
        4,
        PRIMARY,
        candidates=(Arm(FP32, 1.0),),
        shadows=(Arm(V2, 1.0), Arm(V3, 1.0)),
    )
    assignment = exp.assign("c-1")
    assert assignment.arm == "candidate"
    served = outcome(FP32, entities=spans(A))
    shadow = outcome(V2, scores={"cancel": 0.95, "refund": 0.05}, entities=spans(A))
    failed = Outcome.failed(Variant("inferstream_cpu", "7"), TimeoutError("late"))
    value = event_record(
        assignment,
        event_id="e-1",
        conversation_id="c-1",
        tenant="acme",
        served=served,
        shadows=[shadow, failed],
        shed=[V3],
        ts=1765000000.1,
        worker="host:123",
    )
    assert isinstance(value, bytes)
    rec = orjson.loads(value)
    assert set(rec) == {
        "schema",
        "experiment",
        "experiment_version",
        "event_id",
        "conversation_id",
        "tenant",
        "ts",
        "worker",
        "served",
        "shadows",
        "shed",
    }
    assert rec["schema"] == EVENT_SCHEMA == "inferstream.experiment_event/v1"
    assert rec["experiment"] == "fp32-canary" and rec["experiment_version"] == 4
    assert rec["event_id"] == "e-1" and rec["conversation_id"] == "c-1"
    assert rec["tenant"] == "acme" and rec["ts"] == 1765000000.1 and rec["worker"] == "host:123"
    assert rec["served"] == {
        "model": "inferstream_cpu_fp32",
        "version": "1",
        "arm": "candidate",
        "label": "cancel",
        "score": 0.91,
        "entities": 1,
        "inference_ms": 12.5,
        "error": None,
    }
    first, second = rec["shadows"]
    assert first["model"] == "inferstream_cpu" and first["version"] == "2"
    assert first["agree"] is True and first["score_delta"] == 0.04 and first["entity_f1"] == 1.0
    assert second["version"] == "7" and second["error"] == "TimeoutError: late"
    assert second["agree"] is None and second["score_delta"] is None
    assert rec["shed"] == [{"model": "inferstream_cpu", "version": ""}]


def test_event_record_of_a_primary_turn_with_nothing_compared() -> None:
    exp = Experiment("plain", "acme", 1, PRIMARY)
    assignment = exp.assign("c-9")
    value = event_record(
        assignment,
        event_id="e-9",
        conversation_id="c-9",
        tenant="acme",
        served=Outcome.failed(PRIMARY, "rejected"),
        shadows=iter(()),
        shed=iter(()),
        ts=0.0,
        worker="w",
    )
    rec = orjson.loads(value)
    assert rec["served"]["arm"] == "primary" and rec["served"]["error"] == "rejected"
    assert rec["shadows"] == [] and rec["shed"] == []
