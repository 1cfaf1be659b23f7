"""Every topic inferstream uses: name, key/value types, partitions, replication and retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import faust

from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    conversations_in: faust.TopicT
    conversations_out: faust.TopicT
    deadletter: faust.TopicT

    def outputs(self) -> list[faust.TopicT]:
        return [self.conversations_out, self.deadletter]

    def by_name(self) -> dict[str, faust.TopicT]:
        return {t.get_topic_name(): t for t in (self.conversations_in, *self.outputs())}


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Raw bytes on the wire: we validate and encode ourselves (orjson), so a bad record reaches
    our code as bytes and becomes a dead letter instead of a codec exception."""

    def topic(name: str, retention: timedelta) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
            replicas=settings.replication_factor,
            retention=retention,
        )

    return Topics(
        conversations_in=topic(settings.topic_in, timedelta(days=7)),
        conversations_out=topic(settings.topic_out, timedelta(days=7)),
        deadletter=topic(settings.topic_deadletter, timedelta(days=30)),
    )
