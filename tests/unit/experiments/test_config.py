import math
from dataclasses import replace
from typing import Any

import orjson
import pytest

from workers.errors import InvalidEvent
from workers.experiments.config import (
    EXPERIMENT_SCHEMA,
    Arm,
    Experiment,
    ExperimentStore,
    GuardRails,
    Variant,
    parse_experiment,
)

N = 20_000
IDS = [f"conv-{i}" for i in range(N)]
PRIMARY = Variant("inferstream_cpu", "1")
FP32 = Variant("inferstream_cpu_fp32", "1")
V2 = Variant("inferstream_cpu", "2")
V3 = Variant("inferstream_cpu", "3")


def body(tenant: str = "*", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": EXPERIMENT_SCHEMA,
        "name": "fp32-canary",
        "tenant": tenant,
        "version": 4,
        "primary": {"model": "inferstream_cpu", "version": "1"},
        "candidates": [{"model": "inferstream_cpu_fp32", "version": "1", "share": 0.1}],
        "shadows": [{"model": "inferstream_cpu", "version": "2", "share": 1.0}],
        "guard": {
            "window_s": 60,
            "min_events": 100,
            "max_error_rate_delta": 0.02,
            "max_p99_ratio": 1.5,
        },
        "state": "running",
        "reason": None,
        "updated_at": 1765000000.0,
        "updated_by": "cli",
    }
    out.update(extra)
    return out


def raw(tenant: str = "*", **extra: Any) -> bytes:
    return orjson.dumps(body(tenant, **extra))


def experiment(
    candidates: tuple[Arm, ...] = (),
    shadows: tuple[Arm, ...] = (),
    name: str = "exp",
    version: int = 1,
) -> Experiment:
    return Experiment(name, "*", version, PRIMARY, candidates=candidates, shadows=shadows)


def share_of(exp: Experiment, variant: Variant) -> float:
    return sum(1 for c in IDS if exp.assign(c).served == variant) / N


# --- parsing and validation -----------------------------------------------------------------


def test_parse_reads_every_field() -> None:
    exp = parse_experiment("*", raw())
    assert exp.name == "fp32-canary" and exp.tenant == "*" and exp.version == 4
    assert exp.primary == PRIMARY
    assert exp.candidates == (Arm(FP32, 0.1),)
    assert exp.shadows == (Arm(V2, 1.0),)
    assert exp.guard == GuardRails(True, 60.0, 100, 0.02, 1.5)
    assert exp.state == "running" and exp.reason is None
    assert exp.updated_at == 1765000000.0 and exp.updated_by == "cli"
    assert exp.variants() == (PRIMARY, FP32, V2)


def test_round_trip_through_json_is_identity() -> None:
    exp = parse_experiment("acme", raw("acme"))
    assert parse_experiment("acme", exp.to_json()) == exp
    wire = orjson.loads(exp.to_json())
    assert wire["schema"] == EXPERIMENT_SCHEMA
    assert wire["candidates"] == [{"model": "inferstream_cpu_fp32", "version": "1", "share": 0.1}]


def test_round_trip_of_a_built_experiment_with_default_versions() -> None:
    exp = Experiment(
        "two-cands",
        "acme",
        7,
        Variant("m"),
        candidates=(Arm(Variant("c", "3"), 0.25), Arm(Variant("d"), 0.5)),
        shadows=(Arm(Variant("s", "9"), 0.5),),
        guard=GuardRails(False, 30.0, 5, 0.1, 2.0),
        state="rolled_back",
        reason="too slow",
        updated_at=12.5,
        updated_by="me",
    )
    assert parse_experiment("acme", exp.to_json()) == exp
    for changed in (exp.rolled_back("x", at=1.0, by="b"), exp.promoted(Variant("d"), at=2, by="b")):
        assert parse_experiment("acme", changed.to_json()) == changed


