"""documents.in -> permission check -> chunks at the model's sequence limit (with overlap) ->
entity extraction per chunk (batched model calls) -> entities merged, with offsets into the
original text -> documents.out. Same engine, same transaction per input partition as
conversations; a document has no context, so the flow keeps no table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from streams.agents.deadletters import DeadLetters
from streams.engine import Sink
from streams.records import (
    DOCUMENT_RESULT_SCHEMA,
    DocumentEvent,
    SourceRecord,
    decode_document,
)
from streams.settings import Settings
from streams.tables import ChangelogTable
from workers.documents import DocumentTokenizer, SpanTokenizer, extract_entities
from workers.errors import InferstreamError, InvalidEvent
from workers.governance import Governor
from workers.inference.classifier import Prediction, TurnClassifier
from workers.inference.entities import Entity, group_entities
from workers.ocr.reader import ImageReader
from workers.ocr.turn import TurnText, compose, ocr_view
from workers.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Extracted:
    document: DocumentEvent
    entities: list[Entity]
    chunks: int
    backend: str
    model_name: str
    model_version: str
    seconds: float
    read: TurnText | None = None  # what OCR read from the document's pages


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    detail: str
    document_id: str | None
    status: str = "dead_letter"  # or "denied": a result with the reason, no entities


class DocumentHandler:
    def __init__(
        self,
        settings: Settings,
        classifier: TurnClassifier,
        *,
        worker_id: str,
        governor: Governor | None = None,
        metrics: Metrics | None = None,
        tokenizer: SpanTokenizer | None = None,
        clock: Callable[[], float] = time.time,
        reader: ImageReader | None = None,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.governor = governor
        self.worker_id = worker_id
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.tokenizer = tokenizer or DocumentTokenizer()
        self.clock = clock
        self.reader = reader
        self.dead_letters = DeadLetters(settings, self.metrics, worker_id, clock)
        self.topics = (settings.topic_documents_in,)
        self.tables: Sequence[ChangelogTable] = ()

    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Extracted | Refused]:
        self.metrics.event_in(rec.topic)
        return asyncio.ensure_future(self._extract(rec))

    async def _extract(self, rec: SourceRecord) -> Extracted | Refused:
        try:
            doc = decode_document(
                rec.value,
                max_event_bytes=self.settings.max_document_bytes,
                attachments=None if self.reader is None else self.reader.limits,
                max_inline_bytes=self.settings.attachment_max_inline_bytes,
            )
        except InvalidEvent as exc:
            return Refused(exc.code, exc.detail, None)
        if self.governor is not None:
            access = self.governor.admit(doc.tenant, doc.metadata)
            if not access.allowed:
                self.metrics.policy_denial(access.reason)
                return Refused(access.reason, "denied by policy", doc.document_id, "denied")
        read = None
        if doc.attachments:  # scanned pages: their text follows the document's own
            assert self.reader is not None
            try:
                read = compose(doc.text, await self.reader.read(doc.attachments))
            except InvalidEvent as exc:
                return Refused(exc.code, exc.detail, doc.document_id)
            if not read.text.strip():
                return Refused("ocr_no_text", "no text and no line read", doc.document_id)
            doc = dataclasses.replace(doc, text=read.text)
        info = await self.classifier.model_info()
        seq_len = min(self.settings.max_seq_len, info.max_seq_len)
        served: list[Prediction] = []  # the chunks' predictions: their count and route
        start = time.perf_counter()

        async def recognise(texts: list[str]) -> list[tuple[Entity, ...]]:
            predictions = await self.classifier.classify(texts)
            served.extend(predictions)
            return [p.entities for p in predictions]

        try:
            entities = await extract_entities(
                doc.text,
                self.tokenizer,
                recognise,
                max_tokens=seq_len,
                overlap_tokens=min(self.settings.doc_overlap_tokens, seq_len // 2),
            )
        except InferstreamError as exc:
            return Refused(exc.reason, exc.detail, doc.document_id)
        first = served[0] if served else None
        return Extracted(
            doc,
            entities,
            len(served),
            first.backend if first else info.backend,
            first.model_name if first else info.name,
            first.model_version if first else info.version,
            time.perf_counter() - start,
            read,
        )

    async def finish(self, rec: SourceRecord, outcome: Extracted | Refused, part: Sink) -> None:
        if isinstance(outcome, BaseException):
            await self.fail(rec, outcome, part)
            return
        now = self.clock()
        if isinstance(outcome, Refused) and outcome.status == "dead_letter":
            await self.dead_letters.send(
                part, rec, outcome.code, outcome.detail, outcome.document_id
            )
            return
        body: dict[str, Any]
        if isinstance(outcome, Refused):  # denied: a result that says so
            body = {"status": "denied", "reason": outcome.code, "document_id": outcome.document_id}
            key = (outcome.document_id or "").encode() or rec.key
        else:
            doc = outcome.document
            body = {
                "status": "ok",
                "document_id": doc.document_id,
                "tenant": doc.tenant,
                "characters": len(doc.text),
                "chunks": outcome.chunks,
                "entities": [e.to_dict(doc.text) for e in outcome.entities],
                "grouped": group_entities(doc.text, outcome.entities),
                "model": {"name": outcome.model_name, "version": outcome.model_version},
                "backend": outcome.backend,
                "source": "text" if outcome.read is None else outcome.read.source,
                "ocr": None if outcome.read is None else ocr_view(outcome.read, [], doc.text),
                "latency_ms": {
                    "extraction": round(outcome.seconds * 1000.0, 3),
                    "end_to_end": round(max(0.0, now - doc.ts) * 1000.0, 3),
                },
            }
            key = doc.document_id.encode()
        value = orjson.dumps({"schema": DOCUMENT_RESULT_SCHEMA, **body, "produced_at": now})
        self.metrics.event_out(self.settings.topic_documents_out)
        await part.send(
            self.settings.topic_documents_out, key, value, {"content-type": b"application/json"}
        )

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None:
        await self.dead_letters.failed(part, rec, exc)

    async def sweep(self, part: Sink, now: float) -> None:
        return None
