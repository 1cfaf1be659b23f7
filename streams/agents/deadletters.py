"""Dead letters of every flow: the reason code, the detail, the source coordinates and the
original bytes, sent through the input partition's transaction (so a dead letter, like a result,
appears exactly once)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from streams.engine import Sink
from streams.records import SourceRecord, dead_letter, peek_event_id
from streams.settings import Settings
from workers.errors import InferstreamError
from workers.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(
        self, settings: Settings, metrics: Metrics, worker_id: str, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id
        self.clock = clock

    async def send(
        self, part: Sink, rec: SourceRecord, reason: str, detail: str, event_id: str | None = None
    ) -> str | None:
        """Dead-letter ``rec``; returns the event id it carries (given, or read from the bytes)."""
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
        return event_id

    async def failed(self, part: Sink, rec: SourceRecord, exc: BaseException) -> str | None:
        """An unexpected error while handling ``rec``: its error's reason, or internal_error."""
        reason = exc.reason if isinstance(exc, InferstreamError) else "internal_error"
        return await self.send(part, rec, reason, f"{type(exc).__name__}: {exc}")
