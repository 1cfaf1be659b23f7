import orjson
import pytest

from workers.errors import InvalidEvent
from workers.guard.policy import PolicyStore, parse_policy


def policy(tenant: str = "acme", version: int = 1, **extra: object) -> bytes:
    body: dict[str, object] = {
        "schema": "inferstream.policy/v1",
        "tenant": tenant,
        "version": version,
        "rules": [
            {
                "department": "support",
                "role": "agent",
                "capabilities": ["conversation.reply"],
                "unmasked": ["EMAIL"],
            },
            {"department": "legal", "role": "*", "capabilities": ["document.extract"]},
        ],
    }
    body.update(extra)
    return orjson.dumps(body)


def test_first_matching_rule_decides() -> None:
    store = PolicyStore()
    store.apply("acme", policy())
    ok = store.decide("acme", "support", "agent", "conversation.reply")
    assert ok.allowed and ok.reason == "rule" and ok.unmasked == {"EMAIL"}
    assert ok.policy_version == "1"
    no_cap = store.decide("acme", "legal", "clerk", "conversation.reply")
    assert not no_cap.allowed and no_cap.reason == "capability_not_granted"
    no_rule = store.decide("acme", "sales", "agent", "conversation.reply")
    assert not no_rule.allowed and no_rule.reason == "no_matching_rule"


def test_unknown_tenant_is_denied_and_default_allow_is_honoured() -> None:
    store = PolicyStore()
    assert store.decide("nobody", "", "", "conversation.reply").reason == "unknown_tenant"
    store.apply("open", policy("open", default="allow", rules=[]))
    assert store.decide("open", "", "", "conversation.reply").allowed


def test_versions_only_move_forward_and_tombstones_remove() -> None:
    store = PolicyStore()
    store.apply("acme", policy(version=5))
    store.apply("acme", policy(version=3, default="allow", rules=[]))  # stale replay: ignored
    assert store.decide("acme", "x", "y", "conversation.reply").policy_version == "5"
    store.apply("acme", None)
    assert store.decide("acme", "support", "agent", "conversation.reply").reason == "unknown_tenant"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        orjson.dumps([1]),
        policy(tenant="other"),
        policy(version=-1),
        policy(version="3"),
        policy(default="maybe"),
        policy(rules=[{"capabilities": ["launch.missiles"]}]),
        policy(rules=["x"]),
        policy(filter={"actions": {"PHONE": "shred"}}),
        policy(filter={"safety_block_threshold": 2}),
        policy(schema="inferstream.policy/v9"),
    ],
)
def test_bad_policies_are_rejected_and_keep_the_current_one(raw: bytes) -> None:
    store = PolicyStore()
    store.apply("acme", policy(version=2))
    with pytest.raises(InvalidEvent) as info:
        store.apply("acme", raw)
    assert info.value.code == "invalid_policy"
    assert store.decide("acme", "support", "agent", "conversation.reply").allowed


def test_filter_settings_are_parsed() -> None:
    p = parse_policy(
        "acme", policy(filter={"actions": {"PHONE": "allow"}, "safety_block_threshold": 0.5})
    )
    assert p.filter_actions == {"PHONE": "allow"} and p.safety_block_threshold == 0.5
