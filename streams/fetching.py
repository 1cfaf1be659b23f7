"""Fetching for the processing engine (``streams.engine``): the session's fetch loop, with
backpressure at ``max_pending`` unfinished records.

librdkafka's ``consume`` waits on the network, so it runs in a client thread; the consumer's
rebalance callbacks run inside it there and hand their work to the event loop (``Engine``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streams.partition import Handler, Partition
from streams.records import SourceRecord

log = logging.getLogger(__name__)

Submit = Callable[..., "concurrent.futures.Future[Any]"]


def take(consumer: Consumer, n: int, timeout_s: float) -> list[Any]:
    """Up to ``n`` messages: waits up to ``timeout_s`` for the first, then takes what is
    already fetched. (librdkafka's ``consume(n, timeout)`` waits out the whole timeout unless
    ``n`` messages come: up to ``timeout_s`` of latency per record at a low rate.)"""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(n - 1, 0)] if n > 1 else [first]


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


class FetchStalled(RuntimeError):
    """Assigned partitions have not started fetching for ``fetch_stall_s``: the session
    resets."""


class StallWatch:
    """Assigned partitions whose fetching never starts. librdkafka fetches an assigned
    partition only once the group coordinator has given its committed offset; until then its
    fetch state (in the statistics, every few seconds) is not "active". A partition can stay so
    for good when that request is lost in the client after a broker restart (the failure CI
    showed once: every partition assigned, nothing consumed for 110 s, no error logged), and
    for up to the transaction timeout while a dead worker's transaction holds offsets of the
    group. ``stalled`` says so once a partition has been seen out of "active" for ``stall_s``
    with nothing consumed meanwhile; the session then resets and its new consumer starts
    afresh. Time paused for backpressure and time inside a rebalance callback never count
    (``progress``). Everything runs in the consumer's thread."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self.since: float | None = None  # first seen not fetching, since the last progress
        self.waiting: list[str] = []  # the partitions not fetching in the last statistics

    def stats(self, raw: str) -> None:
        """librdkafka's ``stats_cb``: note the assigned partitions that are not fetching."""
        try:
            topics = json.loads(raw).get("topics") or {}
        except (ValueError, AttributeError):
            return
        waiting = [
            f"{name}[{p['partition']}] {p.get('fetch_state')}"
            for name, topic in topics.items()
            for p in (topic.get("partitions") or {}).values()
            if p.get("partition", -1) >= 0 and p.get("desired") and p.get("fetch_state") != "active"
        ]
        self.waiting = waiting
        if not waiting:
            self.since = None
        elif self.since is None:
            self.since = self.clock()

    def progress(self) -> None:
        """Something was consumed, or the time since the last look does not count."""
        self.since = None

    def stalled(self) -> str | None:
        if self.since is None or self.clock() - self.since < self.stall_s:
            return None
        return (
            f"assigned partitions not fetching for {self.clock() - self.since:.0f}s "
            f"(librdkafka's fetch state): {', '.join(self.waiting[:4])}"
        )


