"""``ConversationHandler`` under model experiments, driven as the engine drives it (every record
prepared at fetch time, then finished in offset order through an in-memory sink), with one fake
inference client per model version: results stamped with their arm, candidate conversations
served by the candidate, shadows compared on ``experiments.events`` and never returned, a failing
candidate's turns answered by the primary, and the guard's rollback."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.agents.conversations import ConversationHandler
from streams.console import allow_all_policy
from streams.records import ConversationEvent, SourceRecord
from streams.settings import Settings
from tests.unit.fakes import FakeInferenceClient, FakeSink
from workers.errors import InferenceRejected, InferenceUnavailable, InferstreamError
from workers.experiments.config import (
    Arm,
    Experiment,
    ExperimentStore,
    GuardRails,
    Variant,
    parse_experiment,
)
from workers.experiments.serving import PRIMARY
from workers.governance import Governor
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.inference.classifier import TurnClassifier
from workers.inference.triton import InferenceOutput, ModelInfo
from workers.provenance.keys import KeyRing, generate_key_file
from workers.provenance.stamp import Watermarker
from workers.retry import Backoff
from workers.telemetry.metrics import Metrics

MODEL = "inferstream_cpu"
DEFAULT_V = Variant(MODEL)  # the handler's own classifier and batcher
CANDIDATE_V = Variant("inferstream_cpu_fp32", "1")
SHADOW_V = Variant(MODEL, "2")


@dataclass
class NamedClient(FakeInferenceClient):
    """``FakeInferenceClient`` that says which model version it is; ``rows`` counts the texts
    it answered (a failed call answers none)."""

    name: str = "fake"
    version: str = "7"
    rows: int = 0

    async def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version, self.labels, "fake-backend", 256)

    async def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> InferenceOutput:
        out = await super().infer(input_ids, attention_mask)
        self.rows += int(input_ids.shape[0])
        return replace(out, model_name=self.name, model_version=self.version)


@dataclass
class Published:
    """The handler's ``publish(topic, key, value)`` (experiment records and rollbacks)."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, v in self.sent if t == topic]


async def no_sleep(_seconds: float) -> None:
    return None


@dataclass
class Rig:
    handler: ConversationHandler
    store: ExperimentStore
    clients: dict[Variant, NamedClient]
    made: list[tuple[Variant, str]]  # the variant classifier's calls
    published: Published
    registry: CollectorRegistry
    sink: FakeSink = field(default_factory=FakeSink)

    @property
    def settings(self) -> Settings:
        return self.handler.settings

    async def run(self, values: list[bytes]) -> None:
        prepared = []
        for offset, value in enumerate(values):
            rec = SourceRecord("in", self.sink.partition, offset, b"k", value, 1.0)
            prepared.append((rec, self.handler.prepare(rec, self.sink)))
        for rec, outcome in prepared:
            await self.handler.finish(rec, await outcome, self.sink)
        if self.handler.runner is not None:
            await self.handler.runner.drain()

    def results(self, topic: str | None = None) -> list[dict[str, Any]]:
        topic = topic or self.settings.topic_out
        return [orjson.loads(v or b"") for _, _, v, _ in self.sink.on(topic)]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def make(
    tmp_path: Path,
    exp: Experiment | None = None,
    clients: dict[Variant, NamedClient] | None = None,
    *,
    attempts: int = 2,
    **knobs: Any,
) -> Rig:
    settings = Settings(
        run_dir=tmp_path, web_enabled=False, max_wait_ms=1, model_name=MODEL, **knobs
    )
    default = NamedClient(name=MODEL, version="7")
    clf = TurnClassifier(default, Backoff(), max_seq_len=64, max_batch=settings.max_batch)
    if not (tmp_path / "keys").exists():
        generate_key_file(tmp_path / "keys", "unit-k1")
    policies = PolicyStore()
    policies.apply("acme", allow_all_policy("acme", 3))
    governor = Governor(policies, ContentFilter(), Watermarker(KeyRing.from_dir(tmp_path / "keys")))
    store = ExperimentStore()
    if exp is not None:
        store.apply(exp.tenant, exp.to_json())
    by_variant = {DEFAULT_V: default, **(clients or {})}
    made: list[tuple[Variant, str]] = []

    def variant_classifier(variant: Variant, role: str) -> TurnClassifier:
        made.append((variant, role))
        backoff = Backoff(max_attempts=None if role == PRIMARY else attempts, sleep=no_sleep)
        return TurnClassifier(
            by_variant[variant], backoff, max_seq_len=64, max_batch=settings.max_batch
        )

    registry = CollectorRegistry()
    published = Published()
    handler = ConversationHandler(
        settings,
        clf,
        governor,
        worker_id="unit",
        metrics=Metrics(registry),
        experiments=store,
        variant_classifier=variant_classifier,
        publish=published,
    )
    return Rig(handler, store, by_variant, made, published, registry)


