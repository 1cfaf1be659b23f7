"""The records a processed turn produces, in its input partition's transaction: the result on
``conversations.out`` (with its trace context in the headers), an audit record on
``moderation.events`` for a denial, block or masking, and the ``inferstream.analytics/v1`` record
with the event's cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.engine import Sink
from streams.records import ConversationEvent, ConversationResult, SourceRecord, moderation_event
from streams.settings import Settings
from workers.context import Selection
from workers.governance import Released
from workers.inference.classifier import Prediction
from workers.inference.entities import entity_records
from workers.telemetry.cost import CostModel, analytics_record
from workers.telemetry.metrics import Metrics
from workers.telemetry.tracing import EventSpan, KafkaTracing


class ConversationOutputs:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        tracing: KafkaTracing,
        costs: CostModel,
        worker_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing
        self.costs = costs
        self.worker_id = worker_id
        self.clock = clock
        self.budget_tokens = settings.context_budget_tokens

    async def send(
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
                "budget": self.budget_tokens,
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
            sentiment=pred.sentiment if ok and pred else None,
            entities=_entities(ev.text, rel, pred) if ok and pred else None,
        )
        headers = {
            "inferstream-event-id": ev.event_id.encode(),
            "content-type": b"application/json",
        }
        key = ev.conversation_id.encode()
        self.metrics.event_out(self.settings.topic_out)
        self.metrics.observe_e2e(max(0.0, now - ev.ts))
        with self.tracing.produce_span(self.settings.topic_out, span, key=key) as produced:
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
            self.settings.topic_analytics, key, self.analytics(rec, ev, rel, pred, result), _JSON
        )
        self.metrics.event_out(self.settings.topic_analytics)

    def analytics(
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


_JSON = {"content-type": b"application/json"}


def _filter_summary(rel: Released) -> dict[str, Any] | None:
    if rel.decision is None:
        return None
    full = rel.decision.to_dict()
    return {"action": full["action"], "spans": full["spans"], "reasons": full["reasons"]}


def _entities(text: str, rel: Released, pred: Prediction) -> list[dict[str, Any]]:
    hidden = [(s.start, s.end) for s in rel.decision.spans] if rel.decision else []
    return entity_records(text, pred.entities, hidden)


def _detectors(rel: Released) -> list[dict[str, Any]]:
    if rel.decision is None:
        return []
    return [dict(r) for r in rel.decision.to_dict()["reasons"]]