def test_minimal_record_gets_defaults() -> None:
    exp = parse_experiment("acme", orjson.dumps({"name": "n", "primary": {"model": "m"}}))
    assert exp == Experiment("n", "acme", 1, Variant("m", ""))
    assert exp.guard == GuardRails()
    assert exp.state == "running" and exp.updated_at == 0.0 and exp.updated_by == ""


def test_shadow_share_defaults_to_all_and_candidate_shares_may_sum_to_one() -> None:
    exp = parse_experiment("*", raw(shadows=[{"model": "s"}]))
    assert exp.shadows == (Arm(Variant("s"), 1.0),)
    cands = [
        {"model": "a", "share": 0.1},
        {"model": "b", "share": 0.2},
        {"model": "c", "share": 0.7},  # 0.1 + 0.2 + 0.7 = 1.0000000000000002 in floats
    ]
    assert len(parse_experiment("*", raw(candidates=cands)).candidates) == 3


def test_guard_ints_become_floats_and_enabled_is_read() -> None:
    exp = parse_experiment("*", raw(guard={"enabled": False, "window_s": 5, "min_events": 1}))
    assert exp.guard == GuardRails(False, 5.0, 1, 0.02, 1.5)
    assert isinstance(exp.guard.window_s, float)


def test_non_string_reason_is_dropped() -> None:
    assert parse_experiment("*", raw(reason=42)).reason is None
    assert parse_experiment("*", raw(reason="why")).reason == "why"


def test_tenant_key_is_taken_when_the_record_names_none() -> None:
    record = body()
    del record["tenant"]
    assert parse_experiment("acme", orjson.dumps(record)).tenant == "acme"


BAD_RECORDS: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("not an object", orjson.dumps([1, 2])),
    ("scalar", orjson.dumps("x")),
    ("other schema", raw(schema="inferstream.policy/v1")),
    ("key != tenant", raw("acme")),
    ("no name", raw(name=None)),
    ("name not a string", raw(name=7)),
    ("empty name", raw(name="")),
    ("name with space", raw(name="a b")),
    ("name starts with dash", raw(name="-a")),
    ("name too long", raw(name="a" * 65)),
    ("version negative", raw(version=-1)),
    ("version a string", raw(version="4")),
    ("version a float", raw(version=4.0)),
    ("version a bool", raw(version=True)),
    ("no primary", raw(primary=None)),
    ("primary a string", raw(primary="inferstream_cpu:1")),
    ("primary without model", raw(primary={"version": "1"})),
    ("primary bad model", raw(primary={"model": "a/b"})),
    ("primary version letters", raw(primary={"model": "m", "version": "v1"})),
    ("primary version negative", raw(primary={"model": "m", "version": -1})),
    ("primary version too long", raw(primary={"model": "m", "version": "1234567890"})),
    ("candidates not a list", raw(candidates={"model": "c", "share": 0.1})),
    ("candidate not an object", raw(candidates=["c"])),
    ("candidate without share", raw(candidates=[{"model": "c"}])),
    ("candidate share zero", raw(candidates=[{"model": "c", "share": 0}])),
    ("candidate share negative", raw(candidates=[{"model": "c", "share": -0.1}])),
    ("candidate share above one", raw(candidates=[{"model": "c", "share": 1.5}])),
    ("candidate share a string", raw(candidates=[{"model": "c", "share": "0.1"}])),
    ("candidate share a bool", raw(candidates=[{"model": "c", "share": True}])),
    (
        "candidate shares sum above one",
        raw(candidates=[{"model": "c", "share": 0.6}, {"model": "d", "share": 0.5}]),
    ),
    ("candidate bad version", raw(candidates=[{"model": "c", "version": "x", "share": 0.1}])),
    (
        "candidate == primary",
        raw(candidates=[{"model": "inferstream_cpu", "version": "1", "share": 0.1}]),
    ),
    (
        "duplicate candidates",
        raw(candidates=[{"model": "c", "share": 0.1}, {"model": "c", "share": 0.2}]),
    ),
    (
        "candidate default == candidate 'default'",
        raw(
            candidates=[
                {"model": "c", "share": 0.1},
                {"model": "c", "version": "default", "share": 0.2},
            ]
        ),
    ),
    ("shadows not a list", raw(shadows="s")),
    ("shadow share zero", raw(shadows=[{"model": "s", "share": 0}])),
    ("shadow share above one", raw(shadows=[{"model": "s", "share": 2}])),
    ("duplicate shadows", raw(shadows=[{"model": "s"}, {"model": "s", "share": 0.5}])),
    ("shadow == primary", raw(shadows=[{"model": "inferstream_cpu", "version": "1"}])),
    ("guard not an object", raw(guard=[1])),
    ("guard window zero", raw(guard={"window_s": 0})),
    ("guard window negative", raw(guard={"window_s": -5})),
    ("guard window a string", raw(guard={"window_s": "60"})),
    ("guard window a bool", raw(guard={"window_s": True})),
    ("guard delta zero", raw(guard={"max_error_rate_delta": 0})),
    ("guard ratio negative", raw(guard={"max_p99_ratio": -1.5})),
    ("guard min_events zero", raw(guard={"min_events": 0})),
    ("guard min_events a float", raw(guard={"min_events": 10.0})),
    ("guard min_events a bool", raw(guard={"min_events": True})),
    ("guard enabled a string", raw(guard={"enabled": "yes"})),
    ("guard enabled null", raw(guard={"enabled": None})),
    ("unknown state", raw(state="paused")),
    ("null state", raw(state=None)),
]


