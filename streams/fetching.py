"""Fetching for the processing engine (``streams.engine``): the session's fetch loop, with
backpressure at ``max_pending`` unfinished records.

librdkafka's ``consume`` waits on the network, so it runs in a client thread; the consumer's
rebalance callbacks run inside it there and hand their work to the event loop (``Engine``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streams.partition import Handler, Partition
from streams.records import SourceRecord

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[Any]]


def source_record(msg: Any) -> SourceRecord:
    """A consumed librdkafka ``Message`` as the handlers see it."""
    return SourceRecord(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value(),
        msg.timestamp()[1] / 1000.0,
        tuple(msg.headers() or ()),
    )


class Fetcher:
    """The fetch loop of a session: while fewer than ``max_pending`` records are unfinished
    over the partitions held now (``parts``), consume and *prepare* each record at once into
    its partition's queue; at ``max_pending`` pause the assigned partitions (and go on polling,
    which serves rebalances) until a finisher sets ``room``."""

    def __init__(
        self,
        max_pending: int,
        parts: Callable[[], Mapping[TopicPartition, Partition]],
        handlers: Mapping[str, Handler],
        ready: asyncio.Event,
        poll_s: float = 0.1,
    ) -> None:
        self.max_pending = max_pending
        self.parts = parts
        self.handlers = handlers
        self.ready = ready  # set while partitions are assigned and restored
        self.room = asyncio.Event()  # a record finished or a partition ended
        self.poll_s = poll_s

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now; an ended
        partition's records stop counting with it."""
        return sum(part.outstanding for part in self.parts().values())

    async def run(self, consumer: Consumer, call: Call, failed: asyncio.Future[None]) -> None:
        """Fetch until ``failed`` is done, then raise its error (a finisher's, an assignment's,
        the committer's)."""
        paused: list[KafkaTopicPartition] = []
        while not failed.done():
            room = self.max_pending - self.pending
            if room <= 0 and not paused:
                paused = consumer.assignment()
                consumer.pause(paused)
                self.room.clear()
            elif room > 0 and paused:
                consumer.resume([tp for tp in paused if tp in consumer.assignment()])
                paused = []
            if paused:  # keep polling (rebalances are served in it) but wait for room
                msgs = await call(consumer.consume, 1, 0)
                if not msgs:
                    await self._wait_for_room(failed)
                    continue
            else:
                msgs = await call(consumer.consume, max(1, room), self.poll_s)
            self._deliver(consumer, msgs)
        failed.result()

    async def _wait_for_room(self, failed: asyncio.Future[None]) -> None:
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.room.wait())
        try:
            await asyncio.wait(
                [waiter, failed], timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()

    def _deliver(self, consumer: Consumer, msgs: list[Any]) -> None:
        parts = self.parts()
        skipped: dict[tuple[str, int], int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume: %s", err)
                continue
            tp = TopicPartition(msg.topic(), msg.partition())
            part = parts.get(tp)
            if part is None or part.closed:  # not (or no longer) ours: fetch it again later
                skipped.setdefault((tp.topic, tp.partition), msg.offset())
                continue
            rec = source_record(msg)
            part.queue.put_nowait((rec, self.handlers[tp.topic].prepare(rec, part)))
            part.outstanding += 1
        if skipped:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            for (topic, partition), offset in skipped.items():
                if (topic, partition) in assigned:
                    consumer.seek(KafkaTopicPartition(topic, partition, offset))
