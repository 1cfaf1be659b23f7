"""One assigned input partition and its Kafka transaction (see ``streams.engine``).

A ``Partition`` is what a handler writes through (a ``Sink``): its outputs and table changes go
into the partition's transaction, which ``commit`` ends together with the input offset of the
records finished so far. ``abandon`` ends it without an await when its session fails. ``Handler``
is what a flow gives the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.records import SourceRecord
from streams.tables import ChangelogTable, TablePartition
from workers.errors import OutputTooLarge

Clock = Callable[[], float]


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
    see it as a ``Sink``. ``local`` is the handler's scratch space (caches), dropped with it.
    ``clock`` (monotonic seconds) times its commits: ``last_commit`` is read from it."""

    def __init__(
        self,
        tp: TopicPartition,
        producer: AIOKafkaProducer,
        *,
        transactional: bool,
        tables: Mapping[str, TablePartition],
        max_output_bytes: int = 1_000_000,
        commit_timeout_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.tp = tp
        self.clock = clock
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
        self.last_commit = self.clock()
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
        self.last_commit = self.clock()

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


class PartitionClosed(KafkaError):  # type: ignore[misc]
    """A partition's session ended while one of its commits was still under way."""
