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


# Sentence punctuation an entity never starts or ends with ("Dr. Chen" tagged from its "." is
# "Chen"); brackets, "+", "#" and the like may (a phone's "(", "+86").
EDGE_PUNCTUATION = frozenset(".,;:!?'\"`。，、；：！？…·“”‘’「」『』《》")


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` without white space or :data:`EDGE_PUNCTUATION` at either edge (an
    empty span where nothing else is left)."""
    while start < end and (text[start].isspace() or text[start] in EDGE_PUNCTUATION):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in EDGE_PUNCTUATION):
        end -= 1
    return start, end


def decode_bio(
    token_logits: npt.NDArray[Any],
    offsets: Sequence[tuple[int, int]],
    labels: Sequence[str],
    text: str | None = None,
) -> list[Entity]:
    """``token_logits`` [L, T] for one sequence; ``offsets`` per real token ((0, 0) for special
    tokens, which never start or continue an entity). An I- tag without a matching open entity
    starts one (lenient decoding, as seqeval does). With ``text`` (the one the offsets index),
    each entity is :func:`trim`-med, and one with nothing left is dropped."""
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
            if text is not None:
                start, end = trim(text, start, end)
            if start < end:
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


# The grouped view's key for each entity type, per language of the text (one table).
GROUP_NAMES: dict[str, dict[str, str]] = {
    "SYMPTOM": {"zh": "症状", "en": "symptoms"},
    "DIAGNOSIS": {"zh": "诊断", "en": "diagnoses"},
    "DRUG": {"zh": "药物", "en": "drugs"},
    "DOSE": {"zh": "剂量", "en": "doses"},
    "BODY_PART": {"zh": "部位", "en": "body_parts"},
    "TEST": {"zh": "检查", "en": "tests"},
    "PERSON": {"zh": "人名", "en": "persons"},
    "PHONE": {"zh": "电话", "en": "phones"},
    "EMAIL": {"zh": "邮箱", "en": "emails"},
    "ID": {"zh": "证件号", "en": "ids"},
    "ADDRESS": {"zh": "地址", "en": "addresses"},
    "LOCATION": {"zh": "地点", "en": "locations"},
    "ORG": {"zh": "机构", "en": "organizations"},
}


def text_language(text: str, threshold: float = 0.2) -> str:
    """``"zh"`` when at least ``threshold`` of the letters are CJK ideographs, else ``"en"``
    (only names the grouped view's keys; the model itself serves both languages alike)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    cjk = sum(1 for c in letters if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")
    return "zh" if cjk / len(letters) >= threshold else "en"


def group_entities(text: str, entities: Sequence[Entity]) -> dict[str, list[dict[str, Any]]]:
    """``{"症状": [{text, start, end, confidence}, ...], ...}`` for Chinese text, English keys
    otherwise; offsets into ``text``, entities in document order, types without a name as is."""
    lang = text_language(text)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(entities, key=lambda e: (e.start, e.end)):
        key = GROUP_NAMES.get(e.type, {}).get(lang, e.type)
        item = e.to_dict(text)
        del item["type"]
        grouped.setdefault(key, []).append(item)
    return grouped


def entity_records(
    text: str, entities: Sequence[Entity], hidden: Sequence[tuple[int, int]] = ()
) -> list[dict[str, Any]]:
    """Entities as result records with offsets into ``text``; ``text`` is None for an entity
    that overlaps a ``hidden`` span (one the content filter masked: its words stay out)."""
    out = []
    for e in entities:
        item = e.to_dict(text)
        if any(e.start < end and start < e.end for start, end in hidden):
            item["text"] = None
        out.append(item)
    return out
