"""conversations.in -> permission check -> classify -> filter, mark, sign -> conversations.out.

``ConversationHandler`` holds the per-batch wiring and knows nothing of Faust; ``register`` is the
agent: a short ``async for`` over batches of events. Nothing is dropped silently: an invalid event
becomes a dead letter, a denied or blocked one a result with its status and an audit record on
``moderation.events``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from streams.publish import Publisher
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
from workers.errors import InferenceRejected, InvalidEvent
from workers.governance import Governor, ModelRef, Released
from workers.guard.policy import Access
from workers.inference.classifier import Prediction, TurnClassifier
from workers.telemetry.cost import CostModel, analytics_record
from workers.telemetry.metrics import Metrics

log = logging.getLogger(__name__)
Pending = list[Awaitable[object]]


class ConversationHandler:
    def __init__(
        self,
        settings: Settings,
        classifier: TurnClassifier,
        governor: Governor,
        publisher: Publisher,
        *,
        worker_id: str,
        ready: Callable[[], Awaitable[None]],
        metrics: Metrics | None = None,
        costs: CostModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.governor = governor
        self.publisher = publisher
        self.worker_id = worker_id
        self.ready = ready
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.costs = costs or CostModel(gpu_usd_per_hour=0.0, cpu_usd_per_hour=0.0)
        self.clock = clock

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        await self.ready()  # the policy table has caught up: decisions use current policies
        self.metrics.event_in(self.settings.topic_in, len(records))
        pending: Pending = []
        admitted: list[tuple[SourceRecord, ConversationEvent, Access]] = []
        for rec in records:
            try:
                event = decode_conversation(
                    rec.value,
                    max_text_bytes=self.settings.max_text_bytes,
                    max_event_bytes=self.settings.max_event_bytes,
                )
            except InvalidEvent as exc:
                pending.append(await self._dead_letter(rec, exc.code, exc.detail))
                continue
            access = self.governor.admit(event.tenant, event.metadata)
            if access.allowed:
                admitted.append((rec, event, access))
            else:
                self.metrics.policy_denial(access.reason)
                pending += await self._denied(rec, event, access)
        if admitted:
            pending += await self._classify_and_send(admitted)
        await self.publisher.flush(pending)

    async def _classify_and_send(
        self, batch: list[tuple[SourceRecord, ConversationEvent, Access]]
    ) -> Pending:
        try:
            with self.metrics.inflight(), self.metrics.time_stage("inference"):
                predictions = await self.classifier.classify([ev.text for _, ev, _ in batch])
        except InferenceRejected as exc:
            self.metrics.triton_error("rejected")
            if len(batch) == 1:
                rec, ev, _ = batch[0]
                return [await self._dead_letter(rec, exc.reason, exc.detail, ev.event_id)]
            # One poison event must not sink its batch-mates: retry each alone.
            log.warning("batch of %d rejected (%s); retrying one by one", len(batch), exc)
            pending: Pending = []
            for item in batch:
                pending += await self._classify_and_send([item])
            return pending
        self.metrics.observe_batch(len(batch))
        self.metrics.route(predictions[0].backend, len(batch))
        pending = []
        for (rec, ev, access), pred in zip(batch, predictions, strict=True):
            model = ModelRef(pred.model_name, pred.model_version, pred.backend)
            with self.metrics.time_stage("governance"):
                released = self.governor.release(
                    ev.text,
                    access,
                    model=model,
                    trace_id="",
                    safety_score=pred.safety_score,
                    entities=pred.entities,
                )
            if released.decision is not None:
                self.metrics.filter_decision(released.decision.action)
            pending += await self._send(rec, ev, released, pred)
        return pending

    async def _denied(self, rec: SourceRecord, ev: ConversationEvent, access: Access) -> Pending:
        info = await self.classifier.model_info()
        model = ModelRef(info.name, info.version, info.backend)
        released = self.governor.deny(access, input_text=ev.text, model=model, trace_id="")
        return await self._send(rec, ev, released, None)

    async def _send(
        self, rec: SourceRecord, ev: ConversationEvent, rel: Released, pred: Prediction | None
    ) -> Pending:
        now = self.clock()
        env = rel.envelope
        ok = rel.status == "ok" and pred is not None
        latency = {"end_to_end": round(max(0.0, now - ev.ts) * 1000.0, 3)}
        if pred is not None:
            latency["inference"] = round(pred.inference_ms, 3)
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
        )
        headers = {
            "inferstream-event-id": ev.event_id.encode(),
            "content-type": b"application/json",
        }
        self.metrics.event_out(self.settings.topic_out)
        self.metrics.observe_e2e(max(0.0, now - ev.ts))
        pending = [
            await self.publisher.send(
                self.settings.topic_out,
                ev.conversation_id.encode(),
                result.to_json(),
                headers | env.to_headers(),
            )
        ]
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
            pending.append(
                await self.publisher.send(
                    self.settings.topic_moderation,
                    ev.conversation_id.encode(),
                    record,
                    {"content-type": b"application/json"},
                )
            )
        pending.append(await self._analytics(rec, ev, rel, pred, result))
        return pending

    async def _analytics(
        self,
        rec: SourceRecord,
        ev: ConversationEvent,
        rel: Released,
        pred: Prediction | None,
        result: ConversationResult,
    ) -> Awaitable[object]:
        """One compact ``inferstream.analytics/v1`` record per processed event, with its cost:
        its share of the batch's inference time at its backend's hourly price."""
        cost = 0.0
        if pred is not None:
            cost = self.costs.per_event(pred.inference_ms / 1000.0, pred.batch_size, pred.backend)
            self.metrics.observe_cost(ev.tenant, pred.backend, cost)
        version = rel.access.policy_version
        record = analytics_record(
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
        self.metrics.event_out(self.settings.topic_analytics)
        return await self.publisher.send(
            self.settings.topic_analytics,
            ev.conversation_id.encode(),
            record,
            {"content-type": b"application/json"},
        )

    async def _dead_letter(
        self, rec: SourceRecord, reason: str, detail: str, event_id: str | None = None
    ) -> Awaitable[object]:
        event_id = event_id or peek_event_id(rec.value)
        log.info("dead letter %s/%d@%d: %s", rec.topic, rec.partition, rec.offset, reason)
        self.metrics.dead_letter(rec.topic, reason)
        self.metrics.event_out(self.settings.topic_deadletter)
        value = dead_letter(
            rec, reason, detail, worker=self.worker_id, now=self.clock(), event_id=event_id
        )
        return await self.publisher.send(
            self.settings.topic_deadletter,
            rec.key,
            value,
            {"inferstream-reason": reason.encode(), "content-type": b"application/json"},
        )


def _filter_summary(rel: Released) -> dict[str, Any] | None:
    if rel.decision is None:
        return None
    full = rel.decision.to_dict()
    return {"action": full["action"], "spans": full["spans"], "reasons": full["reasons"]}


def _detectors(rel: Released) -> list[dict[str, Any]]:
    if rel.decision is None:
        return []
    return [dict(r) for r in rel.decision.to_dict()["reasons"]]


def source_record(message: Any) -> SourceRecord:
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp=message.timestamp,
    )


def register(app: Any, topic: Any, handler: ConversationHandler) -> Any:
    settings = handler.settings
    within = max(settings.max_wait_ms, 0.1) / 1000.0  # take_events() stalls without a timeout

    @app.agent(topic, name="conversations")  # type: ignore[untyped-decorator]
    async def conversations(stream: Any) -> None:  # a faust.Stream; its stubs lack take_events
        async for events in stream.take_events(settings.max_batch, within=within):
            await handler.handle([source_record(e.message) for e in events])

    return conversations
