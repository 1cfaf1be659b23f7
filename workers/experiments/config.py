"""Model experiments as live configuration: a primary model version, candidates that serve a
share of conversations (canary, A/B) and shadows that get a copy (their answers are compared,
never returned). Experiments arrive as JSON on the compacted ``experiments`` topic, key = the
tenant they apply to, or ``*`` for every tenant without one of its own::

    {"schema": "inferstream.experiment/v1", "name": "fp32-canary", "tenant": "*", "version": 4,
     "primary": {"model": "inferstream_cpu", "version": "1"},
     "candidates": [{"model": "inferstream_cpu_fp32", "version": "1", "share": 0.1}],
     "shadows": [{"model": "inferstream_cpu", "version": "2", "share": 1.0}],
     "guard": {"window_s": 60, "min_events": 100, "max_error_rate_delta": 0.02,
               "max_p99_ratio": 1.5},
     "state": "running", "reason": null, "updated_at": 1765000000.0, "updated_by": "cli"}

Assignment is sticky: a conversation's place in ``[0, 1)`` is a hash of the experiment's name
and the conversation id, so every worker puts a conversation in the same arm, and it stays
there for as long as the configuration does. Candidates take consecutive slices from 0 in the
order listed: raising the share of a single candidate (or of the last one listed) only moves
conversations from the primary into it; with several, raising an earlier one shifts the later
slices too.
A record with a lower ``version`` than the one applied is ignored (out-of-order replays).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from workers.errors import InvalidEvent

EXPERIMENT_SCHEMA = "inferstream.experiment/v1"
ALL_TENANTS = "*"
STATES = ("running", "promoted", "rolled_back")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always fullmatch
_VERSION = re.compile(r"[0-9]{0,9}")


def _bad(detail: str) -> InvalidEvent:
    return InvalidEvent("invalid_experiment", detail)


@dataclass(frozen=True, slots=True, order=True)
class Variant:
    """A Triton model and version; version "" = the version Triton serves when none is named."""

    model: str
    version: str = ""

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version or 'default'}"

    def to_dict(self) -> dict[str, str]:
        return {"model": self.model, "version": self.version}

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``model`` or ``model:version`` (the command line's form)."""
        model, _, version = text.partition(":")
        return cls._checked(model, version)

    @classmethod
    def _checked(cls, model: Any, version: Any) -> Variant:
        if not isinstance(model, str) or not _NAME.fullmatch(model):
            raise _bad(f"model must be a Triton model name, got {model!r}")
        version = "" if version in (None, "default") else str(version)
        if not _VERSION.fullmatch(version):
            raise _bad(f"version must be digits, got {version!r}")
        return cls(model, version)


@dataclass(frozen=True, slots=True)
class Arm:
    """A candidate (serves ``share`` of conversations) or a shadow (mirrors ``share`` of them)."""

    variant: Variant
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.variant.to_dict(), "share": self.share}


