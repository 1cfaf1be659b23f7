"""One conversation turn's work, without Kafka: its dialogue context, its classification when its
batch was rejected, its governed release and the result assembled from all of them.

The conversation flow (``streams/agents/conversations.py``) decodes, dedupes and batches the
turns, calls ``ConversationController`` and sends what it returns through the input partition's
transaction:

* ``DialogueCache``: one input partition's decoded dialogue states, least recently used first
  out; a miss reads the conversation's context row, and an unreadable row starts it afresh.
* ``ConversationController.predict``: a batch the model server rejected (``InferenceRejected``,
  not retriable) is retried one turn at a time, so only the poison turn comes back ``Rejected``
  (a dead letter with its reason) and its batch-mates go on.
* ``ConversationController.context``: the earlier turns selected for a new turn, which is then
  appended; returns the selection and the row to write.
* ``ConversationController.release`` / ``deny``: the governor's filter, mark and signature for a
  classified turn, or the signed denial of a refused one.
* ``assemble``, ``audit``, ``analytics``: the turn's result, its moderation audit (a denial, block
  or masking) and its analytics record, from the prediction, the release and the context.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workers.context import ContextSelector, DialogueState, Precision, Selection, Turn
from workers.cost import CostModel, analytics_record
from workers.errors import InferenceRejected
from workers.governance import Governor, ModelRef, Released, Stage
from workers.guard.policy import Access
from workers.inference.classifier import Prediction
from workers.inference.entities import entity_records
from workers.inference.triton import ModelInfo
from workers.ocr.turn import TurnText, ocr_view

log = logging.getLogger(__name__)
CACHE_SIZE = 2048  # decoded dialogue states kept per partition
ROW_PRECISION: Precision = "int8"  # embeddings in the context table's rows


class TurnEvent(Protocol):
    """What the work reads of a conversation event (``streams.records.ConversationEvent``)."""

    @property
    def event_id(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def ts(self) -> float: ...


class TurnModel(Protocol):
    """The classifier as the flow uses it (``workers.inference.classifier.TurnClassifier``)."""

    async def classify(self, texts: Sequence[str]) -> list[Prediction]: ...

    async def model_info(self) -> ModelInfo: ...


# --- the dialogue-state cache ----------------------------------------------------------------
class DialogueCache:
    """Decoded dialogue states of one input partition, at most ``size``, least recently used
    evicted first. A state is the truth only together with its table row: the flow writes the
    row after every append, so an evicted state is read back from the row unchanged."""

    def __init__(self, turn_cap: int, token_cap: int, size: int = CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.turn_cap, self.token_cap, self.size = turn_cap, token_cap, size
        self._states: OrderedDict[str, DialogueState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._states

    def state(self, conversation_id: str, row: Callable[[], bytes | None]) -> DialogueState:
        """The conversation's state; on a miss decoded from ``row()`` (its table row, or None)."""
        state = self._states.get(conversation_id)
        if state is None:
            state = self._decode(conversation_id, row())
            self._states[conversation_id] = state
            if len(self._states) > self.size:
                self._states.popitem(last=False)
        self._states.move_to_end(conversation_id)
        return state

    def drop(self, conversation_id: str) -> None:
        """Forget a conversation (its row was deleted)."""
        self._states.pop(conversation_id, None)

    def _decode(self, conversation_id: str, raw: bytes | None) -> DialogueState:
        if raw is not None:
            try:
                return DialogueState.from_bytes(
                    raw, turn_cap=self.turn_cap, token_cap=self.token_cap
                )
            except ValueError as exc:  # an unreadable row: start the context afresh
                log.warning("context of %r unreadable (%s); reset", conversation_id, exc)
        return DialogueState(self.turn_cap, self.token_cap)


@dataclass(frozen=True, slots=True)
class ContextUpdate:
    """The context selected for a turn, and the conversation's new row (the turn appended)."""

    selection: Selection
    row: bytes
    last_seen: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """A turn the model server refused even alone: a dead letter with ``reason``."""

    reason: str
    detail: str


def _ignore(exc: InferenceRejected) -> None:
    return None


