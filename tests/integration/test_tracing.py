"""Issue 8 acceptance: one produced event with a ``traceparent`` header yields one trace whose
spans cover every stage, on the real broker and Triton, with an in-memory span exporter (the
engine runs in this process so the test can read its spans); and the same through the SDK's OTLP
exporters (gRPC, HTTP) to a receiver that parses the requests with the official protobufs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg

from streams.admin import ensure_topics, topic_partitions
from streams.agents.conversations import ConversationHandler
from streams.app import build_classifier, build_governor
from streams.console import allow_all_policy
from streams.engine import Engine
from streams.records import ConversationEvent
from streams.settings import Settings
from tests.conftest import TEST_PORTS
from tests.integration import served
from tests.integration.otlp_receiver import GrpcReceiver, HttpReceiver, ReceivedSpan, Receiver
from workers.telemetry.provider import build_tracer_provider
from workers.telemetry.tracing import ATTR_BACKEND, ATTR_BATCH_SIZE, STAGES, KafkaTracing

pytestmark = pytest.mark.integration
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _view(s: ReadableSpan) -> ReceivedSpan:
    parent = format(s.parent.span_id, "016x") if s.parent else ""
    resource = dict(s.resource.attributes)
    return ReceivedSpan(
        s.name, format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"), parent,
        dict(s.attributes or {}), len(s.links), resource,
    )  # fmt: skip


@pytest.mark.parametrize("exporter_kind", ["in-memory", "otlp-grpc", "otlp-http"])
def test_one_event_one_trace_over_every_stage(
    services: Settings, watermark_keys: Path, exporter_kind: str
) -> None:
    uid = uuid.uuid4().hex[:8]
    env = TEST_PORTS | {
        "INFERSTREAM_APP_ID": f"trace-{uid}",
        "INFERSTREAM_TOPIC_IN": f"tr-{uid}.in",
        "INFERSTREAM_TOPIC_OUT": f"tr-{uid}.out",
        "INFERSTREAM_TOPIC_DEADLETTER": f"tr-{uid}.dead",
        "INFERSTREAM_TOPIC_ANALYTICS": f"tr-{uid}.analytics",
        "INFERSTREAM_TOPIC_MODERATION": f"tr-{uid}.moderation",
        "INFERSTREAM_TOPIC_POLICIES": f"tr-{uid}.policies",
        "INFERSTREAM_WATERMARK_KEY_DIR": str(watermark_keys),
    }
    settings = Settings(**{k.removeprefix("INFERSTREAM_").lower(): v for k, v in env.items()})
    exporter = InMemorySpanExporter()
    lost: list[int] = []
    receiver: Receiver | None = None
    if exporter_kind == "in-memory":
        provider = build_tracer_provider(
            "none", None, "inferstream-test", span_exporter=exporter, sample_ratio=1.0,
            on_drop=lost.append,
        )  # fmt: skip
    else:  # the SDK's batch processor and OTLP exporter, as the worker runs them
        receiver = GrpcReceiver() if exporter_kind == "otlp-grpc" else HttpReceiver()
        provider = build_tracer_provider(
            exporter_kind,  # type: ignore[arg-type]
            receiver.endpoint,
            "inferstream-test",
            sample_ratio=1.0,
            headers={"x-api-key": "k1"},
            on_drop=lost.append,
        )
    assert provider is not None
    tracing = KafkaTracing(provider, consumer_group=settings.app_id)
    governor = build_governor(settings)
    governor.policies.apply("acme", allow_all_policy("acme", 1))
    handler = ConversationHandler(
        settings, build_classifier(settings), governor, worker_id="test", tracing=tracing
    )
    engine = Engine(settings, [handler])
    event = ConversationEvent("ev-1", "conv-1", "acme", "u", "My card was charged twice.", 1.0)
    traceparent = f"00-{TRACE_ID}-{PARENT}-01".encode()

    async def scenario() -> tuple[dict[str, bytes], bytes]:
        await ensure_topics(settings)
        run = asyncio.create_task(engine.run())
        try:
            await asyncio.wait_for(engine.ready.wait(), 120)
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
            await producer.start()
            await producer.send_and_wait(
                settings.topic_in, event.to_json(), key=b"conv-1",
                headers=[("traceparent", traceparent)],
            )  # fmt: skip
            await producer.stop()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.bootstrap_servers,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                consumer.assign(await topic_partitions(consumer, settings.topic_out))
                while True:
                    batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 120)
                    for records in batch.values():
                        for rec in records:
                            return dict(rec.headers), rec.value
            finally:
                await consumer.stop()
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    headers, value = asyncio.run(asyncio.wait_for(scenario(), 240))
    provider.shutdown()  # flushes what the batch processor still holds
    assert b'"event_id":"ev-1"' in value
    if receiver is not None:
        receiver.stop()
        received = receiver.spans
        assert receiver.requests >= 1 and not lost
        assert all(h.get("x-api-key") == "k1" for h in receiver.headers)
    else:
        received = [_view(s) for s in exporter.get_finished_spans()]
    spans = [s for s in received if s.trace_id == TRACE_ID]
    names = {s.name for s in spans}
    assert set(STAGES) <= names, sorted(names)
    assert {f"process {settings.topic_in}", f"publish {settings.topic_out}"} <= names
    (consume,) = [s for s in spans if s.name == f"process {settings.topic_in}"]
    assert consume.parent_id == PARENT  # continues the producer's trace
    assert consume.attributes[msg.MESSAGING_SYSTEM] == "kafka"
    assert consume.attributes[msg.MESSAGING_CONSUMER_GROUP_NAME] == settings.app_id
    assert consume.attributes[msg.MESSAGING_DESTINATION_NAME] == settings.topic_in
    assert consume.resource["service.name"] == "inferstream-test"
    for s in spans:
        if s is not consume:
            assert s.parent_id == consume.span_id, s.name
    (inference,) = [s for s in spans if s.name == "inference"]
    assert inference.attributes[ATTR_BATCH_SIZE] == 1
    assert inference.attributes[ATTR_BACKEND] == served.cpu_backend(settings.model_repo)
    assert inference.links == 1  # to the batch's own span
    batch = [s for s in received if s.name == "inference" and s.trace_id != TRACE_ID]
    assert len(batch) == 1 and batch[0].links == 1 and batch[0].parent_id == ""
    (publish,) = [s for s in spans if s.name == f"publish {settings.topic_out}"]
    out_parent = headers["traceparent"].decode()
    assert out_parent == f"00-{TRACE_ID}-{publish.span_id}-01"
