"""Signed provenance envelope for every result: what produced it, from what, under which policy.

Signed bytes: ``b"inferstream.provenance.v1\\n"`` + ``orjson.dumps(fields, OPT_SORT_KEYS)`` of every
field except ``signature`` (nested keys sorted too). ``input_digest`` is SHA-256 of the exact
input text (UTF-8); ``output_digest`` is SHA-256 of the output text *without* its text mark
(``textmark.strip``): the signer digests the unmarked output and the verifier strips marks before
digesting, so the same envelope verifies the marked and the unmarked text. For a structured
output, digest :func:`canonical_json` of it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature

from workers.errors import InferstreamError
from workers.provenance import textmark
from workers.provenance.keys import KeyRing

ENVELOPE_VERSION = 1
HEADER_ENVELOPE = "inferstream-provenance"
HEADER_KID = "inferstream-provenance-kid"
HEADER_SIG = "inferstream-provenance-sig"
_SIGNING_PREFIX = b"inferstream.provenance.v1\n"
_ID_RE = re.compile(r"[0-9a-f]{16}")
_STR_FIELDS = (
    "provenance_id",
    "model_name",
    "model_version",
    "backend",
    "input_digest",
    "output_digest",
    "policy_version",
    "trace_id",
    "kid",
    "signature",
)


class MalformedEnvelope(InferstreamError, ValueError):
    """An envelope that cannot even be parsed (wrong types, missing fields, bad headers).
    Also a ``ValueError``, so generic parse-error handlers catch it."""

    retriable = False
    reason = "malformed_envelope"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> str:
    """The text to digest for a structured (JSON-able) output."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def new_provenance_id() -> str:
    """64 random bits as 16 lowercase hex characters."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Envelope:
    provenance_id: str
    model_name: str
    model_version: str
    backend: str
    input_digest: str
    output_digest: str
    policy_version: str
    decisions: list[dict[str, Any]]
    trace_id: str
    timestamp: float
    kid: str
    signature: str
    envelope_version: int = ENVELOPE_VERSION

    def signing_bytes(self) -> bytes:
        body = self.to_dict()
        del body["signature"]
        return _SIGNING_PREFIX + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, shallow (``dataclasses.asdict`` deep-copies ``decisions``
        for every envelope: 5 % of the worker's CPU, for a value serialized at once)."""
        return {f.name: getattr(self, f.name) for f in _FIELDS}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Envelope:
        """Parse with strict types; unknown or missing fields raise :class:`MalformedEnvelope`."""
        if not isinstance(obj, Mapping):
            raise MalformedEnvelope("envelope must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - names)
        missing = sorted(names - set(obj) - {"envelope_version"})
        if unknown or missing:
            raise MalformedEnvelope(f"unknown fields {unknown}, missing fields {missing}")
        for name in _STR_FIELDS:
            if not isinstance(obj[name], str):
                raise MalformedEnvelope(f"{name!r} must be a string")
        ts = obj["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise MalformedEnvelope("'timestamp' must be a number")
        decisions = obj["decisions"]
        if not isinstance(decisions, list) or not all(isinstance(d, dict) for d in decisions):
            raise MalformedEnvelope("'decisions' must be a list of objects")
        version = obj.get("envelope_version", ENVELOPE_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise MalformedEnvelope("'envelope_version' must be an integer")
        values = {name: obj[name] for name in _STR_FIELDS}
        return cls(**values, decisions=decisions, timestamp=float(ts), envelope_version=version)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEnvelope(f"envelope is not JSON: {exc}") from exc
        return cls.from_dict(obj)

    def to_headers(self) -> dict[str, bytes]:
        """Kafka headers: the whole envelope as compact JSON, plus kid and signature alone."""
        return {
            HEADER_ENVELOPE: self.to_json(),
            HEADER_KID: self.kid.encode(),
            HEADER_SIG: self.signature.encode(),
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> Envelope:
        """Parse Kafka headers (a mapping or aiokafka's list of pairs); they must agree."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        found: dict[str, bytes] = {}
        for key, value in pairs:
            if key in (HEADER_ENVELOPE, HEADER_KID, HEADER_SIG):
                if key in found:
                    raise MalformedEnvelope(f"header {key!r} appears twice")
                found[key] = value
        if HEADER_ENVELOPE not in found:
            raise MalformedEnvelope(f"no {HEADER_ENVELOPE!r} header")
        env = cls.from_json(found[HEADER_ENVELOPE])
        if HEADER_KID in found and found[HEADER_KID] != env.kid.encode():
            raise MalformedEnvelope("kid header disagrees with the envelope")
        if HEADER_SIG in found and found[HEADER_SIG] != env.signature.encode():
            raise MalformedEnvelope("signature header disagrees with the envelope")
        return env


_FIELDS = fields(Envelope)


@dataclass(frozen=True)
class VerifyResult:
    """``reason``: ok, unknown_kid, malformed_signature, bad_signature, output_digest_mismatch,
    mark_mismatch. ``marked``: whether the checked text carries its own mark (None: not checked,
    e.g. no text or no private key for the kid)."""

    ok: bool
    reason: str
    kid: str
    provenance_id: str
    marked: bool | None = None


class Signer:
    """Builds and signs envelopes with the ring's active key; clock and id source injected."""

    def __init__(
        self,
        keys: KeyRing,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_provenance_id,
    ) -> None:
        keys.signing_key()  # fail fast on a verify-only ring
        self._keys = keys
        self._clock = clock
        self._new_id = new_id

    def sign(
        self,
        *,
        model_name: str,
        model_version: str,
        backend: str,
        input_text: str,
        output_text: str,
        policy_version: str,
        decisions: Sequence[Mapping[str, Any]],
        trace_id: str,
    ) -> Envelope:
        kid, key = self._keys.signing_key()
        provenance_id = self._new_id()
        timestamp = float(self._clock())
        if not math.isfinite(timestamp):
            raise ValueError("clock returned a non-finite timestamp")
        if not _ID_RE.fullmatch(provenance_id):
            raise ValueError("new_id must return 16 lowercase hex characters")
        # Round-trip the decisions through JSON so the stored value is what a reader will parse.
        normalized = orjson.loads(orjson.dumps(list(decisions)))
        unsigned = Envelope(
            provenance_id=provenance_id,
            model_name=model_name,
            model_version=model_version,
            backend=backend,
            input_digest=sha256_hex(input_text),
            output_digest=sha256_hex(textmark.strip(output_text)),
            policy_version=policy_version,
            decisions=normalized,
            trace_id=trace_id,
            timestamp=timestamp,
            kid=kid,
            signature="",
        )
        signature = base64.b64encode(key.sign(unsigned.signing_bytes())).decode()
        return replace(unsigned, signature=signature)


class Verifier:
    """Checks envelopes (public keys suffice) and the text they cover."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def verify_envelope(self, env: Envelope) -> VerifyResult:
        public = self._keys.public_key(env.kid)
        if public is None:
            return VerifyResult(False, "unknown_kid", env.kid, env.provenance_id)
        try:
            signature = base64.b64decode(env.signature, validate=True)
        except binascii.Error:
            signature = b""
        if len(signature) != 64:
            return VerifyResult(False, "malformed_signature", env.kid, env.provenance_id)
        try:
            public.verify(signature, env.signing_bytes())
        except InvalidSignature:
            return VerifyResult(False, "bad_signature", env.kid, env.provenance_id)
        return VerifyResult(True, "ok", env.kid, env.provenance_id)

    def verify_output(self, env: Envelope, output_text: str) -> VerifyResult:
        """Signature, then SHA-256 of the text without its mark, then (with the private key for
        ``env.kid``) that any mark in the text is exactly this envelope's mark."""
        result = self.verify_envelope(env)
        if not result.ok:
            return result
        unmarked = textmark.strip(output_text)
        if sha256_hex(unmarked) != env.output_digest:
            return VerifyResult(False, "output_digest_mismatch", env.kid, env.provenance_id)
        if not self._keys.has_private(env.kid):
            return result
        if unmarked == output_text:
            return VerifyResult(True, "ok", env.kid, env.provenance_id, marked=False)
        expected = textmark.embed(unmarked, env.provenance_id, env.kid, self._keys)
        if expected != output_text:
            return VerifyResult(False, "mark_mismatch", env.kid, env.provenance_id, marked=True)
        return VerifyResult(True, "ok", env.kid, env.provenance_id, marked=True)
