"""The records a processed turn produces, in its input partition's transaction: the result on
``conversations.out`` (with its trace context in the headers), an audit record on
``moderation.events`` for a denial, block or masking, and the ``inferstream.analytics/v1`` record
with the event's cost. What they say is assembled in ``workers/conversation.py``; this module
only encodes and sends it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.engine import Sink
from streams.records import ConversationEvent, SourceRecord, moderation_event, result_json
from streams.settings import Settings
from workers.context import Selection
from workers.conversation import analytics, assemble, audit, turn_cost
from workers.cost import CostModel
from workers.governance import Released
from workers.inference.classifier import Prediction
from workers.ocr.turn import TurnText
from workers.telemetry.metrics import Metrics
from workers.telemetry.tracing import EventSpan, KafkaTracing

_JSON = {"content-type": b"application/json"}


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
        experiment: dict[str, Any] | None = None,
        read: TurnText | None = None,
    ) -> None:
        now = self.clock()
        result = assemble(
            ev, rel, pred, selection, budget_tokens=self.budget_tokens, now=now,
            fetched_at=fetched_at, experiment=experiment, read=read,
        )  # fmt: skip
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
                self.settings.topic_out, key, result_json(result),
                headers | rel.envelope.to_headers(),
            )  # fmt: skip
        audited = audit(rel, result)
        if audited is not None:
            self.metrics.event_out(self.settings.topic_moderation)
            record = moderation_event(
                audited.kind,
                ev,
                action=audited.action,
                reason=audited.reason,
                policy_version=result.policy_version,
                provenance_id=audited.provenance_id,
                detectors=audited.detectors,
                now=now,
            )
            await part.send(self.settings.topic_moderation, key, record, _JSON)
        cost = turn_cost(self.costs, pred)
        if pred is not None:
            self.metrics.observe_cost(ev.tenant, pred.backend, cost)
        source = (rec.topic, rec.partition, rec.offset)
        record = analytics(result, ev, rel, pred, cost=cost, source=source, worker=self.worker_id)
        await part.send(self.settings.topic_analytics, key, record, _JSON)
        self.metrics.event_out(self.settings.topic_analytics)
