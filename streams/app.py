"""``create_app(settings)``: the Faust app with its topics, tables and agents. Nothing runs at
import; every collaborator can be injected (tests pass fakes)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import faust
from prometheus_client import CollectorRegistry

from streams import web
from streams.agents import conversations
from streams.publish import FaustPublisher, Publisher
from streams.records import SourceRecord, dead_letter
from streams.settings import Settings
from streams.tables import PolicyTable
from streams.topics import declare_topics
from workers.errors import InvalidEvent
from workers.governance import Governor
from workers.guard.filter import ContentFilter
from workers.guard.policy import PolicyStore
from workers.guard.terms import TermList
from workers.inference.classifier import TurnClassifier
from workers.inference.triton import TritonClassifierClient
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Watermarker
from workers.retry import Backoff
from workers.telemetry.cost import CostModel
from workers.telemetry.health import Health
from workers.telemetry.metrics import Metrics


class ConfigError(RuntimeError):
    """Settings that cannot work (e.g. no watermark keys)."""


def build_classifier(settings: Settings, metrics: Metrics | None = None) -> TurnClassifier:
    client = TritonClassifierClient(
        settings.triton_endpoint, settings.model_name, settings.inference_timeout_s
    )
    backoff = Backoff(
        initial_s=settings.retry_initial_s,
        max_s=settings.retry_max_s,
        on_retry=(lambda exc: metrics.triton_error("unavailable")) if metrics else None,
    )
    return TurnClassifier(
        client, backoff, max_seq_len=settings.max_seq_len, max_batch=settings.max_batch
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
) -> faust.App:
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
        processing_guarantee="at_least_once",
        topic_allow_declare=False,  # streams.admin.ensure_topics creates them (see its docstring)
        topic_disable_leader=True,  # no leader-only work, so no leader-election topic
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        web_enabled=settings.web_enabled,
        web_host="127.0.0.1",
        web_port=settings.web_port,
        web_in_thread=False,
    )
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

    ready = _always_ready
    tables_ready: Callable[[], bool] = lambda: True  # noqa: E731
    if follow_policies:
        table = PolicyTable(
            settings.bootstrap_servers,
            settings.topic_policies,
            governor.policies,
            policy_dead_letter,
        )
        app.task(table.run)

        async def ready() -> None:
            await asyncio.wait_for(table.caught_up.wait(), settings.policy_wait_s)

        tables_ready = table.caught_up.is_set

    handler = conversations.ConversationHandler(
        settings,
        classifier,
        governor,
        publisher,
        worker_id=worker_id,
        ready=ready,
        metrics=metrics,
        costs=CostModel(settings.gpu_usd_per_hour, settings.cpu_usd_per_hour),
    )
    conversations.register(app, topics.conversations_in, handler)
    web.register(app, metrics, health)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
    async def observe() -> None:
        """Consumer lag per partition, table size and health checks, every 2 s."""
        consumer = app.consumer
        for tp in consumer.assignment():
            position = await consumer.position(tp)
            if position is not None:
                metrics.set_lag(tp.topic, tp.partition, consumer.highwater(tp) - position)
        metrics.set_table_size("policies", len(governor.policies))
        health.set("kafka", not app.rebalancing, "rebalancing" if app.rebalancing else "")
        health.set("tables", tables_ready(), "" if tables_ready() else "policy table catching up")
        client = classifier.client
        ok = await client.ready() if isinstance(client, TritonClassifierClient) else True
        health.set("triton", ok, "" if ok else f"{settings.model_name} not ready")
        health.beat()

    return app


async def _always_ready() -> None:
    return None