@pytest.mark.parametrize("record", [r for _, r in BAD_RECORDS], ids=[n for n, _ in BAD_RECORDS])
def test_invalid_records_raise_invalid_experiment(record: bytes) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_experiment("*", record)
    assert err.value.code == "invalid_experiment"
    assert str(err.value).startswith("invalid_experiment: ")


@pytest.mark.parametrize("updated_at", ["yesterday", [1], {"t": 1}])
def test_bad_updated_at_raises_invalid_experiment(updated_at: object) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_experiment("*", raw(updated_at=updated_at))
    assert err.value.code == "invalid_experiment"


@pytest.mark.parametrize(
    "record",
    [
        raw(name="fp32-canary\n"),
        raw(primary={"model": "inferstream_cpu\n", "version": "1"}),
        raw(primary={"model": "inferstream_cpu", "version": "1\n"}),
    ],
    ids=["name", "model", "version"],
)
def test_trailing_newline_is_not_a_valid_name_or_version(record: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_experiment("*", record)


# --- Variant ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "label"),
    [
        ("m", Variant("m", ""), "m:default"),
        ("m:2", Variant("m", "2"), "m:2"),
        ("m:default", Variant("m", ""), "m:default"),
        ("inferstream_cpu.v-2:123456789", Variant("inferstream_cpu.v-2", "123456789"), None),
    ],
)
def test_variant_parse_forms(text: str, expected: Variant, label: str | None) -> None:
    parsed = Variant.parse(text)
    assert parsed == expected
    assert parsed.label == (label or text)
    assert Variant.parse(parsed.label) == parsed


