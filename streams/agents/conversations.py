"""conversations.in -> dedupe, permission check -> micro-batched classification -> dialogue
context -> filter, mark, sign -> conversations.out (+ moderation, analytics, dead letters).

``ConversationHandler`` is a ``streams.engine.Handler``: ``prepare`` runs as soon as a record is
fetched (decode, dedupe lookup, policy, and a place in the next cross-conversation batch);
``finish`` runs in offset order per input partition and writes everything through the partition's
transaction: the outputs, the conversation's new context row and the event id's dedupe row.
Nothing is dropped silently: an invalid event becomes a dead letter, a denied or blocked one a
result with its status and an audit record; a re-delivered event id is counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN
from prometheus_client import CollectorRegistry

from streams.engine import Sink
from streams.records import (
    ConversationEvent,
    ConversationResult,
    SourceRecord,
    dead_letter,
    decode_conversation,
    moderation_event,
    peek_event_id,
)
from streams.settings import Settings
from streams.tables import ChangelogTable
from workers.batching import MicroBatcher
from workers.context import ContextSelector, DialogueState, Selection, Turn
from workers.errors import InferenceRejected, InferstreamError, InvalidEvent
from workers.governance import Governor, ModelRef, Released
from workers.guard.policy import Access
from workers.inference.classifier import Prediction, TurnClassifier
from workers.telemetry.cost import CostModel, analytics_record
from workers.telemetry.metrics import Metrics
from workers.telemetry.tracing import (
    ATTR_BACKEND,
    ATTR_MODEL_NAME,
    ATTR_MODEL_VERSION,
    EventSpan,
    KafkaTracing,
)

log = logging.getLogger(__name__)
CONTEXT, DEDUPE = "context", "dedupe"
_CACHE_KEY, _INFLIGHT_KEY = "context_cache", "inflight_ids"
CACHE_SIZE = 2048  # decoded dialogue states kept per partition


@dataclass(frozen=True, slots=True)
class Invalid:
    code: str
    detail: str
    event_id: str | None = None
    span: EventSpan | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    event: ConversationEvent
    span: EventSpan | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    event: ConversationEvent
    access: Access
    span: EventSpan | None = None


@dataclass(frozen=True, slots=True)
class Classified:
    event: ConversationEvent
    access: Access
    prediction: Prediction
    fetched_at: float
    span: EventSpan | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    """What waits in the micro-batcher: the text, its event's trace context, when it came."""

    text: str
    ctx: Context
    submitted_ns: int


Outcome = Invalid | Duplicate | Denied | Classified


def _done(value: Outcome) -> asyncio.Future[Outcome]:
    fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def state_tables(settings: Settings) -> list[ChangelogTable]:
    base = settings.state_path / settings.app_id
    return [
        ChangelogTable(CONTEXT, context_changelog(settings), base),
        ChangelogTable(DEDUPE, dedupe_changelog(settings), base),
    ]


def context_changelog(settings: Settings) -> str:
    return f"{settings.app_id}-context-changelog"


def dedupe_changelog(settings: Settings) -> str:
    return f"{settings.app_id}-dedupe-changelog"