def experiment(
    *,
    tenant: str = "*",
    primary: Variant = DEFAULT_V,
    candidate_share: float | None = 0.5,
    shadows: tuple[Arm, ...] = (),
    guard: GuardRails | None = None,
) -> Experiment:
    return Experiment(
        name="fp32-canary",
        tenant=tenant,
        version=4,
        primary=primary,
        candidates=() if candidate_share is None else (Arm(CANDIDATE_V, candidate_share),),
        shadows=shadows,
        guard=guard or GuardRails(),
    )


def conversations(exp: Experiment, arm: str, n: int) -> list[str]:
    found = [c for c in (f"conv-{i}" for i in range(10_000)) if exp.assign(c).arm == arm]
    assert len(found) >= n
    return found[:n]


def turns(convs: list[str], per_conversation: int, text: str = "hello there") -> list[bytes]:
    """Turns interleaved across the conversations, as they would arrive."""
    out = []
    for i in range(per_conversation * len(convs)):
        conv = convs[i % len(convs)]
        out.append(ConversationEvent(f"e{i}", conv, "acme", "u", text, 1.0).to_json())
    return out


def candidate_client() -> NamedClient:
    return NamedClient(name=CANDIDATE_V.model, version=CANDIDATE_V.version)


def shadow_client() -> NamedClient:
    return NamedClient(name=SHADOW_V.model, version=SHADOW_V.version)


# --- stamps and arms -------------------------------------------------------------------------
@pytest.mark.parametrize("tenant", ["*", "acme"])
async def test_results_carry_their_arm_and_candidates_answer_their_conversations(
    tmp_path: Path, tenant: str
) -> None:
    exp = experiment(tenant=tenant)
    rig = make(tmp_path, exp, {CANDIDATE_V: candidate_client()})
    prim, cand = conversations(exp, "primary", 3), conversations(exp, "candidate", 3)
    await rig.run(turns(prim + cand, 4))
    out = rig.results()
    assert len(out) == 24 and not rig.results(rig.settings.topic_deadletter)
    arms: dict[str, set[str]] = {}
    for r in out:
        conv = str(r["conversation_id"])
        arm = exp.assign(conv).arm
        arms.setdefault(conv, set()).add(r["experiment"]["arm"])
        assert r["experiment"] == {
            "name": "fp32-canary",
            "version": 4,
            "arm": arm,
            "fallback": False,
        }
        expected = ("inferstream_cpu_fp32", "1") if arm == "candidate" else (MODEL, "7")
        assert (r["model"]["name"], r["model"]["version"]) == expected
        assert r["status"] == "ok"
    assert arms == {c: {"primary"} for c in prim} | {c: {"candidate"} for c in cand}
    assert rig.clients[CANDIDATE_V].rows == 12 and rig.clients[DEFAULT_V].rows == 12
    assert rig.made == [(CANDIDATE_V, "candidate")]  # the primary is the handler's own
    records = rig.published.on(rig.settings.topic_experiment_events)
    assert sorted(rec["event_id"] for rec in records) == sorted(r["event_id"] for r in out)
    by_event = {r["event_id"]: r["experiment"]["arm"] for r in out}
    assert all(rec["served"]["arm"] == by_event[rec["event_id"]] for rec in records)
    assert all(rec["served"]["error"] is None and rec["tenant"] == "acme" for rec in records)
    events = "inferstream_experiment_events_total"
    assert rig.sample(events, experiment="fp32-canary", arm="candidate") == 12.0
    assert rig.sample(events, experiment="fp32-canary", arm="primary") == 12.0