class ConversationController:
    def __init__(
        self,
        model: TurnModel,
        governor: Governor,
        selector: ContextSelector,
        *,
        turn_cap: int,
        token_cap: int,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.time,
        on_batch_rejected: Callable[[InferenceRejected], None] = _ignore,
    ) -> None:
        self.model = model
        self.governor = governor
        self.selector = selector
        self.turn_cap, self.token_cap, self.cache_size = turn_cap, token_cap, cache_size
        self.clock = clock
        self.on_batch_rejected = on_batch_rejected

    def new_cache(self) -> DialogueCache:
        return DialogueCache(self.turn_cap, self.token_cap, self.cache_size)

    async def predict(
        self, batched: Awaitable[Prediction], event: TurnEvent, model: TurnModel | None = None
    ) -> Prediction | Rejected:
        """The turn's prediction from its batch; if the batch was rejected, from a call of its
        own to ``model`` (default: the served model), so one poison turn does not sink its
        batch-mates. Other errors propagate."""
        try:
            return await batched
        except InferenceRejected as exc:
            self.on_batch_rejected(exc)
            log.warning("batch rejected (%s); retrying %s alone", exc, event.event_id)
        try:
            return (await (model or self.model).classify([event.text]))[0]
        except InferenceRejected as alone:
            return Rejected(alone.reason, alone.detail)

    def context(
        self,
        cache: DialogueCache,
        event: TurnEvent,
        prediction: Prediction,
        row: Callable[[], bytes | None],
    ) -> ContextUpdate:
        """Select earlier turns for this one, then append it to the conversation's state."""
        state = cache.state(event.conversation_id, row)
        selection = self.selector.select(state, prediction.embedding, prediction.tokens)
        turn = Turn(event.event_id, event.text, prediction.tokens, prediction.embedding, event.ts)
        state.append(turn, now=self.clock())
        return ContextUpdate(selection, state.to_bytes(ROW_PRECISION), state.last_seen)

    def release(
        self,
        event: TurnEvent,
        access: Access,
        prediction: Prediction,
        *,
        trace_id: str,
        stage: Stage,
    ) -> Released:
        """Filter, mark and sign what the model's answer lets out (``stage`` wraps the steps)."""
        return self.governor.release(
            event.text,
            access,
            model=ModelRef(prediction.model_name, prediction.model_version, prediction.backend),
            trace_id=trace_id,
            safety_score=prediction.safety_score,
            entities=prediction.entities,
            stage=stage,
        )

    async def deny(self, event: TurnEvent, access: Access, *, trace_id: str) -> Released:
        """The signed denial of a turn the tenant's policy refused (it never reached the model)."""
        info = await self.model.model_info()
        model = ModelRef(info.name, info.version, info.backend)
        return self.governor.deny(access, input_text=event.text, model=model, trace_id=trace_id)


# --- result assembly -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TurnResult:
    """The answer to one turn (``streams.records.result_json`` writes its result/v1 record)."""

    event_id: str
    conversation_id: str
    tenant: str
    status: str
    reason: str | None
    label: str | None
    scores: dict[str, float]
    text: str | None
    filter: dict[str, Any] | None
    policy_version: str
    model_name: str
    model_version: str
    backend: str
    latency_ms: dict[str, float]
    produced_at: float
    provenance: dict[str, Any]
    context: dict[str, Any] | None
    sentiment: dict[str, Any] | None
    entities: list[dict[str, Any]] | None
    experiment: dict[str, Any] | None = None  # {name, version, arm} under an experiment
    source: str = "text"  # "image" / "text+image" when OCR read (part of) the text
    ocr: list[dict[str, Any]] | None = None  # per image: lines, boxes, redactions


@dataclass(frozen=True, slots=True)
class Audit:
    """A ``moderation.events`` record's decision: a denial (policy), a block or a masking."""

    kind: str  # "policy" or "filter"
    action: str  # "deny", "block" or "mask"
    reason: str
    provenance_id: str
    detectors: list[dict[str, Any]]


