"""Every topic inferstream uses: name, partitions, replication and retention, from the settings.

``topic_specs`` is the single description; ``streams.admin`` creates topics from it and
``declare_topics`` makes the Faust topic objects from it (raw bytes on the wire: we validate and
encode ourselves, so a bad record reaches our code as bytes and becomes a dead letter instead of a
codec exception).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import faust

from streams.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    def spec(name: str, retention_days: int) -> TopicSpec:
        return TopicSpec(
            name,
            settings.topic_partitions,
            settings.replication_factor,
            {"retention.ms": str(retention_days * DAY_MS), "cleanup.policy": "delete"},
        )

    policies = TopicSpec(
        settings.topic_policies,
        settings.topic_partitions,
        settings.replication_factor,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": str(DAY_MS)},
    )

    def changelog(name: str) -> TopicSpec:  # a table's changelog: compacted, never expires
        return TopicSpec(
            f"{settings.app_id}-{name}-changelog",
            settings.topic_partitions,
            settings.replication_factor,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
             "segment.ms": str(DAY_MS)},
        )  # fmt: skip

    specs = {
        "conversations_in": spec(settings.topic_in, 7),
        "documents_in": spec(settings.topic_documents_in, 7),
        "documents_out": spec(settings.topic_documents_out, 7),
        "context_changelog": changelog("context"),
        "dedupe_changelog": changelog("dedupe"),
        "conversations_out": spec(settings.topic_out, 7),
        "deadletter": spec(settings.topic_deadletter, 30),
        "moderation": spec(settings.topic_moderation, 30),
        "analytics": spec(settings.topic_analytics, 30),
        "policies": policies,
        "experiments": TopicSpec(
            settings.topic_experiments,
            settings.topic_partitions,
            settings.replication_factor,
            dict(policies.config),
        ),
        "experiment_events": spec(settings.topic_experiment_events, 30),
    }
    isr = settings.min_insync_replicas
    if isr is not None:
        if isr > settings.replication_factor:
            raise ValueError(
                f"min_insync_replicas={isr} > replication_factor={settings.replication_factor}: "
                "no write with acks=all could ever succeed"
            )
        for s in specs.values():
            s.config["min.insync.replicas"] = str(isr)
    return specs


@dataclass(frozen=True)
class Topics:
    conversations_in: faust.TopicT
    conversations_out: faust.TopicT
    deadletter: faust.TopicT
    moderation: faust.TopicT
    analytics: faust.TopicT
    experiments: faust.TopicT  # rollbacks published by a worker's guard
    experiment_events: faust.TopicT

    def by_name(self) -> dict[str, faust.TopicT]:
        topics = (
            self.conversations_in,
            self.conversations_out,
            self.deadletter,
            self.moderation,
            self.analytics,
            self.experiments,
            self.experiment_events,
        )
        return {t.get_topic_name(): t for t in topics}


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def topic(spec: TopicSpec) -> faust.TopicT:
        retention_ms = spec.config.get("retention.ms")  # none: compacted
        return app.topic(
            spec.name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions,
            replicas=spec.replication,
            retention=None if retention_ms is None else timedelta(milliseconds=int(retention_ms)),
        )

    specs = topic_specs(settings)  # the rest are read and written by streams.engine/tables
    roles = Topics.__dataclass_fields__
    return Topics(**{role: topic(spec) for role, spec in specs.items() if role in roles})
