"""ContentFilter.decide: policy actions, masking offsets, safety score, model entities, terms."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from workers.guard.detectors import Finding
from workers.guard.filter import DEFAULT_ACTIONS, ContentFilter, Decision, FilterPolicy
from workers.guard.terms import TermList

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
CF = ContentFilter()


def decide(text: str, policy: FilterPolicy | None = None, **kw: object) -> Decision:
    return CF.decide(text, tenant="acme", policy=policy or FilterPolicy(), **kw)  # type: ignore[arg-type]


def test_clean_text_is_allowed_unchanged() -> None:
    d = decide("Hello, how are you?", safety_score=0.01)
    assert (d.action, d.text, d.spans, d.reasons) == ("allow", "Hello, how are you?", [], [])
    assert d.safety_score == 0.01


def test_mask_replaces_spans_with_typed_placeholders_and_keeps_offsets() -> None:
    text = "Mail a@b.io or call +44 20 7946 0958; card 4111 1111 1111 1111, ID 11010519491231002X."
    d = decide(text)
    assert d.action == "mask"
    assert d.text == "Mail [EMAIL] or call [PHONE]; card [CARD], ID [ID]."
    assert [s.type for s in d.spans] == ["EMAIL", "PHONE", "CARD", "CN_ID"]
    for s in d.spans:
        assert d.text[s.new_start : s.new_end] == s.placeholder
        assert text[s.start : s.end] not in d.text
    # The text between spans is kept exactly.
    bounds = [(0, 0, 0, 0), *[(s.start, s.end, s.new_start, s.new_end) for s in d.spans]]
    bounds.append((len(text), len(text), len(d.text), len(d.text)))
    for (_, end, _, new_end), (start, _, new_start, _) in itertools.pairwise(bounds):
        assert text[end:start] == d.text[new_end:new_start]


def test_placeholders_per_type() -> None:
    text = "SSN 123-45-6789 ip 10.0.0.7 iban DE89370400440532013000"
    assert decide(text).text == "SSN [SSN] ip [IP] iban [IBAN]"


def test_secret_blocks_by_default_and_lists_reasons() -> None:
    d = decide(f"use {AWS} and a@b.io")
    assert d.action == "block"
    assert d.text == "" and d.spans == []
    assert [(r.type, r.action, r.detector) for r in d.reasons] == [
        ("SECRET", "block", "secret.aws"),
        ("EMAIL", "mask", "email"),
    ]
    assert all(r.why for r in d.reasons)


def test_policy_per_type_actions() -> None:
    policy = FilterPolicy(actions={**DEFAULT_ACTIONS, "EMAIL": "allow", "SECRET": "mask"})
    d = decide(f"a@b.io {AWS} 123-45-6789", policy)
    assert d.action == "mask"
    assert d.text == "a@b.io [SECRET] [SSN]"
    assert [r.action for r in d.reasons] == ["allow", "mask", "mask"]
    d = decide("a@b.io", policy)
    assert (d.action, d.text, len(d.reasons)) == ("allow", "a@b.io", 1)  # fired, allowed, listed
    assert decide("123-45-6789", FilterPolicy(actions={"US_SSN": "block"})).action == "block"


def test_types_missing_from_policy_get_default_action() -> None:
    policy = FilterPolicy(actions={}, default_action="allow")
    assert decide("a@b.io", policy).action == "allow"


def test_invalid_action_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError):
        FilterPolicy(actions={"EMAIL": "deny"})  # type: ignore[dict-item]


def test_safety_score_blocks_at_threshold() -> None:
    d = decide("Some harmless looking text", safety_score=0.9)
    assert d.action == "block" and d.text == ""
    (reason,) = d.reasons
    assert (reason.detector, reason.type, reason.action) == ("model", "UNSAFE", "block")
    assert "0.900" in reason.why and "0.9" in reason.why
    assert decide("text", safety_score=0.89).action == "allow"
    assert (
        decide("text", FilterPolicy(safety_block_threshold=0.5), safety_score=0.5).action == "block"
    )


def test_safety_mask_threshold_escalates_allowed_types() -> None:
    policy = FilterPolicy(actions={"EMAIL": "allow"}, safety_mask_threshold=0.6)
    d = decide("write a@b.io", policy, safety_score=0.7)
    assert d.action == "mask" and d.text == "write [EMAIL]"
    assert [r.type for r in d.reasons] == ["EMAIL", "UNSAFE"]
    assert decide("write a@b.io", policy, safety_score=0.5).text == "write a@b.io"
    d = decide("nothing to mask", policy, safety_score=0.7)
    assert (d.action, d.text) == ("mask", "nothing to mask")  # flagged, reason recorded


def test_nan_score_is_ignored() -> None:
    d = decide("text", safety_score=float("nan"))
    assert d.action == "allow" and d.safety_score is None


def test_model_entities_become_findings() -> None:
    text = "Ask Jane Roe at a@b.io"
    person = Finding("PERSON", 4, 12, "ner", "")
    d = decide(text, model_entities=[person])
    assert d.text == "Ask [PERSON] at [EMAIL]"
    assert d.reasons[0].detector == "model" and d.reasons[0].why == "model entity tag"
    # Out-of-range and empty spans are clamped or dropped, never an error.
    d = decide(
        text, model_entities=[Finding("PERSON", 18, 99, "ner", "x"), Finding("X", 5, 5, "", "")]
    )
    assert d.text == "Ask Jane Roe at [EMAIL]"


def test_overlapping_model_and_rule_spans_mask_their_union() -> None:
    text = "mail john.smith@corp.io now"
    d = decide(text, model_entities=[Finding("PERSON", 0, 15, "ner", "name")])
    assert d.text == "[EMAIL] now"  # one placeholder for the union, named by the longer span
    (span,) = d.spans
    assert (span.start, span.end) == (0, text.index(" now"))
    assert "john" not in d.text and "corp" not in d.text


def test_a_masked_number_never_keeps_digits_in_clear() -> None:
    # OCR often loses the spaces around a number; a tag on part of it hides all of it
    text = "Callmebackat415-555-0134please."
    part = text.index("5-555-01")
    d = decide(text, model_entities=[Finding("ID_NUMBER", part, part + 8, "ner", "tag")])
    assert d.text == "Callmebackat[ID_NUMBER]please."
    (span,) = d.spans
    assert text[span.start : span.end] == "415-555-0134"
    # words and a trailing full stop stay; a joiner not followed by a digit is not taken
    d = decide("ref 12-34- end", model_entities=[Finding("ID_NUMBER", 5, 7, "ner", "tag")])
    assert d.text == "ref [ID_NUMBER]- end"


def test_terms_are_found_per_tenant(tmp_path: Path) -> None:
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"acme": ["roadrunner"]}), encoding="utf-8")
    cf = ContentFilter(TermList(path))
    d = cf.decide("The Roadrunner said hi", tenant="acme", policy=FilterPolicy())
    assert d.text == "The [TERM] said hi"
    assert d.reasons[0].detector == "terms"
    assert cf.decide("The Roadrunner", tenant="other", policy=FilterPolicy()).action == "allow"


def test_to_dict_is_json_ready() -> None:
    d = decide("call +44 20 7946 0958", safety_score=0.2)
    out = json.loads(json.dumps(d.to_dict()))
    assert out["action"] == "mask" and out["text"] == "call [PHONE]"
    assert out["safety_score"] == 0.2
    assert out["spans"] == [
        {
            "type": "PHONE",
            "placeholder": "[PHONE]",
            "start": 5,
            "end": 21,
            "new_start": 5,
            "new_end": 12,
        }
    ]
    assert set(out["reasons"][0]) == {"detector", "type", "why", "start", "end", "action"}


def test_default_policy_covers_every_type() -> None:
    assert FilterPolicy().actions == DEFAULT_ACTIONS
    assert DEFAULT_ACTIONS["SECRET"] == "block"
    assert {a for t, a in DEFAULT_ACTIONS.items() if t != "SECRET"} == {"mask"}