async def test_experiment_from_a_json_record_with_a_named_primary_version(
    tmp_path: Path,
) -> None:
    primary_v = Variant(MODEL, "1")
    record = {
        "schema": "inferstream.experiment/v1",
        "name": "named-primary",
        "tenant": "acme",
        "version": 2,
        "primary": {"model": MODEL, "version": "1"},
        "candidates": [{"model": "inferstream_cpu_fp32", "version": "1", "share": 0.5}],
        "state": "running",
    }
    clients = {primary_v: NamedClient(name=MODEL, version="1"), CANDIDATE_V: candidate_client()}
    rig = make(tmp_path, None, clients)
    exp = rig.store.apply("acme", orjson.dumps(record))
    assert exp is not None
    prim, cand = conversations(exp, "primary", 2), conversations(exp, "candidate", 2)
    await rig.run(turns(prim + cand, 3))
    out = rig.results()
    assert len(out) == 12
    for r in out:
        arm = exp.assign(str(r["conversation_id"])).arm
        assert r["experiment"] == {
            "name": "named-primary",
            "version": 2,
            "arm": arm,
            "fallback": False,
        }
        name = "inferstream_cpu_fp32" if arm == "candidate" else MODEL
        assert r["model"] == {"name": name, "version": "1"}
    assert rig.clients[DEFAULT_V].rows == 0  # the unnamed default version served nothing
    assert rig.clients[primary_v].rows == 6 and rig.clients[CANDIDATE_V].rows == 6
    assert sorted(rig.made) == sorted([(primary_v, "primary"), (CANDIDATE_V, "candidate")])


# --- shadows ---------------------------------------------------------------------------------
async def test_shadow_sees_every_turn_and_none_of_its_answers_is_returned(
    tmp_path: Path,
) -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    rig = make(tmp_path, exp, {SHADOW_V: shadow_client()})
    convs = ["a", "b", "c", "d"]
    await rig.run(turns(convs, 3))
    s = rig.settings
    out = rig.results()
    assert len(out) == 12
    assert all(r["model"] == {"name": MODEL, "version": "7"} for r in out)  # never the shadow's
    assert all(
        r["experiment"]
        == {"name": "fp32-canary", "version": 4, "arm": "primary", "fallback": False}
        for r in out
    )
    assert rig.clients[SHADOW_V].rows == 12  # every turn was copied to the shadow
    assert rig.clients[DEFAULT_V].rows == 12
    assert rig.made == [(SHADOW_V, "shadow")]
    # one comparison record per event, on its own topic, never through the transaction
    assert {t for t, _, _ in rig.published.sent} == {s.topic_experiment_events}
    assert rig.sink.on(s.topic_experiment_events) == []
    records = rig.published.on(s.topic_experiment_events)
    assert sorted(rec["event_id"] for rec in records) == sorted(f"e{i}" for i in range(12))
    keys = {k for _, k, _ in rig.published.sent}
    assert keys == {c.encode() for c in convs}
    for rec in records:
        (shadow,) = rec["shadows"]
        assert (shadow["model"], shadow["version"], shadow["error"]) == (MODEL, "2", None)
        assert shadow["agree"] is True and shadow["entity_f1"] == 1.0
        assert rec["shed"] == [] and rec["served"]["arm"] == "primary"
    model_events = "inferstream_model_events_total"
    assert rig.sample(model_events, model=MODEL, version="2", role="shadow") == 12.0


