"""Acceptance of the stateful flow on the real broker and Triton: dialogue context from the
changelog-backed tables, exactly one output per event across kill -9 and a worker leaving the
group, routing fall-back per batch, and long documents."""

from __future__ import annotations

import asyncio
import math
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import tritonclient.grpc as tritongrpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from streams.console import allow_all_policy, publish_policy
from streams.local import ASSIGNED
from streams.records import ConversationEvent, DocumentEvent
from streams.settings import Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io, served
from workers.documents import DocumentTokenizer

pytestmark = pytest.mark.integration

TOPICS = [
    "my card was charged twice for order {n}",
    "the refund for order {n} has not arrived",
    "I cannot log in since the update {n}",
    "the app crashes when I open settings {n}",
    "where is my parcel {n}, tracking is stuck",
]


def dialogue_events(conversations: int, turns: int, tag: str) -> list[ConversationEvent]:
    """``turns`` turns of each conversation, interleaved: every conversation spans the run."""
    now = time.time()
    return [
        ConversationEvent(
            event_id=f"{tag}-{c:04d}-{t:03d}",
            conversation_id=f"{tag}-conv-{c:04d}",
            tenant="acme",
            user_id=f"user-{c}",
            text=TOPICS[(c + t) % len(TOPICS)].format(n=t),
            ts=now,
        )
        for t in range(turns)
        for c in range(conversations)
    ]


def allow(settings: Settings) -> None:
    asyncio.run(publish_policy(settings, "acme", allow_all_policy("acme", 1)))


def produce(settings: Settings, events: list[ConversationEvent]) -> None:
    records = [(e.conversation_id.encode(), e.to_json()) for e in events]
    assert kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records) == len(events)


def outputs(settings: Settings, n: int, timeout_s: float, settle_s: float = 3.0) -> list[Any]:
    got = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out],
        until=lambda r: len({x["event_id"] for x in r[settings.topic_out]}) >= n,
        timeout_s=timeout_s,
        settle_s=settle_s,
    )
    return got[settings.topic_out]


def check_dialogues(results: list[Any], budget: int) -> int:
    """Every result: its context ids are earlier turns of its own conversation, within budget;
    per conversation, results are in input order and (after the first) carry context. Returns
    how many results had context."""
    turn_index = {r["event_id"]: int(r["event_id"].rsplit("-", 1)[1]) for r in results}
    by_conv: dict[str, list[int]] = {}
    with_context = 0
    for r in results:
        assert r["status"] == "ok", r
        ctx = r["context"]
        me = turn_index[r["event_id"]]
        by_conv.setdefault(r["conversation_id"], []).append(me)
        assert ctx["tokens"] <= budget and ctx["budget"] == budget
        prefix = r["event_id"].rsplit("-", 1)[0]
        for tid in ctx["turn_ids"]:
            assert tid.rsplit("-", 1)[0] == prefix and turn_index.get(tid, -1) < me, (r, tid)
        if me > 0:
            assert ctx["turn_ids"], f"turn {r['event_id']} lost its conversation's context"
            with_context += 1
    for conv, ids in by_conv.items():
        assert ids == sorted(ids), f"{conv} out of order: {ids}"
    return with_context


