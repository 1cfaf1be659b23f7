"""Tables materialized from Kafka topics.

``PolicyTable`` keeps every worker's ``PolicyStore`` equal to the compacted ``policies`` topic:
each worker reads *all* partitions (no consumer group) from the beginning, then follows new
records, so a policy change applies live on every worker within a poll interval, and a restart
rebuilds the table from the topic; nothing lives only in process memory. (Faust's GlobalTable
would do the same job, but its recovery has known hangs in faust-streaming; this is 60 lines.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from streams.admin import topic_partitions
from streams.records import SourceRecord
from workers.errors import InvalidEvent
from workers.guard.policy import PolicyStore

log = logging.getLogger(__name__)

OnInvalid = Callable[[SourceRecord, InvalidEvent], Awaitable[None]]


class PolicyTable:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        store: PolicyStore,
        on_invalid: OnInvalid,
        poll_ms: int = 200,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.on_invalid = on_invalid
        self.poll_ms = poll_ms
        self.caught_up = asyncio.Event()
        self.applied = 0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            parts = await topic_partitions(consumer, self.topic, timeout_s=None)
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            while True:
                batch = await consumer.getmany(timeout_ms=self.poll_ms)
                for records in batch.values():
                    for rec in records:
                        await self._apply(rec)
                if not self.caught_up.is_set() and all(
                    [await consumer.position(tp) >= end[tp] for tp in parts]
                ):
                    log.info("policy table caught up: %d tenants", len(self.store))
                    self.caught_up.set()
        finally:
            await consumer.stop()

    async def _apply(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        key, value = rec.key, rec.value
        source = SourceRecord(
            self.topic, rec.partition, rec.offset, key, value, rec.timestamp / 1000.0
        )
        try:
            if key is None:
                raise InvalidEvent("invalid_policy", "a policy record needs the tenant as its key")
            policy = self.store.apply(key.decode("utf-8", "replace"), value)
        except InvalidEvent as exc:
            log.warning("rejected policy record %s@%d: %s", self.topic, source.offset, exc)
            await self.on_invalid(source, exc)
            return
        self.applied += 1
        log.info("policy for %r now %s", key, "removed" if policy is None else policy.version)
