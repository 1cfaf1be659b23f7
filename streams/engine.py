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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.records import SourceRecord
from streams.security import kafka_client_kwargs
from streams.settings import Settings
from streams.tables import ChangelogTable, TablePartition
from workers.errors import OutputTooLarge

log = logging.getLogger(__name__)
ClientKwargs = Callable[[], Mapping[str, Any]]


class Sink(Protocol):
    """What a handler sees of the input partition it works for: its transaction and tables."""

    @property
    def partition(self) -> int: ...

    @property
    def local(self) -> dict[str, Any]: ...

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        *,
        partition: int | None = None,
        timestamp: float | None = None,
    ) -> None: ...

    async def put(self, table: str, key: bytes, value: bytes | None, ts: float) -> None: ...

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def expired(self, table: str, before: float) -> list[bytes]: ...

    def size(self, table: str) -> int: ...


class Partition:
    """One assigned input partition: its transaction, tables, work queue and finisher; handlers
    see it as a ``Sink``. ``local`` is the handler's scratch space (caches), dropped with it."""

    def __init__(
        self,
        tp: TopicPartition,
        producer: AIOKafkaProducer,
        *,
        transactional: bool,
        tables: Mapping[str, TablePartition],
        max_output_bytes: int = 1_000_000,
        commit_timeout_s: float = 30.0,
    ) -> None:
        self.tp = tp
        self.commit_timeout_s = commit_timeout_s
        self.max_output_bytes = max_output_bytes
        self.producer = producer
        self.transactional = transactional
        self.tables = tables
        self.local: dict[str, Any] = {}
        self.queue: asyncio.Queue[tuple[SourceRecord, Awaitable[Any]]] = asyncio.Queue()
        self.finished_offset: int | None = None  # next offset to commit
        self.committed_offset: int | None = None
        self.in_txn = False
        self.last_commit = time.monotonic()
        self.sent: list[asyncio.Future[Any]] = []
        self.changelog_sent: list[tuple[TablePartition, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None
        self.finishing: asyncio.Task[None] | None = None
        self.finishing_offset = 0
        self.closed = False  # abandoned with its session: it must never commit or apply again
        self.outstanding = 0  # records fetched for it and not finished yet
        self._commit_lock = asyncio.Lock()

    @property
    def partition(self) -> int:
        return int(self.tp.partition)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        *,
        partition: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Queue one output record in this partition's open transaction. A record over
        ``max_output_bytes`` raises ``OutputTooLarge`` here (the handler dead-letters the
        event): the broker would refuse it, and the transaction must not commit without it."""
        size = (
            len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers.items())
        )
        if size > self.max_output_bytes:
            raise OutputTooLarge(
                f"{size} bytes for {topic} > max_output_bytes {self.max_output_bytes}"
            )
        await self._begin()
        fut = await self.producer.send(
            topic,
            value,
            key=key,
            partition=partition,
            headers=list(headers.items()),
            timestamp_ms=None if timestamp is None else int(timestamp * 1000),
        )
        self.sent.append(fut)

    async def put(self, table: str, key: bytes, value: bytes | None, ts: float) -> None:
        """Change a table row: staged locally, sent to the changelog in the transaction."""
        part = self.tables[table]
        part.stage(key, value, ts)
        await self._begin()
        fut = await self.producer.send(
            part.changelog, value, key=key, partition=self.partition, timestamp_ms=int(ts * 1000)
        )
        self.changelog_sent.append((part, fut))

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.tables[table].get(key)

    def expired(self, table: str, before: float) -> list[bytes]:
        """Keys of ``table`` whose row is older than ``before`` (for sweeps)."""
        return self.tables[table].expired(before)

    def size(self, table: str) -> int:
        return len(self.tables[table])

    async def _begin(self) -> None:
        if self.transactional and not self.in_txn:
            await self.producer.begin_transaction()
            self.in_txn = True

    @property
    def _offset_moved(self) -> bool:
        return self.finished_offset is not None and self.finished_offset != self.committed_offset

    @property
    def uncommitted(self) -> bool:
        """Finished records, an open transaction or table changes (a sweep's tombstones alone,
        say) wait for a commit."""
        return self._offset_moved or self.in_txn or bool(self.changelog_sent)

    async def commit(self, group_id: str, consumer: AIOKafkaConsumer) -> None:
        """Commit the finished records: outputs, table changes and the input offset together.
        Serialised: a commit cancelled from outside (shielded) still ends before the next."""
        async with self._commit_lock:
            await self._commit(group_id, consumer)

    async def _commit(self, group_id: str, consumer: AIOKafkaConsumer) -> None:
        if not self.uncommitted:
            return
        try:
            await asyncio.wait_for(self._commit_now(group_id, consumer), self.commit_timeout_s)
        except TimeoutError as exc:  # the finisher fails with it: the session resets
            raise KafkaTimeoutError(
                f"commit of {self.tp.topic}[{self.tp.partition}] not done in "
                f"{self.commit_timeout_s:g}s"
            ) from exc

    async def _commit_now(self, group_id: str, consumer: AIOKafkaConsumer) -> None:
        offset = self.finished_offset if self._offset_moved else None
        # every record of the transaction acknowledged first: aiokafka would commit a
        # transaction even though one of its records was refused. asyncio.wait, not gather:
        # a timeout must not cancel aiokafka's own futures
        acks = [*self.sent, *(f for _, f in self.changelog_sent)]
        if acks:
            await asyncio.wait(acks)
            refused = [e for ack in acks if (e := ack.exception()) is not None]
            if refused:
                raise refused[0]
        # a shielded commit outlives its session's end: from there on it must neither commit
        # (the next owner fences this producer and re-reads the offset) nor touch the tables
        self._check_open()
        if self.transactional:  # a sweep's tombstones alone make a transaction without offsets
            await self._begin()
            if offset is not None:
                await self.producer.send_offsets_to_transaction({self.tp: offset}, group_id)
                self._check_open()
            await self.producer.commit_transaction()
            self.in_txn = False
        elif offset is not None:
            await consumer.commit({self.tp: offset})
        # committed; but a partition abandoned meanwhile leaves its tables alone (closed): the
        # next owner replays these changes from the changelog, past the unchanged checkpoint
        self._check_open()
        ends: dict[str, int] = {}
        for part, fut in self.changelog_sent:
            ends[part.table] = max(ends.get(part.table, 0), fut.result().offset + 1)
        for name, part in self.tables.items():
            if part.staged:
                part.apply_committed(ends.get(name, 0) + (1 if self.transactional else 0))
        self.sent.clear()
        self.changelog_sent.clear()
        self.committed_offset = self.finished_offset
        self.last_commit = time.monotonic()

    def drop_uncommitted(self) -> None:
        for part in self.tables.values():
            part.discard_staged()
        self.sent.clear()
        self.changelog_sent.clear()

    def _check_open(self) -> None:
        if self.closed:
            raise PartitionClosed(f"{self.tp.topic}[{self.tp.partition}] was closed")

    def abandon(self, *, clean: bool = False) -> None:
        """End this partition now, without an await (so nothing can interrupt it half-way):
        its finisher and a record half-way through its sends are cancelled, its uncommitted
        work is dropped (its open transaction aborts when the next owner's producer fences
        this one) and its tables close: ``clean`` (its last commit succeeded, nothing after
        it) lets the next open resume from their checkpoints, else they are rebuilt from the
        changelogs. A commit still in flight raises ``PartitionClosed`` at its next step."""
        clean = clean and not self.uncommitted and self.finishing is None
        self.closed = True
        for task in (self.task, self.finishing):
            if task is not None and not task.done():
                task.cancel()
        self.finishing = None
        self.drop_uncommitted()
        for table in self.tables.values():
            table.close(clean=clean)


class Handler(Protocol):
    """A flow on one or more input topics. ``prepare`` starts a record's work at once and returns
    an awaitable of its outcome (never raising for bad input); ``finish`` writes the outcome
    through the partition, in offset order; ``fail`` turns an unexpected error into a dead
    letter. ``tables`` names the changelog tables the flow reads and writes."""

    @property
    def topics(self) -> Sequence[str]: ...

    @property
    def tables(self) -> Sequence[ChangelogTable]: ...

    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Any]: ...

    async def finish(self, rec: SourceRecord, outcome: Any, part: Sink) -> None: ...

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None: ...

    async def sweep(self, part: Sink, now: float) -> None: ...


class EngineReset(RuntimeError):
    """The session hit a Kafka error and is rebuilt from committed state."""


class PartitionClosed(KafkaError):  # type: ignore[misc]
    """A partition's session ended while one of its commits was still under way."""


class Engine:
    def __init__(
        self,
        settings: Settings,
        handlers: Sequence[Handler],
        *,
        client_kwargs: ClientKwargs | None = None,
        sweep_interval_s: float = 30.0,
        on_reset: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_reset = on_reset
        self.settings = settings
        self.handlers = {t: h for h in handlers for t in h.topics}
        self.client_kwargs = client_kwargs or (lambda: kafka_client_kwargs(settings))
        self.sweep_interval_s = sweep_interval_s
        self.group_id = settings.app_id
        self.transactional = settings.processing_guarantee == "exactly_once"
        self.parts: dict[TopicPartition, Partition] = {}
        self.ready = asyncio.Event()  # set while partitions are assigned and restored
        self._room = asyncio.Event()
        self._failed: asyncio.Future[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._shared: AIOKafkaProducer | None = None
        self._turn = 0  # rotates which partition fetch_fair serves first
        self._retiring: set[asyncio.Task[None]] = set()  # producers of ended partitions
        self.max_backoff_s = 5.0

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now (backpressure
        at ``max_pending``); an ended partition's records stop counting with it."""
        return sum(part.outstanding for part in self.parts.values())

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Process until cancelled; a Kafka error resets the session after a short back-off."""
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the worker stops
                self._reset("a stray cancellation in the session's cleanup")
            except Exception as exc:  # Kafka errors, EngineReset, anything: rebuild the session
                self._reset(f"{type(exc).__name__}: {exc}")
            if time.monotonic() - started > 60:
                delay = 1.0
            await asyncio.sleep(delay)
            # capped low: a broker that is back should see the worker within seconds
            delay = min(delay * 2, self.max_backoff_s)

    def _reset(self, why: str) -> None:
        self.on_reset()
        log.error("processing session reset after %s", why)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_s * 1000),
            max_poll_interval_ms=300_000,
            **self.client_kwargs(),
        )
        self._consumer = consumer
        stopping = False
        try:
            if not self.transactional:
                self._shared = self._producer(None)
                await self._shared.start()
            consumer.subscribe(list(self.handlers), listener=_Listener(self))
            await consumer.start()
            await self._fetch_loop(consumer)
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
            await self._stop_client(consumer.stop(), "consumer")
            if self._shared is not None:
                self._retire(self._shared)
                self._shared = None
            self._consumer = None
            if stopping:
                await self.drain_retiring(10.0)

    async def _stop_client(self, stop: Awaitable[None], what: str) -> None:
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

    async def _fetch_loop(self, consumer: AIOKafkaConsumer) -> None:
        assert self._failed is not None
        while not self._failed.done():
            room = self.settings.max_pending - self.pending
            if room <= 0:
                await self._wait_for_room(consumer)
                continue
            if not self.ready.is_set():  # a rebalance is under way: tables may be restoring
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ready.wait(), 0.5)
                continue
            batch = await fetch_fair(consumer, room, self._turn)
            self._turn += 1
            for tp, records in batch.items():
                part = self.parts.get(tp)
                if part is None:  # not (or no longer) ours to process: fetch it again later
                    if records and tp in consumer.assignment():
                        consumer.seek(tp, records[0].offset)
                    continue
                handler = self.handlers[tp.topic]
                for msg in records:
                    rec = SourceRecord(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.key,
                        msg.value,
                        msg.timestamp / 1000.0,
                        tuple(msg.headers or ()),
                    )
                    part.queue.put_nowait((rec, handler.prepare(rec, part)))
                    part.outstanding += 1
        self._failed.result()  # raises the finisher's error

    async def _wait_for_room(self, consumer: AIOKafkaConsumer) -> None:
        assignment = list(consumer.assignment())
        consumer.pause(*assignment)
        self._room.clear()
        try:
            while self.pending >= self.settings.max_pending and not self._fail_done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
        finally:
            consumer.resume(*[tp for tp in assignment if tp in consumer.assignment()])

    def _fail_done(self) -> bool:
        return self._failed is not None and self._failed.done()

    def _producer(self, transactional_id: str | None) -> AIOKafkaProducer:
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
                producer = self._producer(f"{self.group_id}-{tp.topic}-{tp.partition}")
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
                self._retire(producer)
            raise
        part = Partition(
            tp,
            producer,
            transactional=self.transactional,
            tables=tables,
            max_output_bytes=self.settings.max_output_bytes,
            commit_timeout_s=self.settings.commit_timeout_s,
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
        restorer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            # a restore ends with fetches that return nothing but a transaction marker (the
            # position moves past it only then): don't let each wait the default 500 ms
            fetch_max_wait_ms=20,
            **self.client_kwargs(),
        )
        try:
            await asyncio.wait_for(restorer.start(), 60.0)
            for table in handler.tables:
                tables[table.name] = await table.open(tp.partition, restorer)
        finally:
            await self._stop_client(restorer.stop(), "restore consumer")

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
        self._room.set()
        if part.transactional:
            self._retire(part.producer, abort=in_txn)

    def _abandon_all(self) -> None:
        parts, self.parts = list(self.parts.values()), {}
        for part in parts:
            self._end(part)

    def _retire(self, producer: AIOKafkaProducer, *, abort: bool = False) -> None:
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
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def drain_retiring(self, timeout_s: float) -> None:
        """Wait (bounded) for retired producers to stop, e.g. before the worker exits."""
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=timeout_s)

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

    # --- finishing ---------------------------------------------------------------------------
    async def _finisher(self, part: Partition, handler: Handler) -> None:
        interval = self.settings.commit_interval_ms / 1000.0
        idle_gap = min(self.settings.commit_idle_gap_ms / 1000.0, interval)
        consumer = self._require_consumer()
        last_sweep = time.monotonic()
        try:
            while True:
                if part.queue.empty():
                    # idle: commit now, unless the last commit was under idle_gap ago; then
                    # wait for more work until the gap is over (it joins this transaction)
                    wait = interval * 5
                    if part.uncommitted:
                        wait = part.last_commit + idle_gap - time.monotonic()
                        if wait <= 0:
                            await asyncio.shield(part.commit(self.group_id, consumer))
                            continue
                    elif time.monotonic() - last_sweep >= self.sweep_interval_s:
                        last_sweep = time.monotonic()
                        await handler.sweep(part, time.time())
                        continue
                    try:
                        rec, prepared = await asyncio.wait_for(part.queue.get(), wait)
                    except TimeoutError:
                        continue
                else:
                    rec, prepared = part.queue.get_nowait()
                try:
                    outcome: Any = await prepared
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the handler's prepare failed unexpectedly
                    outcome = exc
                part.finishing_offset = rec.offset + 1
                part.finishing = asyncio.get_running_loop().create_task(
                    self._finish_one(handler, rec, outcome, part)
                )
                await asyncio.shield(part.finishing)
                part.finishing = None
                part.finished_offset = rec.offset + 1
                part.outstanding -= 1
                self._room.set()
                if time.monotonic() - part.last_commit >= interval:
                    await asyncio.shield(part.commit(self.group_id, consumer))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("finisher of %s[%d] failed", part.tp.topic, part.partition)
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(EngineReset(f"{type(exc).__name__}: {exc}"))

    @staticmethod
    async def _finish_one(
        handler: Handler, rec: SourceRecord, outcome: Any, part: Partition
    ) -> None:
        try:
            await handler.finish(rec, outcome, part)
        except KafkaError:
            raise
        except Exception as exc:  # a bug must not stop the partition: dead-letter the record
            log.exception("finishing %s[%d]@%d failed", rec.topic, rec.partition, rec.offset)
            await handler.fail(rec, exc, part)


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
            failed = self.engine._failed
            if failed is not None and not failed.done():
                failed.set_exception(EngineReset(f"assignment failed: {exc}"))
