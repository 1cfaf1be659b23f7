"""The conversation flow (``ConversationHandler``) driven as the engine drives it: every record
prepared at fetch time, then finished in offset order through an in-memory sink."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from streams.agents.conversations import CONTEXT, DEDUPE, ConversationHandler
from streams.console import allow_all_policy
from streams.records import ConversationEvent, SourceRecord
from streams.settings import Settings
from tests.unit.fakes import FakeInferenceClient, FakeSink
from workers.errors import InferenceRejected
from workers.governance import Governor
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.inference.classifier import TurnClassifier
from workers.inference.triton import InferenceOutput
from workers.provenance.keys import KeyRing, generate_key_file
from workers.provenance.stamp import Watermarker
from workers.retry import Backoff


def make(client: FakeInferenceClient, tmp_path: Path, **knobs: object) -> ConversationHandler:
    settings = Settings(run_dir=tmp_path, web_enabled=False, max_wait_ms=1, **knobs)  # type: ignore[arg-type]
    clf = TurnClassifier(client, Backoff(), max_seq_len=64, max_batch=settings.max_batch)
    if not (tmp_path / "keys").exists():
        generate_key_file(tmp_path / "keys", "unit-k1")
    store = PolicyStore()
    store.apply("acme", allow_all_policy("acme", 3))
    governor = Governor(store, ContentFilter(), Watermarker(KeyRing.from_dir(tmp_path / "keys")))
    return ConversationHandler(settings, clf, governor, worker_id="unit")


def turn(i: int, text: str = "hello there", tenant: str = "acme", conv: str | None = None) -> bytes:
    conversation = conv or f"c{i % 3}"
    return ConversationEvent(f"e{i}", conversation, tenant, "u", text, 1.0).to_json()


async def run(handler: ConversationHandler, sink: FakeSink, values: list[bytes]) -> None:
    prepared = []
    for offset, value in enumerate(values):
        rec = SourceRecord("in", sink.partition, offset, b"k", value, 1.0)
        prepared.append((rec, handler.prepare(rec, sink)))
    for rec, outcome in prepared:
        await handler.finish(rec, await outcome, sink)


def results(sink: FakeSink, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(v or b"") for _, _, v, _ in sink.on(topic)]


async def test_valid_and_invalid_events(tmp_path: Path) -> None:
    client = FakeInferenceClient()
    handler = make(client, tmp_path, max_batch=8)
    sink = FakeSink()
    values = [turn(i) for i in range(10)]
    values += [b"{broken", orjson.dumps({"event_id": "bad1", "text": 1})]
    await run(handler, sink, values)
    s = handler.settings
    out = results(sink, s.topic_out)
    assert [r["event_id"] for r in out] == [f"e{i}" for i in range(10)]  # offset order
    assert all(r["model"] == {"name": "fake", "version": "7"} for r in out)
    assert all(r["status"] == "ok" and r["policy_version"] == "3" for r in out)
    assert all(r["provenance"]["kid"] == "unit-k1" for r in out)  # type: ignore[index]
    assert {k for _, k, _, _ in sink.on(s.topic_out)} == {b"c0", b"c1", b"c2"}
    dead = {r["reason"]: r for r in results(sink, s.topic_deadletter)}
    assert (
        set(dead) == {"bad_json", "missing_field"} and dead["missing_field"]["event_id"] == "bad1"
    )
    analytics = results(sink, s.topic_analytics)
    assert [a["event_id"] for a in analytics] == [f"e{i}" for i in range(10)]
    assert max(n for n, _ in client.calls) > 1  # the ten turns shared model calls (batched)
    assert set(sink.tables[DEDUPE]) == {f"e{i}".encode() for i in range(10)}


async def test_context_ids_within_budget_and_restored(tmp_path: Path) -> None:
    handler = make(FakeInferenceClient(), tmp_path, context_budget_tokens=20)
    sink = FakeSink()
    await run(handler, sink, [turn(i, "hi there", conv="c") for i in range(6)])
    out = results(sink, handler.settings.topic_out)
    assert out[0]["context"] == {"turn_ids": [], "tokens": 4, "budget": 20}
    for r in out[1:]:
        ctx = r["context"]
        assert isinstance(ctx, dict) and ctx["tokens"] <= 20 and ctx["turn_ids"]
        assert all(int(t[1:]) < int(str(r["event_id"])[1:]) for t in ctx["turn_ids"])
    # 4 tokens a turn (<s> ▁hi ▁there </s>): budget 20 = this turn + the 4 most recent
    assert out[5]["context"]["turn_ids"] == ["e1", "e2", "e3", "e4"]  # type: ignore[index]
    # a new worker (fresh handler, no cache) continues from the table alone
    again = make(FakeInferenceClient(), tmp_path, context_budget_tokens=20)
    sink2 = FakeSink(tables=sink.tables)
    await run(again, sink2, [turn(6, "hi there", conv="c")])
    (r6,) = results(sink2, handler.settings.topic_out)
    assert r6["context"]["turn_ids"] == ["e2", "e3", "e4", "e5"]  # type: ignore[index]


async def test_relevant_old_turn_wins_through_the_handler(tmp_path: Path) -> None:
    class Topical(FakeInferenceClient):
        async def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> InferenceOutput:
            out = await super().infer(input_ids, attention_mask)
            emb = np.zeros((len(input_ids), 4), np.float32)
            for i, mask in enumerate(attention_mask):  # long turns share a direction, short another
                emb[i, 0 if int(mask.sum()) >= 6 else 1] = 1.0
            return InferenceOutput(out.logits, emb, "7", 0.001)

    handler = make(Topical(), tmp_path, context_budget_tokens=16, context_gate=0.9)
    sink = FakeSink()
    texts = ["refund my card now", "ok", "yes", "fine", "sure", "refund my card please"]
    await run(handler, sink, [turn(i, t, conv="c") for i, t in enumerate(texts)])
    last = results(sink, handler.settings.topic_out)[-1]
    assert "e0" in last["context"]["turn_ids"]  # type: ignore[index]
    assert last["context"]["tokens"] <= 16  # type: ignore[index]


async def test_redelivered_event_yields_no_second_output(tmp_path: Path) -> None:
    handler = make(FakeInferenceClient(), tmp_path)
    sink = FakeSink()
    await run(handler, sink, [turn(1), turn(2), turn(1)])  # in flight twice in one fetch
    await run(handler, sink, [turn(2)])  # again after it committed
    ids = [r["event_id"] for r in results(sink, handler.settings.topic_out)]
    assert ids == ["e1", "e2"]
    assert handler.metrics.duplicates.labels("in")._value.get() == 2


async def test_poison_event_does_not_sink_its_batch(tmp_path: Path) -> None:
    poison_len = 13  # tokens of "poison " * 5: <s>, ▁pois on (x5), ▁ (the trailing space), </s>

    def fail(ids):  # type: ignore[no-untyped-def]
        lengths = (ids != 1).sum(axis=1)  # <pad> is 1
        return InferenceRejected("INTERNAL") if (lengths == poison_len).any() else None

    handler = make(FakeInferenceClient(fail=fail), tmp_path)
    sink = FakeSink()
    await run(handler, sink, [turn(0, "hi"), turn(1, "poison " * 5), turn(2, "hello there")])
    s = handler.settings
    assert [r["event_id"] for r in results(sink, s.topic_out)] == ["e0", "e2"]
    (dead,) = results(sink, s.topic_deadletter)
    assert dead["reason"] == "inference_rejected" and dead["event_id"] == "e1"


@pytest.mark.parametrize("n", [1, 20])
async def test_every_event_is_accounted_for(tmp_path: Path, n: int) -> None:
    handler = make(FakeInferenceClient(), tmp_path, max_batch=6)
    sink = FakeSink()
    await run(handler, sink, [turn(i) if i % 4 else b"\xff" for i in range(n)])
    ok = len(sink.on(handler.settings.topic_out))
    bad = len(sink.on(handler.settings.topic_deadletter))
    assert (ok, bad) == (n - (n + 3) // 4, (n + 3) // 4)


async def test_denied_masked_and_audited(tmp_path: Path) -> None:
    handler = make(FakeInferenceClient(), tmp_path)
    sink = FakeSink()
    await run(
        handler, sink, [turn(1, "mail me at jane.doe@example.com"), turn(2, "hi", "stranger")]
    )
    s = handler.settings
    out = {r["event_id"]: r for r in results(sink, s.topic_out)}
    masked = out["e1"]
    assert masked["status"] == "ok" and "jane.doe" not in str(masked["text"])
    assert "[EMAIL]" in str(masked["text"]) and masked["filter"]["action"] == "mask"  # type: ignore[index]
    headers = {t: h for t, _, _, h in sink.sent}
    assert "inferstream-provenance" in headers[s.topic_out]
    denied = out["e2"]
    assert (denied["status"], denied["reason"], denied["text"]) == (
        "denied",
        "unknown_tenant",
        None,
    )
    audit = sorted(r["action"] for r in results(sink, s.topic_moderation))  # type: ignore[type-var]
    assert audit == ["deny", "mask"]
    assert CONTEXT in sink.tables and DEDUPE in sink.tables


async def test_sweep_drops_idle_conversations_and_old_event_ids(tmp_path: Path) -> None:
    handler = make(FakeInferenceClient(), tmp_path, context_idle_s=100, dedupe_window_s=1000)
    sink = FakeSink()
    await run(handler, sink, [turn(1, conv="old"), turn(2, conv="new")])
    sink.times[(CONTEXT, b"old")] = 0.0  # idle since t=0
    sink.times[(DEDUPE, b"e1")] = 0.0
    await handler.sweep(sink, now=500.0)
    assert set(sink.tables[CONTEXT]) == {b"new"}  # the idle conversation is tombstoned
    assert set(sink.tables[DEDUPE]) == {b"e1", b"e2"}  # within the window: kept
    await handler.sweep(sink, now=2000.0)
    assert b"e1" not in sink.tables[DEDUPE]


async def test_image_turn_text_is_classified_masked_and_dead_letters_refusals(
    tmp_path: Path,
) -> None:
    from tests import attachment_samples as samples
    from tests.unit.ocr.test_reader import FakeModels, reader

    handler = make(FakeInferenceClient(), tmp_path)
    handler.reader = reader(FakeModels([("Total 42", 0.97), ("call 415-555-0134", 0.95)]))
    sink = FakeSink()

    def image_turn(i: int, item: dict[str, object], text: str = "") -> bytes:
        raw = orjson.loads(turn(i, text or "x", conv="c"))
        raw["text"] = text
        raw["attachments"] = [item]
        return orjson.dumps(raw)

    good = samples.inline(samples.text_png(), "image/png", "bill")
    bomb = samples.inline(samples.png_bomb(), "image/png", "bomb")
    await run(handler, sink, [image_turn(0, good), image_turn(1, bomb), turn(2, conv="c")])
    s = handler.settings
    out = {r["event_id"]: r for r in results(sink, s.topic_out)}
    assert set(out) == {"e0", "e2"}  # the bomb's turn is a dead letter, the next turn goes on
    image = out["e0"]
    assert image["source"] == "image" and out["e2"]["source"] == "text"
    (view,) = image["ocr"]  # type: ignore[misc]
    assert view["attachment"] == "bill"
    assert [line["text"] for line in view["lines"]] == ["Total 42", "call [PHONE]"]
    assert [x["type"] for x in view["redactions"]] == ["PHONE"]
    assert "0134" not in str(image["text"])
    (dead,) = results(sink, s.topic_deadletter)
    assert dead["reason"] == "attachment_too_many_pixels" and dead["event_id"] == "e1"
    # the recognised text is the turn's text in the conversation's context
    assert out["e2"]["context"]["turn_ids"] == ["e0"]  # type: ignore[index]


async def test_only_outcomes_that_leave_a_dedupe_row_or_a_duplicate_may_overtake(
    tmp_path: Path,
) -> None:
    """``overtakes``: a classified or denied turn (each leaves its dedupe row, so its replay
    after a crash is skipped) and a duplicate may finish ahead of older turns of other
    conversations; a dead letter (no row: its replay would send it again) keeps its place."""
    handler = make(FakeInferenceClient(), tmp_path)
    sink = FakeSink()
    values = [turn(0), turn(1, tenant="initech"), turn(0), b"{broken"]
    outcomes = []
    for offset, value in enumerate(values):
        rec = SourceRecord("in", sink.partition, offset, b"k", value, 1.0)
        outcome = await handler.prepare(rec, sink)
        outcomes.append(outcome)
        await handler.finish(rec, outcome, sink)
    names = [type(o).__name__ for o in outcomes]
    assert names == ["Classified", "Denied", "Duplicate", "Invalid"]
    assert [handler.overtakes(o) for o in outcomes] == [True, True, True, False]
