"""Provenance watermarks: a signed envelope on every result and an invisible mark in its text.

- :mod:`keys` - Ed25519 key ring (files or env, rotation by key id) and per-kid text-mark keys.
- :mod:`envelope` - the signed envelope, its Kafka headers, :class:`Signer` and :class:`Verifier`.
- :mod:`textmark` - the variation-selector mark: embed, strip, extract (what it survives: there).
- :mod:`stamp` - sign and mark in one call for the result path.
- :mod:`verify` - what ``inferstream verify`` computes for a record or a piece of text.

"Watermark" here always means this provenance mark, never an event-time watermark.
"""

from workers.provenance.envelope import (
    Envelope,
    MalformedEnvelope,
    Signer,
    Verifier,
    VerifyResult,
)
from workers.provenance.keys import KeyRing, ProvenanceKeyError, generate_key_file
from workers.provenance.stamp import Stamped, Watermarker
from workers.provenance.textmark import MarkHit

__all__ = [
    "Envelope",
    "KeyRing",
    "MalformedEnvelope",
    "MarkHit",
    "ProvenanceKeyError",
    "Signer",
    "Stamped",
    "Verifier",
    "VerifyResult",
    "Watermarker",
    "generate_key_file",
]
