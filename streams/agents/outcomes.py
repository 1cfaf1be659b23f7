"""What the conversation flow (``streams.agents.conversations``) decides for a record at fetch
time (its ``Outcome``, finished later in the partition's transaction), what waits in its
micro-batcher (``Item``), and its two changelog tables: the dialogue context and the event ids
seen (dedupe)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streams.records import ConversationEvent
from streams.settings import Settings
from streams.tables import ChangelogTable
from workers.guard.policy import Access
from workers.inference.classifier import Prediction
from workers.ocr.turn import TurnText
from workers.telemetry.tracing import EventSpan

CONTEXT, DEDUPE = "context", "dedupe"


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
    experiment: dict[str, Any] | None = None  # the result's stamp under an experiment
    read: TurnText | None = None  # what OCR read from the turn's images


@dataclass(frozen=True, slots=True)
class Item:
    """What waits in the micro-batcher: the text, its event's trace, when it came."""

    text: str
    span: EventSpan
    submitted_ns: int


Outcome = Invalid | Duplicate | Denied | Classified


def done(value: Outcome) -> asyncio.Future[Outcome]:
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