class ConversationHandler:
    def __init__(
        self,
        settings: Settings,
        classifier: TurnClassifier,
        governor: Governor,
        *,
        worker_id: str,
        metrics: Metrics | None = None,
        costs: CostModel | None = None,
        tracing: KafkaTracing | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.tracing = tracing or KafkaTracing(consumer_group=settings.app_id)
        self.classifier = classifier
        self.governor = governor
        self.worker_id = worker_id
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.costs = costs or CostModel(gpu_usd_per_hour=0.0, cpu_usd_per_hour=0.0)
        self.clock = clock
        self.topics = (settings.topic_in,)
        self.tables = state_tables(settings)
        self.selector = ContextSelector(
            settings.context_budget_tokens, settings.context_gate, settings.context_half_life_turns
        )
        self.batcher: MicroBatcher[_Item, Prediction] = MicroBatcher(
            self._infer,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_inflight=settings.max_inflight,
            max_pending=settings.max_pending + settings.max_batch,
        )

    # --- prepare: at fetch time ------------------------------------------------------------
    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Outcome]:
        self.metrics.event_in(rec.topic)
        tracing = self.tracing
        span = tracing.consume_span(
            rec.topic, rec.partition, rec.offset, rec.key, parent_ctx=tracing.extract(rec.headers)
        )
        try:
            with tracing.stage("decode", span.ctx):
                event = decode_conversation(
                    rec.value,
                    max_text_bytes=self.settings.max_text_bytes,
                    max_event_bytes=self.settings.max_event_bytes,
                )
        except InvalidEvent as exc:
            return _done(Invalid(exc.code, exc.detail, peek_event_id(rec.value), span))
        inflight: set[str] = part.local.setdefault(_INFLIGHT_KEY, set())
        if event.event_id in inflight or part.get(DEDUPE, event.event_id.encode()) is not None:
            return _done(Duplicate(event, span))
        inflight.add(event.event_id)
        with tracing.stage("policy", span.ctx):
            access = self.governor.admit(event.tenant, event.metadata)
        if not access.allowed:
            return _done(Denied(event, access, span))
        fetched_at = self.clock()
        item = _Item(event.text, span.ctx, time.time_ns())
        future = self.batcher.submit(event.conversation_id, item)
        return asyncio.ensure_future(self._classified(event, access, future, fetched_at, span))

    async def _infer(self, items: list[_Item]) -> list[Prediction]:
        """One batch: its events' batch_wait spans end here, one inference span covers it."""
        tracing, now = self.tracing, time.time_ns()
        for item in items:
            tracing.record("batch_wait", item.ctx, item.submitted_ns, now)
        with (
            self.metrics.inflight(),
            self.metrics.time_stage("inference"),
            tracing.batch_span("inference", [i.ctx for i in items]) as span,
        ):
            predictions = await self.classifier.classify([i.text for i in items])
            first = predictions[0]
            span.set(ATTR_BACKEND, first.backend)
            span.set(ATTR_MODEL_NAME, first.model_name)
            span.set(ATTR_MODEL_VERSION, first.model_version)
        self.metrics.observe_batch(len(items))
        self.metrics.route(first.backend, len(items))
        return predictions

    async def _classified(
        self,
        event: ConversationEvent,
        access: Access,
        future: asyncio.Future[Prediction],
        fetched_at: float,
        span: EventSpan,
    ) -> Outcome:
        try:
            prediction = await future
        except InferenceRejected as exc:
            # One poison event must not sink its batch-mates: each is retried alone.
            self.metrics.triton_error("rejected")
            log.warning("batch rejected (%s); retrying %s alone", exc, event.event_id)
            try:
                prediction = (await self.classifier.classify([event.text]))[0]
            except InferenceRejected as alone:
                return Invalid(alone.reason, alone.detail, event.event_id, span)
        return Classified(event, access, prediction, fetched_at, span)

    # --- finish: in offset order, inside the partition's transaction -------------------------
    async def finish(self, rec: SourceRecord, outcome: Outcome, part: Sink) -> None:
        if isinstance(outcome, BaseException):  # prepare failed unexpectedly
            await self.fail(rec, outcome, part)
            return
        span = outcome.span or EventSpan(INVALID_SPAN, Context())
        try:
            await self._finish(rec, outcome, part, span)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()

    async def _finish(
        self, rec: SourceRecord, outcome: Outcome, part: Sink, span: EventSpan
    ) -> None:
        match outcome:
            case Invalid(code, detail, event_id):
                await self._dead_letter(part, rec, code, detail, event_id)
            case Duplicate(event):
                self.metrics.duplicate(rec.topic)
                log.info(
                    "duplicate event %s at %s[%d]@%d skipped",
                    event.event_id,
                    rec.topic,
                    rec.partition,
                    rec.offset,
                )
            case Denied(event, access):
                self.metrics.policy_denial(access.reason)
                info = await self.classifier.model_info()
                model = ModelRef(info.name, info.version, info.backend)
                released = self.governor.deny(
                    access, input_text=event.text, model=model,
                    trace_id=self.tracing.trace_id(span.ctx),
                )  # fmt: skip
                await self._send(part, rec, event, released, None, None, span=span)
                await self._remember(part, event)
            case Classified(event, access, prediction, fetched_at):
                with self.tracing.stage("context", span.ctx):
                    selection = await self._context(part, event, prediction)
                model = ModelRef(
                    prediction.model_name, prediction.model_version, prediction.backend
                )
                with self.metrics.time_stage("governance"):
                    released = self.governor.release(
                        event.text,
                        access,
                        model=model,
                        trace_id=self.tracing.trace_id(span.ctx),
                        safety_score=prediction.safety_score,
                        entities=prediction.entities,
                        stage=lambda name: self.tracing.stage(name, span.ctx),
                    )
                if released.decision is not None:
                    self.metrics.filter_decision(released.decision.action)
                await self._send(
                    part, rec, event, released, prediction, selection, fetched_at, span=span
                )
                await self._remember(part, event)

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None:
        reason = exc.reason if isinstance(exc, InferstreamError) else "internal_error"
        await self._dead_letter(part, rec, reason, f"{type(exc).__name__}: {exc}", None)

    async def _remember(self, part: Sink, event: ConversationEvent) -> None:
        """The event id's dedupe row, in the same transaction as its outputs."""
        await part.put(DEDUPE, event.event_id.encode(), b"1", self.clock())
        part.local.get(_INFLIGHT_KEY, set()).discard(event.event_id)

    async def _context(
        self, part: Sink, event: ConversationEvent, prediction: Prediction
    ) -> Selection:
        """Select earlier turns for this one, then append it to the conversation's row."""
        with self.metrics.time_stage("context"):
            state = self._state(part, event.conversation_id)
            selection = self.selector.select(state, prediction.embedding, prediction.tokens)
            turn = Turn(
                event.event_id, event.text, prediction.tokens, prediction.embedding, event.ts
            )
            state.append(turn, now=self.clock())
        await part.put(
            CONTEXT, event.conversation_id.encode(), state.to_bytes("int8"), state.last_seen
        )
        return selection

    def _state(self, part: Sink, conversation_id: str) -> DialogueState:
        cache: OrderedDict[str, DialogueState] = part.local.setdefault(_CACHE_KEY, OrderedDict())
        state = cache.get(conversation_id)
        if state is None:
            raw = part.get(CONTEXT, conversation_id.encode())
            cap, tok = self.settings.context_turn_cap, self.settings.context_token_cap
            state = DialogueState(cap, tok)
            if raw is not None:
                try:
                    state = DialogueState.from_bytes(raw, turn_cap=cap, token_cap=tok)
                except ValueError as exc:  # an unreadable row: start the context afresh
                    log.warning("context of %r unreadable (%s); reset", conversation_id, exc)
            cache[conversation_id] = state
            if len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
        cache.move_to_end(conversation_id)
        return state

    async def sweep(self, part: Sink, now: float) -> None:
        """Drop idle conversations and event ids past the dedupe window (tombstones)."""
        tables = getattr(part, "tables", {})
        cache: OrderedDict[str, DialogueState] = part.local.setdefault(_CACHE_KEY, OrderedDict())
        if CONTEXT in tables:
            for key in tables[CONTEXT].expired(now - self.settings.context_idle_s):
                cache.pop(key.decode(), None)
                await part.put(CONTEXT, key, None, now)
            self.metrics.set_table_size(CONTEXT, len(tables[CONTEXT]))
        if DEDUPE in tables:
            for key in tables[DEDUPE].expired(now - self.settings.dedupe_window_s):
                await part.put(DEDUPE, key, None, now)

    # --- outputs -----------------------------------------------------------------------------
    async def _send(
        self,
        part: Sink,
        rec: SourceRecord,
        ev: ConversationEvent,
        rel: Released,
        pred: Prediction | None,
        selection: Selection | None,
        fetched_at: float | None = None,
        *,
        span: EventSpan,
    ) -> None:
        now = self.clock()
        env = rel.envelope
        ok = rel.status == "ok" and pred is not None
        latency = {"end_to_end": round(max(0.0, now - ev.ts) * 1000.0, 3)}
        if pred is not None:
            latency["inference"] = round(pred.inference_ms, 3)
        if fetched_at is not None:
            latency["in_worker"] = round(max(0.0, now - fetched_at) * 1000.0, 3)
        context = None
        if selection is not None:
            context = {
                "turn_ids": list(selection.turn_ids),
                "tokens": selection.tokens_used,
                "budget": self.selector.budget_tokens,
            }
        result = ConversationResult(
            event_id=ev.event_id,
            conversation_id=ev.conversation_id,
            tenant=ev.tenant,
            status=rel.status,
            reason=None
            if rel.status == "ok"
            else (rel.access.reason if pred is None else "filter"),
            label=pred.label if ok and pred else None,
            scores=pred.scores if ok and pred else {},
            text=rel.text,
            filter=_filter_summary(rel),
            policy_version=rel.access.policy_version,
            model_name=env.model_name,
            model_version=env.model_version,
            backend=env.backend,
            latency_ms=latency,
            produced_at=now,
            provenance=env.to_dict(),
            context=context,
        )
        headers = {
            "inferstream-event-id": ev.event_id.encode(),
            "content-type": b"application/json",
        }
        key = ev.conversation_id.encode()
        self.metrics.event_out(self.settings.topic_out)
        self.metrics.observe_e2e(max(0.0, now - ev.ts))
        with self.tracing.produce_span(self.settings.topic_out, span.ctx, key=key) as produced:
            headers |= produced.headers  # traceparent: downstream consumers continue the trace
            await part.send(
                self.settings.topic_out, key, result.to_json(), headers | env.to_headers()
            )
        action = "deny" if rel.status == "denied" else (rel.decision.action if rel.decision else "")
        if action in ("deny", "block", "mask"):
            self.metrics.event_out(self.settings.topic_moderation)
            record = moderation_event(
                "policy" if action == "deny" else "filter",
                ev,
                action=action,
                reason=result.reason or "masked",
                policy_version=rel.access.policy_version,
                provenance_id=env.provenance_id,
                detectors=_detectors(rel),
                now=now,
            )
            await part.send(self.settings.topic_moderation, key, record, _JSON)
        await part.send(
            self.settings.topic_analytics, key, self._analytics(rec, ev, rel, pred, result), _JSON
        )
        self.metrics.event_out(self.settings.topic_analytics)

    def _analytics(
        self,
        rec: SourceRecord,
        ev: ConversationEvent,
        rel: Released,
        pred: Prediction | None,
        result: ConversationResult,
    ) -> bytes:
        """One compact ``inferstream.analytics/v1`` record per processed event, with its cost:
        its share of the batch's inference time at its backend's hourly price."""
        cost = 0.0
        if pred is not None:
            cost = self.costs.per_event(pred.inference_ms / 1000.0, pred.batch_size, pred.backend)
            self.metrics.observe_cost(ev.tenant, pred.backend, cost)
        version = rel.access.policy_version
        return analytics_record(
            event_id=ev.event_id,
            conversation_id=ev.conversation_id,
            tenant=ev.tenant,
            status=rel.status,
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            worker=self.worker_id,
            event_ts=ev.ts,
            produced_at=result.produced_at,
            label=result.label,
            policy="allow" if rel.access.allowed else "deny",
            policy_reason=None if rel.access.allowed else rel.access.reason,
            policy_version=int(version) if version.isdigit() else None,
            filter_action=rel.decision.action if rel.decision else None,
            model_name=result.model_name,
            model_version=result.model_version,
            backend=result.backend,
            batch_size=pred.batch_size if pred else None,
            batch_inference_ms=pred.inference_ms if pred else None,
            latency_ms=result.latency_ms,
            cost_usd=cost,
        )

    async def _dead_letter(
        self, part: Sink, rec: SourceRecord, reason: str, detail: str, event_id: str | None
    ) -> None:
        event_id = event_id or peek_event_id(rec.value)
        log.info("dead letter %s/%d@%d: %s", rec.topic, rec.partition, rec.offset, reason)
        self.metrics.dead_letter(rec.topic, reason)
        self.metrics.event_out(self.settings.topic_deadletter)
        value = dead_letter(
            rec, reason, detail, worker=self.worker_id, now=self.clock(), event_id=event_id
        )
        headers = {"inferstream-reason": reason.encode(), "content-type": b"application/json"}
        await part.send(
            self.settings.topic_deadletter,
            rec.key,
            value,
            headers,
            partition=None if rec.key else part.partition,
        )
        if event_id is not None:
            part.local.get(_INFLIGHT_KEY, set()).discard(event_id)


_JSON = {"content-type": b"application/json"}


def _filter_summary(rel: Released) -> dict[str, Any] | None:
    if rel.decision is None:
        return None
    full = rel.decision.to_dict()
    return {"action": full["action"], "spans": full["spans"], "reasons": full["reasons"]}


def _detectors(rel: Released) -> list[dict[str, Any]]:
    if rel.decision is None:
        return []
    return [dict(r) for r in rel.decision.to_dict()["reasons"]]
