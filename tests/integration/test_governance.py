"""Governance on the real broker and Triton: live policy changes, masking, signing, marking and
`inferstream verify` on what the worker produced."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time

import orjson
import pytest

from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io

pytestmark = pytest.mark.integration


def send(settings: Settings, *events: ConversationEvent) -> None:
    records = [(e.conversation_id.encode(), e.to_json()) for e in events]
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records)


def turn(event_id: str, tenant: str, text: str, **metadata: object) -> ConversationEvent:
    return ConversationEvent(
        event_id, f"conv-{tenant}", tenant, "u1", text, time.time(), dict(metadata)
    )  # type: ignore[arg-type]


def results_for(settings: Settings, ids: set[str], timeout_s: float = 60) -> dict[str, dict]:
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out],
        until=lambda r: ids <= {x["event_id"] for x in r[settings.topic_out]},
        timeout_s=timeout_s,
        settle_s=0.2,
    )
    return {r["event_id"]: r for r in out[settings.topic_out] if r["event_id"] in ids}


def test_policy_change_applies_live_within_5_seconds(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    pid = worker.pid()
    asyncio.run(publish_policy(settings, "live", allow_all_policy("live", 1)))
    send(settings, turn("before", "live", "hello, I need help"))
    assert results_for(settings, {"before"})["before"]["status"] == "ok"

    deny_all = orjson.dumps(
        {
            "schema": "inferstream.policy/v1",
            "tenant": "live",
            "version": 2,
            "default": "deny",
            "rules": [],
        }
    )
    changed_at = time.time()
    asyncio.run(publish_policy(settings, "live", deny_all))
    flipped_after = None
    for i in range(40):  # one probe every 0.25 s for up to 10 s
        send(settings, turn(f"probe-{i}", "live", "hello again"))
        res = results_for(settings, {f"probe-{i}"})[f"probe-{i}"]
        if res["status"] == "denied":
            flipped_after = res["produced_at"] - changed_at
            assert res["reason"] == "no_matching_rule" and res["policy_version"] == "2"
            break
        time.sleep(0.25)
    print(f"\npolicy change applied after {flipped_after:.2f}s")
    assert flipped_after is not None and flipped_after <= 5.0
    assert worker.pid() == pid  # no restart

    audit = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_moderation],
        until=lambda r: any(x["kind"] == "policy" for x in r[settings.topic_moderation]),
        timeout_s=30,
        settle_s=0.2,
    )[settings.topic_moderation]
    assert any(a["action"] == "deny" and a["tenant"] == "live" for a in audit)


def test_unknown_tenant_is_denied_and_bad_policy_dead_lettered(start_worker: WorkerFactory) -> None:
    _, settings = start_worker()
    asyncio.run(publish_policy(settings, "broken", b'{"tenant": "broken", "version": "x"}'))
    send(settings, turn("stranger-1", "nobody", "hi"))
    res = results_for(settings, {"stranger-1"})["stranger-1"]
    assert (res["status"], res["reason"], res["label"], res["text"]) == (
        "denied",
        "unknown_tenant",
        None,
        None,
    )
    dead = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_deadletter],
        until=lambda r: len(r[settings.topic_deadletter]) >= 1,
        timeout_s=30,
        settle_s=0.2,
    )[settings.topic_deadletter]
    assert [d["reason"] for d in dead] == ["invalid_policy"]
    assert base64.b64decode(dead[0]["source"]["key_b64"]) == b"broken"


def verify_cli(
    settings: Settings, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ) | {
        "INFERSTREAM_KAFKA_PORT": str(settings.kafka_port),
        "INFERSTREAM_TOPIC_OUT": settings.topic_out,
        "INFERSTREAM_WATERMARK_KEY_DIR": str(settings.watermark_key_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "streams", "verify", *args],
        input=stdin,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )


def test_pii_is_masked_signed_marked_and_verifiable(start_worker: WorkerFactory) -> None:
    _, settings = start_worker()
    asyncio.run(publish_policy(settings, "acme", allow_all_policy("acme", 7)))
    text = (
        "Please call me back on +44 20 7946 0958 about the refund, the card I used was "
        "4111 1111 1111 1111 and it was charged twice last week."
    )
    send(settings, turn("pii-1", "acme", text, department="support", role="agent"))
    res = results_for(settings, {"pii-1"})["pii-1"]
    del res["_key"]  # added by the test consumer; not part of the record

    assert res["status"] == "ok" and res["policy_version"] == "7"
    out = res["text"]
    assert "7946" not in out and "4111" not in out and "1111" not in out
    assert "[PHONE]" in out and "[CARD]" in out
    assert {s["type"] for s in res["filter"]["spans"]} == {"PHONE", "CARD"}
    assert len(out) > len(out.encode("ascii", "ignore").decode())  # invisible mark present
    env = res["provenance"]
    assert env["kid"] == "test-k1" and env["model_name"] == settings.model_name

    ok = verify_cli(settings, "--record", "-", stdin=orjson.dumps(res))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert b"AUTHENTIC" in ok.stdout and b"event_id=pii-1" in ok.stdout

    fragment = out[20:80]  # a copied piece of the emitted text
    traced = verify_cli(settings, "--text", fragment)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    assert b"event_id=pii-1" in traced.stdout and b"traced" in traced.stdout

    i = out.index("b")  # "back": change one visible letter of the emitted text
    tampered = dict(res, text=out[:i] + "p" + out[i + 1 :])
    assert tampered["text"] != out
    bad = verify_cli(settings, "--record", "-", stdin=orjson.dumps(tampered))
    assert bad.returncode == 1 and b"NOT AUTHENTIC" in bad.stdout
    relabeled = dict(res, model={"name": "other", "version": "9"})
    assert verify_cli(settings, "--record", "-", stdin=orjson.dumps(relabeled)).returncode == 1

    audit = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_moderation],
        until=lambda r: len(r[settings.topic_moderation]) >= 1,
        timeout_s=30,
        settle_s=0.2,
    )[settings.topic_moderation]
    (mask,) = [a for a in audit if a["event_id"] == "pii-1"]
    assert mask["action"] == "mask" and mask["provenance_id"] == env["provenance_id"]