@pytest.mark.parametrize(
    "text", ["", ":1", "m:v2", "m:1:2", "m:-1", "m:1.0", "m:1234567890", "a b", "_m", "m/1"]
)
def test_variant_parse_rejects_bad_forms(text: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        Variant.parse(text)
    assert err.value.code == "invalid_experiment"


def test_variant_to_dict() -> None:
    assert Variant("m", "3").to_dict() == {"model": "m", "version": "3"}
    assert Arm(Variant("m"), 0.5).to_dict() == {"model": "m", "version": "", "share": 0.5}


# --- assignment -------------------------------------------------------------------------------


def test_position_is_in_unit_interval_and_depends_on_name_and_salt() -> None:
    exp = experiment()
    positions = [exp.position(c) for c in IDS[:2000]]
    assert all(0.0 <= p < 1.0 for p in positions)
    assert len(set(positions)) == len(positions)
    assert exp.position("c") != experiment(name="other").position("c")
    assert exp.position("c") != exp.position("c", "salt")


def test_assignment_is_sticky_and_independent_of_call_order() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.3),), shadows=(Arm(V2, 0.5),))
    ids = IDS[:3000]
    forward = {c: exp.assign(c) for c in ids}
    again = {c: exp.assign(c) for c in ids}
    twin = experiment(candidates=(Arm(FP32, 0.3),), shadows=(Arm(V2, 0.5),))  # another worker
    backward = {c: twin.assign(c) for c in reversed(ids)}
    reparsed = parse_experiment("*", exp.to_json())
    for c in ids:
        want = (forward[c].served, forward[c].arm, forward[c].shadows)
        assert (again[c].served, again[c].arm, again[c].shadows) == want
        assert (backward[c].served, backward[c].arm, backward[c].shadows) == want
        got = reparsed.assign(c)
        assert (got.served, got.arm, got.shadows) == want


def test_a_new_version_of_the_same_configuration_keeps_every_conversation() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.2),))
    bumped = replace(exp, version=exp.version + 10, updated_by="someone")
    assert all(exp.assign(c).served == bumped.assign(c).served for c in IDS[:5000])


def test_no_candidates_serves_the_primary() -> None:
    exp = experiment()
    for c in IDS[:500]:
        a = exp.assign(c)
        assert a.served == PRIMARY and a.arm == "primary" and a.shadows == ()
        assert a.experiment is exp


def test_measured_candidate_share_matches_the_configured_one() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.1),))
    assert abs(share_of(exp, FP32) - 0.1) <= 0.01
    arms = {exp.assign(c).arm for c in IDS}
    assert arms == {"primary", "candidate"}


def test_two_candidates_take_their_shares() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.1), Arm(V3, 0.2)))
    assignments = [exp.assign(c) for c in IDS]
    fp32 = sum(1 for a in assignments if a.served == FP32) / N
    v3 = sum(1 for a in assignments if a.served == V3) / N
    primary = sum(1 for a in assignments if a.served == PRIMARY) / N
    assert abs(fp32 - 0.1) <= 0.01
    assert abs(v3 - 0.2) <= 0.01
    assert abs(primary - 0.7) <= 0.01
    for a in assignments:
        assert a.arm == ("primary" if a.served == PRIMARY else "candidate")


def test_candidates_take_consecutive_slices_from_zero() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.1), Arm(V3, 0.2)))
    for c in IDS[:5000]:
        at = exp.position(c)
        want = FP32 if at < 0.1 else V3 if at < 0.1 + 0.2 else PRIMARY
        assert exp.assign(c).served == want


def test_full_share_sends_everyone_to_the_candidate() -> None:
    exp = experiment(candidates=(Arm(FP32, 1.0),))
    assert all(exp.assign(c).served == FP32 for c in IDS[:2000])


def test_raising_a_share_only_moves_conversations_from_primary_to_candidate() -> None:
    small = experiment(candidates=(Arm(FP32, 0.1),))
    large = experiment(candidates=(Arm(FP32, 0.2),), version=2)
    moved = 0
    for c in IDS:
        before, after = small.assign(c).served, large.assign(c).served
        if before == FP32:
            assert after == FP32  # never back to the primary
        elif after == FP32:
            moved += 1
    assert abs(moved / N - 0.1) <= 0.01


def test_raising_the_last_candidates_share_keeps_the_others() -> None:
    before = experiment(candidates=(Arm(FP32, 0.1), Arm(V3, 0.1)))
    after = experiment(candidates=(Arm(FP32, 0.1), Arm(V3, 0.2)))
    for c in IDS:
        was, now = before.assign(c).served, after.assign(c).served
        assert was == now or (was == PRIMARY and now == V3)


