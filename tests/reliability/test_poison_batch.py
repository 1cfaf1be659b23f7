"""One event that makes Triton refuse its request must not take its batch-mates down: they are
retried alone and succeed, and only the poison event becomes a dead letter (inference_rejected).

The served model refuses nothing the worker can send (see grpc_proxy.py), so the worker talks to
the real Triton through a test proxy that refuses, with INVALID_ARGUMENT, any ModelInfer request
whose input_ids contain the token sequence of a marker word, the way the python backend refuses
a request it cannot validate. Every other request reaches the real model.
"""

from __future__ import annotations

import base64
import time
from collections import Counter

import orjson
import pytest

from streams.records import ConversationEvent
from tests.conftest import WorkerFactory
from tests.integration import kafka_io
from tests.reliability.grpc_proxy import TritonProxy
from tests.reliability.support import allow_tenants, as_records, valid_turns
from workers.inference.tokenizer import ModelTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

MARKER = "xylophonequagmire"  # several word pieces no ordinary turn contains
N = 240
POISON_AT = (17, 101, 202)


def marker_tokens() -> list[int]:
    enc = ModelTokenizer(16).encode([MARKER])
    ids = enc.input_ids[0][enc.attention_mask[0] == 1]
    return [int(t) for t in ids[1:-1]]  # without the special tokens at both ends


def test_a_poison_event_is_dead_lettered_alone(
    start_worker: WorkerFactory, triton_proxy: TritonProxy
) -> None:
    triton_proxy.set_poison(marker_tokens())
    worker, settings = start_worker(
        INFERSTREAM_TRITON_URL=triton_proxy.endpoint,
        INFERSTREAM_MAX_WAIT_MS="50",  # batches fill up: the poison has batch-mates
    )
    pid = worker.pid()
    tenants = ("acme", "globex")
    allow_tenants(settings, tenants)
    events = valid_turns("poison-run", N, tenants)
    for i in POISON_AT:
        e = events[i]
        events[i] = ConversationEvent(
            e.event_id, e.conversation_id, e.tenant, e.user_id, f"my {MARKER} broke", e.ts
        )
    poison = {events[i].event_id: events[i] for i in POISON_AT}
    good = {e.event_id for e in events} - set(poison)

    start = time.perf_counter()
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(events))
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: len(r[settings.topic_out]) + len(r[settings.topic_deadletter]) >= N,
        timeout_s=120,
        settle_s=3.0,
    )
    elapsed = time.perf_counter() - start
    results, dead = out[settings.topic_out], out[settings.topic_deadletter]
    print(
        f"\n{N} events ({len(poison)} poison) -> {len(results)} results + {len(dead)} dead letters "
        f"in {elapsed:.1f}s; proxy: {triton_proxy.infer_calls} ModelInfer calls, refused "
        f"{triton_proxy.refused} (rows of refused calls: {triton_proxy.refused_batches})"
    )

    assert Counter(r["event_id"] for r in results) == Counter(good)
    assert all(r["status"] == "ok" for r in results)
    assert sorted(d["event_id"] for d in dead) == sorted(poison)
    for d in dead:
        assert d["reason"] == "inference_rejected", d
        assert "INVALID_ARGUMENT" in d["detail"], d
        raw = base64.b64decode(d["original_b64"])
        assert orjson.loads(raw)["event_id"] == d["event_id"]
        assert raw == poison[d["event_id"]].to_json()
    # the poison shared a request with others at least once, and was refused alone at the end
    assert max(triton_proxy.refused_batches) > 1, triton_proxy.refused_batches
    assert triton_proxy.refused_batches.count(1) >= len(poison), triton_proxy.refused_batches
    assert worker.pid() == pid, worker.tail()
