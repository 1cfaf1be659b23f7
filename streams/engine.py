"""Consume -> process -> produce with Kafka transactions: exactly-once per input partition.

Faust's agents run at-least-once here. Its ``exactly_once`` guarantee picks each send's
transaction by the *destination* partition (``{app}-{group}-{partition}``), which only works for
outputs co-subscribed in one topic group, and faust-streaming has open duplicate-on-rebalance bugs
(#323, #517). So the worker's Faust app hosts the web server, timers and this service, and the
processing loop is Kafka Streams' model on aiokafka:

* one consumer in group ``app_id`` (read_committed, no auto-commit) over the handlers' topics;
* per assigned input partition a ``Partition``: a transactional producer whose id is
  ``{app_id}-{topic}-{partition}`` (a new owner's producer fences the old one and aborts its open
  transaction), the partition's table partitions, a FIFO of work and a finisher task;
* a fetched record is *prepared* at once (decode, policy, dedupe, submit to the micro-batcher:
  batches form across all partitions), then *finished* strictly in offset order per partition:
  its outputs, its table changes (changelog records) and its input offset go into the partition's
  transaction, which commits every ``commit_interval_ms`` or when the partition goes idle;
* backpressure: at ``max_pending`` unfinished records the consumer pauses fetching;
* a partition revoked by a rebalance commits its finished work and closes; any Kafka error tears
  the whole session down and rebuilds it from committed state (new consumer, restored tables).

``processing_guarantee="at_least_once"`` keeps the same flow with one idempotent producer and
plain offset commits after the outputs are acknowledged.

This module holds the session (``Engine``: consumer, assignment, restore, reset); the partition
and its transaction are in ``streams.partition``, the finisher and its commit timing in
``streams.finishing``, fetching in ``streams.fetching``, the Kafka clients in ``streams.clients``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streams.clients import ClientKwargs, KafkaClients
from streams.fetching import Fetcher, fetch_fair
from streams.finishing import CommitTiming, Finisher
from streams.partition import Clock, Handler, Partition, PartitionClosed, Sink
from streams.settings import Settings
from streams.tables import TablePartition
from workers.retry import Backoff

__all__ = [
    "Engine",
    "EngineReset",
    "Handler",
    "Partition",
    "PartitionClosed",
    "Sink",
    "fetch_fair",
]

log = logging.getLogger(__name__)


class EngineReset(RuntimeError):
    """The session hit a Kafka error and is rebuilt from committed state."""


class Engine:
    """Runs processing sessions until cancelled. ``clients`` makes the Kafka clients;
    ``backoff`` spaces session restarts (``sleep`` waits them out); ``clock`` (monotonic) times
    commits, sweeps and sessions, ``wall_clock`` is the ``now`` sweeps see."""

    def __init__(
        self,
        settings: Settings,
        handlers: Sequence[Handler],
        *,
        client_kwargs: ClientKwargs | None = None,
        sweep_interval_s: float = 30.0,
        on_reset: Callable[[], None] = lambda: None,
        clients: KafkaClients | None = None,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.on_reset = on_reset
        self.settings = settings
        self.handlers = {t: h for h in handlers for t in h.topics}
        self.clients = clients or KafkaClients(settings, client_kwargs)
        # capped low: a broker that is back should see the worker within seconds
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=5.0)
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.timing = CommitTiming.of(settings, sweep_interval_s)
        self.group_id = settings.app_id
        self.transactional = settings.processing_guarantee == "exactly_once"
        self.parts: dict[TopicPartition, Partition] = {}
        self.ready = asyncio.Event()  # set while partitions are assigned and restored
        self.fetcher = Fetcher(settings.max_pending, lambda: self.parts, self.handlers, self.ready)
        self._failed: asyncio.Future[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._shared: AIOKafkaProducer | None = None

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now (backpressure
        at ``max_pending``); an ended partition's records stop counting with it."""
        return self.fetcher.pending

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Process until cancelled; a Kafka error resets the session after a back-off (the
        attempts count again from the first after a session that lasted over a minute)."""
        attempt = 0
        while True:
            started = self.clock()
            try:
                await self._session()
            except asyncio.CancelledError:
                if _stopping():
                    raise  # the worker stops
                self._reset("a stray cancellation in the session's cleanup")
            except Exception as exc:  # Kafka errors, EngineReset, anything: rebuild the session
                if _stopping():  # its cancellation was swallowed (3.11's wait_for can)
                    raise asyncio.CancelledError from exc
                self._reset(f"{type(exc).__name__}: {exc}")
            if self.clock() - started > 60:
                attempt = 0
            await self.sleep(self.backoff.delay(attempt))
            attempt += 1  # Backoff.delay is bounded for any attempt

    def _reset(self, why: str) -> None:
        self.on_reset()
        log.error("processing session reset after %s", why)

    def _fail(self, exc: BaseException) -> None:
        """End the session: its fetch loop raises ``exc``."""
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    async def _session(self) -> None:
        self._failed = asyncio.get_running_loop().create_future()
        consumer = self.clients.consumer(self.group_id)
        self._consumer = consumer
        stopping = False
        try:
            if not self.transactional:
                self._shared = self.clients.producer(None)
                await self._shared.start()
            consumer.subscribe(list(self.handlers), listener=_Listener(self))
            await consumer.start()
            await self.fetcher.run(consumer, self._failed)
        except asyncio.CancelledError:  # the worker stops: commit what is finished, then leave
            stopping = True
            raise
        finally:
            self.ready.clear()
            if stopping:
                try:
                    await asyncio.wait_for(self._close_all(), 15.0)
                except (TimeoutError, KafkaError) as exc:
                    log.warning("closing partitions: %s (their open transactions abort)", exc)
            # a session that failed commits nothing more: each partition ends at once (no
            # await, nothing left half-closed) and its producer stops in the background
            self._abandon_all()
            await self.clients.stop(consumer.stop(), "consumer")
            if self._shared is not None:
                self.clients.retire(self._shared)
                self._shared = None
            self._consumer = None
            if stopping:
                await self.drain_retiring(10.0)

    # --- partitions --------------------------------------------------------------------------
    async def assign(self, assigned: set[TopicPartition]) -> None:
        for tp in sorted(assigned - set(self.parts)):
            await self._open(tp)
        self.ready.set()
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)))

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        self.ready.clear()
        for tp in sorted(revoked):
            part = self.parts.pop(tp, None)
            if part is not None:
                await self._close(part)

    async def _open(self, tp: TopicPartition) -> None:
        handler = self.handlers[tp.topic]
        tables: dict[str, TablePartition] = {}
        producer: AIOKafkaProducer | None = None
        try:
            if self.transactional:
                producer = self.clients.producer(f"{self.group_id}-{tp.topic}-{tp.partition}")
                # InitProducerId fences the previous owner and aborts its open transaction (or
                # waits until one it was committing has ended); bounded: a partition that cannot
                # be fenced resets the session (and is tried again)
                await asyncio.wait_for(producer.start(), 60.0)
                await self._seek_committed(tp)
            else:
                assert self._shared is not None
                producer = self._shared
            if handler.tables:
                await self._restore(tp, handler, tables)
        except BaseException:
            for table in tables.values():
                table.close()
            if producer is not None and producer is not self._shared:
                self.clients.retire(producer)
            raise
        part = Partition(
            tp,
            producer,
            transactional=self.transactional,
            tables=tables,
            max_output_bytes=self.settings.max_output_bytes,
            commit_timeout_s=self.settings.commit_timeout_s,
            clock=self.clock,
        )
        part.task = asyncio.get_running_loop().create_task(self._finisher(part, handler))
        self.parts[tp] = part

    async def _seek_committed(self, tp: TopicPartition) -> None:
        """Start at the committed offset as read *after* fencing: the previous owner's last
        transaction has ended by then, so its offset commit shows. The consumer's own fetch at
        assignment may predate that and be stale, and aiokafka's OffsetFetch cannot ask the
        broker to wait for pending transactional offsets (KIP-447's require_stable)."""
        consumer = self._require_consumer()
        committed = await asyncio.wait_for(consumer.committed(tp), 30.0)
        if committed is not None:
            consumer.seek(tp, committed)

    async def _restore(
        self, tp: TopicPartition, handler: Handler, tables: dict[str, TablePartition]
    ) -> None:
        restorer = self.clients.restorer()
        try:
            await asyncio.wait_for(restorer.start(), 60.0)
            for table in handler.tables:
                tables[table.name] = await table.open(tp.partition, restorer)
        finally:
            await self.clients.stop(restorer.stop(), "restore consumer")

    async def _close(self, part: Partition) -> None:
        """Stop the finisher at a record boundary and commit what it finished (a revoke, the
        worker stopping)."""
        committed = False
        try:
            if part.task is not None:
                part.task.cancel()
                await asyncio.wait([part.task])  # its end, not its error; our own cancel propagates
            if part.finishing is not None:  # a record half-way through its sends: let it end
                finishing, part.finishing = part.finishing, None
                try:
                    await finishing
                except Exception:  # its sends failed: the commit below fails too and drops them
                    log.warning(
                        "record at %s[%d] failed while closing", part.tp.topic, part.partition
                    )
                else:
                    part.finished_offset = part.finishing_offset
            await part.commit(self.group_id, self._require_consumer())
            committed = True
        except KafkaError as exc:
            log.warning("commit of %s[%d] at close failed: %s", part.tp.topic, part.partition, exc)
        finally:  # whatever happened above (a cancellation included), the partition ends here
            self._end(part, clean=committed)

    def _end(self, part: Partition, *, clean: bool = False) -> None:
        in_txn = part.in_txn
        part.abandon(clean=clean)
        self.fetcher.room.set()
        if part.transactional:
            self.clients.retire(part.producer, abort=in_txn)

    def _abandon_all(self) -> None:
        parts, self.parts = list(self.parts.values()), {}
        for part in parts:
            self._end(part)

    async def _close_all(self) -> None:
        for part in list(self.parts.values()):
            self.parts.pop(part.tp, None)
            await self._close(part)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the last stable offset, per assigned partition."""
        consumer = self._consumer
        out: dict[tuple[str, int], int] = {}
        if consumer is None:
            return out
        for tp in list(consumer.assignment()):
            end = consumer.last_stable_offset(tp)
            if end is not None:
                out[(tp.topic, tp.partition)] = max(0, end - await consumer.position(tp))
        return out

    def connected(self) -> bool:
        return self._consumer is not None and bool(
            self._consumer.assignment() or self.ready.is_set()
        )

    def _require_consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    async def drain_retiring(self, timeout_s: float) -> None:
        """Wait (bounded) for retired producers to stop, e.g. before the worker exits."""
        await self.clients.drain_retiring(timeout_s)

    # --- finishing ---------------------------------------------------------------------------
    async def _finisher(self, part: Partition, handler: Handler) -> None:
        finisher = Finisher(
            part,
            handler,
            self._require_consumer(),
            group_id=self.group_id,
            timing=self.timing,
            on_finished=self.fetcher.room.set,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        try:
            await finisher.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("finisher of %s[%d] failed", part.tp.topic, part.partition)
            self._fail(EngineReset(f"{type(exc).__name__}: {exc}"))


def _stopping() -> bool:
    """Whether this task was asked to stop (cancelled), whatever a cleanup step made of it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.engine.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.engine.assign(set(assigned))
        except Exception as exc:  # surfaces in the fetch loop: the session resets
            log.exception("assignment failed")
            self.engine._fail(EngineReset(f"assignment failed: {exc}"))
