"""``workers.conversation`` alone: the dialogue-state cache, the one-by-one retry of a rejected
batch, the governed release and the assembly of a turn's result, audit and analytics records.
(``test_conversation_handler.py`` drives the same work once more through the flow's wiring.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import orjson
import pytest

from streams.console import allow_all_policy
from workers.context import ContextSelector, DialogueState, Turn
from workers.conversation import (
    ConversationController,
    DialogueCache,
    Rejected,
    TurnResult,
    analytics,
    assemble,
    audit,
    turn_cost,
)
from workers.cost import CostModel
from workers.errors import InferenceRejected, InferenceUnavailable
from workers.governance import Governor, ModelRef, Released, Stage
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.inference.classifier import Prediction
from workers.inference.entities import Entity
from workers.inference.triton import ModelInfo
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Watermarker

EMAIL_TEXT = "mail jane.doe@example.com please"  # the address is characters 5..25
MODEL = ModelRef("fake", "7", "openvino-int8")


@dataclass(frozen=True)
class Event:
    event_id: str
    conversation_id: str = "c"
    tenant: str = "acme"
    text: str = "hello there"
    ts: float = 100.0


def prediction(
    text: str = "hello there",
    *,
    tokens: int = 4,
    axis: int = 0,
    safety: float | None = 0.01,
    entities: tuple[Entity, ...] = (),
) -> Prediction:
    emb = np.zeros(4, np.float32)
    emb[axis] = 1.0
    return Prediction(
        label=f"label-of-{text}",
        scores={"greeting": 0.75, "other": 0.25},
        embedding=emb,
        model_name="fake",
        model_version="7",
        backend="openvino-int8",
        inference_ms=200.0,
        batch_size=4,
        truncated=False,
        safety_score=safety,
        entities=entities,
        tokens=tokens,
        sentiment={"label": "positive", "score": 0.9},
    )


@dataclass
class FakeModel:
    """A ``TurnModel``: texts in ``poison`` are refused, every call is recorded."""

    poison: frozenset[str] = frozenset()
    calls: list[list[str]] = field(default_factory=list)

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        if self.poison & set(texts):
            raise InferenceRejected("INTERNAL: bad input")
        return [prediction(t) for t in texts]

    async def model_info(self) -> ModelInfo:
        return ModelInfo("fake-info", "9", ["greeting"], "tensorrt-fp16", 256)


@pytest.fixture
def governor() -> Governor:
    store = PolicyStore()
    store.apply("acme", allow_all_policy("acme", 3))
    return Governor(store, ContentFilter(), Watermarker(KeyRing.generate(["k1"])))


def controller(
    model: FakeModel,
    governor: Governor,
    *,
    budget: int = 100,
    on_batch_rejected: Callable[[InferenceRejected], None] | None = None,
) -> ConversationController:
    return ConversationController(
        model,
        governor,
        ContextSelector(budget, gate=0.5),
        turn_cap=8,
        token_cap=1000,
        clock=lambda: 500.0,
        on_batch_rejected=on_batch_rejected or (lambda exc: None),
    )


def row_of(*turn_ids: str) -> bytes:
    state = DialogueState(8, 1000)
    for t in turn_ids:
        state.append(Turn(t, t, 3, np.ones(4, np.float32), 1.0), now=10.0)
    return state.to_bytes("int8")


# --- dialogue-state cache ----------------------------------------------------------------------
def test_cache_reads_the_row_once_then_serves_the_decoded_state() -> None:
    cache = DialogueCache(8, 1000)
    reads: list[str] = []

    def row() -> bytes:
        reads.append("c")
        return row_of("e1", "e2")

    first = cache.state("c", row)
    assert list(first.turn_ids) == ["e1", "e2"]
    assert cache.state("c", row) is first and reads == ["c"]  # the hit reads no row
    empty = cache.state("new", lambda: None)
    assert len(empty) == 0 and (empty.turn_cap, empty.token_cap) == (8, 1000)


def test_cache_evicts_the_least_recently_used(caplog: pytest.LogCaptureFixture) -> None:
    cache = DialogueCache(8, 1000, size=2)
    a = cache.state("a", lambda: None)
    cache.state("b", lambda: None)
    assert cache.state("a", lambda: None) is a  # touched: "b" is now the oldest
    cache.state("c", lambda: None)
    assert len(cache) == 2 and "a" in cache and "c" in cache and "b" not in cache
    cache.drop("a")
    cache.drop("never-there")
    assert "a" not in cache and len(cache) == 1
    with pytest.raises(ValueError):
        DialogueCache(8, 1000, size=0)


def test_an_unreadable_row_starts_the_context_afresh(caplog: pytest.LogCaptureFixture) -> None:
    cache = DialogueCache(8, 1000)
    with caplog.at_level(logging.WARNING, logger="workers.conversation"):
        state = cache.state("c", lambda: b"\x00 not a dialogue row")
    assert len(state) == 0
    assert "unreadable" in caplog.text and "'c'" in caplog.text


def test_cache_applies_its_caps_to_a_loaded_row() -> None:
    cache = DialogueCache(2, 1000)
    state = cache.state("c", lambda: row_of("e1", "e2", "e3"))
    assert list(state.turn_ids) == ["e2", "e3"]  # a lower turn cap shrinks the old row


# --- a rejected batch, one turn at a time --------------------------------------------------------
def batch_result(value: Prediction | BaseException) -> asyncio.Future[Prediction]:
    fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
    if isinstance(value, BaseException):
        fut.set_exception(value)
    else:
        fut.set_result(value)
    return fut


async def test_a_batched_prediction_needs_no_call_of_its_own(governor: Governor) -> None:
    model = FakeModel()
    ctl = controller(model, governor)
    p = prediction("from the batch")
    assert await ctl.predict(batch_result(p), Event("e1")) is p
    assert model.calls == []


async def test_a_rejected_batch_is_retried_alone(governor: Governor) -> None:
    model, seen = FakeModel(poison=frozenset({"poison"})), list[InferenceRejected]()
    ctl = controller(model, governor, on_batch_rejected=seen.append)
    rejected = InferenceRejected("INTERNAL: batch")
    good = await ctl.predict(batch_result(rejected), Event("e1", text="fine"))
    assert isinstance(good, Prediction) and good.label == "label-of-fine"
    bad = await ctl.predict(batch_result(rejected), Event("e2", text="poison"))
    assert bad == Rejected("inference_rejected", "INTERNAL: bad input")
    assert model.calls == [["fine"], ["poison"]]  # each alone, once
    assert seen == [rejected, rejected]


async def test_a_retriable_failure_is_not_retried_alone(governor: Governor) -> None:
    model = FakeModel()
    ctl = controller(model, governor)
    with pytest.raises(InferenceUnavailable):
        await ctl.predict(batch_result(InferenceUnavailable("down")), Event("e1"))
    assert model.calls == []


# --- context -------------------------------------------------------------------------------------
def test_context_selects_then_appends_and_returns_the_row(governor: Governor) -> None:
    ctl = controller(FakeModel(), governor, budget=10)
    cache, rows = ctl.new_cache(), {"c": None}
    first = ctl.context(cache, Event("e0"), prediction(tokens=4), lambda: rows["c"])
    assert first.selection.turn_ids == () and first.selection.tokens_used == 4
    assert first.last_seen == 500.0  # the injected clock
    second = ctl.context(cache, Event("e1"), prediction(tokens=4), lambda: rows["c"])
    assert second.selection.turn_ids == ("e0",) and second.selection.tokens_used == 8
    third = ctl.context(cache, Event("e2"), prediction(tokens=4), lambda: rows["c"])
    assert third.selection.turn_ids == ("e1",)  # 10 tokens: this turn and one more
    # the row alone (a new owner of the partition, no cache) holds all three turns
    restored = DialogueState.from_bytes(third.row, turn_cap=8, token_cap=1000)
    assert list(restored.turn_ids) == ["e0", "e1", "e2"] and restored.last_seen == 500.0
    fresh = ctl.new_cache()
    again = ctl.context(fresh, Event("e3"), prediction(tokens=4), lambda: third.row)
    assert again.selection.turn_ids == ("e2",)


# --- governed release ----------------------------------------------------------------------------
def stages(names: list[str]) -> Stage:
    def stage(name: str) -> AbstractContextManager[object]:
        names.append(name)
        return nullcontext()

    return stage


def no_stage(name: str) -> AbstractContextManager[object]:
    return nullcontext()


async def test_release_and_deny_are_signed_for_the_right_model(governor: Governor) -> None:
    ctl = controller(FakeModel(), governor)
    access = governor.admit("acme", {})
    names: list[str] = []
    released = ctl.release(
        Event("e1", text=EMAIL_TEXT), access, prediction(), trace_id="t1", stage=stages(names)
    )
    assert released.status == "ok" and released.text and "jane.doe" not in released.text
    assert (released.envelope.model_name, released.envelope.backend) == ("fake", "openvino-int8")
    assert names == ["filter", "watermark"]
    refused = governor.admit("stranger", {})
    denied = await ctl.deny(Event("e2", tenant="stranger"), refused, trace_id="t2")
    assert denied.status == "denied" and denied.text is None
    assert (denied.envelope.model_name, denied.envelope.model_version) == ("fake-info", "9")


# --- result assembly -----------------------------------------------------------------------------
def test_assemble_an_ok_turn_hides_masked_entities(governor: Governor) -> None:
    ctl = controller(FakeModel(), governor)
    event = Event("e1", text=EMAIL_TEXT, ts=499.0)
    ents = (Entity("EMAIL", 5, 25, 0.9), Entity("SYMPTOM", 26, 32, 0.8))
    pred = prediction(EMAIL_TEXT, entities=ents)
    access = governor.admit("acme", {})
    released = ctl.release(event, access, pred, trace_id="t", stage=no_stage)
    selection = ctl.context(ctl.new_cache(), event, pred, lambda: None).selection
    r = assemble(event, released, pred, selection, budget_tokens=50, now=500.0, fetched_at=499.5)
    assert (r.event_id, r.conversation_id, r.tenant) == ("e1", "c", "acme")
    assert (r.status, r.reason, r.label) == ("ok", None, f"label-of-{EMAIL_TEXT}")
    assert r.scores == pred.scores and r.sentiment == pred.sentiment
    assert r.latency_ms == {"end_to_end": 1000.0, "inference": 200.0, "in_worker": 500.0}
    assert r.context == {"turn_ids": [], "tokens": 4, "budget": 50}
    assert r.filter is not None and r.filter["action"] == "mask"
    assert set(r.filter) == {"action", "spans", "reasons"}  # the masked text stays out
    assert r.entities is not None
    assert [(e["type"], e["text"]) for e in r.entities] == [("EMAIL", None), ("SYMPTOM", "please")]
    assert r.policy_version == "3" and r.provenance == released.envelope.to_dict()
    assert (r.model_name, r.backend, r.produced_at) == ("fake", "openvino-int8", 500.0)


def test_assemble_a_blocked_and_a_denied_turn(governor: Governor) -> None:
    ctl = controller(FakeModel(), governor)
    event = Event("e1", ts=499.0)
    unsafe = prediction(safety=0.99)
    blocked = ctl.release(event, governor.admit("acme", {}), unsafe, trace_id="t", stage=no_stage)
    r = assemble(event, blocked, unsafe, None, budget_tokens=50, now=500.0)
    assert (r.status, r.reason, r.text, r.label) == ("blocked", "filter", None, None)
    assert r.scores == {} and r.sentiment is None and r.entities is None and r.context is None
    assert set(r.latency_ms) == {"end_to_end", "inference"}  # no fetch time given
    refused = governor.admit("stranger", {})
    denied = governor.deny(refused, input_text="hi", model=MODEL, trace_id="t")
    d = assemble(Event("e2", tenant="stranger"), denied, None, None, budget_tokens=50, now=500.0)
    assert (d.status, d.reason, d.filter, d.policy_version) == (
        "denied",
        "unknown_tenant",
        None,
        "none",
    )
    assert set(d.latency_ms) == {"end_to_end"}


def test_audit_of_denied_blocked_masked_and_clean_turns(governor: Governor) -> None:
    ctl = controller(FakeModel(), governor)
    allow = governor.admit("acme", {})

    def result_of(text: str, safety: float) -> tuple[Released, TurnResult]:
        pred = prediction(text, safety=safety)
        rel = ctl.release(Event("e", text=text), allow, pred, trace_id="t", stage=no_stage)
        return rel, assemble(Event("e", text=text), rel, pred, None, budget_tokens=9, now=1.0)

    rel, res = result_of(EMAIL_TEXT, 0.01)
    masked = audit(rel, res)
    assert masked is not None and (masked.kind, masked.action, masked.reason) == (
        "filter",
        "mask",
        "masked",
    )
    assert masked.detectors and masked.detectors[0]["type"] == "EMAIL"
    assert masked.provenance_id == rel.envelope.provenance_id
    rel, res = result_of("hello there", 0.99)
    blocked = audit(rel, res)
    assert blocked is not None and (blocked.action, blocked.reason) == ("block", "filter")
    rel, res = result_of("hello there", 0.01)
    assert audit(rel, res) is None
    denial = governor.deny(governor.admit("x", {}), input_text="hi", model=MODEL, trace_id="t")
    d = assemble(Event("e", tenant="x"), denial, None, None, budget_tokens=9, now=1.0)
    denied = audit(denial, d)
    assert denied is not None and (denied.kind, denied.action, denied.reason) == (
        "policy",
        "deny",
        "unknown_tenant",
    )
    assert denied.detectors == []


def test_cost_and_analytics_record(governor: Governor) -> None:
    costs = CostModel(gpu_usd_per_hour=7200.0, cpu_usd_per_hour=36.0)
    pred = prediction()
    assert turn_cost(costs, pred) == pytest.approx(0.2 * 0.01 / 4)  # 200 ms of a batch of 4
    assert turn_cost(costs, None) == 0.0
    ctl = controller(FakeModel(), governor)
    event = Event("e1", ts=499.0)
    rel = ctl.release(event, governor.admit("acme", {}), pred, trace_id="t", stage=no_stage)
    result = assemble(event, rel, pred, None, budget_tokens=9, now=500.0)
    raw = analytics(result, event, rel, pred, cost=0.25, source=("in", 2, 41), worker="w1")
    record = orjson.loads(raw)
    assert record["source"] == {"topic": "in", "partition": 2, "offset": 41}
    assert record["decisions"] == {
        "policy": "allow",
        "policy_reason": None,
        "policy_version": 3,
        "filter": "allow",
    }
    assert record["batch"] == {"size": 4, "inference_ms": 200.0}
    assert (record["cost_usd"], record["worker"], record["label"]) == (0.25, "w1", result.label)
    assert record["produced_at"] == 500.0 and record["event_ts"] == 499.0