class Poller:
    """Every call on the consumer, made in the consumer's client thread (librdkafka's consumer
    calls from two threads at once could wait on each other, and the event loop must never wait
    on one): seeks, pause and resume for backpressure, the poll itself (rebalance callbacks run
    inside it) and, every ``lag_every_s``, the lag per assigned partition."""

    def __init__(
        self, consumer: Consumer, lag_every_s: float = 2.0, watch: StallWatch | None = None
    ) -> None:
        self.consumer = consumer
        self.watch = watch
        self.paused: list[KafkaTopicPartition] = []
        self.lag: dict[tuple[str, int], int] = {}
        self.lag_every_s = lag_every_s
        self._lag_at = 0.0

    def step(self, room: int, timeout_s: float, seeks: list[KafkaTopicPartition]) -> list[Any]:
        consumer = self.consumer
        for tp in seeks:
            try:
                consumer.seek(tp)
            except KafkaException as exc:  # revoked meanwhile: its next owner reads it
                log.debug("seek %s[%d]: %s", tp.topic, tp.partition, exc)
        if room <= 0:  # backpressure: poll on (rebalances), but fetch nothing
            if not self.paused:
                self.paused = consumer.assignment()
                consumer.pause(self.paused)
            msgs = take(consumer, 1, 0)
        else:
            if self.paused:
                # every partition paused, revoked ones included: librdkafka keeps a partition's
                # pause across a rebalance (an eager revoke, a lost assignment), so one revoked
                # while paused and assigned again would never be fetched (a resume of a
                # partition not assigned now only clears its flag)
                consumer.resume(self.paused)
                self.paused = []
            msgs = take(consumer, room, timeout_s)
        watch = self.watch
        if watch is not None:
            if msgs or room <= 0:  # consuming, or paused: nothing stalls meanwhile
                watch.progress()
            stalled = watch.stalled()
            if stalled is not None:
                raise FetchStalled(stalled)
        now = time.monotonic()
        if now - self._lag_at >= self.lag_every_s:
            self._lag_at = now
            self.lag = self._measure_lag()
        return msgs

    def _measure_lag(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        consumer = self.consumer
        for tp in consumer.position(consumer.assignment()):
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out


class Fetcher:
    """The fetch loop of a session: while fewer than ``max_pending`` records are unfinished
    over the partitions held now (``parts``), poll and *prepare* each record at once into its
    partition's queue; at ``max_pending`` pause the assigned partitions (and go on polling,
    which serves rebalances) until finishers (each sets ``room``) bring it down to
    ``resume_below``."""

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
        self.poller: Poller | None = None
        self.polling: concurrent.futures.Future[list[Any]] | None = None  # the poll under way

    @property
    def resume_below(self) -> int:
        """Paused fetching resumes once the unfinished records are down to this many: a pause
        and a resume each drop librdkafka's prefetched records, so resuming for every record
        that finishes (a backlog behind images in OCR) would refetch them each time."""
        return self.max_pending - max(1, self.max_pending // 4)

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now; an ended
        partition's records stop counting with it."""
        return sum(part.outstanding for part in self.parts().values())

    async def run(
        self,
        consumer: Consumer,
        submit: Submit,
        failed: asyncio.Future[None],
        watch: StallWatch | None = None,
    ) -> None:
        """Fetch until ``failed`` is done, then raise its error (a finisher's, an assignment's,
        the committer's, or ``FetchStalled``)."""
        poller = self.poller = Poller(consumer, watch=watch)
        seeks: list[KafkaTopicPartition] = []
        held = False  # paused at max_pending, until a quarter of it has finished
        while not failed.done():
            pending = self.pending
            held = pending >= self.max_pending or (held and pending > self.resume_below)
            room = 0 if held else self.max_pending - pending
            if room <= 0:
                self.room.clear()
            self.polling = submit(poller.step, room, self.poll_s, seeks)
            msgs = await asyncio.wrap_future(self.polling)
            seeks = self._deliver(poller, msgs)
            if room <= 0 and not msgs:
                await self._wait_for_room(failed)
        failed.result()

    async def stopped(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the poll under way to return: the consumer may close then."""
        polling = self.polling
        if polling is not None:
            waiting = asyncio.wrap_future(polling)
            # its error (a stall, a fatal consumer error) ended the session already: retrieved
            waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.wait([waiting], timeout=timeout_s)

    async def _wait_for_room(self, failed: asyncio.Future[None]) -> None:
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.room.wait())
        try:
            await asyncio.wait(
                [waiter, failed], timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()

    def _deliver(self, poller: Poller, msgs: list[Any]) -> list[KafkaTopicPartition]:
        """Prepare each message into its partition's queue; the seeks back to messages of
        partitions not (or no longer) ours, for the next poll."""
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
            if part is None or part.closed:
                skipped.setdefault((tp.topic, tp.partition), msg.offset())
                continue
            rec = source_record(msg)
            part.queue.put_nowait((rec, self.handlers[tp.topic].prepare(rec, part)))
            part.outstanding += 1
        return [KafkaTopicPartition(t, p, o) for (t, p), o in skipped.items()]
