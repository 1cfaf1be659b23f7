import base64
from dataclasses import fields, replace
from typing import Any

import orjson
import pytest

from tests.unit.provenance.conftest import LONG_TEXT
from workers.provenance import textmark
from workers.provenance.envelope import (
    HEADER_ENVELOPE,
    HEADER_KID,
    HEADER_SIG,
    Envelope,
    MalformedEnvelope,
    Signer,
    Verifier,
    canonical_json,
    sha256_hex,
)
from workers.provenance.keys import KeyRing


def test_sign_fills_every_field(signed: Envelope) -> None:
    assert signed.provenance_id == "0000000000000001"
    assert signed.kid == "k-2025" and signed.timestamp == 1_700_000_000.25
    assert signed.input_digest == sha256_hex("How do I reset my password?")
    assert signed.output_digest == sha256_hex(LONG_TEXT)
    assert len(base64.b64decode(signed.signature)) == 64


def test_round_trip_verifies(ring: KeyRing, signed: Envelope) -> None:
    verifier = Verifier(ring)
    assert verifier.verify_envelope(signed).ok
    assert verifier.verify_envelope(Envelope.from_dict(signed.to_dict())).ok
    assert verifier.verify_envelope(Envelope.from_json(signed.to_json())).ok
    assert verifier.verify_output(signed, LONG_TEXT).ok


def _tampered_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return value + 0.001
    if isinstance(value, int):
        return value + 1
    if isinstance(value, list):
        return [*value, {"filter": "injected"}]
    return value[:-1] + ("0" if value[-1:] != "0" else "1")


@pytest.mark.parametrize("name", [f.name for f in fields(Envelope) if f.name != "signature"])
def test_every_signed_field_tampered_is_rejected(
    ring: KeyRing, signed: Envelope, name: str
) -> None:
    tampered = replace(signed, **{name: _tampered_value(getattr(signed, name))})
    result = Verifier(ring).verify_envelope(tampered)
    assert not result.ok
    assert result.reason in {"bad_signature", "unknown_kid"}


def test_nested_decision_tampering_is_rejected(ring: KeyRing, signed: Envelope) -> None:
    body = signed.to_dict()
    body["decisions"][0]["action"] = "block"
    assert Verifier(ring).verify_envelope(Envelope.from_dict(body)).reason == "bad_signature"


def test_signature_tampering(ring: KeyRing, signed: Envelope) -> None:
    raw = bytearray(base64.b64decode(signed.signature))
    raw[5] ^= 1
    flipped = replace(signed, signature=base64.b64encode(bytes(raw)).decode())
    assert Verifier(ring).verify_envelope(flipped).reason == "bad_signature"
    for bad in ("", "!!!", base64.b64encode(b"short").decode()):
        assert Verifier(ring).verify_envelope(replace(signed, signature=bad)).reason == (
            "malformed_signature"
        )


def test_wrong_key_and_unknown_kid(signed: Envelope) -> None:
    impostor = KeyRing.generate(["k-2025"])  # same kid, different key
    assert Verifier(impostor).verify_envelope(signed).reason == "bad_signature"
    assert Verifier(KeyRing.generate(["other"])).verify_envelope(signed).reason == "unknown_kid"


def test_resigned_by_unknown_key_is_rejected(ring: KeyRing, signed: Envelope) -> None:
    forger = Signer(KeyRing.generate(["k-2025"]))
    forged = forger.sign(
        model_name=signed.model_name,
        model_version=signed.model_version,
        backend=signed.backend,
        input_text="How do I reset my password?",
        output_text=LONG_TEXT,
        policy_version=signed.policy_version,
        decisions=signed.decisions,
        trace_id=signed.trace_id,
    )
    assert Verifier(ring).verify_envelope(forged).reason == "bad_signature"


def test_headers_round_trip(ring: KeyRing, signed: Envelope) -> None:
    headers = signed.to_headers()
    assert set(headers) == {HEADER_ENVELOPE, HEADER_KID, HEADER_SIG}
    assert all(isinstance(v, bytes) for v in headers.values())
    assert Envelope.from_headers(headers) == signed
    as_list = [("other", b"x"), *headers.items()]  # aiokafka gives a list of pairs
    assert Verifier(ring).verify_envelope(Envelope.from_headers(as_list)).ok