def assemble(
    event: TurnEvent,
    released: Released,
    prediction: Prediction | None,
    selection: Selection | None,
    *,
    budget_tokens: int,
    now: float,
    fetched_at: float | None = None,
    experiment: dict[str, Any] | None = None,
    read: TurnText | None = None,
) -> TurnResult:
    """The result of a turn: classified (``prediction``) or denied (None) at ``now``; ``read``
    is what OCR read from its images (the event's text is then ``read.text``)."""
    env = released.envelope
    ok = released.status == "ok" and prediction is not None
    latency = {"end_to_end": round(max(0.0, now - event.ts) * 1000.0, 3)}
    if prediction is not None:
        latency["inference"] = round(prediction.inference_ms, 3)
    if fetched_at is not None:
        latency["in_worker"] = round(max(0.0, now - fetched_at) * 1000.0, 3)
    context = None
    if selection is not None:
        context = {
            "turn_ids": list(selection.turn_ids),
            "tokens": selection.tokens_used,
            "budget": budget_tokens,
        }
    reason = None
    if released.status != "ok":
        reason = released.access.reason if prediction is None else "filter"
    shown = prediction if ok else None
    return TurnResult(
        event_id=event.event_id,
        conversation_id=event.conversation_id,
        tenant=event.tenant,
        status=released.status,
        reason=reason,
        label=shown.label if shown else None,
        scores=shown.scores if shown else {},
        text=released.text,
        filter=filter_summary(released),
        policy_version=released.access.policy_version,
        model_name=env.model_name,
        model_version=env.model_version,
        backend=env.backend,
        latency_ms=latency,
        produced_at=now,
        provenance=env.to_dict(),
        context=context,
        sentiment=shown.sentiment if shown else None,
        entities=_entities(event.text, released, shown) if shown else None,
        experiment=experiment,
        source=read.source if read is not None else "text",
        ocr=_ocr(read, released) if read is not None else None,
    )


def audit(released: Released, result: TurnResult) -> Audit | None:
    """The moderation audit of a denied, blocked or masked turn; None for any other."""
    decision = released.decision
    action = "deny" if released.status == "denied" else (decision.action if decision else "")
    if action not in ("deny", "block", "mask"):
        return None
    detectors = [] if decision is None else [dict(r) for r in decision.to_dict()["reasons"]]
    return Audit(
        "policy" if action == "deny" else "filter",
        action,
        result.reason or "masked",
        released.envelope.provenance_id,
        detectors,
    )


def turn_cost(costs: CostModel, prediction: Prediction | None) -> float:
    """The turn's share of its batch's inference time at its backend's hourly price."""
    if prediction is None:
        return 0.0
    return costs.per_event(
        prediction.inference_ms / 1000.0, prediction.batch_size, prediction.backend
    )


def analytics(
    result: TurnResult,
    event: TurnEvent,
    released: Released,
    prediction: Prediction | None,
    *,
    cost: float,
    source: tuple[str, int, int],
    worker: str,
) -> bytes:
    """The turn's ``inferstream.analytics/v1`` record; ``source`` = (topic, partition, offset)."""
    access, decision = released.access, released.decision
    version = access.policy_version
    topic, partition, offset = source
    return analytics_record(
        event_id=event.event_id,
        conversation_id=event.conversation_id,
        tenant=event.tenant,
        status=released.status,
        source_topic=topic,
        partition=partition,
        offset=offset,
        worker=worker,
        event_ts=event.ts,
        produced_at=result.produced_at,
        label=result.label,
        policy="allow" if access.allowed else "deny",
        policy_reason=None if access.allowed else access.reason,
        policy_version=int(version) if version.isdigit() else None,
        filter_action=decision.action if decision else None,
        model_name=result.model_name,
        model_version=result.model_version,
        backend=result.backend,
        batch_size=prediction.batch_size if prediction else None,
        batch_inference_ms=prediction.inference_ms if prediction else None,
        latency_ms=result.latency_ms,
        cost_usd=cost,
    )


def filter_summary(released: Released) -> dict[str, Any] | None:
    if released.decision is None:
        return None
    full = released.decision.to_dict()
    return {"action": full["action"], "spans": full["spans"], "reasons": full["reasons"]}


def _ocr(read: TurnText, released: Released) -> list[dict[str, Any]]:
    """The images' lines as released: masked like the text (None when withheld or denied).
    Offsets follow the filter's masked text, before the watermark marks the whole text."""
    decision = released.decision
    if released.status != "ok" or decision is None:
        return ocr_view(read, [], None)
    return ocr_view(read, decision.spans, decision.text)


def _entities(text: str, released: Released, prediction: Prediction) -> list[dict[str, Any]]:
    """The model's entities; those overlapping a masked span keep their offsets, not their text."""
    hidden = [(s.start, s.end) for s in released.decision.spans] if released.decision else []
    return entity_records(text, prediction.entities, hidden)
