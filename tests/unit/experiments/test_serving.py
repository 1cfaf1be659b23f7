"""``ExperimentRunner`` over real ``MicroBatcher``s whose ``process`` is a fake async model per
model version (no Triton): which batcher answers a turn, the fallback of a failed candidate,
the shadow copies and their shedding, the comparison record, the guard's rollback, metrics."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from workers.batching import MicroBatcher
from workers.errors import InferenceRejected, InferenceUnavailable, InferstreamError
from workers.experiments.compare import Outcome
from workers.experiments.config import (
    Arm,
    Assignment,
    Experiment,
    ExperimentStore,
    GuardRails,
    Variant,
    parse_experiment,
)
from workers.experiments.serving import CANDIDATE, PRIMARY, SHADOW, DutyCycle, ExperimentRunner
from workers.inference.classifier import Prediction
from workers.telemetry.metrics import Metrics

PRIMARY_V = Variant("inferstream_cpu", "1")
CANDIDATE_V = Variant("inferstream_cpu_fp32", "1")
SHADOW_V = Variant("inferstream_cpu", "2")
OTHER_SHADOW_V = Variant("minilm_cpu")
NOW = 1765000000.0


def prediction(variant: Variant, label: str, ms: float = 5.0, n: int = 1) -> Prediction:
    scores = {"billing": 0.1, "greeting": 0.1, "other": 0.1} | {label: 0.8}
    return Prediction(
        label=label,
        scores=scores,
        embedding=np.zeros(4, np.float32),
        model_name=variant.model,
        model_version=variant.version or "default",
        backend="fake",
        inference_ms=ms,
        batch_size=n,
        truncated=False,
    )


@dataclass
class FakeModel:
    """One model version's ``process``: answers ``label`` for every text, or raises ``fail``;
    with ``gate`` set, each batch waits for it first. Records (role, texts) per batch."""

    variant: Variant
    label: str = "billing"
    ms: float = 5.0
    fail: InferstreamError | None = None
    gate: asyncio.Event | None = None
    batches: list[tuple[str, list[str]]] = field(default_factory=list)

    async def process(self, items: list[str], *, role: str) -> list[Prediction]:
        self.batches.append((role, list(items)))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [prediction(self.variant, self.label, self.ms, len(items)) for _ in items]

    def texts(self, role: str | None = None) -> list[str]:
        return [t for r, batch in self.batches if role in (None, r) for t in batch]


@dataclass
class Collector:
    """A fake ``Publish``: (key, value) pairs, optionally held at ``gate`` or failing."""

    sent: list[tuple[bytes, bytes]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    failures: int = 0  # the first ``failures`` calls raise

    async def __call__(self, key: bytes, value: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.sent.append((key, value))

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in self.sent]


@dataclass
class Rig:
    store: ExperimentStore
    runner: ExperimentRunner[str]
    models: dict[Variant, FakeModel]
    events: Collector
    experiments: Collector
    registry: CollectorRegistry
    calls: list[tuple[Variant, str]] = field(default_factory=list)  # predict(..., variant, role)

    def model(self, variant: Variant) -> FakeModel:
        return self.models.setdefault(variant, FakeModel(variant))

    async def predict(
        self, batched: Awaitable[Prediction], variant: Variant, role: str
    ) -> Prediction:
        self.calls.append((variant, role))
        return await batched

    async def turn(
        self, conversation_id: str, text: str = "hi", *, event_id: str | None = None
    ) -> tuple[Prediction, Outcome]:
        """One turn end to end: assign, submit, answer, record."""
        a = self.runner.assign("acme", conversation_id)
        assert a is not None
        routed = self.runner.submit(a, conversation_id, text, text)
        result, outcome = await self.runner.answer(routed, conversation_id, text, self.predict)
        self.runner.record(
            routed,
            outcome,
            event_id=event_id or f"e-{conversation_id}-{text}",
            conversation_id=conversation_id,
            tenant="acme",
        )
        return result, outcome

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def experiment(
    *,
    candidate_share: float | None = 0.5,
    shadows: tuple[Arm, ...] = (),
    guard: GuardRails | None = None,
    version: int = 4,
) -> Experiment:
    return Experiment(
        name="fp32-canary",
        tenant="*",
        version=version,
        primary=PRIMARY_V,
        candidates=() if candidate_share is None else (Arm(CANDIDATE_V, candidate_share),),
        shadows=shadows,
        guard=guard or GuardRails(),
    )


def rig(
    exp: Experiment,
    *,
    shadow_max_pending: int = 64,
    pressure: Callable[[], bool] = lambda: False,
    shadow_timeout_s: float = 60.0,
    events: Collector | None = None,
    experiments: Collector | None = None,
) -> Rig:
    store = ExperimentStore()
    store.apply("*", exp.to_json())
    registry = CollectorRegistry()
    models: dict[Variant, FakeModel] = {}

    def make_batcher(variant: Variant, role: str) -> MicroBatcher[str, Prediction]:
        model = models.setdefault(variant, FakeModel(variant))
        return MicroBatcher(
            functools.partial(model.process, role=role),
            max_batch=8,
            max_wait_s=0.0,
            max_inflight=1 if role == SHADOW else 2,
        )

    events = events or Collector()
    experiments = experiments or Collector()
    runner: ExperimentRunner[str] = ExperimentRunner(
        store,
        make_batcher,
        publish_event=events,
        publish_experiment=experiments,
        metrics=Metrics(registry),
        worker="unit",
        shadow_max_pending=shadow_max_pending,
        pressure=pressure,
        shadow_timeout_s=shadow_timeout_s,
        clock=lambda: NOW,
        monotonic=lambda: 100.0,
    )
    return Rig(store, runner, models, events, experiments, registry)


def conversations(exp: Experiment, arm: str, n: int) -> list[str]:
    """``n`` conversation ids that ``exp`` puts in ``arm`` (assignment is a pure hash)."""
    found = [c for c in (f"c{i}" for i in range(10_000)) if exp.assign(c).arm == arm]
    assert len(found) >= n
    return found[:n]


# --- which batcher answers -------------------------------------------------------------------
async def test_primary_turn_is_answered_by_the_primary_batcher() -> None:
    exp = experiment()
    r = rig(exp)
    (conv,) = conversations(exp, "primary", 1)
    result, outcome = await r.turn(conv, "hello")
    assert (result.model_name, result.model_version) == ("inferstream_cpu", "1")
    assert outcome == Outcome.of(PRIMARY_V, result) and outcome.error is None
    assert r.model(PRIMARY_V).batches == [(PRIMARY, ["hello"])]
    assert r.model(CANDIDATE_V).batches == []
    assert r.calls == [(PRIMARY_V, PRIMARY)]
    assert set(r.runner.batchers) == {(PRIMARY_V, PRIMARY)}
    await r.runner.drain()


async def test_candidate_turn_is_answered_by_the_candidate_batcher() -> None:
    exp = experiment()
    r = rig(exp)
    r.model(CANDIDATE_V).label = "greeting"
    (conv,) = conversations(exp, "candidate", 1)
    result, outcome = await r.turn(conv, "hello")
    assert (result.model_name, result.model_version, result.label) == (
        "inferstream_cpu_fp32",
        "1",
        "greeting",
    )
    assert outcome.variant == CANDIDATE_V and outcome.error is None
    assert outcome.label == "greeting" and outcome.inference_ms == 5.0
    assert r.model(CANDIDATE_V).batches == [(CANDIDATE, ["hello"])]
    assert r.model(PRIMARY_V).batches == []  # the primary never saw it
    assert r.calls == [(CANDIDATE_V, CANDIDATE)]
    await r.runner.drain()


async def test_turns_of_many_conversations_go_to_their_arms_batchers() -> None:
    exp = experiment()
    r = rig(exp)
    prim, cand = conversations(exp, "primary", 4), conversations(exp, "candidate", 4)
    answers = await asyncio.gather(*(r.turn(c, c) for c in prim + cand))
    assert [res.model_name for res, _ in answers] == [PRIMARY_V.model] * 4 + [CANDIDATE_V.model] * 4
    assert sorted(r.model(PRIMARY_V).texts(PRIMARY)) == sorted(prim)
    assert sorted(r.model(CANDIDATE_V).texts(CANDIDATE)) == sorted(cand)
    await r.runner.drain()


@pytest.mark.parametrize(
    "error",
    [InferenceUnavailable("triton down"), InferenceRejected("INTERNAL: bad input")],
    ids=["unavailable", "rejected"],
)
async def test_failed_candidate_turn_is_answered_by_the_primary(
    error: InferstreamError,
) -> None:
    exp = experiment()
    r = rig(exp)
    r.model(CANDIDATE_V).fail = error
    (conv,) = conversations(exp, "candidate", 1)
    result, outcome = await r.turn(conv, "hello")
    assert (result.model_name, result.model_version) == ("inferstream_cpu", "1")  # the primary
    assert outcome.variant == CANDIDATE_V  # the failure is the candidate's
    assert outcome.error == f"{type(error).__name__}: {error}"
    assert outcome.label is None and outcome.inference_ms is None
    assert r.model(CANDIDATE_V).batches == [(CANDIDATE, ["hello"])]
    assert r.model(PRIMARY_V).batches == [(PRIMARY, ["hello"])]
    assert r.calls[-1] == (PRIMARY_V, PRIMARY)  # the answer went through predict, as the primary
    assert (
        r.sample(
            "inferstream_model_errors_total",
            model="inferstream_cpu_fp32",
            version="1",
            role="candidate",
        )
        == 1.0
    )
    await r.runner.drain()
    (rec,) = r.events.records()
    assert rec["served"]["arm"] == "candidate"
    assert rec["served"]["model"] == "inferstream_cpu_fp32"
    assert rec["served"]["error"] == outcome.error


async def test_a_rejected_primary_answer_is_an_outcome_with_its_reason() -> None:
    exp = experiment(candidate_share=None)
    r = rig(exp)

    @dataclass(frozen=True)
    class Refused:
        reason: str

    async def refuse(batched: Awaitable[Prediction], variant: Variant, role: str) -> Refused:
        try:
            await batched
        except InferenceRejected:
            return Refused("inference_rejected")
        raise AssertionError("the batch should have been rejected")

    r.model(PRIMARY_V).fail = InferenceRejected("poison")
    a = r.runner.assign("acme", "c1")
    assert a is not None
    routed = r.runner.submit(a, "c1", "x", "x")
    result, outcome = await r.runner.answer(routed, "c1", "x", refuse)
    assert result == Refused("inference_rejected")
    assert outcome == Outcome.failed(PRIMARY_V, "inference_rejected")


# --- shadows ---------------------------------------------------------------------------------
async def test_shadows_get_their_own_batcher_and_are_compared_in_the_record() -> None:
    shadows = (Arm(SHADOW_V, 1.0), Arm(OTHER_SHADOW_V, 1.0))
    exp = experiment(candidate_share=None, shadows=shadows)
    r = rig(exp)
    r.model(SHADOW_V).label = "billing"  # agrees with the primary
    r.model(OTHER_SHADOW_V).label = "greeting"  # does not
    result, _ = await r.turn("c1", "hello", event_id="e-1")
    assert result.model_name == "inferstream_cpu" and result.model_version == "1"
    await r.runner.drain()
    assert r.model(SHADOW_V).batches == [(SHADOW, ["hello"])]
    assert r.model(OTHER_SHADOW_V).batches == [(SHADOW, ["hello"])]
    assert r.model(PRIMARY_V).batches == [(PRIMARY, ["hello"])]
    assert set(r.runner.batchers) == {
        (PRIMARY_V, PRIMARY),
        (SHADOW_V, SHADOW),
        (OTHER_SHADOW_V, SHADOW),
    }
    ((key, _),) = r.events.sent
    assert key == b"c1"
    (rec,) = r.events.records()
    assert rec["schema"] == "inferstream.experiment_event/v1"
    assert (rec["experiment"], rec["experiment_version"]) == ("fp32-canary", 4)
    assert (rec["event_id"], rec["conversation_id"], rec["tenant"]) == ("e-1", "c1", "acme")
    assert (rec["ts"], rec["worker"]) == (NOW, "unit")
    assert rec["served"] == {
        "model": "inferstream_cpu",
        "version": "1",
        "label": "billing",
        "score": 0.8,
        "entities": 0,
        "inference_ms": 5.0,
        "error": None,
        "arm": "primary",
    }
    same, other = rec["shadows"]
    assert (same["model"], same["version"], same["label"]) == ("inferstream_cpu", "2", "billing")
    assert (same["agree"], same["score_delta"], same["entity_f1"]) == (True, 0.0, 1.0)
    assert (other["model"], other["version"], other["label"]) == ("minilm_cpu", "", "greeting")
    assert other["agree"] is False
    assert other["score_delta"] == pytest.approx(0.1 - 0.8)  # its probability of "billing"
    assert other["error"] is None
    assert rec["shed"] == []
    assert r.runner.published == 1


async def test_the_served_answer_does_not_wait_for_its_shadows() -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    r = rig(exp)
    gate = r.model(SHADOW_V).gate = asyncio.Event()
    result, _ = await asyncio.wait_for(r.turn("c1"), 5)  # the shadow is still held
    assert result.model_name == "inferstream_cpu"
    await asyncio.sleep(0)
    assert r.events.sent == []  # the record waits for the shadow
    gate.set()
    await r.runner.drain()
    (rec,) = r.events.records()
    assert rec["shadows"][0]["label"] == "billing"


async def test_shadow_is_shed_when_its_batcher_holds_max_pending() -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    r = rig(exp, shadow_max_pending=2)
    gate = r.model(SHADOW_V).gate = asyncio.Event()
    # one shadow batch in flight (held at the gate), one queued behind it: 2 pending
    await r.turn("c1", "one", event_id="e1")
    await r.turn("c2", "two", event_id="e2")
    assert r.runner.batchers[(SHADOW_V, SHADOW)].pending() == 2
    await r.turn("c3", "three", event_id="e3")  # its copy is shed
    gate.set()
    await r.runner.drain()
    assert r.model(SHADOW_V).texts(SHADOW) == ["one", "two"]
    records = {rec["event_id"]: rec for rec in r.events.records()}
    assert set(records) == {"e1", "e2", "e3"}
    assert records["e3"]["shed"] == [{"model": "inferstream_cpu", "version": "2"}]
    assert records["e3"]["shadows"] == []
    assert [s["label"] for s in records["e1"]["shadows"]] == ["billing"]
    assert records["e1"]["shed"] == records["e2"]["shed"] == []
    shed = "inferstream_shadow_shed_total"
    labels = {"model": "inferstream_cpu", "version": "2"}
    assert r.sample(shed, **labels, reason="queue_full") == 1.0
    assert r.sample(shed, **labels, reason="serving_busy") is None


async def test_shadow_is_shed_while_serving_is_under_pressure() -> None:
    busy = [False]
    shadows = (Arm(SHADOW_V, 1.0), Arm(OTHER_SHADOW_V, 1.0))
    exp = experiment(candidate_share=None, shadows=shadows)
    r = rig(exp, pressure=lambda: busy[0])
    await r.turn("c1", "calm", event_id="e1")
    busy[0] = True
    await r.turn("c1", "busy", event_id="e2")
    busy[0] = False
    await r.runner.drain()
    records = {rec["event_id"]: rec for rec in r.events.records()}
    assert records["e1"]["shed"] == [] and len(records["e1"]["shadows"]) == 2
    assert records["e2"]["shadows"] == []
    assert records["e2"]["shed"] == [
        {"model": "inferstream_cpu", "version": "2"},
        {"model": "minilm_cpu", "version": ""},
    ]
    assert r.model(SHADOW_V).texts() == ["calm"]  # the busy turn's copies were never submitted
    assert r.model(PRIMARY_V).texts() == ["calm", "busy"]  # the served path was not affected
    shed = "inferstream_shadow_shed_total"
    assert r.sample(shed, model="inferstream_cpu", version="2", reason="serving_busy") == 1.0
    assert r.sample(shed, model="minilm_cpu", version="default", reason="serving_busy") == 1.0
    assert r.sample(shed, model="inferstream_cpu", version="2", reason="queue_full") is None


async def test_failed_shadow_appears_with_its_error() -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    r = rig(exp)
    r.model(SHADOW_V).fail = InferenceUnavailable("shadow down")
    result, outcome = await r.turn("c1", event_id="e1")
    assert result.model_name == "inferstream_cpu" and outcome.error is None  # served unaffected
    await r.runner.drain()
    (rec,) = r.events.records()
    assert rec["served"]["error"] is None
    (shadow,) = rec["shadows"]
    assert shadow["error"] == "InferenceUnavailable: shadow down"
    assert (shadow["label"], shadow["agree"], shadow["score_delta"]) == (None, None, None)
    assert rec["shed"] == []
    errors = "inferstream_model_errors_total"
    assert r.sample(errors, model="inferstream_cpu", version="2", role="shadow") == 1.0


async def test_shadow_that_does_not_answer_in_time_is_reported_failed() -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    r = rig(exp, shadow_timeout_s=0.01)
    gate = r.model(SHADOW_V).gate = asyncio.Event()  # held past the timeout
    await r.turn("c1", event_id="e1")
    await asyncio.wait_for(r.runner.drain(), 5)
    (rec,) = r.events.records()
    assert rec["shadows"][0]["error"].startswith("TimeoutError")
    shadow = r.runner.batchers[(SHADOW_V, SHADOW)]
    assert shadow.pending() == 0  # the copy was given up
    gate.set()  # the late batch finishes into a cancelled future: nothing happens
    for _ in range(5):
        await asyncio.sleep(0)
    assert shadow.inflight() == 0
    assert len(r.events.sent) == 1


async def test_drain_waits_for_the_records_under_way() -> None:
    exp = experiment(candidate_share=None, shadows=(Arm(SHADOW_V, 1.0),))
    events = Collector(gate=asyncio.Event())
    r = rig(exp, events=events)
    for i in range(3):
        await r.turn(f"c{i}", event_id=f"e{i}")
    drain = asyncio.ensure_future(r.runner.drain())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not drain.done() and events.sent == []
    assert events.gate is not None
    events.gate.set()
    await asyncio.wait_for(drain, 5)
    assert sorted(rec["event_id"] for rec in events.records()) == ["e0", "e1", "e2"]
    assert r.runner.published == 3


async def test_a_record_that_cannot_be_published_is_dropped_not_raised() -> None:
    exp = experiment(candidate_share=None)
    r = rig(exp, events=Collector(failures=1))
    await r.turn("c1", event_id="e1")
    await r.turn("c1", event_id="e2")
    await r.runner.drain()
    assert [rec["event_id"] for rec in r.events.records()] == ["e2"]
    assert r.runner.published == 1


# --- the guard -------------------------------------------------------------------------------
async def test_guard_rolls_back_a_failing_candidate_once() -> None:
    exp = experiment(guard=GuardRails(min_events=3))
    r = rig(exp)
    r.model(CANDIDATE_V).fail = InferenceUnavailable("candidate down")
    prim, cand = conversations(exp, "primary", 12), conversations(exp, "candidate", 12)
    for c in cand[:3] + prim[:2]:  # the candidate has enough events, the primary not yet
        await r.turn(c)
    await r.runner.drain()
    assert r.experiments.sent == []
    await r.turn(prim[2])  # now both arms have min_events
    await r.runner.drain()
    ((key, value),) = r.experiments.sent
    assert key == b"*"
    rolled = parse_experiment("*", value)
    assert rolled.state == "rolled_back" and rolled.candidates == ()
    assert (rolled.name, rolled.version, rolled.primary) == ("fp32-canary", 5, PRIMARY_V)
    assert rolled.reason is not None and rolled.reason.startswith("automatic: candidate error rate")
    assert (rolled.updated_by, rolled.updated_at) == ("guard@unit", NOW)
    assert r.runner.rollbacks == 1
    assert r.sample("inferstream_experiment_rollbacks_total", experiment="fp32-canary") == 1.0
    for c in cand[3:] + prim[3:]:  # the configuration has not come back yet: still failing
        await r.turn(c)
    await r.runner.drain()
    assert len(r.experiments.sent) == 1  # not again
    # once the rolled-back configuration is applied, every conversation is on the primary
    r.store.apply("*", value)
    for c in cand[:3]:
        result, outcome = await r.turn(c)
        assert result.model_name == "inferstream_cpu" and outcome.error is None
    await r.runner.drain()
    assert len(r.experiments.sent) == 1


async def test_guard_leaves_a_healthy_candidate_alone() -> None:
    exp = experiment(guard=GuardRails(min_events=3))
    r = rig(exp)
    for c in conversations(exp, "primary", 6) + conversations(exp, "candidate", 6):
        await r.turn(c)
    await r.runner.drain()
    assert r.experiments.sent == [] and r.runner.rollbacks == 0


async def test_guard_retries_a_rollback_that_was_not_published() -> None:
    exp = experiment(guard=GuardRails(min_events=2))
    r = rig(exp, experiments=Collector(failures=1))
    r.model(CANDIDATE_V).fail = InferenceRejected("bad model")
    prim, cand = conversations(exp, "primary", 4), conversations(exp, "candidate", 4)
    for c in cand[:2] + prim[:2]:
        await r.turn(c)
    await r.runner.drain()
    assert r.experiments.sent == [] and r.runner.rollbacks == 0  # the publish failed
    for c in cand[2:] + prim[2:]:  # a fresh window fills up again
        await r.turn(c)
    await r.runner.drain()
    ((_, value),) = r.experiments.sent
    assert parse_experiment("*", value).state == "rolled_back"
    assert r.runner.rollbacks == 1


async def test_guard_does_not_undo_a_configuration_changed_meanwhile() -> None:
    exp = experiment(guard=GuardRails(min_events=1))
    r = rig(exp)
    r.model(CANDIDATE_V).fail = InferenceUnavailable("down")
    (prim,) = conversations(exp, "primary", 1)
    (cand,) = conversations(exp, "candidate", 1)
    await r.turn(cand)
    a = r.runner.assign("acme", prim)
    assert a is not None
    routed = r.runner.submit(a, prim, "x", "x")
    _, outcome = await r.runner.answer(routed, prim, "x", r.predict)
    r.runner.record(routed, outcome, event_id="e", conversation_id=prim, tenant="acme")
    r.store.apply("*", experiment(guard=GuardRails(min_events=1), version=9).to_json())
    await r.runner.drain()  # the rollback of version 4 finds version 9 in force
    assert r.experiments.sent == [] and r.runner.rollbacks == 0


# --- metrics ---------------------------------------------------------------------------------
async def test_experiment_events_are_counted_per_arm() -> None:
    exp = experiment()
    r = rig(exp)
    for c in conversations(exp, "primary", 3) + conversations(exp, "candidate", 2):
        await r.turn(c)
    await r.runner.drain()
    events = "inferstream_experiment_events_total"
    assert r.sample(events, experiment="fp32-canary", arm="primary") == 3.0
    assert r.sample(events, experiment="fp32-canary", arm="candidate") == 2.0
    assert len(r.events.sent) == 5


def test_no_experiment_in_force_no_assignment() -> None:
    r = rig(experiment())
    assert isinstance(r.runner.assign("acme", "c1"), Assignment)
    r.store.apply("*", None)  # tombstone: the experiment ends
    assert r.runner.assign("acme", "c1") is None


# --- pacing a shadow version's calls -----------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_duty_cycle_bounds_the_share_of_time_in_flight() -> None:
    t = FakeTime()
    pace = DutyCycle(0.25, clock=t.clock, sleep=t.sleep)

    async def call() -> str:
        t.now += 2.0  # each call takes 2 s
        return "ok"

    began = t.now
    for _ in range(4):
        assert await pace.run(call) == "ok"
    # 4 calls of 2 s at 25 % duty: 6 s of pause after each but the last is owed
    assert t.slept == [6.0, 6.0, 6.0]
    assert (t.now - began) == 4 * 2.0 + 3 * 6.0


async def test_duty_cycle_of_one_never_waits_and_a_failed_call_still_counts() -> None:
    t = FakeTime()
    full = DutyCycle(1.0, clock=t.clock, sleep=t.sleep)

    async def quick() -> int:
        t.now += 1.0
        return 1

    await full.run(quick)
    await full.run(quick)
    assert t.slept == []
    half = DutyCycle(0.5, clock=t.clock, sleep=t.sleep)

    async def broken() -> int:
        t.now += 3.0
        raise InferenceUnavailable("down")

    with pytest.raises(InferenceUnavailable):
        await half.run(broken)
    await half.run(quick)
    assert t.slept == [3.0]  # the failed call's time paid for too
    with pytest.raises(ValueError):
        DutyCycle(0.0)
