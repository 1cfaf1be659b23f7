"""Governance of every output: permission check, content filter, text mark and signed envelope.

``Governor.admit`` runs before inference (a denied request never reaches the model);
``Governor.release`` runs after it and returns what may leave the service, signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.guard.detectors import Finding
from workers.guard.filter import ContentFilter, Decision, FilterPolicy
from workers.guard.policy import Access, PolicyStore
from workers.inference.entities import Entity
from workers.provenance.envelope import Envelope
from workers.provenance.stamp import Stamped, Watermarker

Status = Literal["ok", "denied", "blocked"]

# The model's entity tags that are personal data (masked like the rule detectors' findings); its
# clinical tags (symptom, drug, ...) are content, not PII, and are never masked in conversations.
MODEL_PII_TYPES = {
    "PERSON": "PERSON",
    "PHONE": "PHONE",
    "EMAIL": "EMAIL",
    "ID": "ID_NUMBER",
    "ID_NUMBER": "ID_NUMBER",
    "ADDRESS": "ADDRESS",
}
MIN_ENTITY_CONFIDENCE = 0.5


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str
    backend: str


@dataclass(frozen=True, slots=True)
class Released:
    """What leaves the service for one request."""

    status: Status
    text: str | None  # the masked, marked text; None when denied or blocked
    access: Access
    envelope: Envelope
    decision: Decision | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)


Stage = Callable[[str], AbstractContextManager[object]]


def _no_stage(name: str) -> AbstractContextManager[object]:
    return nullcontext()


class Governor:
    def __init__(
        self,
        policies: PolicyStore,
        content_filter: ContentFilter,
        watermarker: Watermarker,
        *,
        capability: str = "conversation.reply",
    ) -> None:
        self.policies = policies
        self.content_filter = content_filter
        self.watermarker = watermarker
        self.capability = capability

    def admit(self, tenant: str, metadata: Mapping[str, Any]) -> Access:
        department = metadata.get("department")
        role = metadata.get("role")
        return self.policies.decide(
            tenant,
            department if isinstance(department, str) else "",
            role if isinstance(role, str) else "",
            self.capability,
        )

    def deny(self, access: Access, *, input_text: str, model: ModelRef, trace_id: str) -> Released:
        decisions = [{"stage": "policy", "action": "deny", "reason": access.reason}]
        stamped = self._stamp(input_text, "", access, decisions, model, trace_id)
        return Released("denied", None, access, stamped.envelope, None, decisions)

    def release(
        self,
        text: str,
        access: Access,
        *,
        model: ModelRef,
        trace_id: str,
        safety_score: float | None = None,
        entities: Sequence[Entity] = (),
        stage: Stage = _no_stage,
    ) -> Released:
        """Rules and the model combined: the model's unsafe score and its PII entity tags.
        ``stage(name)`` wraps the "filter" and "watermark" steps (e.g. in trace spans)."""
        model_pii = [
            Finding(
                MODEL_PII_TYPES[e.type],
                e.start,
                e.end,
                "model",
                f"model tag {e.type} (p={e.confidence:.2f})",
            )
            for e in entities
            if e.type in MODEL_PII_TYPES and e.confidence >= MIN_ENTITY_CONFIDENCE
        ]
        with stage("filter"):
            decision = self.content_filter.decide(
                text,
                tenant=access.tenant,
                policy=self._filter_policy(access),
                safety_score=safety_score,
                model_entities=model_pii,
            )
        decisions = [{"stage": "filter", **decision.to_dict()}]
        decisions[0].pop("text", None)  # the envelope signs a digest of the text, not the text
        blocked = decision.action == "block"
        with stage("watermark"):
            output = "" if blocked else decision.text
            stamped = self._stamp(text, output, access, decisions, model, trace_id)
        if blocked:
            return Released("blocked", None, access, stamped.envelope, decision, decisions)
        return Released("ok", stamped.text, access, stamped.envelope, decision, decisions)

    def _filter_policy(self, access: Access) -> FilterPolicy:
        policy = access.policy
        actions: dict[str, str] = dict(policy.filter_actions) if policy else {}
        for entity_type in access.unmasked:  # the requester's role may see these in clear
            actions[entity_type] = "allow"
        base = FilterPolicy()
        merged = {**base.actions, **actions}
        if "*" in access.unmasked:
            merged = {t: ("block" if a == "block" else "allow") for t, a in merged.items()}
        threshold = policy.safety_block_threshold if policy else None
        return FilterPolicy(
            actions=merged,  # type: ignore[arg-type]
            safety_block_threshold=(
                threshold if threshold is not None else base.safety_block_threshold
            ),
        )

    def _stamp(
        self,
        input_text: str,
        output_text: str,
        access: Access,
        decisions: list[dict[str, Any]],
        model: ModelRef,
        trace_id: str,
    ) -> Stamped:
        return self.watermarker.stamp(
            model_name=model.name,
            model_version=model.version,
            backend=model.backend,
            input_text=input_text,
            output_text=output_text,
            policy_version=access.policy_version,
            decisions=decisions,
            trace_id=trace_id,
        )
