"""Per-tenant permissions: which departments/roles may use which capabilities, and which entity
types they may see unmasked. Policies arrive as JSON on the compacted ``policies`` topic.

A policy record (key = tenant)::

    {"schema": "inferstream.policy/v1", "tenant": "acme", "version": 3, "default": "deny",
     "rules": [{"department": "support", "role": "*", "capabilities": ["conversation.reply"],
                "unmasked": ["EMAIL"]}],
     "filter": {"actions": {"PHONE": "mask", "SECRET": "block"}, "safety_block_threshold": 0.9}}

Rules are tried in order; the first whose department and role match ("*" matches anything)
decides. No matching rule: ``default`` ("deny" unless the policy says "allow"). Unknown tenant:
deny. A record with a lower version than the one applied is ignored (out-of-order replays).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from workers.errors import InvalidEvent

POLICY_SCHEMA = "inferstream.policy/v1"
CAPABILITIES = frozenset({"conversation.reply", "document.extract"})
ACTIONS = frozenset({"allow", "mask", "block"})


@dataclass(frozen=True, slots=True)
class Rule:
    department: str
    role: str
    capabilities: frozenset[str]
    unmasked: frozenset[str]

    def matches(self, department: str, role: str) -> bool:
        return self.department in ("*", department) and self.role in ("*", role)


@dataclass(frozen=True, slots=True)
class Policy:
    tenant: str
    version: int
    default_allow: bool
    rules: tuple[Rule, ...]
    filter_actions: Mapping[str, str] = field(default_factory=dict)
    safety_block_threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """The permission decision for one request; ``policy_version`` is stamped on results."""

    allowed: bool
    reason: str
    tenant: str
    policy_version: str
    unmasked: frozenset[str] = frozenset()
    policy: Policy | None = None


def _strs(value: Any, what: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEvent("invalid_policy", f"{what} must be a list of strings")
    return frozenset(value)


def parse_policy(tenant: str, raw: bytes) -> Policy:
    """Validate a policy record; raises ``InvalidEvent('invalid_policy', ...)``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_policy", f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("schema", POLICY_SCHEMA) != POLICY_SCHEMA:
        raise InvalidEvent("invalid_policy", f"not a {POLICY_SCHEMA} object")
    if obj.get("tenant") != tenant:
        raise InvalidEvent(
            "invalid_policy", f"record key {tenant!r} != tenant {obj.get('tenant')!r}"
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidEvent("invalid_policy", "'version' must be a non-negative integer")
    default = obj.get("default", "deny")
    if default not in ("allow", "deny"):
        raise InvalidEvent("invalid_policy", "'default' must be 'allow' or 'deny'")
    rules = []
    for i, rule in enumerate(obj.get("rules", [])):
        if not isinstance(rule, dict):
            raise InvalidEvent("invalid_policy", f"rules[{i}] must be an object")
        caps = _strs(rule.get("capabilities", []), f"rules[{i}].capabilities")
        if unknown := caps - CAPABILITIES:
            raise InvalidEvent(
                "invalid_policy", f"rules[{i}]: unknown capabilities {sorted(unknown)}"
            )
        dept, role = rule.get("department", "*"), rule.get("role", "*")
        if not isinstance(dept, str) or not isinstance(role, str):
            raise InvalidEvent("invalid_policy", f"rules[{i}]: department/role must be strings")
        rules.append(
            Rule(dept, role, caps, _strs(rule.get("unmasked", []), f"rules[{i}].unmasked"))
        )
    filt = obj.get("filter", {})
    if not isinstance(filt, dict):
        raise InvalidEvent("invalid_policy", "'filter' must be an object")
    actions = filt.get("actions", {})
    if not isinstance(actions, dict) or not all(a in ACTIONS for a in actions.values()):
        raise InvalidEvent(
            "invalid_policy", f"'filter.actions' values must be in {sorted(ACTIONS)}"
        )
    threshold = filt.get("safety_block_threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 <= threshold <= 1):
        raise InvalidEvent("invalid_policy", "'filter.safety_block_threshold' must be in [0, 1]")
    return Policy(tenant, version, default == "allow", tuple(rules), actions, threshold)


class PolicyStore:
    """The applied policies by tenant: a materialized view of the compacted ``policies`` topic."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def apply(self, tenant: str, raw: bytes | None) -> Policy | None:
        """Apply one record (``None`` = tombstone: the tenant is removed, hence denied).

        Returns the policy now in force for the tenant. Raises ``InvalidEvent`` for a bad record,
        which leaves the tenant's current policy in force.
        """
        if raw is None:
            self._policies.pop(tenant, None)
            return None
        policy = parse_policy(tenant, raw)
        current = self._policies.get(tenant)
        if current is None or policy.version >= current.version:
            self._policies[tenant] = policy
            return policy
        return current

    def get(self, tenant: str) -> Policy | None:
        return self._policies.get(tenant)

    def decide(self, tenant: str, department: str, role: str, capability: str) -> Access:
        policy = self._policies.get(tenant)
        if policy is None:
            return Access(False, "unknown_tenant", tenant, "none")
        version = str(policy.version)
        for rule in policy.rules:
            if rule.matches(department, role):
                if capability in rule.capabilities:
                    return Access(True, "rule", tenant, version, rule.unmasked, policy)
                return Access(False, "capability_not_granted", tenant, version, policy=policy)
        if policy.default_allow:
            return Access(True, "default_allow", tenant, version, policy=policy)
        return Access(False, "no_matching_rule", tenant, version, policy=policy)
