"""Sends outside the processing engine: the policy table's dead letters (a policy record that does
not decode), through Faust's producer (acks=all), each flushed before the table moves on; and the
experiments' comparison records and rollbacks, one per turn under an experiment, through
librdkafka (``RdkafkaPublisher``: a record costs it a fraction of what it costs aiokafka).

Conversation and document outcomes are not sent here: ``streams.engine`` produces them in each
input partition's transaction. ``Publisher`` is the seam ``create_app(publisher=...)`` takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

import faust
from confluent_kafka import KafkaException, Producer

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]: ...

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None: ...


class FaustPublisher:
    def __init__(self, topics: Mapping[str, faust.TopicT]) -> None:
        self._topics = topics

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]:
        return await self._topics[topic].send(key=key, value=value, headers=dict(headers))

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None:
        # Wait for the broker's acks of this batch's outputs before the stream acks the inputs:
        # a crash in between re-delivers the inputs (at least once) rather than losing outputs.
        await asyncio.gather(*pending)


class RdkafkaPublisher:
    """An idempotent librdkafka producer (acks=all) for records outside the transaction: each
    ``send`` returns a future settled by its delivery report; a task serves the reports while
    records are outstanding."""

    def __init__(self, conf: Mapping[str, Any], poll_s: float = 0.02) -> None:
        self.conf = {**conf, "enable.idempotence": True, "acks": "all", "linger.ms": 20}
        self.poll_s = poll_s
        self._made: Producer | None = None  # made at the first send: most workers never send
        self._poller: asyncio.Task[None] | None = None

    @property
    def _producer(self) -> Producer:
        if self._made is None:
            self._made = Producer(self.conf)
        return self._made

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def delivered(err: Any, msg: Any) -> None:  # served by poll(), on the event loop
            if fut.done():
                return
            if err is not None:
                fut.set_exception(KafkaException(err))
            else:
                fut.set_result(msg.offset())

        try:
            self._producer.produce(
                topic, value, key=key, headers=list(headers.items()), on_delivery=delivered
            )
        except (KafkaException, BufferError) as exc:
            fut.set_exception(exc)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._serve())
        return fut

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None:
        await asyncio.gather(*pending)

    async def _serve(self) -> None:
        while len(self._producer):
            self._producer.poll(0)
            await asyncio.sleep(self.poll_s)
        self._producer.poll(0)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (for at most ``timeout_s``)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._made is None:
            return
        left = await asyncio.to_thread(self._made.flush, timeout_s)
        if left:
            log.warning("%d records outside the transaction not delivered at close", left)