def test_full_share_shadow_gets_every_conversation_but_its_own() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.2),), shadows=(Arm(V2, 1.0), Arm(FP32, 1.0)))
    served_by_candidate = 0
    for c in IDS[:5000]:
        a = exp.assign(c)
        assert V2 in a.shadows
        assert a.served not in a.shadows
        if a.served == FP32:
            served_by_candidate += 1
            assert a.shadows == (V2,)
        else:
            assert a.shadows == (V2, FP32)  # in the configured order
    assert served_by_candidate > 0


def test_half_share_shadow_gets_about_half() -> None:
    exp = experiment(shadows=(Arm(V2, 0.5), Arm(V3, 0.1)))
    assignments = [exp.assign(c) for c in IDS]
    v2 = sum(1 for a in assignments if V2 in a.shadows) / N
    v3 = sum(1 for a in assignments if V3 in a.shadows) / N
    both = sum(1 for a in assignments if V2 in a.shadows and V3 in a.shadows) / N
    assert abs(v2 - 0.5) <= 0.01
    assert abs(v3 - 0.1) <= 0.01
    assert abs(both - 0.05) <= 0.01  # each shadow buckets on its own


def test_shadow_sampling_is_independent_of_the_served_arm() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.5),), shadows=(Arm(V2, 0.5),))
    assignments = [exp.assign(c) for c in IDS]
    cands = [a for a in assignments if a.arm == "candidate"]
    prims = [a for a in assignments if a.arm == "primary"]
    assert abs(sum(1 for a in cands if a.shadows) / len(cands) - 0.5) <= 0.02
    assert abs(sum(1 for a in prims if a.shadows) / len(prims) - 0.5) <= 0.02


def test_different_experiment_names_bucket_independently() -> None:
    a = experiment(name="exp-a", candidates=(Arm(FP32, 0.1),))
    b = experiment(name="exp-b", candidates=(Arm(FP32, 0.1),))
    pa = [a.position(c) for c in IDS]
    pb = [b.position(c) for c in IDS]
    ma, mb = sum(pa) / N, sum(pb) / N
    cov = sum((x - ma) * (y - mb) for x, y in zip(pa, pb, strict=True))
    var_a = sum((x - ma) ** 2 for x in pa)
    var_b = sum((y - mb) ** 2 for y in pb)
    assert abs(cov / math.sqrt(var_a * var_b)) < 0.05
    in_both = sum(1 for c in IDS if a.assign(c).arm == b.assign(c).arm == "candidate") / N
    assert abs(in_both - 0.01) <= 0.005  # 10 % of 10 %, not 10 %


def test_stamp_names_the_experiment_and_arm() -> None:
    exp = experiment(candidates=(Arm(FP32, 1.0),), version=9)
    assert exp.assign("c").stamp() == {"name": "exp", "version": 9, "arm": "candidate"}


# --- changes ----------------------------------------------------------------------------------


def test_promoted_makes_the_candidate_the_primary() -> None:
    exp = experiment(
        candidates=(Arm(FP32, 0.1), Arm(V3, 0.2)), shadows=(Arm(V2, 1.0), Arm(FP32, 0.5))
    )
    new = exp.promoted(FP32, at=100.0, by="cli")
    assert new.version == exp.version + 1
    assert new.primary == FP32
    assert new.candidates == ()
    assert new.shadows == (Arm(V2, 1.0),)  # the promoted one no longer shadows itself
    assert new.state == "promoted"
    assert new.reason is not None and FP32.label in new.reason and PRIMARY.label in new.reason
    assert new.updated_at == 100.0 and new.updated_by == "cli"
    assert new.name == exp.name and new.tenant == exp.tenant and new.guard == exp.guard
    assert exp.primary == PRIMARY and len(exp.candidates) == 2  # the original is unchanged
    assert all(new.assign(c).served == FP32 for c in IDS[:500])


