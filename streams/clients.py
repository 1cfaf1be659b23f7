"""The Kafka clients of the processing engine (``streams.engine``): how each is configured, how
one is stopped without hanging the session, and the background retirement of the producers of
partitions that ended. ``Engine`` takes a ``KafkaClients``; tests pass one that makes fakes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.security import kafka_client_kwargs
from streams.settings import Settings

log = logging.getLogger(__name__)
ClientKwargs = Callable[[], Mapping[str, Any]]


class KafkaClients:
    """Makes the session's consumer, the partitions' producers and the tables' restore consumers
    (``client_kwargs``: security settings, read at each call); stops and retires them."""

    def __init__(self, settings: Settings, client_kwargs: ClientKwargs | None = None) -> None:
        self.settings = settings
        self.client_kwargs = client_kwargs or (lambda: kafka_client_kwargs(settings))
        self.retiring: set[asyncio.Task[None]] = set()  # producers of ended partitions

    def consumer(self, group_id: str) -> AIOKafkaConsumer:
        """The session's consumer: read_committed, offsets committed by the engine only."""
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
            max_poll_interval_ms=300_000,
            **self.client_kwargs(),
        )

    def producer(self, transactional_id: str | None) -> AIOKafkaProducer:
        """A partition's transactional producer, or (``None``) the at-least-once shared one."""
        extra: dict[str, Any] = {}
        if transactional_id is not None:
            extra["transactional_id"] = transactional_id
            extra["transaction_timeout_ms"] = 60_000
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=max(1_048_576, self.settings.max_document_bytes + 65_536),
            **extra,
            **self.client_kwargs(),
        )

    def restorer(self) -> AIOKafkaConsumer:
        """A group-less consumer that reads a partition's changelogs back into its tables."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            # a restore ends with fetches that return nothing but a transaction marker (the
            # position moves past it only then): don't let each wait the default 500 ms
            fetch_max_wait_ms=20,
            **self.client_kwargs(),
        )

    async def stop(self, stop: Awaitable[None], what: str) -> None:
        """Await a client's ``stop()`` for at most 10 s; its errors are only logged."""
        try:
            await asyncio.wait_for(stop, 10.0)
        except (TimeoutError, KafkaError) as exc:
            log.warning("stopping the %s: %r", what, exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker stops
            # aiokafka's stop can leak the cancellation of a task of its own (a coordinator
            # mid-request): the client is stopped all the same
            log.warning("stopping the %s: a cancellation inside aiokafka", what)

    def retire(self, producer: AIOKafkaProducer, *, abort: bool = False) -> None:
        """Stop an ended partition's producer in the background. While the broker is away
        that takes until it is back (aiokafka flushes first), or until the next owner's
        producer fences this one; the session goes on without waiting. ``abort``: end its
        open transaction first, so that readers need not wait for a fencing or the
        transaction timeout (a producer already fenced is refused, which is as good)."""

        async def stop() -> None:
            if abort:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), 5.0)
            try:
                await asyncio.wait_for(producer.stop(), 120.0)
            except Exception as exc:  # a retired producer only logs
                log.warning("retired producer did not stop cleanly: %r", exc)

        task = asyncio.get_running_loop().create_task(stop())
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    async def drain_retiring(self, timeout_s: float) -> None:
        """Wait (bounded) for retired producers to stop, e.g. before the worker exits."""
        if self.retiring:
            await asyncio.wait(list(self.retiring), timeout=timeout_s)
