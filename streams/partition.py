"""One assigned input partition (see ``streams.engine``).

A ``Partition`` is what a handler writes through (a ``Sink``): its outputs and table changes go
into the session's open transaction (``streams.transaction``), which a commit ends together with
the input offsets of the records every partition finished so far. ``abandon`` ends a partition
without an await when its session fails. ``Handler`` is what a flow gives the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.records import SourceRecord
from streams.tables import ChangelogTable, TablePartition
from streams.transaction import Clock, Transaction
from workers.errors import OutputTooLarge

__all__ = ["Clock", "Handler", "Partition", "PartitionClosed", "Sink"]


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
    """One assigned input partition: its tables, work queue and finisher, writing through the
    session's ``txn``; handlers see it as a ``Sink``. ``local`` is the handler's scratch space
    (caches), dropped with it."""

    def __init__(
        self,
        tp: TopicPartition,
        txn: Transaction,
        *,
        tables: Mapping[str, TablePartition],
        max_output_bytes: int = 1_000_000,
    ) -> None:
        self.tp = tp
        self.txn = txn
        self.max_output_bytes = max_output_bytes
        self.tables = tables
        self.local: dict[str, Any] = {}
        self.queue: asyncio.Queue[tuple[SourceRecord, Awaitable[Any]]] = asyncio.Queue()
        self.finished_offset: int | None = None  # next offset to commit
        self.committed_offset: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.finishing: asyncio.Task[None] | None = None
        self.finishing_offset = 0
        self.closed = False  # abandoned with its session: it must never commit or apply again
        self.outstanding = 0  # records fetched for it and not finished yet
        self.waiting = False  # its finisher waits: for a record, or for its prepared outcome

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
        """Put one output record into the open transaction. A record over
        ``max_output_bytes`` raises ``OutputTooLarge`` here (the handler dead-letters the
        event): the broker would refuse it, and the transaction must not commit without it."""
        size = (
            len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers.items())
        )
        if size > self.max_output_bytes:
            raise OutputTooLarge(
                f"{size} bytes for {topic} > max_output_bytes {self.max_output_bytes}"
            )
        self._check_open()
        self.txn.produce(
            topic,
            key,
            value,
            headers,
            partition=partition,
            timestamp_ms=None if timestamp is None else int(timestamp * 1000),
        )

    async def put(self, table: str, key: bytes, value: bytes | None, ts: float) -> None:
        """Change a table row: staged locally, sent to the changelog in the transaction."""
        self._check_open()
        part = self.tables[table]
        part.stage(key, value, ts)
        self.txn.produce(
            part.changelog, key, value, partition=self.partition, timestamp_ms=int(ts * 1000)
        )

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.tables[table].get(key)

    def expired(self, table: str, before: float) -> list[bytes]:
        """Keys of ``table`` whose row is older than ``before`` (for sweeps)."""
        return self.tables[table].expired(before)

    def size(self, table: str) -> int:
        return len(self.tables[table])

    @property
    def offset_moved(self) -> bool:
        return self.finished_offset is not None and self.finished_offset != self.committed_offset

    @property
    def staged(self) -> bool:
        return any(part.staged for part in self.tables.values())

    def committed(self, checkpoint: Callable[[str], int], offset: int | None) -> None:
        """The transaction holding this partition's finished records committed: its offset
        moves and its staged table changes are written through (``checkpoint``: the next
        changelog offset of a changelog topic, for this partition)."""
        if self.closed:  # the next owner replays these changes from the changelog
            return
        for part in self.tables.values():
            if part.staged:
                part.apply_committed(checkpoint(part.changelog))
        if offset is not None:  # the offset the commit sent, whatever finished since
            self.committed_offset = offset

    def _check_open(self) -> None:
        if self.closed:
            raise PartitionClosed(f"{self.tp.topic}[{self.tp.partition}] was closed")

    def abandon(self, *, clean: bool = False) -> None:
        """End this partition now, without an await (so nothing can interrupt it half-way):
        its finisher and a record half-way through its sends are cancelled, its uncommitted
        work is dropped (the open transaction aborts with its session, or is committed without
        this partition's offset, which replays it) and its tables close: ``clean`` (its last
        commit succeeded, nothing after it) lets the next open resume from their checkpoints,
        else they are rebuilt from the changelogs."""
        clean = clean and not self.offset_moved and not self.staged and self.finishing is None
        self.closed = True
        for task in (self.task, self.finishing):
            if task is not None and not task.done():
                task.cancel()
        self.finishing = None
        for table in self.tables.values():
            table.discard_staged()
            table.close(clean=clean)


class Handler(Protocol):
    """A flow on one or more input topics. ``prepare`` starts a record's work at once and returns
    an awaitable of its outcome (never raising for bad input); ``finish`` writes the outcome
    through the partition, in offset order (or, per key, where the handler is
    ``streams.finishing.Overtaking``); ``fail`` turns an unexpected error into a dead
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
    """A partition's session ended while one of its records was still being finished."""
