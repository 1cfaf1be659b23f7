"""Metrics, BIO alignment and the INT8 gate."""

from __future__ import annotations

import pytest

from workers.modeling import metrics
from workers.modeling.examples import BIO_TAGS


def test_gate_passes_within_tolerance_and_fails_when_impossible() -> None:
    fp32 = {"topic_accuracy": 80.0, "entity_span_f1": 95.0}
    int8 = {"topic_accuracy": 79.5, "entity_span_f1": 95.0}
    assert metrics.check_gate(fp32, int8, 1.0).passed
    tight = metrics.check_gate(fp32, int8, -5.0)  # INT8 would have to beat FP32 by 5 points
    assert not tight.passed and len(tight.failures) == 2
    assert "topic_accuracy" in tight.failures[0]


def test_gate_failure_names_the_metric() -> None:
    result = metrics.check_gate({"a": 90.0, "b": 50.0}, {"a": 88.5, "b": 50.0}, 1.0)
    assert result.failures == ("a: 88.50 vs 90.00 (-1.50 < -1)",)
    assert result.deltas == {"a": -1.5, "b": 0.0}


def test_bio_round_trip() -> None:
    offsets = [(0, 0), (0, 4), (5, 8), (9, 13), (13, 16), (17, 20), (0, 0)]
    spans = [(5, 16, "DRUG"), (17, 20, "DOSE")]
    tags = metrics.token_tags(offsets, spans, BIO_TAGS)
    names = [BIO_TAGS[t] if t >= 0 else None for t in tags]
    assert names == [None, "O", "B-DRUG", "I-DRUG", "I-DRUG", "B-DOSE", None]
    decoded = metrics.decode_spans([max(t, 0) for t in tags], offsets, BIO_TAGS)
    assert [d[:3] for d in decoded] == spans


def test_scores() -> None:
    assert metrics.span_f1([[(0, 1, "X")]], [[(0, 1, "X"), (2, 3, "Y")]]) == pytest.approx(
        66.667, 1e-3
    )
    assert metrics.accuracy([1, 2], [1, 0]) == 50.0
    assert metrics.macro_f1([0, 1], [0, 1], 2) == 100.0
