"""Synchronous helpers over aiokafka for integration tests (each call runs its own event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.security import kafka_client_kwargs
from streams.settings import Settings


def _security(settings: Settings | None) -> dict[str, Any]:
    """Client options for a secured cluster (`settings`' Kafka security fields); none: PLAINTEXT."""
    return kafka_client_kwargs(settings) if settings is not None else {}


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    settings: Settings | None = None,
) -> int:
    return produce_to_partitions(
        bootstrap, topic, ((None, k, v) for k, v in records), settings=settings
    )


def produce_to_partitions(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int | None, bytes | None, bytes]],
    *,
    settings: Settings | None = None,
) -> int:
    """Send (partition, key, value) records (partition None: by key); returns how many."""

    async def run() -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, **_security(settings)
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, key=k, value=v, partition=p) for p, k, v in records
            ]
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    return asyncio.run(run())


def consume(
    bootstrap: str,
    topics: list[str],
    *,
    until: Callable[[dict[str, list[Any]]], bool],
    timeout_s: float,
    settle_s: float = 2.0,
    settings: Settings | None = None,
) -> dict[str, list[Any]]:
    """Read `topics` from the beginning (no group) until `until(records)` holds, then keep reading
    `settle_s` more seconds so that duplicates or extras would be seen too. Records are the
    decoded JSON values with their key under `_key`."""
    return asyncio.run(
        _read(
            bootstrap,
            topics,
            until,
            timeout_s,
            settle_s,
            lambda r: orjson.loads(r.value) | {"_key": r.key},
            _security(settings),
        )
    )


async def _read(
    bootstrap: str,
    topics: list[str],
    until: Callable[[dict[str, list[Any]]], bool],
    timeout_s: float,
    settle_s: float,
    convert: Callable[[Any], Any],
    consumer_kwargs: dict[str, Any],
) -> dict[str, list[Any]]:
    """The read loop of `consume` and `consume_raw`: read_committed, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **consumer_kwargs,
    )
    await consumer.start()
    out: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        parts = []
        await consumer._client.force_metadata_update()
        for topic in topics:
            parts += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                out[tp.topic] += [convert(r) for r in records]
            if settle_until is None and until(out):
                settle_until = time.monotonic() + settle_s
    finally:
        await consumer.stop()
    return out


# --- helpers for tests/reliability (PLAINTEXT test broker) ---------------------------------------

Headers = list[tuple[str, bytes]]


def produce_each(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes, Headers]],
    *,
    max_request_size: int = 1048576,
) -> list[Any]:
    """Send (key, value, headers) records; returns per record its RecordMetadata (partition,
    offset) or the exception the client or the broker gave it. Unlike `produce`, one refused
    record (too large, say) neither stops nor hides the others."""

    async def run() -> list[Any]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=max_request_size,
            request_timeout_ms=60000,
        )
        await producer.start()
        try:
            outcomes: list[Any] = []
            futures: list[tuple[int, asyncio.Future[Any]]] = []
            for key, value, headers in records:
                try:
                    fut = await producer.send(topic, key=key, value=value, headers=headers or None)
                except Exception as exc:  # refused by the client before it reached the broker
                    outcomes.append(exc)
                    continue
                outcomes.append(None)
                futures.append((len(outcomes) - 1, fut))
            done = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
            for (i, _), outcome in zip(futures, done, strict=True):
                outcomes[i] = outcome
            return outcomes
        finally:
            await producer.stop()

    return asyncio.run(run())


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str]) -> None:
    """Create one topic with explicit topic configs (e.g. a raised ``max.message.bytes``)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, partitions, 1, topic_configs=config)]
            )
            for topic, code, *rest in response.topic_errors:
                if code != 0:
                    raise RuntimeError(f"creating {topic!r}: error {code} {rest}")
        finally:
            await admin.close()

    asyncio.run(run())


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records of `topic` not yet committed by consumer group `group` (None: nothing committed)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        try:
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                if tp.topic == topic and meta.offset >= 0
            }
            if not committed:
                return None
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = await consumer.end_offsets(parts)
            return int(sum(end - committed.get(tp, 0) for tp, end in ends.items()))
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())


def consume_raw(
    bootstrap: str,
    topics: list[str],
    *,
    until: Callable[[dict[str, list[Any]]], bool],
    timeout_s: float,
    settle_s: float = 2.0,
) -> dict[str, list[Any]]:
    """`consume`, but returns aiokafka's ConsumerRecords (key, value bytes, headers, offsets) and
    takes records of any size (read_committed, from the beginning, no group)."""
    big = {"max_partition_fetch_bytes": 64 * 1024 * 1024, "fetch_max_bytes": 128 * 1024 * 1024}
    return asyncio.run(_read(bootstrap, topics, until, timeout_s, settle_s, lambda r: r, big))


def topic_size(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of `topic` (its records, plus transaction markers if any)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await consumer.stop()

    return asyncio.run(run())
