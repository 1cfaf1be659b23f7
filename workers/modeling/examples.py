"""The labelled examples every data source of the model build produces (plain dataclasses).

A *text example* carries one label (intent, sentiment, safety); an *entity example* carries
character spans ``(start, end, type)`` with exact offsets into ``text`` (``text[start:end]`` is
the entity). ``lang`` is ``"zh"`` or ``"en"``; ``source`` names the corpus or generator;
``group`` is what a split must keep apart (a template id, a conversation, a document), so a test
can check that no group appears on both sides of a split.
"""

from __future__ import annotations

from dataclasses import dataclass

Span = tuple[int, int, str]

# The token head's entity types. Clinical (generated notes), PII, and general names (People's
# Daily, Twitter NER); PERSON is shared by PII and the general corpora.
ENTITY_TYPES: tuple[str, ...] = (
    "SYMPTOM", "DIAGNOSIS", "DRUG", "DOSE", "BODY_PART", "TEST",
    "PERSON", "PHONE", "EMAIL", "ID", "ADDRESS", "LOCATION", "ORG",
)  # fmt: skip
BIO_TAGS: tuple[str, ...] = ("O", *(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I")))

INTENTS: tuple[str, ...] = (
    "account_access", "billing_refund", "payment_issue", "delivery_status", "cancel",
    "complaint", "tech_issue", "product_question", "greeting", "thanks", "goodbye",
    "symptom_report", "appointment", "prescription", "other",
)  # fmt: skip
SENTIMENTS: tuple[str, ...] = ("negative", "positive")
SAFETY: tuple[str, ...] = ("safe", "unsafe")


@dataclass(frozen=True, slots=True)
class TextExample:
    text: str
    label: str
    lang: str
    source: str
    group: str


@dataclass(frozen=True, slots=True)
class EntityExample:
    text: str
    spans: tuple[Span, ...]
    lang: str
    source: str
    group: str


def check_spans(example: EntityExample, types: tuple[str, ...] = ENTITY_TYPES) -> None:
    """Raise ValueError unless every span is in range, non-empty, typed, and none overlap."""
    last_end = -1
    for start, end, kind in sorted(example.spans):
        if not 0 <= start < end <= len(example.text):
            raise ValueError(f"span {(start, end)} outside {len(example.text)} chars")
        if kind not in types:
            raise ValueError(f"unknown entity type {kind!r}")
        if start < last_end:
            raise ValueError(f"overlapping spans in {example.text!r}")
        if example.text[start:end] != example.text[start:end].strip():
            raise ValueError(f"span {example.text[start:end]!r} has surrounding white space")
        last_end = end
