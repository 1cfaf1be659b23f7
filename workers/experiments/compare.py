"""What one model version answered for one event, how two answers compare, and the
``inferstream.experiment_event/v1`` record that carries both to ``experiments.events``.

One record per event under an experiment::

    {"schema": "inferstream.experiment_event/v1", "experiment": "fp32-canary",
     "experiment_version": 4, "event_id": "e-1", "conversation_id": "c-1", "tenant": "acme",
     "ts": 1765000000.1, "worker": "host:123",
     "served": {"model": "inferstream_cpu", "version": "1", "arm": "primary", "label": "cancel",
                "score": 0.91, "entities": 2, "inference_ms": 12.5, "error": null},
     "shadows": [{"model": "inferstream_cpu_fp32", "version": "1", "label": "cancel",
                  "score": 0.93, "entities": 2, "inference_ms": 30.1, "error": null,
                  "agree": true, "score_delta": 0.02, "entity_f1": 1.0}],
     "shed": []}

``served.error`` is set when the arm's model failed the event (the primary then answered it:
no event goes unanswered because a candidate failed). ``shed`` lists shadows whose copy was
dropped under load, ``shadows[].error`` those that failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from workers.experiments.config import Assignment, Variant
from workers.inference.classifier import Prediction

EVENT_SCHEMA = "inferstream.experiment_event/v1"
Span = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One model version's answer to one event (or why it has none)."""

    variant: Variant
    label: str | None = None
    scores: dict[str, float] | None = None
    entities: frozenset[Span] = frozenset()
    inference_ms: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, variant: Variant, prediction: Prediction) -> Outcome:
        spans = frozenset((e.type, e.start, e.end) for e in prediction.entities)
        return cls(variant, prediction.label, prediction.scores, spans, prediction.inference_ms)

    @classmethod
    def failed(cls, variant: Variant, error: BaseException | str) -> Outcome:
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(variant, error=detail[:300])

    @property
    def score(self) -> float | None:
        if self.label is None or self.scores is None:
            return None
        return self.scores.get(self.label)

    def to_dict(self) -> dict[str, Any]:
        score = self.score
        return {
            "model": self.variant.model,
            "version": self.variant.version,
            "label": self.label,
            "score": None if score is None else round(score, 6),
            "entities": len(self.entities),
            "inference_ms": None if self.inference_ms is None else round(self.inference_ms, 3),
            "error": self.error,
        }


def entity_f1(a: frozenset[Span], b: frozenset[Span]) -> float:
    """Exact-span F1 of ``b``'s entities against ``a``'s (1.0 when both found none)."""
    if not a and not b:
        return 1.0
    both = len(a & b)
    return 2.0 * both / (len(a) + len(b))


def compare(served: Outcome, other: Outcome) -> dict[str, Any]:
    """``other``'s answer beside the served one: label agreement, the change in the served
    label's probability, and entity F1 (None where either failed)."""
    out = other.to_dict()
    if served.error or other.error or served.label is None or other.scores is None:
        return out | {"agree": None, "score_delta": None, "entity_f1": None}
    mine = served.score or 0.0
    theirs = other.scores.get(served.label, 0.0)
    return out | {
        "agree": other.label == served.label,
        "score_delta": round(theirs - mine, 6),
        "entity_f1": round(entity_f1(served.entities, other.entities), 6),
    }


def event_record(
    assignment: Assignment,
    *,
    event_id: str,
    conversation_id: str,
    tenant: str,
    served: Outcome,
    shadows: Iterable[Outcome],
    shed: Iterable[Variant],
    ts: float,
    worker: str,
) -> bytes:
    exp = assignment.experiment
    return orjson.dumps(
        {
            "schema": EVENT_SCHEMA,
            "experiment": exp.name,
            "experiment_version": exp.version,
            "event_id": event_id,
            "conversation_id": conversation_id,
            "tenant": tenant,
            "ts": ts,
            "worker": worker,
            "served": served.to_dict() | {"arm": assignment.arm},
            "shadows": [compare(served, s) for s in shadows],
            "shed": [v.to_dict() for v in shed],
        }
    )