def test_headers_must_agree(signed: Envelope) -> None:
    headers = signed.to_headers()
    with pytest.raises(MalformedEnvelope):
        Envelope.from_headers({**headers, HEADER_KID: b"k-2024"})
    with pytest.raises(MalformedEnvelope):
        Envelope.from_headers({**headers, HEADER_SIG: b"AAAA"})
    with pytest.raises(MalformedEnvelope):
        Envelope.from_headers({HEADER_KID: b"k"})
    with pytest.raises(MalformedEnvelope):
        Envelope.from_headers([*headers.items(), (HEADER_ENVELOPE, b"{}")])


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": "1700000000"},
        {"timestamp": True},
        {"decisions": {"a": 1}},
        {"decisions": ["x"]},
        {"kid": 3},
        {"extra": 1},
        {"envelope_version": "1"},
    ],
)
def test_from_dict_is_strict(signed: Envelope, change: dict[str, Any]) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.from_dict({**signed.to_dict(), **change})


def test_from_dict_missing_field_and_bad_json(signed: Envelope) -> None:
    body = signed.to_dict()
    del body["trace_id"]
    with pytest.raises(MalformedEnvelope):
        Envelope.from_dict(body)
    with pytest.raises(MalformedEnvelope):
        Envelope.from_json(b"{not json")


def test_integer_timestamp_from_json_still_verifies(ring: KeyRing) -> None:
    env = Signer(ring, clock=lambda: 1_700_000_000, new_id=lambda: "00000000000000ff").sign(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text="o",
        policy_version="p",
        decisions=[{"nan": float("nan"), "z": 1, "a": [1.5]}],
        trace_id="t",
    )
    body = orjson.loads(env.to_json())
    body["timestamp"] = 1_700_000_000
    assert Verifier(ring).verify_envelope(Envelope.from_dict(body)).ok
    assert env.decisions == [{"nan": None, "z": 1, "a": [1.5]}]


def test_bad_id_source_and_clock(ring: KeyRing) -> None:
    args: dict[str, Any] = dict(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text="o",
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    with pytest.raises(ValueError):
        Signer(ring, new_id=lambda: "xyz").sign(**args)
    with pytest.raises(ValueError):
        Signer(ring, clock=lambda: float("inf")).sign(**args)


def test_verify_output_text_checks(ring: KeyRing, signed: Envelope) -> None:
    verifier = Verifier(ring)
    marked = textmark.embed(LONG_TEXT, signed.provenance_id, signed.kid, ring)
    assert verifier.verify_output(signed, marked).ok
    assert verifier.verify_output(signed, marked).marked is True
    assert verifier.verify_output(signed, LONG_TEXT).marked is False
    assert Verifier(ring.public_only()).verify_output(signed, marked).marked is None
    edited = marked.replace("g", "G", 1)  # a visible edit keeps the selectors in place
    assert edited != marked
    assert verifier.verify_output(signed, edited).reason == "output_digest_mismatch"
    other_mark = textmark.embed(LONG_TEXT, "00000000000000ee", signed.kid, ring)
    assert verifier.verify_output(signed, other_mark).reason == "mark_mismatch"


def test_output_digest_is_over_unmarked_text(ring: KeyRing, make_signer: Any) -> None:
    pre_marked = textmark.embed(LONG_TEXT, "00000000000000ee", "k-2024", ring)
    env = make_signer(ring).sign(
        model_name="m",
        model_version="1",
        backend="b",
        input_text="i",
        output_text=pre_marked,
        policy_version="p",
        decisions=[],
        trace_id="t",
    )
    assert env.output_digest == sha256_hex(LONG_TEXT)


def test_canonical_json_sorts_keys() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'


def test_malformed_envelope_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Envelope.from_dict({"kid": 1})
    assert not MalformedEnvelope("x").retriable
