"""One call for the result path: sign the envelope, then mark the emitted text with its id."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.provenance import textmark
from workers.provenance.envelope import Envelope, Signer, new_provenance_id
from workers.provenance.keys import KeyRing


@dataclass(frozen=True)
class Stamped:
    """The text to emit (marked) and the envelope to carry in the result and its headers."""

    text: str
    envelope: Envelope


class Watermarker:
    """Signer + text mark. ``mark_text=False`` signs only (e.g. for structured outputs)."""

    def __init__(
        self,
        keys: KeyRing,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_provenance_id,
        *,
        mark_text: bool = True,
    ) -> None:
        self._keys = keys
        self._signer = Signer(keys, clock=clock, new_id=new_id)
        self._mark_text = mark_text

    def stamp(
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
    ) -> Stamped:
        """Digest the unmarked output, sign, then embed the envelope's id in the output."""
        env = self._signer.sign(
            model_name=model_name,
            model_version=model_version,
            backend=backend,
            input_text=input_text,
            output_text=output_text,
            policy_version=policy_version,
            decisions=decisions,
            trace_id=trace_id,
        )
        if not self._mark_text:
            return Stamped(textmark.strip(output_text), env)
        return Stamped(textmark.embed(output_text, env.provenance_id, env.kid, self._keys), env)
