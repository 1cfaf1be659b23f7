"""Event and result schemas (versioned), their orjson codecs and input validation.

Wire format: UTF-8 JSON objects. Inputs are validated by hand, field by field, so every rejection
carries a stable reason code (see ``REASONS``) instead of a parser's message.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from workers.attachments import REASONS as ATTACHMENT_REASONS
from workers.attachments import Attachment, AttachmentLimits, parse_attachments
from workers.errors import InvalidEvent

if TYPE_CHECKING:  # the result dataclass is workers' (its import pulls in the model client)
    from workers.conversation import TurnResult

CONVERSATION_SCHEMA = "inferstream.conversation/v1"
RESULT_SCHEMA = "inferstream.result/v1"
DEADLETTER_SCHEMA = "inferstream.deadletter/v1"
MODERATION_SCHEMA = "inferstream.moderation/v1"
DOCUMENT_SCHEMA = "inferstream.document/v1"
DOCUMENT_RESULT_SCHEMA = "inferstream.document_result/v1"

REASONS = {
    "empty_event": "the record has no value",
    "event_too_large": "the raw value is larger than max_event_bytes",
    "invalid_utf8": "the value is not valid UTF-8",
    "bad_json": "the value is not parseable JSON",
    "not_an_object": "the JSON value is not an object",
    "unsupported_schema": "the 'schema' field names a schema this worker does not read",
    "missing_field": "a required field is absent",
    "wrong_type": "a field has the wrong JSON type",
    "invalid_field": "a field has the right type but an unacceptable value",
    "empty_text": "the text is empty or only whitespace",
    "text_too_long": "the text is longer than max_text_bytes",
    "inference_rejected": "the model server refused the request",
    "invalid_policy": "a policy record that does not validate (policies topic)",
    "attachment_unsupported": "the event carries attachments and this flow reads none",
    "ocr_no_text": "a turn with no typed text whose images held no readable text",
    **ATTACHMENT_REASONS,
}

_ID_FIELDS = ("event_id", "conversation_id", "tenant", "user_id")
_MAX_ID_LEN = 256
_MAX_METADATA_KEYS = 32
_MAX_METADATA_VALUE_LEN = 1024

MetadataValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One turn of a conversation, as a chat backend publishes it."""

    event_id: str
    conversation_id: str
    tenant: str
    user_id: str
    text: str
    ts: float  # event time, epoch seconds
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()  # images whose text joins the turn (OCR)

    def to_json(self) -> bytes:
        out: dict[str, Any] = {
            "schema": CONVERSATION_SCHEMA,
            "event_id": self.event_id,
            "conversation_id": self.conversation_id,
            "tenant": self.tenant,
            "user_id": self.user_id,
            "text": self.text,
            "ts": self.ts,
            "metadata": self.metadata,
        }
        if self.attachments:
            out["attachments"] = [attachment_json(a) for a in self.attachments]
        return orjson.dumps(out)


def attachment_json(a: Attachment) -> dict[str, Any]:
    """An attachment as the event carries it (docs/events.md)."""
    out: dict[str, Any] = {"id": a.id, "media_type": a.media_type}
    if a.data is not None:
        out["data"] = a.data
    if a.ref is not None:
        out["ref"] = a.ref
    if a.size is not None:
        out["size"] = a.size
    if a.name is not None:
        out["name"] = a.name
    return out


