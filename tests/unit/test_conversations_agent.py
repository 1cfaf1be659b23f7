"""The conversation agent inside Faust's test_context(), with a fake model client."""

import asyncio
from collections.abc import Callable

import orjson
import pytest

from streams.app import create_app
from streams.console import allow_all_policy
from streams.records import ConversationEvent
from streams.settings import Settings
from tests.unit.fakes import FakeInferenceClient, RecordingPublisher
from workers.errors import InferenceRejected
from workers.governance import Governor
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.inference.classifier import TurnClassifier
from workers.provenance.keys import KeyRing, generate_key_file
from workers.provenance.stamp import Watermarker
from workers.retry import Backoff


def make(client: FakeInferenceClient, tmp_path, max_batch: int = 8):  # type: ignore[no-untyped-def]
    settings = Settings(run_dir=tmp_path, max_batch=max_batch, max_wait_ms=5, web_enabled=False)
    publisher = RecordingPublisher()
    clf = TurnClassifier(client, Backoff(), max_seq_len=64, max_batch=max_batch)
    generate_key_file(tmp_path / "keys", "unit-k1")
    keys = KeyRing.from_dir(tmp_path / "keys", None)
    store = PolicyStore()
    store.apply("acme", allow_all_policy("acme", 3))
    governor = Governor(store, ContentFilter(), Watermarker(keys))
    app = create_app(
        settings, classifier=clf, governor=governor, publisher=publisher, follow_policies=False
    )
    return settings, app, publisher


def turn(i: int, text: str = "hello there", tenant: str = "acme") -> bytes:
    return ConversationEvent(f"e{i}", f"c{i % 3}", tenant, "u", text, 1.0).to_json()


async def until(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_valid_and_invalid_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings, app, pub = make(FakeInferenceClient(), tmp_path)
    agent = app.agents["conversations"]
    async with agent.test_context() as ctx:
        for i in range(10):
            await ctx.put(key=f"c{i % 3}".encode(), value=turn(i), wait=False)
        await ctx.put(key=b"x", value=b"{broken", wait=False)
        await ctx.put(key=b"y", value=orjson.dumps({"event_id": "bad1", "text": 1}), wait=False)
        await until(
            lambda: (
                len(pub.on(settings.topic_out)) == 10
                and len(pub.on(settings.topic_deadletter)) == 2
                and len(pub.on(settings.topic_analytics)) == 10
            )
        )

    results = [orjson.loads(v) for _, _, v, _ in pub.on(settings.topic_out)]
    assert sorted(r["event_id"] for r in results) == sorted(f"e{i}" for i in range(10))
    assert all(r["model"] == {"name": "fake", "version": "7"} for r in results)
    assert all(r["status"] == "ok" and r["policy_version"] == "3" for r in results)
    assert all(r["provenance"]["kid"] == "unit-k1" for r in results)
    keys = {orjson.loads(v)["event_id"]: k for _, k, v, _ in pub.on(settings.topic_out)}
    assert keys["e4"] == b"c1"  # keyed by conversation_id: per-conversation order downstream

    dead = {orjson.loads(v)["reason"]: (k, h) for _, k, v, h in pub.on(settings.topic_deadletter)}
    assert set(dead) == {"bad_json", "missing_field"}
    assert dead["bad_json"][0] == b"x"
    assert dead["missing_field"][1]["inferstream-reason"] == b"missing_field"
    assert pub.flushed == 22  # 10 results + 10 analytics records + 2 dead letters
    analytics = [orjson.loads(v) for _, _, v, _ in pub.on(settings.topic_analytics)]
    assert {a["event_id"] for a in analytics} == {f"e{i}" for i in range(10)}
    assert all(a["schema"] == "inferstream.analytics/v1" and a["status"] == "ok" for a in analytics)


async def test_poison_event_does_not_sink_its_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    poison_len = 7  # tokens of "poison poison poison poison poison" with CLS/SEP

    def fail(ids):  # type: ignore[no-untyped-def]
        lengths = (ids != 0).sum(axis=1)
        return InferenceRejected("INTERNAL") if (lengths == poison_len).any() else None

    settings, app, pub = make(FakeInferenceClient(fail=fail), tmp_path)
    async with app.agents["conversations"].test_context() as ctx:
        await ctx.put(key=b"c", value=turn(0, "hi"), wait=False)
        await ctx.put(key=b"c", value=turn(1, "poison " * 5), wait=False)
        await ctx.put(key=b"c", value=turn(2, "hello there"), wait=False)
        await until(
            lambda: len(pub.on(settings.topic_out)) + len(pub.on(settings.topic_deadletter)) == 3
        )

    assert sorted(orjson.loads(v)["event_id"] for _, _, v, _ in pub.on(settings.topic_out)) == [
        "e0",
        "e2",
    ]
    (dead,) = [orjson.loads(v) for _, _, v, _ in pub.on(settings.topic_deadletter)]
    assert dead["reason"] == "inference_rejected" and dead["event_id"] == "e1"


@pytest.mark.parametrize("n", [1, 20])
async def test_every_event_is_accounted_for(tmp_path, n: int) -> None:  # type: ignore[no-untyped-def]
    settings, app, pub = make(FakeInferenceClient(), tmp_path, max_batch=6)
    async with app.agents["conversations"].test_context() as ctx:
        for i in range(n):
            await ctx.put(key=b"k", value=turn(i) if i % 4 else b"\xff", wait=False)
        await until(
            lambda: len(pub.on(settings.topic_out)) + len(pub.on(settings.topic_deadletter)) == n
        )
    ok = len(pub.on(settings.topic_out))
    bad = len(pub.on(settings.topic_deadletter))
    assert (ok, bad) == (n - (n + 3) // 4, (n + 3) // 4)


async def test_denied_masked_and_audited(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings, app, pub = make(FakeInferenceClient(), tmp_path)
    async with app.agents["conversations"].test_context() as ctx:
        await ctx.put(key=b"c", value=turn(1, "mail me at jane.doe@example.com"), wait=False)
        await ctx.put(key=b"c", value=turn(2, "hi", tenant="stranger"), wait=False)
        await until(lambda: len(pub.on(settings.topic_out)) == 2)
        await until(lambda: len(pub.on(settings.topic_moderation)) == 2)

    out = {
        orjson.loads(v)["event_id"]: (orjson.loads(v), h)
        for _, _, v, h in pub.on(settings.topic_out)
    }
    masked, headers = out["e1"]
    assert masked["status"] == "ok" and "jane.doe" not in masked["text"]
    assert "[EMAIL]" in masked["text"] and masked["filter"]["action"] == "mask"
    assert "inferstream-provenance" in headers
    denied, _ = out["e2"]
    assert (denied["status"], denied["reason"], denied["text"]) == (
        "denied",
        "unknown_tenant",
        None,
    )
    audit = sorted(orjson.loads(v)["action"] for _, _, v, _ in pub.on(settings.topic_moderation))
    assert audit == ["deny", "mask"]