@dataclass(frozen=True, slots=True)
class GuardRails:
    """When a candidate is rolled back automatically: over the last ``window_s`` seconds, with at
    least ``min_events`` events in each of primary and candidate, its error rate exceeds the
    primary's by more than ``max_error_rate_delta``, or its p99 model latency exceeds the
    primary's times ``max_p99_ratio``."""

    enabled: bool = True
    window_s: float = 60.0
    min_events: int = 100
    max_error_rate_delta: float = 0.02
    max_p99_ratio: float = 1.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "window_s": self.window_s,
            "min_events": self.min_events,
            "max_error_rate_delta": self.max_error_rate_delta,
            "max_p99_ratio": self.max_p99_ratio,
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one conversation's turn goes under an experiment."""

    experiment: Experiment
    served: Variant
    arm: str  # "primary" or "candidate"
    shadows: tuple[Variant, ...]

    def stamp(self) -> dict[str, Any]:
        """What every result under the experiment carries."""
        exp = self.experiment
        return {"name": exp.name, "version": exp.version, "arm": self.arm}


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    tenant: str
    version: int
    primary: Variant
    candidates: tuple[Arm, ...] = ()
    shadows: tuple[Arm, ...] = ()
    guard: GuardRails = field(default_factory=GuardRails)
    state: str = "running"
    reason: str | None = None
    updated_at: float = 0.0
    updated_by: str = ""

    def position(self, conversation_id: str, salt: str = "") -> float:
        """The conversation's place in [0, 1): the same on every worker, for every turn."""
        digest = hashlib.blake2b(
            f"{self.name}\x00{salt}\x00{conversation_id}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    def assign(self, conversation_id: str) -> Assignment:
        at = self.position(conversation_id)
        served, arm, edge = self.primary, "primary", 0.0
        for cand in self.candidates:
            edge += cand.share
            if at < edge:
                served, arm = cand.variant, "candidate"
                break
        shadows = tuple(
            s.variant
            for s in self.shadows
            if s.variant != served and self.position(conversation_id, s.variant.label) < s.share
        )
        return Assignment(self, served, arm, shadows)

    def variants(self) -> tuple[Variant, ...]:
        seen = dict.fromkeys(
            (
                self.primary,
                *(c.variant for c in self.candidates),
                *(s.variant for s in self.shadows),
            )
        )
        return tuple(seen)

    # --- changes (each a new version) ------------------------------------------------------
    def _next(self, **changes: Any) -> Experiment:
        return replace(self, version=self.version + 1, **changes)

    def promoted(self, variant: Variant | None, *, at: float, by: str) -> Experiment:
        """The candidate ``variant`` (the only candidate when None) becomes the primary."""
        if variant is None:
            if len(self.candidates) != 1:
                raise _bad(f"{self.name} has {len(self.candidates)} candidates: name the one")
            variant = self.candidates[0].variant
        if variant not in {c.variant for c in self.candidates}:
            raise _bad(f"{variant.label} is not a candidate of {self.name}")
        return self._next(
            primary=variant,
            candidates=(),
            shadows=tuple(s for s in self.shadows if s.variant != variant),
            state="promoted",
            reason=f"promoted {variant.label} (was {self.primary.label})",
            updated_at=at,
            updated_by=by,
        )

    def rolled_back(self, reason: str, *, at: float, by: str) -> Experiment:
        """Every conversation back on the primary; shadows stay (they never reach a user)."""
        return self._next(
            candidates=(), state="rolled_back", reason=reason, updated_at=at, updated_by=by
        )

    # --- wire format -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": EXPERIMENT_SCHEMA,
            "name": self.name,
            "tenant": self.tenant,
            "version": self.version,
            "primary": self.primary.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "shadows": [s.to_dict() for s in self.shadows],
            "guard": self.guard.to_dict(),
            "state": self.state,
            "reason": self.reason,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def _arms(value: Any, what: str, default_share: float | None) -> tuple[Arm, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(f"{what} must be a list")
    arms = []
    for item in value:
        if not isinstance(item, dict):
            raise _bad(f"each of {what} must be an object")
        share = item.get("share", default_share)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise _bad(f"{what} share must be a number in (0, 1], got {share!r}")
        arms.append(Arm(Variant._checked(item.get("model"), item.get("version")), float(share)))
    return tuple(arms)


def _guard(value: Any) -> GuardRails:
    if value is None:
        return GuardRails()
    if not isinstance(value, dict):
        raise _bad("guard must be an object")
    base, out = GuardRails(), {}
    for name in ("window_s", "max_error_rate_delta", "max_p99_ratio"):
        v = value.get(name, getattr(base, name))
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise _bad(f"guard.{name} must be a positive number, got {v!r}")
        out[name] = float(v)
    n = value.get("min_events", base.min_events)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _bad(f"guard.min_events must be a positive integer, got {n!r}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad("guard.enabled must be true or false")
    return GuardRails(enabled, min_events=n, **out)


def _number(value: Any, what: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{what} must be a number, got {value!r}")
    return float(value)


def parse_experiment(tenant: str, raw: bytes) -> Experiment:
    """Validate an experiment record; raises ``InvalidEvent('invalid_experiment', ...)``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("schema", EXPERIMENT_SCHEMA) != EXPERIMENT_SCHEMA:
        raise _bad(f"not a {EXPERIMENT_SCHEMA} object")
    if obj.get("tenant", tenant) != tenant:
        raise _bad(f"record key {tenant!r} != tenant {obj.get('tenant')!r}")
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(f"name must match {_NAME.pattern}, got {name!r}")
    version = obj.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _bad(f"version must be a non-negative integer, got {version!r}")
    primary = obj.get("primary")
    if not isinstance(primary, dict):
        raise _bad("primary must be an object {model, version}")
    exp = Experiment(
        name=name,
        tenant=tenant,
        version=version,
        primary=Variant._checked(primary.get("model"), primary.get("version")),
        candidates=_arms(obj.get("candidates"), "candidates", None),
        shadows=_arms(obj.get("shadows"), "shadows", 1.0),
        guard=_guard(obj.get("guard")),
        state=str(obj.get("state", "running")),
        reason=obj.get("reason") if isinstance(obj.get("reason"), str) else None,
        updated_at=_number(obj.get("updated_at"), "updated_at"),
        updated_by=str(obj.get("updated_by") or ""),
    )
    if exp.state not in STATES:
        raise _bad(f"state must be one of {STATES}, got {exp.state!r}")
    total = sum(c.share for c in exp.candidates)
    if total > 1.0 + 1e-9:
        raise _bad(f"candidate shares add up to {total:g} > 1")
    named = [exp.primary, *(c.variant for c in exp.candidates)]
    if len(set(named)) != len(named):
        raise _bad("the primary and the candidates must be different model versions")
    shadows = [s.variant for s in exp.shadows]
    if len(set(shadows)) != len(shadows) or exp.primary in shadows:
        raise _bad("shadows must be distinct and not the primary")
    return exp


class ExperimentStore:
    """The experiments in force by tenant key: a materialized view of the compacted topic."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, Experiment] = {}

    def __len__(self) -> int:
        return len(self._by_tenant)

    def apply(self, tenant: str, raw: bytes | None) -> Experiment | None:
        """Apply one record (``None`` = tombstone: the tenant's experiment ends). Returns the
        experiment now in force; a bad record raises ``InvalidEvent`` and changes nothing."""
        if raw is None:
            self._by_tenant.pop(tenant, None)
            return None
        exp = parse_experiment(tenant, raw)
        current = self._by_tenant.get(tenant)
        if current is None or current.name != exp.name or exp.version >= current.version:
            self._by_tenant[tenant] = exp
            return exp
        return current

    def get(self, tenant: str) -> Experiment | None:
        """The tenant's experiment, else the one for every tenant (``*``), else None."""
        by = self._by_tenant
        return by.get(tenant) or by.get(ALL_TENANTS)

    def exact(self, tenant: str) -> Experiment | None:
        """The experiment recorded under exactly this key."""
        return self._by_tenant.get(tenant)

    def all(self) -> list[Experiment]:
        return list(self._by_tenant.values())