def test_2000_turns_over_200_conversations_carry_context(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    allow(settings)
    events = dialogue_events(200, 10, "d")
    start = time.perf_counter()
    produce(settings, events)
    results = outputs(settings, len(events), timeout_s=240)
    print(f"\n2000 turns / 200 conversations in {time.perf_counter() - start:.1f}s")
    assert sorted(r["event_id"] for r in results) == sorted(e.event_id for e in events)
    assert check_dialogues(results, settings.context_budget_tokens) == 1800
    backend = served.cpu_backend(settings.model_repo)
    assert all(r["backend"] == backend for r in results)  # no GPU model is ready here
    assert "Traceback" not in worker.log_path.read_text(), worker.tail(60)


def test_kill_9_mid_stream_then_restart_exactly_once(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    allow(settings)
    worker.wait_log(ASSIGNED)
    events = dialogue_events(250, 20, "k")
    produce(settings, events)
    outputs(settings, 1500, timeout_s=240, settle_s=0)
    worker.stop(grace_s=0, sig=signal.SIGKILL)  # kill -9 in the middle of the stream
    again, _ = start_worker()
    results = outputs(settings, len(events), timeout_s=300, settle_s=5)
    ids = [r["event_id"] for r in results]
    print(f"\n{len(ids)} outputs for {len(events)} events after kill -9 at >=1500")
    assert len(ids) == len(set(ids)), "an event id has two outputs"
    assert set(ids) == {e.event_id for e in events}
    assert check_dialogues(results, settings.context_budget_tokens) == 250 * 19
    assert "restored" in again.log_path.read_text()


def test_two_workers_one_killed_partitions_move(start_worker: WorkerFactory) -> None:
    first, settings = start_worker(INFERSTREAM_STATE_DIR=str(Settings().run_dir / "st-a"))
    allow(settings)
    second, _ = start_worker(INFERSTREAM_STATE_DIR=str(Settings().run_dir / "st-b"))
    first.wait_log(ASSIGNED, count=2)  # the group rebalanced onto both
    second.wait_log(ASSIGNED)
    events = dialogue_events(200, 20, "m")
    produce(settings, events)
    outputs(settings, 1200, timeout_s=240, settle_s=0)
    second.stop(grace_s=0, sig=signal.SIGKILL)
    results = outputs(settings, len(events), timeout_s=300, settle_s=5)
    ids = [r["event_id"] for r in results]
    assert len(ids) == len(set(ids)) and set(ids) == {e.event_id for e in events}
    assert check_dialogues(results, settings.context_budget_tokens) == 200 * 19
    log = first.log_path.read_text()
    assert log.count(ASSIGNED) >= 3  # took over the killed worker's partitions
    # the survivor rebuilt the moved partitions' tables from the changelog (another disk)
    restored = [int(line.split(" restored ")[1].split()[0]) for line in log.splitlines()
                if "context[" in line and " restored " in line]  # fmt: skip
    assert any(n > 0 for n in restored), restored
    assert {r["_key"] for r in results} == {e.conversation_id.encode() for e in events}


def test_a_backlogged_partition_does_not_hold_back_the_others(
    start_worker: WorkerFactory,
) -> None:
    """2,000 turns wait on input partition 0 and 60 on each of 1-3 when the worker starts: the
    small partitions are served alongside the big one, not after it (aiokafka's getmany alone
    hands out partition 0's whole buffered fetch first)."""
    worker, settings = start_worker()
    allow(settings)
    worker.wait_log(ASSIGNED)
    worker.stop()  # the group's offsets are committed; the backlog builds while no one reads
    now = time.time()
    placed: list[tuple[int, ConversationEvent]] = [
        (p, ConversationEvent(f"f{p}-{i:04d}", f"f{p}-c{i % 20}", "acme", "u", f"turn {i}", now))
        for p, n in ((0, 2000), (1, 60), (2, 60), (3, 60))
        for i in range(n)
    ]  # fmt: skip
    kafka_io.produce_to_partitions(
        settings.bootstrap_servers,
        settings.topic_in,
        [(p, e.conversation_id.encode(), e.to_json()) for p, e in placed],
    )
    start_worker()
    results = outputs(settings, len(placed), timeout_s=300)
    assert sorted(r["event_id"] for r in results) == sorted(e.event_id for _, e in placed)
    order = sorted(results, key=lambda r: float(r["produced_at"]))
    rank = {r["event_id"]: i for i, r in enumerate(order)}
    last_small = max(rank[e.event_id] for p, e in placed if p != 0)
    big_done_before = sum(1 for p, e in placed if p == 0 and rank[e.event_id] < last_small)
    print(f"\nthe last small-partition turn came out after {big_done_before} of partition 0's 2000")
    assert big_done_before < 1000, big_done_before


class FailingGpu(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """A Triton endpoint whose model says it is ready and then fails every inference."""

    def __init__(self, config: Any, metadata: Any) -> None:
        self.config, self.metadata = config, metadata  # the real CPU model's, renamed
        self.infer_calls = 0
        self.lock = threading.Lock()

    def ModelConfig(self, request: Any, context: Any) -> Any:
        return self.config

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        return self.metadata

    def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ModelReadyResponse(ready=True)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.infer_calls += 1
        context.abort(grpc.StatusCode.INTERNAL, "CUDA error: an illegal memory access")


@pytest.fixture
def failing_gpu(services: Settings) -> Iterator[tuple[FailingGpu, int]]:
    real = tritongrpc.InferenceServerClient(services.triton_endpoint)
    config = real.get_model_config(services.model_name)
    config.config.name = "fake_gpu"
    metadata = real.get_model_metadata(services.model_name)
    metadata.name = "fake_gpu"
    real.close()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = FailingGpu(config, metadata)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(0)


def test_failing_gpu_falls_back_per_batch(
    start_worker: WorkerFactory, failing_gpu: tuple[FailingGpu, int]
) -> None:
    gpu, port = failing_gpu
    _worker, settings = start_worker(
        INFERSTREAM_TRITON_GPU_URL=f"127.0.0.1:{port}",
        INFERSTREAM_GPU_MODEL_NAME="fake_gpu",
        INFERSTREAM_GPU_REPROBE_S="0",  # probe before every batch: each batch tries the GPU
    )
    allow(settings)
    events = dialogue_events(20, 10, "g")
    produce(settings, events)
    results = outputs(settings, len(events), timeout_s=120)
    assert {r["event_id"] for r in results} == {e.event_id for e in events}
    assert {r["backend"] for r in results} == {served.cpu_backend(settings.model_repo)}
    assert {r["model"]["name"] for r in results} == {settings.model_name}
    analytics = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_analytics],
        until=lambda r: len(r[settings.topic_analytics]) >= len(events),
        timeout_s=30,
        settle_s=0,
    )[settings.topic_analytics]
    batches = {(a["batch"]["size"], a["batch"]["inference_ms"]) for a in analytics}
    print(f"\n{len(batches)} batches; the failing GPU endpoint saw {gpu.infer_calls} calls")
    assert gpu.infer_calls >= 2 and gpu.infer_calls >= len(batches) - 1


def test_100000_character_document(start_worker: WorkerFactory) -> None:
    _worker, settings = start_worker()
    allow(settings)
    filler = "The patient reported mild headaches after the new medication was started. "
    parts, planted = [], []
    while sum(map(len, parts)) < 100_000:
        parts.append(filler * 3)
        if len(parts) % 10 == 0:
            phone = f"+44 20 7946 {len(parts):04d}"
            at = sum(map(len, parts)) + len("Call me on ")
            parts.append(f"Call me on {phone} tomorrow. ")
            planted.append((at, phone))
    text = "".join(parts)[:100_000]
    planted = [(at, p) for at, p in planted if at + len(p) <= len(text)]
    doc = DocumentEvent("doc-1", "acme", text, time.time())
    start = time.perf_counter()
    kafka_io.produce(
        settings.bootstrap_servers, settings.topic_documents_in, [(b"doc-1", doc.to_json())]
    )
    got = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_documents_out],
        until=lambda r: bool(r[settings.topic_documents_out]),
        timeout_s=240,
        settle_s=1,
    )[settings.topic_documents_out]
    (result,) = got
    print(f"\n100,000 characters: {result['chunks']} chunks, {len(result['entities'])} entities, "
          f"{time.perf_counter() - start:.1f}s")  # fmt: skip
    assert result["status"] == "ok" and result["characters"] == 100_000
    tokens = len(DocumentTokenizer().spans(text).offsets)
    assert result["chunks"] >= math.ceil(tokens / (settings.max_seq_len - 2)) > 1
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    phones = [(e["start"], e["end"]) for e in result["entities"] if e["type"] == "PHONE"]
    hits = sum(1 for at, p in planted if any(s < at + len(p) and at < e for s, e in phones))
    assert hits >= len(planted) * 0.9, (hits, len(planted), phones[:5], planted[:5])
    assert result["_key"] == b"doc-1" and result["schema"] == "inferstream.document_result/v1"
