"""``create_app(settings)``: the Faust app with its topics and agents. Nothing runs at import."""

from __future__ import annotations

import os
import socket

import faust

from streams.agents import conversations
from streams.publish import FaustPublisher, Publisher
from streams.settings import Settings
from streams.topics import declare_topics
from workers.inference.classifier import TurnClassifier
from workers.inference.triton import TritonClassifierClient
from workers.retry import Backoff


def build_classifier(settings: Settings) -> TurnClassifier:
    client = TritonClassifierClient(
        settings.triton_endpoint, settings.model_name, settings.inference_timeout_s
    )
    backoff = Backoff(initial_s=settings.retry_initial_s, max_s=settings.retry_max_s)
    return TurnClassifier(
        client, backoff, max_seq_len=settings.max_seq_len, max_batch=settings.max_batch
    )


def create_app(
    settings: Settings,
    *,
    classifier: TurnClassifier | None = None,
    publisher: Publisher | None = None,
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
    handler = conversations.ConversationHandler(
        settings,
        classifier or build_classifier(settings),
        publisher or FaustPublisher(topics.by_name()),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
    )
    conversations.register(app, topics, handler)

    return app