async def test_shadow_failures_never_reach_the_results(tmp_path: Path) -> None:
    broken = shadow_client()
    broken.fail = lambda ids: InferenceUnavailable("shadow down")
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    rig = make(tmp_path, exp, {SHADOW_V: broken})
    await rig.run(turns(["a", "b"], 3))
    out = rig.results()
    assert len(out) == 6 and all(r["status"] == "ok" for r in out)
    assert not rig.results(rig.settings.topic_deadletter)
    records = rig.published.on(rig.settings.topic_experiment_events)
    assert len(records) == 6
    assert all(rec["shadows"][0]["error"].startswith("InferenceUnavailable") for rec in records)


# --- no experiment ---------------------------------------------------------------------------
@pytest.mark.parametrize("elsewhere", [False, True], ids=["none", "other-tenant"])
async def test_without_an_experiment_in_force_nothing_changes(
    tmp_path: Path, elsewhere: bool
) -> None:
    exp = experiment(tenant="globex", shadows=(Arm(SHADOW_V, 1.0),)) if elsewhere else None
    rig = make(tmp_path, exp, {CANDIDATE_V: candidate_client(), SHADOW_V: shadow_client()})
    await rig.run(turns(["a", "b", "c"], 3))
    out = rig.results()
    assert len(out) == 9
    assert all(r["experiment"] is None for r in out)
    assert all(r["model"] == {"name": MODEL, "version": "7"} for r in out)
    assert rig.made == []  # the variant classifier is never called
    assert rig.published.sent == []
    assert rig.handler.runner is not None and set(rig.handler.runner.batchers) == {
        (DEFAULT_V, PRIMARY)
    }


# --- a failing candidate ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [InferenceUnavailable("candidate down"), InferenceRejected("INTERNAL: bad model")],
    ids=["unavailable", "rejected"],
)
async def test_failing_candidate_turns_are_answered_by_the_primary(
    tmp_path: Path, error: InferstreamError
) -> None:
    failing = candidate_client()
    failing.fail = lambda ids: error
    exp = experiment(candidate_share=1.0)
    rig = make(tmp_path, exp, {CANDIDATE_V: failing}, attempts=2, max_batch=4)
    convs = ["a", "b", "c", "d", "e"]
    await rig.run(turns(convs, 2))
    out = rig.results()
    assert sorted(r["event_id"] for r in out) == sorted(f"e{i}" for i in range(10))
    assert not rig.results(rig.settings.topic_deadletter)
    for r in out:
        assert r["status"] == "ok"
        assert r["experiment"] == {
            "name": "fp32-canary",
            "version": 4,
            "arm": "candidate",
            "fallback": True,
        }
        assert r["model"] == {"name": MODEL, "version": "7"}  # the primary answered
    assert failing.rows == 0 and rig.clients[DEFAULT_V].rows == 10
    tries = 2 if error.retriable else 1  # Backoff(max_attempts=2): a retriable error twice
    assert failing.calls and len(failing.calls) % tries == 0
    records = rig.published.on(rig.settings.topic_experiment_events)
    assert len(records) == 10
    for rec in records:
        assert rec["served"]["arm"] == "candidate"
        assert rec["served"]["model"] == "inferstream_cpu_fp32"
        assert rec["served"]["error"]  # why the candidate did not answer
    errors = "inferstream_model_errors_total"
    labels = {"model": "inferstream_cpu_fp32", "version": "1", "role": "candidate"}
    assert rig.sample(errors, **labels) == 10.0
    assert rig.published.on(rig.settings.topic_experiments) == []  # no primary events: no verdict


