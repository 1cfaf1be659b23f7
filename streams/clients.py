"""The Kafka clients of the processing engine (``streams.engine``) and how each is configured.

The session's consumer and its one producer are librdkafka's (confluent-kafka): its producer
commits the offsets of all of a worker's input partitions in one transaction, fenced by the
consumer group's generation (KIP-447, ``send_offsets_to_transaction(offsets, group_metadata)``),
and produces from C without a Python future per record. The tables' restore consumer stays an
aiokafka one (``streams.tables`` reads changelogs with it). ``Engine`` takes a ``KafkaClients``;
tests pass one that makes fakes.

librdkafka's calls that wait on the network (consume, send offsets, commit, abort, flush) run
in a thread of their own (``call``) so the event loop never blocks on them. Those of a
transaction and a client's close run ``apart``: each in a daemon thread of its own, because
librdkafka may not return from them at all (``send_offsets_to_transaction`` ignores its timeout
while the group coordinator it cached is gone, librdkafka #5456 and #5511: after 3 of 7
broker restarts here). The engine bounds the wait and resets the session; the hung
call keeps only its own thread, never one the next session polls or commits in, nor the
worker's exit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer

from streams.security import kafka_client_kwargs, librdkafka_config
from streams.settings import Settings

log = logging.getLogger(__name__)

ClientKwargs = Callable[[], Mapping[str, Any]]
T = TypeVar("T")


def transactional_id(settings: Settings) -> str:
    """The worker's transactional id: one per worker, stable across its restarts, so that a
    restarted worker fences its previous incarnation (and aborts its open transaction) at once."""
    instance = settings.instance_id or f"{socket.gethostname()}-{settings.web_port}"
    return f"{settings.app_id}-{instance}"


class KafkaClients:
    """Makes the session's consumer and producer and the tables' restore consumers
    (``client_kwargs``/``rdkafka_config``: security settings, read at each call)."""

    def __init__(
        self,
        settings: Settings,
        client_kwargs: ClientKwargs | None = None,
        rdkafka_config: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.client_kwargs = client_kwargs or (lambda: kafka_client_kwargs(settings))
        self.rdkafka_config = rdkafka_config or (lambda: librdkafka_config(settings))
        # the consumer's polls must not wait behind a commit, nor a new session's calls behind
        # a call of a failed one that runs until librdkafka's own timeout
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="kafka")

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.bootstrap_servers,
            "client.id": "inferstream",
            **self.rdkafka_config(),
        }

    def consumer(
        self,
        group_id: str,
        topics: list[str],
        on_assign: Any,
        on_revoke: Any,
        on_stats: Callable[[str], None] | None = None,
        stats_every_s: float = 5.0,
    ) -> Consumer:
        """The session's consumer: read_committed (its committed-offset fetch waits for
        pending transactional offsets), offsets committed by the engine only; eager
        rebalancing, so that a revoke hands over every partition at once. ``on_stats`` gets
        librdkafka's statistics (JSON) every ``stats_every_s``, inside its polls."""
        s = self.settings
        stats: dict[str, Any] = {}
        if on_stats is not None:
            stats = {"statistics.interval.ms": int(stats_every_s * 1000), "stats_cb": on_stats}
        consumer = Consumer(
            {
                **stats,
                **self._common(),
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": int(s.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(s.heartbeat_interval_s * 1000),
                "max.poll.interval.ms": 300_000,
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": 100,
                "enable.partition.eof": False,
                "error_cb": _log_error,
            }
        )
        consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
        return consumer

    def producer(self, transactional: bool) -> Producer:
        """The session's producer: transactional (the worker's id), or idempotent only
        (at-least-once)."""
        s = self.settings
        conf: dict[str, Any] = {
            **self._common(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": max(1_048_576, s.max_document_bytes + 65_536),
            "queue.buffering.max.messages": 1_000_000,
            # the broker answers CONCURRENT_TRANSACTIONS while it writes the previous commit's
            # markers: retry after 10 ms, not librdkafka's 100 (bench/kafka_txn.py: 11 vs 108 ms
            # per send_offsets_to_transaction right after a commit)
            "retry.backoff.ms": 10,
            "error_cb": _log_error,
        }
        if transactional:
            conf["transactional.id"] = transactional_id(s)
            # records wait for the commit anyway (read_committed readers see them only then,
            # and a commit flushes at once): batch them for up to a commit interval, as Kafka
            # Streams does, instead of a produce request every 2 ms
            conf["linger.ms"] = max(2.0, s.commit_interval_ms)
            conf["transaction.timeout.ms"] = int(s.transaction_timeout_s * 1000)
        return Producer(conf)

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

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Start a blocking librdkafka call in the clients' threads (a cancelled wait for it
        does not stop it: the returned future tells when it has ended)."""
        return self._pool.submit(fn, *args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking librdkafka call in the clients' threads."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def apart(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking librdkafka call that may never return in a daemon thread of its own
        (the module's docstring says why); the caller bounds the wait."""
        future: Future[T] = Future()

        def run() -> None:  # as ThreadPoolExecutor runs a call, in a thread of its own
            if not future.set_running_or_notify_cancel():
                return  # its wait ended before it began
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        name = getattr(fn, "__name__", "call")
        threading.Thread(target=run, name=f"kafka-{name}", daemon=True).start()
        return await asyncio.wrap_future(future)

    async def stop(self, stop: Callable[[], Any], what: str, timeout_s: float = 10.0) -> None:
        """Run a client's blocking close (apart) for at most ``timeout_s``; its errors are only
        logged."""
        try:
            await asyncio.wait_for(self.apart(stop), timeout_s)
        except Exception as exc:
            log.warning("stopping the %s: %r", what, exc)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _log_error(err: Any) -> None:
    """librdkafka's client-level errors: most are transient (it reconnects by itself)."""
    log.warning("kafka client: %s", err)
