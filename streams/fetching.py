"""Fetching for the processing engine (``streams.engine``): fair shares per partition, and the
session's fetch loop with backpressure at ``max_pending`` unfinished records."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.partition import Handler, Partition
from streams.records import SourceRecord


async def fetch_fair(
    consumer: AIOKafkaConsumer, room: int, turn: int = 0, wait_ms: int = 100
) -> dict[TopicPartition, list[Any]]:
    """Up to ``room`` fetched records, at most an equal share of it from each assigned partition.

    aiokafka's ``getmany(max_records=n)`` drains its buffer partition by partition: with a
    backlog, one partition's whole fetch (up to ``max_partition_fetch_bytes``, thousands of
    events) would go ahead of every other partition's. Here the first call waits up to
    ``wait_ms`` for any records (one share), then each other partition, starting at a rotating
    ``turn``, gets its share of what is already buffered (no wait)."""
    parts = sorted(consumer.assignment())
    if len(parts) <= 1:
        return dict(await consumer.getmany(timeout_ms=wait_ms, max_records=room))
    share = max(1, room // len(parts))
    out: dict[TopicPartition, list[Any]] = {
        tp: list(records)
        for tp, records in (await consumer.getmany(timeout_ms=wait_ms, max_records=share)).items()
    }
    got = sum(len(records) for records in out.values())
    start = turn % len(parts)
    for tp in parts[start:] + parts[:start]:
        if got >= room:
            break
        if tp in out or tp not in consumer.assignment():  # served, or revoked meanwhile
            continue
        more = await consumer.getmany(tp, timeout_ms=0, max_records=min(share, room - got))
        for key, records in more.items():
            out.setdefault(key, []).extend(records)
            got += len(records)
    return out


def source_record(msg: Any) -> SourceRecord:
    """A fetched aiokafka ``ConsumerRecord`` as the handlers see it."""
    return SourceRecord(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        msg.timestamp / 1000.0,
        tuple(msg.headers or ()),
    )


class Fetcher:
    """The fetch loop of a session: while fewer than ``max_pending`` records are unfinished
    over the partitions held now (``parts``), fetch fairly and *prepare* each record at once
    into its partition's queue; at ``max_pending`` pause the consumer until a finisher sets
    ``room``. The turn that rotates ``fetch_fair``'s first partition outlives sessions."""

    def __init__(
        self,
        max_pending: int,
        parts: Callable[[], Mapping[TopicPartition, Partition]],
        handlers: Mapping[str, Handler],
        ready: asyncio.Event,
    ) -> None:
        self.max_pending = max_pending
        self.parts = parts
        self.handlers = handlers
        self.ready = ready  # set while partitions are assigned and restored
        self.room = asyncio.Event()  # a record finished or a partition ended
        self.turn = 0

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now; an ended
        partition's records stop counting with it."""
        return sum(part.outstanding for part in self.parts().values())

    async def run(self, consumer: AIOKafkaConsumer, failed: asyncio.Future[None]) -> None:
        """Fetch until ``failed`` is done, then raise its error (a finisher's, an assignment's)."""
        while not failed.done():
            room = self.max_pending - self.pending
            if room <= 0:
                await self._wait_for_room(consumer, failed)
                continue
            if not self.ready.is_set():  # a rebalance is under way: tables may be restoring
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ready.wait(), 0.5)
                continue
            batch = await fetch_fair(consumer, room, self.turn)
            self.turn += 1
            for tp, records in batch.items():
                self._deliver(consumer, tp, records)
        failed.result()

    def _deliver(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[Any]) -> None:
        part = self.parts().get(tp)
        if part is None:  # not (or no longer) ours to process: fetch it again later
            if records and tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
            return
        handler = self.handlers[tp.topic]
        for msg in records:
            rec = source_record(msg)
            part.queue.put_nowait((rec, handler.prepare(rec, part)))
            part.outstanding += 1

    async def _wait_for_room(
        self, consumer: AIOKafkaConsumer, failed: asyncio.Future[None]
    ) -> None:
        assignment = list(consumer.assignment())
        consumer.pause(*assignment)
        self.room.clear()
        try:
            while self.pending >= self.max_pending and not failed.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.room.wait(), 1.0)
        finally:
            consumer.resume(*[tp for tp in assignment if tp in consumer.assignment()])
