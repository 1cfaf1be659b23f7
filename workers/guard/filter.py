"""The content filter: rule findings, tenant terms and the model's view combined by a policy.

Each finding gets its type's action from the tenant's ``FilterPolicy``; the decision is the
strictest of them (block > mask > allow). The model contributes its safety score (block at
``safety_block_threshold``; from ``safety_mask_threshold`` on, types set to ``allow`` are masked
too and the decision is at least ``mask``) and its entity tags (findings with detector
``"model"``). Masking replaces each group of overlapping masked findings by one typed
placeholder; ``MaskedSpan`` keeps its offsets in the original and in the masked text. A blocked
result carries no text. Every decision lists what fired and why in ``reasons``; the reasons
never quote the detected values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from workers.guard.detectors import PII_TYPES, Finding, detect_pii
from workers.guard.terms import TermList

Action = Literal["allow", "mask", "block"]
_RANK: Mapping[str, int] = MappingProxyType({"allow": 0, "mask": 1, "block": 2})
PLACEHOLDERS: Mapping[str, str] = MappingProxyType(
    {"EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "CARD": "[CARD]", "IBAN": "[IBAN]", "CN_ID": "[ID]"}
    | {"US_SSN": "[SSN]", "IP_ADDRESS": "[IP]", "SECRET": "[SECRET]", "TERM": "[TERM]"}
)
DEFAULT_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {t: ("block" if t == "SECRET" else "mask") for t in (*PII_TYPES, "TERM")}
)
_SPECIFICITY = {t: i for i, t in enumerate(("TERM", "IP_ADDRESS", "PHONE", "EMAIL", "US_SSN"))}
_SPECIFICITY |= {"CARD": 5, "IBAN": 6, "CN_ID": 7, "SECRET": 8}


def _default_actions() -> dict[str, Action]:
    return dict(DEFAULT_ACTIONS)


@dataclass(frozen=True)
class FilterPolicy:
    """One tenant's filter policy. Types missing from ``actions`` (e.g. a new model entity tag)
    get ``default_action``."""

    actions: Mapping[str, Action] = field(default_factory=_default_actions)
    safety_block_threshold: float = 0.9
    safety_mask_threshold: float | None = None
    default_action: Action = "mask"

    def __post_init__(self) -> None:
        allowed = get_args(Action)
        bad = {t: a for t, a in self.actions.items() if a not in allowed}
        if bad or self.default_action not in allowed:
            raise ValueError(f"filter actions must be in {allowed}: {bad or self.default_action}")

    def action_for(self, entity_type: str) -> Action:
        return self.actions.get(entity_type, self.default_action)


@dataclass(frozen=True, slots=True)
class MaskedSpan:
    type: str
    placeholder: str
    start: int  # in the original text
    end: int
    new_start: int  # the placeholder's position in the masked text
    new_end: int


@dataclass(frozen=True, slots=True)
class Reason:
    detector: str
    type: str
    why: str
    start: int
    end: int
    action: Action


@dataclass(frozen=True)
class Decision:
    action: Action
    text: str  # the masked text; "" when blocked
    spans: list[MaskedSpan] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    safety_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "text": self.text,
            "safety_score": self.safety_score,
            "spans": [asdict(s) for s in self.spans],
            "reasons": [asdict(r) for r in self.reasons],
        }


def _placeholder(entity_type: str) -> str:
    return PLACEHOLDERS.get(entity_type, f"[{entity_type}]")


def _model_findings(entities: Sequence[Finding], size: int) -> list[Finding]:
    out = []
    for e in entities:
        start, end = max(0, min(e.start, size)), max(0, min(e.end, size))
        if end > start:
            out.append(Finding(e.type, start, end, "model", e.why or "model entity tag"))
    return out


_JOINERS = frozenset("-./")


def _whole_number(text: str, f: Finding) -> Finding:
    """``f`` grown over the digits it touches (and digit-joiners between digits), so a masked
    number never keeps digits in clear: OCR text often lacks the spaces a detector needs
    ("at415-555-0134please" tagged as 5-555-01 still hides all of it)."""
    start, end = f.start, f.end
    if not any(c.isdigit() for c in text[start:end]):
        return f

    def part_of_number(i: int, step: int) -> bool:
        if text[i].isdigit():
            return True
        j = i + step
        return text[i] in _JOINERS and 0 <= j < len(text) and text[j].isdigit()

    while start > 0 and part_of_number(start - 1, -1):
        start -= 1
    while end < len(text) and part_of_number(end, 1):
        end += 1
    if (start, end) == (f.start, f.end):
        return f
    return Finding(f.type, start, end, f.detector, f.why)


def _mask(text: str, masked: list[Finding]) -> tuple[str, list[MaskedSpan]]:
    """Replace each group of overlapping findings by the placeholder of its strongest member
    (each grown to the whole number it is part of)."""
    groups: list[list[Finding]] = []
    ends: list[int] = []
    grown = [_whole_number(text, f) for f in masked]
    for f in sorted(grown, key=lambda f: (f.start, -f.end)):
        if groups and f.start < ends[-1]:
            groups[-1].append(f)
            ends[-1] = max(ends[-1], f.end)
        else:
            groups.append([f])
            ends.append(f.end)
    pieces: list[str] = []
    spans: list[MaskedSpan] = []
    cursor = out_len = 0
    for members, end in zip(groups, ends, strict=True):
        start = members[0].start
        head = max(members, key=lambda g: (g.end - g.start, _SPECIFICITY.get(g.type, -1)))
        placeholder = _placeholder(head.type)
        pieces += (text[cursor:start], placeholder)
        out_len += start - cursor
        new_end = out_len + len(placeholder)
        spans.append(MaskedSpan(head.type, placeholder, start, end, out_len, new_end))
        out_len, cursor = new_end, end
    pieces.append(text[cursor:])
    return "".join(pieces), spans


class ContentFilter:
    def __init__(self, terms: TermList | None = None) -> None:
        self.terms = terms

    def findings(
        self, text: str, *, tenant: str, model_entities: Sequence[Finding] = ()
    ) -> list[Finding]:
        """Rule findings, tenant terms and model entities, sorted by start (may overlap)."""
        found = detect_pii(text)
        if self.terms is not None:
            found.extend(self.terms.find(tenant, text))
        found.extend(_model_findings(model_entities, len(text)))
        return sorted(found, key=lambda f: (f.start, f.end))

    @staticmethod
    def _safety(
        score: float | None, policy: FilterPolicy, size: int
    ) -> tuple[Action, list[Reason]]:
        if score is None:
            return "allow", []
        block_at, mask_at = policy.safety_block_threshold, policy.safety_mask_threshold
        if score >= block_at:
            why = f"unsafe score {score:.3f} >= block threshold {block_at}"
            return "block", [Reason("model", "UNSAFE", why, 0, size, "block")]
        if mask_at is not None and score >= mask_at:
            why = f"unsafe score {score:.3f} >= mask threshold {mask_at}: allowed types masked"
            return "mask", [Reason("model", "UNSAFE", why, 0, size, "mask")]
        return "allow", []

    def decide(
        self,
        text: str,
        *,
        tenant: str,
        policy: FilterPolicy,
        safety_score: float | None = None,
        model_entities: Sequence[Finding] = (),
    ) -> Decision:
        found = self.findings(text, tenant=tenant, model_entities=model_entities)
        score = safety_score if safety_score is not None and math.isfinite(safety_score) else None
        overall, safety = self._safety(score, policy, len(text))
        escalate = overall == "mask"
        reasons: list[Reason] = []
        masked: list[Finding] = []
        for f in found:
            action = policy.action_for(f.type)
            if escalate and action == "allow":
                action = "mask"
            reasons.append(Reason(f.detector, f.type, f.why, f.start, f.end, action))
            if action == "mask":
                masked.append(f)
            if _RANK[action] > _RANK[overall]:
                overall = action
        reasons.extend(safety)
        if overall == "block":
            return Decision("block", "", [], reasons, score)
        new_text, spans = _mask(text, masked)
        return Decision(overall, new_text, spans, reasons, score)