def test_promoted_none_takes_the_only_candidate() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.1),))
    assert exp.promoted(None, at=1.0, by="x").primary == FP32


@pytest.mark.parametrize(
    ("candidates", "variant"),
    [
        ((Arm(FP32, 0.1), Arm(V3, 0.2)), None),  # which one?
        ((), None),
        ((Arm(FP32, 0.1),), V3),  # not a candidate
        ((Arm(FP32, 0.1),), PRIMARY),
    ],
)
def test_promoted_rejects_unknown_or_ambiguous(
    candidates: tuple[Arm, ...], variant: Variant | None
) -> None:
    exp = experiment(candidates=candidates, shadows=(Arm(V3, 1.0),) if variant == V3 else ())
    with pytest.raises(InvalidEvent) as err:
        exp.promoted(variant, at=1.0, by="x")
    assert err.value.code == "invalid_experiment"


def test_rolled_back_removes_candidates_and_keeps_shadows() -> None:
    exp = experiment(candidates=(Arm(FP32, 0.1), Arm(V3, 0.2)), shadows=(Arm(V2, 0.5),), version=3)
    new = exp.rolled_back("too slow", at=5.0, by="guard@w1")
    assert new.version == 4
    assert new.primary == PRIMARY and new.candidates == () and new.shadows == exp.shadows
    assert new.state == "rolled_back" and new.reason == "too slow"
    assert new.updated_at == 5.0 and new.updated_by == "guard@w1"
    assert all(new.assign(c).arm == "primary" for c in IDS[:500])


# --- the store --------------------------------------------------------------------------------


def test_store_keeps_the_highest_version_of_one_experiment() -> None:
    store = ExperimentStore()
    v5 = store.apply("*", raw(version=5))
    assert v5 is not None and v5.version == 5
    stale = store.apply("*", raw(version=3, state="rolled_back"))
    assert stale is v5  # ignored: the one in force is returned
    assert store.get("acme") is v5
    same = store.apply("*", raw(version=5, updated_by="again"))  # an equal version applies
    assert same is not None and same.updated_by == "again" and store.get("x") is same
    newer = store.apply("*", raw(version=6))
    assert newer is not None and store.exact("*") is newer


def test_store_replaces_with_a_different_experiment_whatever_its_version() -> None:
    store = ExperimentStore()
    store.apply("*", raw(version=9))
    other = store.apply("*", raw(name="other", version=1))
    assert other is not None and other.name == "other" and store.get("t") is other
    assert len(store) == 1


def test_store_tombstone_removes_and_bad_record_changes_nothing() -> None:
    store = ExperimentStore()
    exp = store.apply("acme", raw("acme"))
    with pytest.raises(InvalidEvent):
        store.apply("acme", raw("acme", name="bad name"))
    assert store.get("acme") is exp
    assert store.apply("acme", None) is None
    assert store.get("acme") is None and len(store) == 0
    assert store.apply("nobody", None) is None  # a tombstone for nothing is harmless
    replay = store.apply("acme", raw("acme", version=1))  # after a tombstone, anything goes
    assert replay is not None and replay.version == 1


def test_store_tenant_experiment_beats_the_wildcard() -> None:
    store = ExperimentStore()
    everyone = store.apply("*", raw(name="everyone"))
    acme = store.apply("acme", raw("acme", name="acme-only"))
    assert store.get("acme") is acme
    assert store.get("globex") is everyone
    assert store.exact("acme") is acme and store.exact("*") is everyone
    assert store.exact("globex") is None
    assert {e.name for e in store.all()} == {"everyone", "acme-only"} and len(store) == 2
    store.apply("acme", None)
    assert store.get("acme") is everyone
    store.apply("*", None)
    assert store.get("globex") is None and store.all() == []