def _require_str(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not value or len(value) > _MAX_ID_LEN:
        raise InvalidEvent("invalid_field", f"'{name}' must be 1..{_MAX_ID_LEN} characters")
    return value


def _parse_ts(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidEvent("wrong_type", "'ts' must be epoch seconds (number) or ISO-8601 string")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidEvent("invalid_field", f"'ts' is not ISO-8601: {value[:64]!r}") from exc
        if parsed.tzinfo is None:
            raise InvalidEvent("invalid_field", "'ts' as a string must carry a UTC offset")
        return parsed.timestamp()
    ts = float(value)
    if not math.isfinite(ts) or ts < 0:
        raise InvalidEvent("invalid_field", "'ts' must be a finite, non-negative number")
    return ts


def _parse_metadata(value: Any) -> dict[str, MetadataValue]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", "'metadata' must be an object")
    if len(value) > _MAX_METADATA_KEYS:
        raise InvalidEvent("invalid_field", f"'metadata' has more than {_MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if item is not None and not isinstance(item, str | int | float | bool):
            raise InvalidEvent("invalid_field", f"'metadata.{key}' must be a scalar")
        if isinstance(item, str) and len(item) > _MAX_METADATA_VALUE_LEN:
            raise InvalidEvent("invalid_field", f"'metadata.{key}' is too long")
    return value


def decode_conversation(
    raw: bytes | None,
    *,
    max_text_bytes: int,
    max_event_bytes: int,
    attachments: AttachmentLimits | None = None,
    max_inline_bytes: int | None = None,
) -> ConversationEvent:
    """Validate raw record bytes into a ``ConversationEvent`` or raise ``InvalidEvent``.
    A turn with attachments may have an empty (or no) ``text``; without ``attachments`` limits
    a turn that carries any is refused (``attachment_unsupported``)."""
    obj = _load_object(raw, max_event_bytes, CONVERSATION_SCHEMA)
    images = _attachments(obj.get("attachments"), attachments, max_inline_bytes)
    required = (*_ID_FIELDS, "ts") if images else (*_ID_FIELDS, "text", "ts")
    missing = [name for name in required if name not in obj]
    if missing:
        raise InvalidEvent("missing_field", "missing: " + ", ".join(missing))
    ids = {name: _require_str(obj, name) for name in _ID_FIELDS}
    text = _require_text(obj, max_text_bytes, allow_empty=bool(images))
    return ConversationEvent(
        text=text,
        ts=_parse_ts(obj["ts"]),
        metadata=_parse_metadata(obj.get("metadata")),
        attachments=images,
        **ids,
    )


def _attachments(
    raw: Any, limits: AttachmentLimits | None, max_inline_bytes: int | None
) -> tuple[Attachment, ...]:
    if raw is None or raw == []:
        return ()
    if limits is None:
        raise InvalidEvent("attachment_unsupported", "this worker reads no attachments")
    parsed = parse_attachments(raw, limits)
    for a in parsed:
        if a.data is not None and max_inline_bytes is not None:
            size = len(a.data) * 3 // 4
            if size > max_inline_bytes:
                raise InvalidEvent(
                    "attachment_too_large",
                    f"attachment {a.id!r}: inline data of about {size} bytes > {max_inline_bytes} "
                    "(send it by 'ref' instead)",
                )
    return parsed


def _require_text(obj: dict[str, Any], max_bytes: int, *, allow_empty: bool = False) -> str:
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise InvalidEvent("wrong_type", f"'text' must be a string, got {type(text).__name__}")
    if not text.strip() and not allow_empty:
        raise InvalidEvent("empty_text", "'text' is empty")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidEvent("text_too_long", f"{size} bytes > {max_bytes}")
    return text


def _load_object(raw: bytes | None, max_event_bytes: int, expected_schema: str) -> dict[str, Any]:
    if not raw:
        raise InvalidEvent("empty_event", "the record value is empty")
    if len(raw) > max_event_bytes:
        raise InvalidEvent("event_too_large", f"{len(raw)} bytes > {max_event_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_utf8", f"byte {exc.start}: {exc.reason}") from exc
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("bad_json", str(exc)[:200]) from exc
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"got a JSON {type(obj).__name__}")
    schema = obj.get("schema", expected_schema)
    if schema != expected_schema:
        raise InvalidEvent("unsupported_schema", f"{str(schema)[:64]!r} != {expected_schema}")
    return obj


@dataclass(frozen=True, slots=True)
class DocumentEvent:
    """A document to extract entities from (any length up to ``max_document_bytes``)."""

    document_id: str
    tenant: str
    text: str
    ts: float
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()  # scanned pages whose text joins the document

    def to_json(self) -> bytes:
        out: dict[str, Any] = {
            "schema": DOCUMENT_SCHEMA,
            "document_id": self.document_id,
            "tenant": self.tenant,
            "text": self.text,
            "ts": self.ts,
            "metadata": self.metadata,
        }
        if self.attachments:
            out["attachments"] = [attachment_json(a) for a in self.attachments]
        return orjson.dumps(out)


def decode_document(
    raw: bytes | None,
    *,
    max_event_bytes: int,
    attachments: AttachmentLimits | None = None,
    max_inline_bytes: int | None = None,
) -> DocumentEvent:
    """Validate raw record bytes into a ``DocumentEvent`` or raise ``InvalidEvent``; as for a
    turn, a document with attachments (scanned pages) may have no text of its own."""
    obj = _load_object(raw, max_event_bytes, DOCUMENT_SCHEMA)
    images = _attachments(obj.get("attachments"), attachments, max_inline_bytes)
    required = (
        ("document_id", "tenant", "ts") if images else ("document_id", "tenant", "text", "ts")
    )
    missing = [name for name in required if name not in obj]
    if missing:
        raise InvalidEvent("missing_field", "missing: " + ", ".join(missing))
    return DocumentEvent(
        document_id=_require_str(obj, "document_id"),
        tenant=_require_str(obj, "tenant"),
        text=_require_text(obj, max_event_bytes, allow_empty=bool(images)),
        ts=_parse_ts(obj["ts"]),
        metadata=_parse_metadata(obj.get("metadata")),
        attachments=images,
    )


def result_json(r: TurnResult) -> bytes:
    """The ``inferstream.result/v1`` record of a turn's result: ``status`` ok (label, scores and
    the governed text), denied (by the tenant's policy, ``reason`` says why) or blocked (by the
    content filter; text withheld)."""
    return orjson.dumps(
        {
            "schema": RESULT_SCHEMA,
            "event_id": r.event_id,
            "conversation_id": r.conversation_id,
            "tenant": r.tenant,
            "status": r.status,
            "reason": r.reason,
            "label": r.label,
            "scores": r.scores,
            "sentiment": r.sentiment,
            "entities": r.entities,
            "text": r.text,
            "filter": r.filter,
            "policy_version": r.policy_version,
            "model": {"name": r.model_name, "version": r.model_version},
            "backend": r.backend,
            "context": r.context,
            "latency_ms": r.latency_ms,
            "produced_at": r.produced_at,
            "provenance": r.provenance,
            "experiment": r.experiment,
            "source": r.source,
            "ocr": r.ocr,
        }
    )


def moderation_event(
    kind: str,
    event: ConversationEvent,
    *,
    action: str,
    reason: str,
    policy_version: str,
    provenance_id: str,
    detectors: list[dict[str, Any]],
    now: float,
) -> bytes:
    """An audit record for ``moderation.events``: a denial, a block or a masking."""
    return orjson.dumps(
        {
            "schema": MODERATION_SCHEMA,
            "kind": kind,
            "action": action,
            "reason": reason,
            "event_id": event.event_id,
            "conversation_id": event.conversation_id,
            "tenant": event.tenant,
            "user_id": event.user_id,
            "department": event.metadata.get("department"),
            "role": event.metadata.get("role"),
            "policy_version": policy_version,
            "provenance_id": provenance_id,
            "detectors": detectors,
            "at": now,
        }
    )


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a record came from: enough to find, replay or audit it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def dead_letter(
    source: SourceRecord,
    reason: str,
    detail: str,
    *,
    worker: str,
    now: float,
    event_id: str | None = None,
    max_original_bytes: int = 262_144,
) -> bytes:
    """A dead-letter record: reason code, detail, source coordinates and the original bytes.
    An original longer than ``max_original_bytes`` keeps its first ``max_original_bytes`` here
    (``original_truncated``, with its size and SHA-256): the dead letter must fit the topic's
    record limit, and the whole original stays at its source offset."""

    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode("ascii")

    original = source.value
    truncated = original is not None and len(original) > max_original_bytes

    return orjson.dumps(
        {
            "schema": DEADLETTER_SCHEMA,
            "reason": reason,
            "detail": detail[:1000],
            "event_id": event_id,
            "source": {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "timestamp": source.timestamp,
                "key_b64": b64(source.key),
            },
            "original_b64": b64(original[:max_original_bytes] if original else original),
            "original_size": None if original is None else len(original),
            "original_sha256": None if original is None else hashlib.sha256(original).hexdigest(),
            "original_truncated": truncated,
            "worker": worker,
            "failed_at": now,
        }
    )


def peek_event_id(raw: bytes | None) -> str | None:
    """Best-effort event id of a record that failed validation (for accounting)."""
    if not raw:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and len(value) <= _MAX_ID_LEN else None
