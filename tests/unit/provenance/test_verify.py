import orjson
import pytest

from tests.unit.provenance.conftest import LONG_TEXT
from workers.provenance.envelope import Envelope
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Stamped, Watermarker
from workers.provenance.verify import EnvelopeIndex, verify_record, verify_text


@pytest.fixture
def stamped(ring: KeyRing) -> Stamped:
    watermarker = Watermarker(ring, clock=lambda: 1_700_000_123.5, new_id=lambda: "a1" * 8)
    return watermarker.stamp(
        model_name="minilm-intent",
        model_version="3",
        backend="openvino",
        input_text="Summarise the report",
        output_text=LONG_TEXT,
        policy_version="policy-7",
        decisions=[{"filter": "terms", "action": "allow"}],
        trace_id="trace-1",
    )


def record(stamped: Stamped, **extra: object) -> dict[str, object]:
    return {
        "text": stamped.text,
        "model": {"name": "minilm-intent", "version": "3"},
        "backend": "openvino",
        "provenance": stamped.envelope.to_dict(),
        **extra,
    }


def test_stamp_marks_the_text_and_signs_the_unmarked_output(
    ring: KeyRing, stamped: Stamped
) -> None:
    verdict = verify_record(record(stamped), ring)
    assert verdict.authentic and verdict.reason == "ok" and verdict.whole_output
    assert (verdict.model_name, verdict.timestamp) == ("minilm-intent", 1_700_000_123.5)
    assert verify_record(record(stamped), ring.public_only()).authentic


def test_unmarked_stamp(ring: KeyRing) -> None:
    plain = Watermarker(ring, mark_text=False).stamp(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text=LONG_TEXT,
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    assert plain.text == LONG_TEXT
    verdict = verify_record({"text": plain.text, "provenance": plain.envelope.to_dict()}, ring)
    assert verdict.authentic and verdict.reason == "ok"


def test_record_tampering_is_detected(ring: KeyRing, stamped: Stamped) -> None:
    env = stamped.envelope.to_dict()
    cases = {
        "output_digest_mismatch": record(stamped, text=stamped.text.replace("T", "t", 1)),
        "bad_signature": record(stamped, provenance={**env, "model_version": "4"}),
        "record_mismatch": record(stamped, backend="tensorrt"),
    }
    for reason, rec in cases.items():
        verdict = verify_record(rec, ring)
        assert not verdict.authentic and verdict.reason == reason
    assert verify_record({"provenance": {"kid": 1}}, ring).reason.startswith("malformed")


def test_text_traced_to_its_record(ring: KeyRing, stamped: Stamped) -> None:
    index = EnvelopeIndex.from_lines(
        [orjson.dumps(record(stamped)), b"garbage", orjson.dumps({"no": "envelope"})]
    )
    assert len(index) == 1
    whole = verify_text(stamped.text, ring, index.get)
    assert whole.authentic and whole.reason == "ok" and whole.whole_output
    fragment = verify_text(" ".join(stamped.text[40:160].split()), ring, index.get)
    assert fragment.authentic and fragment.reason == "traced" and not fragment.whole_output
    assert fragment.provenance_id == "a1" * 8 and fragment.model_name == "minilm-intent"
    unknown = verify_text(stamped.text, ring)
    assert unknown.authentic and unknown.reason == "mark_only" and unknown.model_name is None


def test_text_without_mark_or_with_forged_envelope(ring: KeyRing, stamped: Stamped) -> None:
    assert verify_text(LONG_TEXT, ring).reason == "no_mark"
    assert verify_text(stamped.text, ring.public_only()).reason == "needs_private_keys"
    forged = Envelope.from_dict({**stamped.envelope.to_dict(), "model_name": "gpt-x"})
    verdict = verify_text(stamped.text, ring, lambda pid: forged)
    assert not verdict.authentic and verdict.reason == "bad_signature"
