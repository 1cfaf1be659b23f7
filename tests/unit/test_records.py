import base64

import orjson
import pytest

from streams.records import (
    CONVERSATION_SCHEMA,
    REASONS,
    ConversationEvent,
    SourceRecord,
    dead_letter,
    decode_conversation,
    decode_document,
    peek_event_id,
)
from workers.attachments import AttachmentLimits
from workers.errors import InvalidEvent

LIMITS = {"max_text_bytes": 100, "max_event_bytes": 1000}


def event(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e1",
        "conversation_id": "c1",
        "tenant": "t",
        "user_id": "u",
        "text": "hello there",
        "ts": 1700000000.5,
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def reason_of(raw: bytes | None) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_conversation(raw, **LIMITS)
    assert info.value.code in REASONS
    return info.value.code


def test_valid_event_round_trips() -> None:
    ev = decode_conversation(event(metadata={"channel": "web", "turn": 3}), **LIMITS)
    assert ev == ConversationEvent(
        "e1", "c1", "t", "u", "hello there", 1700000000.5, {"channel": "web", "turn": 3}
    )
    again = decode_conversation(ev.to_json(), **LIMITS)
    assert again == ev
    assert orjson.loads(ev.to_json())["schema"] == CONVERSATION_SCHEMA


def test_iso_timestamp_with_offset() -> None:
    ev = decode_conversation(event(ts="2026-11-28T12:00:00+00:00"), **LIMITS)
    assert ev.ts == 1795867200.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty_event"),
        (b"", "empty_event"),
        (b"x" * 1001, "event_too_large"),
        (b'{"text": "\xff\xfe"}', "invalid_utf8"),
        (b'{"event_id": ', "bad_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (event(schema="other/v9"), "unsupported_schema"),
        (event(text=...), "missing_field"),
        (event(event_id=...), "missing_field"),
        (event(event_id=12), "wrong_type"),
        (event(event_id=""), "invalid_field"),
        (event(text=["a"]), "wrong_type"),
        (event(text="   "), "empty_text"),
        (event(text="é" * 51), "text_too_long"),
        (event(ts=True), "wrong_type"),
        (event(ts=-1), "invalid_field"),
        (event(ts="yesterday"), "invalid_field"),
        (event(ts="2026-11-28T12:00:00"), "invalid_field"),
        (event(metadata=[1]), "wrong_type"),
        (event(metadata={"nested": {"a": 1}}), "invalid_field"),
    ],
)
def test_invalid_events_have_stable_reasons(raw: bytes | None, reason: str) -> None:
    assert reason_of(raw) == reason


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    raw = b'{"event_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(InvalidEvent) as info:
        decode_conversation(raw, max_text_bytes=100, max_event_bytes=100_000)
    assert info.value.code == "bad_json"


def test_text_limit_counts_utf8_bytes_not_characters() -> None:
    assert decode_conversation(event(text="é" * 50), **LIMITS).text == "é" * 50


def test_dead_letter_keeps_original_bytes_and_coordinates() -> None:
    src = SourceRecord("conversations.in", 2, 41, b"k", b"\xff not json", 1.5)
    out = orjson.loads(dead_letter(src, "invalid_utf8", "byte 0", worker="w1", now=9.0))
    assert out["reason"] == "invalid_utf8"
    assert base64.b64decode(out["original_b64"]) == b"\xff not json"
    assert out["source"] == {
        "topic": "conversations.in",
        "partition": 2,
        "offset": 41,
        "timestamp": 1.5,
        "key_b64": base64.b64encode(b"k").decode(),
    }


def test_peek_event_id_is_best_effort() -> None:
    assert peek_event_id(event(text=5)) == "e1"
    assert peek_event_id(b"nope") is None
    assert peek_event_id(b'{"event_id": 5}') is None


def test_dead_letter_of_a_huge_record_keeps_a_prefix_its_size_and_hash() -> None:
    import hashlib

    raw = b"x" * 1_000_000
    src = SourceRecord("conversations.in", 0, 5, b"k", raw, 1.0)
    out = orjson.loads(dead_letter(src, "event_too_large", "big", worker="w", now=2.0))
    assert len(base64.b64decode(out["original_b64"])) == 262_144
    assert out["original_truncated"] is True and out["original_size"] == 1_000_000
    assert out["original_sha256"] == hashlib.sha256(raw).hexdigest()
    tiny = SourceRecord("conversations.in", 0, 6, b"k", b"{", 1.0)
    small = orjson.loads(dead_letter(tiny, "bad_json", "x", worker="w", now=2.0))
    assert small["original_truncated"] is False and base64.b64decode(small["original_b64"]) == b"{"


# --- attachments (issue 19) ----------------------------------------------------------------------
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def with_images(**fields: object) -> bytes:
    return event(attachments=[{"id": "p", "media_type": "image/png", "data": PNG_B64}], **fields)


def test_a_turn_with_an_image_may_have_no_text_and_round_trips() -> None:
    limits = AttachmentLimits()
    raw = orjson.loads(with_images())
    del raw["text"]
    ev = decode_conversation(
        orjson.dumps(raw), max_text_bytes=100, max_event_bytes=10_000, attachments=limits
    )
    assert ev.text == "" and [a.id for a in ev.attachments] == ["p"]
    again = decode_conversation(
        ev.to_json(), max_text_bytes=100, max_event_bytes=10_000, attachments=limits
    )
    assert again == ev


def test_attachments_are_refused_where_no_ocr_reads_them() -> None:
    with pytest.raises(InvalidEvent) as err:
        decode_conversation(with_images(), max_text_bytes=100, max_event_bytes=10_000)
    assert err.value.code == "attachment_unsupported"
    with pytest.raises(InvalidEvent) as err:
        decode_document(
            orjson.dumps({"document_id": "d", "tenant": "t", "text": "x", "ts": 1,
                          "attachments": [{"media_type": "image/png", "ref": "a.png"}]}),
            max_event_bytes=10_000,
        )  # fmt: skip
    assert err.value.code == "attachment_unsupported"


def test_inline_images_have_their_own_size_limit() -> None:
    with pytest.raises(InvalidEvent) as err:
        decode_conversation(
            with_images(), max_text_bytes=100, max_event_bytes=10_000,
            attachments=AttachmentLimits(), max_inline_bytes=16,
        )  # fmt: skip
    assert err.value.code == "attachment_too_large" and "ref" in err.value.detail


def test_a_turn_without_text_or_images_is_still_empty_text() -> None:
    with pytest.raises(InvalidEvent) as err:
        decode_conversation(
            event(text="", attachments=[]), max_text_bytes=100, max_event_bytes=10_000,
            attachments=AttachmentLimits(),
        )  # fmt: skip
    assert err.value.code == "empty_text"
