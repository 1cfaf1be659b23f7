"""conversations.in -> classify -> conversations.out (dead letters for what cannot be processed).

``ConversationHandler`` holds the per-batch wiring and knows nothing of Faust; ``register`` is the
agent: a short ``async for`` over batches of events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from streams.publish import Publisher
from streams.records import (
    ConversationEvent,
    ConversationResult,
    SourceRecord,
    dead_letter,
    decode_conversation,
    peek_event_id,
)
from streams.settings import Settings
from streams.topics import Topics
from workers.errors import InferenceRejected, InvalidEvent
from workers.inference.classifier import Prediction, TurnClassifier

log = logging.getLogger(__name__)


class ConversationHandler:
    def __init__(
        self,
        settings: Settings,
        classifier: TurnClassifier,
        publisher: Publisher,
        *,
        worker_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.publisher = publisher
        self.worker_id = worker_id
        self.clock = clock

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        pending: list[Awaitable[object]] = []
        valid: list[tuple[SourceRecord, ConversationEvent]] = []
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
            valid.append((rec, event))
        if valid:
            pending.extend(await self._classify_and_send(valid))
        await self.publisher.flush(pending)

    async def _classify_and_send(
        self, batch: list[tuple[SourceRecord, ConversationEvent]]
    ) -> list[Awaitable[object]]:
        try:
            predictions = await self.classifier.classify([ev.text for _, ev in batch])
        except InferenceRejected as exc:
            if len(batch) == 1:
                rec, ev = batch[0]
                return [await self._dead_letter(rec, exc.reason, exc.detail, ev.event_id)]
            # One poison event must not sink its batch-mates: retry each alone.
            log.warning("batch of %d rejected (%s); retrying one by one", len(batch), exc)
            pending: list[Awaitable[object]] = []
            for item in batch:
                pending.extend(await self._classify_and_send([item]))
            return pending
        return [
            await self._send_result(ev, pred)
            for (_, ev), pred in zip(batch, predictions, strict=True)
        ]

    async def _send_result(self, ev: ConversationEvent, pred: Prediction) -> Awaitable[object]:
        now = self.clock()
        result = ConversationResult(
            event_id=ev.event_id,
            conversation_id=ev.conversation_id,
            tenant=ev.tenant,
            label=pred.label,
            scores=pred.scores,
            model_name=pred.model_name,
            model_version=pred.model_version,
            backend=pred.backend,
            latency_ms={
                "inference": round(pred.inference_ms, 3),
                "end_to_end": round(max(0.0, now - ev.ts) * 1000.0, 3),
            },
            produced_at=now,
        )
        return await self.publisher.send(
            self.settings.topic_out,
            ev.conversation_id.encode(),
            result.to_json(),
            {"inferstream-event-id": ev.event_id.encode(), "content-type": b"application/json"},
        )

    async def _dead_letter(
        self, rec: SourceRecord, reason: str, detail: str, event_id: str | None = None
    ) -> Awaitable[object]:
        event_id = event_id or peek_event_id(rec.value)
        log.info("dead letter %s/%d@%d: %s", rec.topic, rec.partition, rec.offset, reason)
        value = dead_letter(
            rec, reason, detail, worker=self.worker_id, now=self.clock(), event_id=event_id
        )
        return await self.publisher.send(
            self.settings.topic_deadletter,
            rec.key,
            value,
            {"inferstream-reason": reason.encode(), "content-type": b"application/json"},
        )


def source_record(message: faust.types.Message) -> SourceRecord:
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp=message.timestamp,
    )


def register(app: faust.App, topics: Topics, handler: ConversationHandler) -> Any:
    settings = handler.settings
    within = max(settings.max_wait_ms, 0.1) / 1000.0  # take_events() stalls without a timeout

    @app.agent(topics.conversations_in, name="conversations")
    async def conversations(stream: Any) -> None:  # a faust.Stream; its stubs lack take_events
        async for events in stream.take_events(settings.max_batch, within=within):
            await handler.handle([source_record(e.message) for e in events])

    return conversations
