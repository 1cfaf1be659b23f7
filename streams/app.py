"""``create_app(settings)``: the Faust app with its topics, tables and agents. Nothing runs at
import; every collaborator can be injected (tests pass fakes)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

import faust
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from streams import web
from streams.agents import conversations, documents
from streams.engine import Engine
from streams.publish import FaustPublisher, Publisher, RdkafkaPublisher
from streams.records import SourceRecord, dead_letter
from streams.security import faust_credentials, kafka_client_kwargs, librdkafka_config
from streams.settings import Settings
from streams.tables import PolicyTable
from streams.topics import declare_topics
from workers.attachments import AttachmentLimits, LocalObjectStore
from workers.cost import CostModel
from workers.errors import InvalidEvent
from workers.experiments.config import ExperimentStore, Variant
from workers.experiments.serving import PRIMARY
from workers.governance import Governor
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.guard.terms import TermList
from workers.inference.classifier import TurnClassifier
from workers.inference.router import (
    OPENVINO_INT8,
    TENSORRT_FP16,
    AdaptiveRouter,
    Route,
    RoutedClient,
)
from workers.inference.triton import TritonClassifierClient
from workers.ocr.client import TritonOcrClient
from workers.ocr.processing import DetConfig
from workers.ocr.reader import ImageReader
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Watermarker
from workers.retry import Backoff
from workers.telemetry import logfilter, taskdump
from workers.telemetry.health import Health
from workers.telemetry.metrics import Metrics
from workers.telemetry.provider import build_tracer_provider
from workers.telemetry.tracing import KafkaTracing

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """Settings that cannot work (e.g. no watermark keys)."""


def build_classifier(settings: Settings, metrics: Metrics | None = None) -> TurnClassifier:
    """The turn classifier over the adaptive router: the GPU model while Triton says it is
    ready, else the CPU model; retriable errors back off (jittered)."""
    cpu = TritonClassifierClient(
        settings.triton_endpoint, settings.model_name, settings.inference_timeout_s
    )
    gpu = None
    if settings.gpu_model_name:
        url = settings.triton_gpu_url or settings.triton_endpoint
        client = TritonClassifierClient(url, settings.gpu_model_name, settings.inference_timeout_s)
        gpu = Route(settings.gpu_model_name, TENSORRT_FP16, client)

    async def probe(route: Route) -> bool:
        client = route.client
        ready = await client.ready() if isinstance(client, TritonClassifierClient) else False
        if metrics is not None:
            metrics.set_route_available("gpu", ready)
        return ready

    router = AdaptiveRouter(
        gpu,
        Route(settings.model_name, OPENVINO_INT8, cpu),
        probe=probe,
        reprobe_s=settings.gpu_reprobe_s,
        timeout_s=settings.inference_timeout_s,
    )
    backoff = Backoff(
        initial_s=settings.retry_initial_s,
        max_s=settings.retry_max_s,
        on_retry=(lambda exc: metrics.triton_error("unavailable")) if metrics else None,
    )
    return TurnClassifier(
        RoutedClient(router, cpu),
        backoff,
        max_seq_len=settings.max_seq_len,
        max_batch=settings.max_batch,
    )


def build_variant_classifier(
    settings: Settings, variant: Variant, role: str, metrics: Metrics | None = None
) -> TurnClassifier:
    """A classifier of one model version, called as named (no GPU routing): a primary retries
    a retriable failure until it succeeds, a candidate or shadow ``experiment_max_attempts``
    times (a failed candidate's turn is then answered by the primary)."""
    client = TritonClassifierClient(
        settings.triton_endpoint, variant.model, settings.inference_timeout_s, variant.version
    )
    backoff = Backoff(
        initial_s=settings.retry_initial_s,
        max_s=settings.retry_max_s,
        max_attempts=None if role == PRIMARY else settings.experiment_max_attempts,
        on_retry=(lambda exc: metrics.triton_error("unavailable")) if metrics else None,
    )
    return TurnClassifier(
        client, backoff, max_seq_len=settings.max_seq_len, max_batch=settings.max_batch
    )


def build_reader(settings: Settings, metrics: Metrics | None = None) -> ImageReader:
    """OCR of image attachments: the two OCR models on Triton, the local object store."""
    client = TritonOcrClient(
        settings.triton_endpoint,
        det_model=settings.ocr_det_model,
        rec_model=settings.ocr_rec_model,
        timeout_s=settings.inference_timeout_s,
    )
    limits = AttachmentLimits(
        max_bytes=settings.attachment_max_bytes,
        max_pixels=settings.attachment_max_pixels,
        max_count=settings.attachment_max_count,
    )
    backoff = Backoff(
        initial_s=settings.retry_initial_s,
        max_s=settings.retry_max_s,
        on_retry=(lambda exc: metrics.triton_error("unavailable")) if metrics else None,
    )
    return ImageReader(
        client,
        LocalObjectStore(settings.attachment_path),
        limits,
        backoff,
        max_inflight=settings.ocr_max_inflight,
        min_confidence=settings.ocr_min_confidence,
        det=DetConfig(max_side=settings.ocr_max_side),
        metrics=metrics,
    )


def load_keys(settings: Settings) -> KeyRing:
    """Watermark keys from the environment (``watermark_keys``) or a key folder; never code."""
    if settings.watermark_keys is not None:
        return KeyRing.from_env(
            {
                "INFERSTREAM_WATERMARK_KEYS": settings.watermark_keys.get_secret_value(),
                "INFERSTREAM_WATERMARK_ACTIVE_KID": settings.watermark_active_kid or "",
            }
        )
    if settings.watermark_key_dir is not None:
        return KeyRing.from_dir(settings.watermark_key_dir, settings.watermark_active_kid)
    raise ConfigError(
        "no watermark keys: set INFERSTREAM_WATERMARK_KEY_DIR (a folder of <kid>.pem) or "
        "INFERSTREAM_WATERMARK_KEYS ('kid:base64seed'); `inferstream keygen` makes one"
    )


def build_governor(settings: Settings, store: PolicyStore | None = None) -> Governor:
    keys = load_keys(settings)
    terms = TermList(settings.filter_terms_path) if settings.filter_terms_path else None
    return Governor(store or PolicyStore(), ContentFilter(terms), Watermarker(keys))


def create_app(
    settings: Settings,
    *,
    classifier: TurnClassifier | None = None,
    governor: Governor | None = None,
    publisher: Publisher | None = None,
    follow_policies: bool = True,
    tracer_provider: TracerProvider | None = None,
    experiments: ExperimentStore | None = None,
) -> faust.App:
    """The worker: a Faust app hosting the web server (metrics, health), the policy table, the
    observer timer and the transactional processing engine (``streams.engine``)."""
    datadir = settings.run_dir / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")],
        autodiscover=False,
        store="memory://",
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",  # Faust consumes nothing: streams.engine does
        topic_allow_declare=False,  # streams.admin.ensure_topics creates them (see its docstring)
        topic_disable_leader=True,  # no leader-only work, so no leader-election topic
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        web_enabled=settings.web_enabled,
        web_host=settings.web_host,
        broker_credentials=faust_credentials(settings),
        web_port=settings.web_port,
        web_in_thread=False,
    )
    # Faust's own consumer would subscribe to nothing (aiokafka refuses an empty subscription):
    # streams.engine owns consumption, so the app boots with Kafka producer, web and tasks only.
    app.boot_strategy = faust.app.BootStrategy(app, enable_kafka_consumer=False)
    topics = declare_topics(app, settings)
    publisher = publisher or FaustPublisher(topics.by_name())
    governor = governor or build_governor(settings)
    metrics = Metrics(CollectorRegistry())
    health = Health(("kafka", "triton", "tables"))
    classifier = classifier or build_classifier(settings, metrics)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    async def policy_dead_letter(source: SourceRecord, exc: InvalidEvent) -> None:
        value = dead_letter(source, exc.code, exc.detail, worker=worker_id, now=time.time())
        reason = {"inferstream-reason": exc.code.encode()}
        await publisher.flush(
            [await publisher.send(settings.topic_deadletter, source.key, value, reason)]
        )

    side = RdkafkaPublisher(
        {"bootstrap.servers": settings.bootstrap_servers, "client.id": "inferstream-side",
         **librdkafka_config(settings)}
    )  # fmt: skip

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        """Comparison records and rollbacks (docs/experiments.md): at least once."""
        await side.flush([await side.send(topic, key, value, _JSON)])

    ready = _always_ready
    tables_ready: Callable[[], bool] = lambda: True  # noqa: E731
    experiments = experiments or ExperimentStore()
    if follow_policies:  # the policies and the experiments: both live, both read before work
        followed = [
            PolicyTable(
                settings.bootstrap_servers,
                topic,
                store,
                policy_dead_letter,
                client_kwargs=kafka_client_kwargs(settings),
                what=what,
            )
            for topic, store, what in (
                (settings.topic_policies, governor.policies, "policy"),
                (settings.topic_experiments, experiments, "experiment"),
            )
        ]
        for table in followed:
            app.task(table.run)

        async def ready() -> None:
            waits = [t.caught_up.wait() for t in followed]
            await asyncio.wait_for(asyncio.gather(*waits), settings.policy_wait_s)

        def tables_ready() -> bool:
            return all(t.caught_up.is_set() for t in followed)

    spans = tracer_provider or build_tracer_provider(
        settings.tracing_exporter,
        settings.tracing_endpoint,
        "inferstream-worker",
        sample_ratio=settings.tracing_sample_ratio,
        resource_attributes={"service.instance.id": worker_id},
        headers=settings.tracing_header_map(),
        on_drop=metrics.spans_dropped,
        on_export=metrics.spans_exported,
    )
    tracing = KafkaTracing(spans, consumer_group=settings.app_id)
    reader = build_reader(settings, metrics) if settings.ocr_enabled else None
    handler = conversations.ConversationHandler(
        settings,
        classifier,
        governor,
        worker_id=worker_id,
        metrics=metrics,
        costs=CostModel(settings.gpu_usd_per_hour, settings.cpu_usd_per_hour),
        tracing=tracing,
        experiments=experiments,
        variant_classifier=lambda v, role: build_variant_classifier(settings, v, role, metrics),
        publish=publish,
        reader=reader,
    )

    docs = documents.DocumentHandler(
        settings,
        classifier,
        worker_id=worker_id,
        governor=governor,
        metrics=metrics,
        reader=reader,
    )
    engine = Engine(
        settings,
        [handler, docs],
        on_reset=metrics.resets.inc,
        on_commit=metrics.stage.labels("commit").observe,
    )

    @app.task  # type: ignore[untyped-decorator]
    async def process() -> None:
        taskdump.install(asyncio.get_running_loop())  # kill -USR1: every task's stack in the log
        # aiokafka's per-retry lines, once per 10 s while a broker is away; trace ids on each line
        logfilter.install(json_lines=settings.log_json)
        while True:  # decisions use current policies: start once the policy table caught up
            try:
                await ready()
                break
            except TimeoutError:
                log.warning(
                    "policy table not caught up after %.0fs; waiting", settings.policy_wait_s
                )
        try:
            await engine.run()
        finally:
            await side.close()
            if spans is not None:
                spans.shutdown()  # type: ignore[no-untyped-call]  # flushes held spans

    web.register(app, metrics, health)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
    async def observe() -> None:
        """Consumer lag per partition, table size and health checks, every 2 s."""
        for (topic, partition), lag in (await engine.lag()).items():
            metrics.set_lag(topic, partition, lag)
        metrics.set_table_size("policies", len(governor.policies))
        connected = engine.connected()
        health.set("kafka", connected, "" if connected else "not in the consumer group")
        restored = tables_ready() and engine.ready.is_set()
        health.set("tables", restored, "" if restored else "tables restoring or rebalancing")
        client = classifier.client
        cpu = client.cpu if isinstance(client, RoutedClient) else client
        ok = await cpu.ready() if isinstance(cpu, TritonClassifierClient) else True
        health.set("triton", ok, "" if ok else f"{settings.model_name} not ready")
        health.beat()

    return app


_JSON = {"content-type": b"application/json"}


async def _always_ready() -> None:
    return None
