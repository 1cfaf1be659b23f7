"""Token classification (BIO tags) to entities with character offsets and a confidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Entity:
    type: str  # the tag without its B-/I- prefix, e.g. "PHONE", "SYMPTOM"
    start: int  # character offsets into the original text
    end: int
    confidence: float  # mean of the winning tag's probability over the entity's tokens

    def to_dict(self, text: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "text": text[self.start : self.end],
            "start": self.start,
            "end": self.end,
            "confidence": round(self.confidence, 4),
        }


def decode_bio(
    token_logits: npt.NDArray[Any],
    offsets: Sequence[tuple[int, int]],
    labels: Sequence[str],
) -> list[Entity]:
    """``token_logits`` [L, T] for one sequence; ``offsets`` per real token ((0, 0) for special
    tokens, which never start or continue an entity). An I- tag without a matching open entity
    starts one (lenient decoding, as seqeval does)."""
    n = min(len(offsets), token_logits.shape[0])
    logits = token_logits[:n].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    best_idx = probs.argmax(axis=1)
    # plain Python numbers from here: the loop below runs per token, numpy scalars are slow
    best: list[int] = best_idx.tolist()
    top: list[float] = probs[np.arange(n), best_idx].tolist()
    entities: list[Entity] = []
    current: tuple[str, int, int, list[float]] | None = None

    def close() -> None:
        if current is not None:
            kind, start, end, scores = current
            entities.append(Entity(kind, start, end, sum(scores) / len(scores)))

    for i in range(n):
        start, end = offsets[i]
        tag = labels[best[i]]
        if start == end or tag == "O":  # special token, or outside any entity
            close()
            current = None
            continue
        prefix, _, kind = tag.partition("-")
        score = top[i]
        if prefix == "I" and current is not None and current[0] == kind:
            current = (kind, current[1], end, [*current[3], score])
        else:
            close()
            current = (kind, start, end, [score])
    close()
    return entities
