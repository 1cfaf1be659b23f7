"""Synchronous helpers over aiokafka for integration tests (each call runs its own event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v) for k, v in records]
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
) -> dict[str, list[Any]]:
    """Read `topics` from the beginning (no group) until `until(records)` holds, then keep reading
    `settle_s` more seconds so that duplicates or extras would be seen too."""

    async def run() -> dict[str, list[Any]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        out: dict[str, list[Any]] = {t: [] for t in topics}
        try:
            parts = []
            for topic in topics:
                await consumer._client.force_metadata_update()
                parts += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            deadline = time.monotonic() + timeout_s
            settle_until: float | None = None
            while time.monotonic() < (settle_until or deadline):
                batch = await consumer.getmany(timeout_ms=300)
                for tp, records in batch.items():
                    out[tp.topic] += [orjson.loads(r.value) | {"_key": r.key} for r in records]
                if settle_until is None and until(out):
                    settle_until = time.monotonic() + settle_s
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())