async def test_guard_rolls_a_failing_candidate_back_through_publish(tmp_path: Path) -> None:
    failing = candidate_client()
    failing.fail = lambda ids: InferenceUnavailable("candidate down")
    exp = experiment(guard=GuardRails(min_events=3))
    rig = make(tmp_path, exp, {CANDIDATE_V: failing})
    prim, cand = conversations(exp, "primary", 3), conversations(exp, "candidate", 3)
    await rig.run(turns(prim + cand, 3))
    out = rig.results()
    assert len(out) == 18 and all(r["status"] == "ok" for r in out)
    s = rig.settings
    rollbacks = [(k, v) for t, k, v in rig.published.sent if t == s.topic_experiments]
    ((key, value),) = rollbacks
    assert key == b"*"
    rolled = parse_experiment("*", value)
    assert rolled.state == "rolled_back" and rolled.candidates == ()
    assert rolled.version == 5 and rolled.updated_by == "guard@unit"
    # applied (as the experiments table would), new turns stay on the primary, unstamped fallback
    rig.store.apply("*", value)
    more = [
        ConversationEvent(f"x{i}", c, "acme", "u", "hi", 1.0).to_json() for i, c in enumerate(cand)
    ]
    before = len(out)
    await rig.run(more)
    after = rig.results()[before:]
    assert [r["experiment"]["arm"] for r in after] == ["primary"] * 3
    assert all(r["experiment"]["version"] == 5 and not r["experiment"]["fallback"] for r in after)
    assert len([t for t, _, _ in rig.published.sent if t == s.topic_experiments]) == 1


POISON_LEN = 13  # tokens of "poison " * 5 (see tests/unit/test_conversation_handler.py)


def reject_poison(ids: np.ndarray) -> Exception | None:
    lengths = (ids != 1).sum(axis=1)  # <pad> is 1
    return InferenceRejected("INTERNAL: poison") if (lengths == POISON_LEN).any() else None


async def test_one_poison_turn_does_not_fail_its_candidate_batch_mates(tmp_path: Path) -> None:
    picky = candidate_client()
    picky.fail = reject_poison
    exp = experiment(candidate_share=1.0)
    rig = make(tmp_path, exp, {CANDIDATE_V: picky})
    rig.clients[DEFAULT_V].fail = reject_poison  # the input is bad for every model version
    texts = ["hi", "poison " * 5, "hello there", "refund please"]
    values = [
        ConversationEvent(f"e{i}", f"c{i}", "acme", "u", t, 1.0).to_json()
        for i, t in enumerate(texts)
    ]
    await rig.run(values)
    s = rig.settings
    (dead,) = rig.results(s.topic_deadletter)
    assert dead["event_id"] == "e1" and dead["reason"] == "inference_rejected"
    out = {r["event_id"]: r for r in rig.results()}
    assert sorted(out) == ["e0", "e2", "e3"]
    records = {rec["event_id"]: rec for rec in rig.published.on(s.topic_experiment_events)}
    assert records["e1"]["served"]["error"] is not None  # the poison turn: a candidate error
    # its batch-mates were fine for the candidate, as they are for the primary arm
    # (ConversationController.predict retries a rejected batch one turn at a time)
    assert [records[e]["served"]["error"] for e in ("e0", "e2", "e3")] == [None] * 3
    assert all(out[e]["experiment"]["fallback"] is False for e in ("e0", "e2", "e3"))
    assert all(out[e]["model"]["name"] == "inferstream_cpu_fp32" for e in ("e0", "e2", "e3"))


async def test_one_poison_turn_does_not_fail_its_primary_batch_mates(tmp_path: Path) -> None:
    """The same batch on the primary arm: only the poison turn is an error."""
    exp = experiment(candidate_share=None)
    rig = make(tmp_path, exp)
    rig.clients[DEFAULT_V].fail = reject_poison
    texts = ["hi", "poison " * 5, "hello there", "refund please"]
    values = [
        ConversationEvent(f"e{i}", f"c{i}", "acme", "u", t, 1.0).to_json()
        for i, t in enumerate(texts)
    ]
    await rig.run(values)
    s = rig.settings
    (dead,) = rig.results(s.topic_deadletter)
    assert dead["event_id"] == "e1"
    records = {rec["event_id"]: rec for rec in rig.published.on(s.topic_experiment_events)}
    assert records["e1"]["served"]["error"] == "inference_rejected"
    assert [records[e]["served"]["error"] for e in ("e0", "e2", "e3")] == [None] * 3
