"""Acceptance: N events through the real Kafka broker, a real worker process and the real Triton."""

from __future__ import annotations

import asyncio
import base64
import random
import time

import orjson
import pytest

from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from tests.conftest import WorkerFactory
from tests.integration import kafka_io, served

pytestmark = pytest.mark.integration

TEXTS = [
    "Hi there, good morning!",
    "My card was charged twice for the same order.",
    "I can't log in, my password reset link never arrives.",
    "The app crashes whenever I open the settings page.",
    "Where is my parcel? Tracking hasn't moved in a week.",
    "This is unacceptable, I've been waiting for days.",
    "Love the new dark mode, great job!",
    "What's your favourite movie?",
]


def valid_events(n: int) -> list[ConversationEvent]:
    return [
        ConversationEvent(
            event_id=f"ok-{i:05d}",
            conversation_id=f"conv-{i % 97}",
            tenant=f"tenant-{i % 5}",
            user_id=f"user-{i % 13}",
            text=TEXTS[i % len(TEXTS)] + f" (ref {i})",
            ts=time.time(),
        )
        for i in range(n)
    ]


def invalid_payloads(n: int, max_text_bytes: int) -> list[tuple[str, bytes]]:
    """(expected reason, raw bytes) — cycles through every kind of bad input."""

    def ev(i: int, **fields: object) -> bytes:
        base: dict[str, object] = {
            "event_id": f"bad-{i:03d}",
            "conversation_id": "c",
            "tenant": "t",
            "user_id": "u",
            "text": "x",
            "ts": 1.0,
        }
        base.update(fields)
        return orjson.dumps({k: v for k, v in base.items() if v is not ...})

    makers = [
        ("bad_json", lambda i: b'{"event_id": "bad-%03d", ' % i),
        ("invalid_utf8", lambda i: b'{"event_id": "bad-%03d", "text": "\xc3\x28"}' % i),
        ("missing_field", lambda i: ev(i, text=...)),
        ("wrong_type", lambda i: ev(i, ts=[1, 2])),
        ("text_too_long", lambda i: ev(i, text="a" * (max_text_bytes + 1))),
        ("not_an_object", lambda i: b"[%d]" % i),
        ("empty_text", lambda i: ev(i, text=" \n ")),
        ("empty_event", lambda i: b""),
        ("invalid_field", lambda i: ev(i, conversation_id="")),
        ("unsupported_schema", lambda i: ev(i, schema="inferstream.conversation/v0")),
    ]
    return [(makers[i % len(makers)][0], makers[i % len(makers)][1](i)) for i in range(n)]


def test_1000_valid_and_50_invalid_events(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    for tenant in {e.tenant for e in valid_events(5)}:
        asyncio.run(publish_policy(settings, tenant, allow_all_policy(tenant, 1)))
    valid = valid_events(1000)
    invalid = invalid_payloads(50, settings.max_text_bytes)
    records: list[tuple[bytes | None, bytes]] = [
        (e.conversation_id.encode(), e.to_json()) for e in valid
    ]
    rng = random.Random(7)  # dead-letter material at random places; valid turns keep their order
    for i, (_, raw) in enumerate(invalid):
        records.insert(rng.randrange(len(records) + 1), (f"bad-{i}".encode(), raw))
    start = time.perf_counter()
    assert kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records) == 1050

    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: (
            len(r[settings.topic_out]) >= 1000 and len(r[settings.topic_deadletter]) >= 50
        ),
        timeout_s=240,
    )
    elapsed = time.perf_counter() - start
    results, dead = out[settings.topic_out], out[settings.topic_deadletter]
    print(f"\n1050 events -> {len(results)} results + {len(dead)} dead letters in {elapsed:.1f}s")

    result_ids = [r["event_id"] for r in results]
    assert len(result_ids) == 1000 and set(result_ids) == {e.event_id for e in valid}
    labels = {r["label"] for r in results}
    assert labels <= set(results[0]["scores"]) and len(labels) >= 4
    assert all(r["model"]["name"] == settings.model_name for r in results)
    assert all(r["backend"] == served.cpu_backend(settings.model_repo) for r in results)
    assert all(r["status"] == "ok" and r["policy_version"] == "1" for r in results)
    assert all(r["_key"] == r["conversation_id"].encode() for r in results)

    assert len(dead) == 50
    expected = {raw: reason for reason, raw in invalid}
    got = {base64.b64decode(d["original_b64"] or ""): d["reason"] for d in dead}
    for raw, reason in expected.items():
        assert got.get(raw) == reason, (raw[:60], got.get(raw), reason)
    assert all(d["source"]["topic"] == settings.topic_in for d in dead)

    # per-conversation order: within one conversation, results arrive in input order
    by_conv: dict[str, list[int]] = {}
    for r in results:
        by_conv.setdefault(r["conversation_id"], []).append(int(r["event_id"][3:]))
    assert all(ids == sorted(ids) for ids in by_conv.values())

    assert worker.pid() is not None, worker.tail()
    assert "Traceback" not in worker.log_path.read_text(), worker.tail(60)
