"""Task metrics, BIO alignment/decoding and the INT8 quality gate (numpy only).

Metrics are in points (percent): topic accuracy, safety macro-F1, entity span micro-F1 (exact
character span and type), reply recall@3 (the gold reply among the 3 nearest of the bank).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Span = tuple[int, int, str]


class GateError(RuntimeError):
    """INT8 lost more than the allowed points on some task metric; nothing is installed."""


@dataclass(frozen=True)
class GateResult:
    tolerance: float
    deltas: dict[str, float]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def check_gate(
    reference: Mapping[str, float], candidate: Mapping[str, float], tolerance: float
) -> GateResult:
    """Each ``candidate`` metric must be at least ``reference - tolerance`` (points)."""
    deltas = {k: round(candidate[k] - reference[k], 3) for k in reference}
    failures = tuple(
        f"{k}: {candidate[k]:.2f} vs {reference[k]:.2f} ({deltas[k]:+.2f} < -{tolerance:g})"
        for k in reference
        if candidate[k] < reference[k] - tolerance
    )
    return GateResult(tolerance, deltas, failures)


def token_tags(
    offsets: Sequence[tuple[int, int]], spans: Sequence[Span], tags: Sequence[str]
) -> list[int]:
    """BIO tag id per token: B on the first token inside a span, I on the rest, O elsewhere.

    Special tokens (offset ``(0, 0)``) get ``-100`` (ignored by the loss).
    """
    index = {t: i for i, t in enumerate(tags)}
    out: list[int] = []
    for start, end in offsets:
        if start == end:
            out.append(-100)
            continue
        tag = "O"
        for s, e, kind in spans:
            if start >= s and end <= e:
                first = not s <= _prev_start(offsets, len(out)) < e
                tag = f"{'B' if first else 'I'}-{kind}"
                break
        out.append(index[tag])
    return out


def _prev_start(offsets: Sequence[tuple[int, int]], i: int) -> int:
    """Start offset of the previous real token, or -1."""
    for j in range(i - 1, -1, -1):
        if offsets[j][0] != offsets[j][1]:
            return offsets[j][0]
    return -1


def decode_spans(
    tag_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[str],
    probs: Sequence[float] | None = None,
) -> list[tuple[int, int, str, float]]:
    """Entities ``(start, end, type, confidence)`` from per-token tags (I after O starts one).

    Confidence is the mean of the tokens' top probabilities (1.0 when ``probs`` is None).
    """
    out: list[tuple[int, int, str, float]] = []
    cur: list[int | str | list[float]] = []
    for i, ((start, end), tid) in enumerate(zip(offsets, tag_ids, strict=False)):
        p = 1.0 if probs is None else float(probs[i])
        tag = tags[int(tid)] if start != end else "O"
        prefix, _, kind = tag.partition("-")
        if cur and (prefix != "I" or kind != cur[2]):
            out.append(_close(cur))
            cur = []
        if prefix == "B" or (prefix == "I" and not cur):
            cur = [start, end, kind, [p]]
        elif prefix == "I":
            cur[1] = end
            scores = cur[3]
            assert isinstance(scores, list)
            scores.append(p)
    if cur:
        out.append(_close(cur))
    return out


def _close(cur: list[int | str | list[float]]) -> tuple[int, int, str, float]:
    start, end, kind, scores = cur
    assert isinstance(start, int) and isinstance(end, int) and isinstance(kind, str)
    assert isinstance(scores, list)
    return start, end, kind, float(np.mean(scores))


def span_f1(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> float:
    """Micro F1 (points) over exact ``(start, end, type)`` matches."""
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(g), set(p)
        tp, n_gold, n_pred = tp + len(gs & ps), n_gold + len(gs), n_pred + len(ps)
    if tp == 0:
        return 0.0
    precision, recall = tp / n_pred, tp / n_gold
    return 100.0 * 2 * precision * recall / (precision + recall)


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    return 100.0 * float(np.mean(np.asarray(gold) == np.asarray(pred)))


def macro_f1(gold: Sequence[int], pred: Sequence[int], classes: int) -> float:
    g, p = np.asarray(gold), np.asarray(pred)
    scores = []
    for c in range(classes):
        tp = float(np.sum((g == c) & (p == c)))
        denom = float(np.sum(g == c) + np.sum(p == c))
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return 100.0 * float(np.mean(scores))


def recall_at_k(gold: Sequence[int], ranked: npt.NDArray[np.int64]) -> float:
    hits = [int(g) in set(row.tolist()) for g, row in zip(gold, ranked, strict=True)]
    return 100.0 * float(np.mean(hits))


def format_table(columns: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Rows of a plain metric table: one row per metric, one column per engine."""
    names = list(columns)
    metrics = list(next(iter(columns.values())))
    lines = [f"{'metric':<22}" + "".join(f"{n:>12}" for n in names)]
    for m in metrics:
        lines.append(
            f"{m:<22}" + "".join(f"{columns[n].get(m, float('nan')):>12.2f}" for n in names)
        )
    return lines
