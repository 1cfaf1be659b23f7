"""Creates every topic inferstream uses, with explicit partitions, replication and configs.

Faust's own topic declaration is switched off (``topic_allow_declare=False``): with aiokafka < 0.13
it sends CreateTopics v1, which Kafka 4 no longer accepts (KIP-896), and it cannot check that an
existing topic has the partition count we need. Creating topics here, before a worker or a
producer starts, keeps producers from auto-creating them with broker defaults, which would
crash-loop Faust (``PartitionsMismatch``), and puts retention and replication in our settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from streams.security import kafka_client_kwargs
from streams.settings import Settings
from streams.topics import TopicSpec, topic_specs
from workers.retry import Backoff

log = logging.getLogger(__name__)


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count than the settings ask for."""


async def ensure_topics(
    settings: Settings, specs: Sequence[TopicSpec] | None = None, *, backoff: Backoff | None = None
) -> list[str]:
    """Create the missing topics; check the existing ones. Returns the names created.
    Retriable broker errors (a broker that just died is still in the metadata for a session
    timeout) are retried with ``backoff``'s delays, sleep and ``max_attempts``; ``Backoff.run``
    itself retries only our own errors, not aiokafka's. The default: 6 calls, waits of 0.5-1,
    1-2, 2-4 and twice 2.5-5 s (about 13 s in all)."""
    specs = list(specs if specs is not None else topic_specs(settings).values())
    backoff = backoff or Backoff(initial_s=1.0, max_s=5.0, max_attempts=6)
    attempt = 0
    while True:
        try:
            return await _ensure_topics(settings, specs)
        except KafkaError as exc:
            last = backoff.max_attempts is not None and attempt + 1 >= backoff.max_attempts
            if not exc.retriable or last:
                raise
            wait = backoff.delay(attempt)
            log.warning("ensure_topics: %s; retry %d in %.1fs", exc, attempt + 1, wait)
            await backoff.sleep(wait)
            attempt += 1


async def _ensure_topics(settings: Settings, specs: Sequence[TopicSpec]) -> list[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=30000,
        **kafka_client_kwargs(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:  # a concurrent worker won the race
                    raise for_code(code)(f"creating topic {name!r}: {rest[0] if rest else ''}")
        await _check_partitions(admin, [s for s in specs if s.name not in created])
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, timeout_s: float | None = 60.0
) -> list[TopicPartition]:
    """The partitions of ``topic`` as a group-less consumer sees them, waiting (``None``: for
    ever) until the topic exists. Raises ``TimeoutError`` when it does not appear in time."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while not (numbers := consumer.partitions_for_topic(topic)):
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"topic {topic!r} does not exist (is a worker running?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(numbers)]


async def _check_partitions(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    if not specs:
        return
    described = {d["topic"]: d for d in await admin.describe_topics([s.name for s in specs])}
    for spec in specs:
        have = len(described[spec.name]["partitions"])
        if have != spec.partitions:
            raise TopicMismatch(
                f"topic {spec.name!r} has {have} partitions, settings say {spec.partitions}: "
                "set INFERSTREAM_TOPIC_PARTITIONS to match, or use a new topic"
            )
