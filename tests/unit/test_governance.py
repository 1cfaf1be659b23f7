from pathlib import Path

import pytest

from streams.console import allow_all_policy
from workers.governance import Governor, ModelRef
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.inference.entities import Entity
from workers.provenance import textmark
from workers.provenance.envelope import sha256_hex
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Watermarker

MODEL = ModelRef("m", "1", "openvino-int8")


@pytest.fixture
def governor(tmp_path: Path) -> Governor:
    keys = KeyRing.generate(["k1"])
    store = PolicyStore()
    store.apply("acme", allow_all_policy("acme", 4))
    return Governor(store, ContentFilter(), Watermarker(keys))


def test_model_pii_tags_are_masked_clinical_tags_are_not(governor: Governor) -> None:
    text = "Maria Lopez reports chest pain since Monday."
    access = governor.admit("acme", {})
    ents = [
        Entity("PERSON", 0, 11, 0.97),
        Entity("SYMPTOM", 20, 30, 0.99),
        Entity("PERSON", 37, 43, 0.2),
    ]  # low confidence: ignored
    out = governor.release(text, access, model=MODEL, trace_id="t", entities=ents)
    assert out.status == "ok" and out.text is not None
    assert textmark.strip(out.text) == "[PERSON] reports chest pain since Monday."
    (reason,) = out.decision.reasons if out.decision else ()
    assert reason.detector == "model" and reason.type == "PERSON"
    assert out.envelope.policy_version == "4"


def test_unsafe_score_over_threshold_blocks(governor: Governor) -> None:
    access = governor.admit("acme", {})
    out = governor.release(
        "you are worthless", access, model=MODEL, trace_id="t", safety_score=0.97
    )
    assert out.status == "blocked" and out.text is None
    assert out.envelope.output_digest == sha256_hex("")  # signed: nothing was emitted
    assert out.envelope.input_digest == sha256_hex("you are worthless")
    assert out.decision is not None
    assert any(r.type == "UNSAFE" for r in out.decision.reasons)


def test_denied_requests_are_signed_too(governor: Governor) -> None:
    access = governor.admit("nobody", {})
    assert not access.allowed and access.reason == "unknown_tenant"
    out = governor.deny(access, input_text="hi", model=MODEL, trace_id="t")
    assert out.status == "denied" and out.envelope.signature
