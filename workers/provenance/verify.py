"""What ``inferstream verify`` computes: is a result record or a piece of text authentic, and
which record, model and time did it come from. The CLI only reads input and prints a Verdict.

A record is checked completely: signature, output digest, and the mark in its text. A piece of
text is traced by its mark (this needs the private key ring), then looked up by provenance id in
an :class:`EnvelopeIndex` (e.g. built from the results topic) for model and time. A text equal
to the whole signed output is ``ok``; anything else carrying a valid mark is ``traced``: a
fragment or an edited copy of that output - only whole outputs can be checked letter by letter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from workers.provenance import textmark
from workers.provenance.envelope import Envelope, MalformedEnvelope, Verifier, sha256_hex
from workers.provenance.keys import KeyRing

ENVELOPE_FIELD = "provenance"
TEXT_FIELDS = ("output_text", "text", "output", "response")
EnvelopeLookup = Callable[[str], Envelope | None]


@dataclass(frozen=True)
class Verdict:
    """``reason``: ok, traced, mark_only (valid mark, record unknown), no_mark, invalid_mark,
    malformed, record_mismatch, kid_mismatch, needs_private_keys, or a ``VerifyResult`` reason."""

    authentic: bool
    kind: str  # "record" or "text"
    reason: str
    provenance_id: str | None = None
    kid: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    backend: str | None = None
    timestamp: float | None = None
    trace_id: str | None = None
    whole_output: bool | None = None
    copies: int = 0
    other_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EnvelopeIndex:
    """Envelopes by provenance id, from result records or bare envelopes (one JSON per line)."""

    def __init__(self, envelopes: Iterable[Envelope] = ()) -> None:
        self._by_id: dict[str, Envelope] = {}
        for env in envelopes:
            self.add(env)

    def add(self, env: Envelope) -> None:
        self._by_id[env.provenance_id] = env

    def get(self, provenance_id: str) -> Envelope | None:
        return self._by_id.get(provenance_id)

    def __len__(self) -> int:
        return len(self._by_id)

    @classmethod
    def from_lines(cls, lines: Iterable[bytes | str]) -> EnvelopeIndex:
        """Lines that are not JSON or hold no envelope are skipped."""
        index = cls()
        for line in lines:
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict):
                    index.add(Envelope.from_dict(obj.get(ENVELOPE_FIELD, obj)))
            except (orjson.JSONDecodeError, MalformedEnvelope):
                continue
        return index


def _from_envelope(env: Envelope, kind: str, ok: bool, reason: str, **extra: Any) -> Verdict:
    return Verdict(
        authentic=ok,
        kind=kind,
        reason=reason,
        provenance_id=env.provenance_id,
        kid=env.kid,
        model_name=env.model_name,
        model_version=env.model_version,
        backend=env.backend,
        timestamp=env.timestamp,
        trace_id=env.trace_id,
        **extra,
    )


def _record_disagrees(record: Mapping[str, Any], env: Envelope) -> bool:
    """Unsigned copies of signed facts in the record (model, backend) must match the envelope."""
    model = record.get("model")
    claims = {
        "model_name": model.get("name") if isinstance(model, dict) else record.get("model_name"),
        "model_version": model.get("version") if isinstance(model, dict) else None,
        "backend": record.get("backend"),
        "policy_version": record.get("policy_version"),
    }
    return any(v is not None and v != getattr(env, k) for k, v in claims.items())


def verify_record(record: Mapping[str, Any], keys: KeyRing, *, text: str | None = None) -> Verdict:
    """A result record with its envelope under ``provenance`` (or a bare envelope)."""
    try:
        env = Envelope.from_dict(record.get(ENVELOPE_FIELD, record))
    except MalformedEnvelope as exc:
        return Verdict(False, "record", f"malformed: {exc.detail}")
    if text is None:
        text = next((record[f] for f in TEXT_FIELDS if isinstance(record.get(f), str)), None)
    verifier = Verifier(keys)
    result = verifier.verify_envelope(env) if text is None else verifier.verify_output(env, text)
    if not result.ok:
        return _from_envelope(env, "record", False, result.reason)
    if ENVELOPE_FIELD in record and _record_disagrees(record, env):
        return _from_envelope(env, "record", False, "record_mismatch")
    return _from_envelope(env, "record", True, "ok", whole_output=None if text is None else True)


def verify_text(text: str, keys: KeyRing, lookup: EnvelopeLookup | None = None) -> Verdict:
    """Trace a piece of text by its mark; ``lookup`` maps a provenance id to its envelope."""
    if not keys.private_kids:
        return Verdict(False, "text", "needs_private_keys")
    hits = textmark.extract(text, keys)
    if not hits:
        reason = "invalid_mark" if textmark.has_mark_symbols(text) else "no_mark"
        return Verdict(False, "text", reason)
    best, others = hits[0], tuple(h.provenance_id for h in hits[1:])
    env = lookup(best.provenance_id) if lookup is not None else None
    if env is None:
        return Verdict(
            True,
            "text",
            "mark_only",
            best.provenance_id,
            best.kid,
            copies=best.count,
            other_ids=others,
        )
    checked = Verifier(keys).verify_envelope(env)
    if not checked.ok or env.kid != best.kid:
        checked_reason = checked.reason if not checked.ok else "kid_mismatch"
        return _from_envelope(env, "text", False, checked_reason)
    whole = sha256_hex(textmark.strip(text)) == env.output_digest
    if whole:
        result = Verifier(keys).verify_output(env, text)
        if not result.ok:
            return _from_envelope(env, "text", False, result.reason, copies=best.count)
    reason = "ok" if whole else "traced"
    return _from_envelope(
        env, "text", True, reason, whole_output=whole, copies=best.count, other_ids=others
    )
