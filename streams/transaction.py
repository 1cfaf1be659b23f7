"""The session's one producer and its open transaction, shared by every input partition the
worker holds (see ``streams.engine``).

Kafka Streams' ``exactly_once_v2`` (KIP-447): all of a worker's outputs, changelog records and
input offsets go into one transaction, and the offsets are sent with the consumer group's
metadata, so the broker refuses them from a worker that has lost its partitions to a newer
generation. One transaction per commit, not one per input partition per commit: the broker's
cost of a transaction is mostly fixed (bench/kafka_txn.py), and so is the client's.

While a commit is under way nothing may be produced (librdkafka would put it in the committing
transaction, or refuse it): finishers enter through ``gate``, which a commit closes once the
records being finished are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

if TYPE_CHECKING:
    from streams.clients import KafkaClients

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# send_offsets_to_transaction takes ~11 ms here (bench/kafka_txn.py) and seconds at most on a
# loaded broker, but librdkafka may never return from it: when the group coordinator it cached
# was purged from its metadata (a broker restarting answers metadata without itself for a
# moment), its coordinator request waits for a broker thread that is gone, and the call's own
# timeout is not checked (librdkafka #5511, #5456; seen after 3 of 7 broker restarts in
# tests/reliability/test_broker_restart.py). The commit's deadline would end the session only
# after commit_timeout_s (30 s); this bound ends it sooner, and the next session's producer
# finds the coordinator anew.
SEND_OFFSETS_TIMEOUT_S = 5.0


class Committable(Protocol):
    """What a commit needs of an input partition (``streams.partition.Partition``)."""

    tp: TopicPartition
    closed: bool
    finished_offset: int | None

    @property
    def partition(self) -> int: ...

    @property
    def offset_moved(self) -> bool: ...

    @property
    def staged(self) -> bool: ...

    def committed(self, checkpoint: Callable[[str], int], offset: int | None) -> None: ...


class TransactionError(KafkaError):  # type: ignore[misc]
    """A send refused, or a commit that failed or timed out: the session resets, its open
    transaction aborts and its records are processed again from the last commit."""


class Gate:
    """Finishers enter; a commit closes it and waits for those inside to leave."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self.inside = 0

    @contextlib.asynccontextmanager
    async def entry(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self.inside += 1
        self._drained.clear()
        try:
            yield
        finally:
            self.inside -= 1
            if self.inside == 0:
                self._drained.set()

    async def close(self) -> None:
        self._open.clear()
        await self._drained.wait()

    def reopen(self) -> None:
        self._open.set()


class Transaction:
    """The session's producer: ``produce`` puts a record into the open transaction (begun on
    demand), ``commit`` ends it with the finished input offsets of ``parts``. Without
    ``transactional`` (at-least-once) the same calls produce idempotently and commit the
    offsets through the consumer once every record is acknowledged."""

    def __init__(
        self,
        producer: Producer,
        clients: KafkaClients,
        *,
        transactional: bool,
        commit_timeout_s: float = 30.0,
        clock: Clock = time.monotonic,
        on_commit: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.producer = producer
        self.on_commit = on_commit  # told how long each commit kept the gate closed
        self.clients = clients
        self.transactional = transactional
        self.commit_timeout_s = commit_timeout_s
        self.clock = clock
        self.gate = Gate()
        self.in_txn = False
        self.last_commit = clock()
        self.commits = 0
        self._errors: list[str] = []
        self._ends: dict[tuple[str, int], int] = {}  # next changelog offset, per partition
        self._lock = asyncio.Lock()
        self.closed = False
        # the consumer group's metadata (generation, member id) the offsets are sent with: set
        # by the engine at each assignment, in the consumer's own thread (a consumer call made
        # from the event loop while that thread polls could block the loop)
        self.group_metadata: Any = None

    async def start(self) -> None:
        """InitProducerId: fences this worker's previous incarnation and aborts (or waits out)
        its open transaction."""
        if self.transactional:
            await self._call(self.producer.init_transactions, 60.0, timeout_s=65.0)

    # --- producing ---------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes] | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        if self.closed:
            raise TransactionError("the session's producer is closed")
        if self.transactional and not self.in_txn:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise TransactionError(f"begin_transaction: {exc}") from exc
            self.in_txn = True
        kwargs: dict[str, Any] = {"key": key, "on_delivery": self._delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers.items())
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        try:
            self.producer.produce(topic, value, **kwargs)
        except (KafkaException, BufferError) as exc:
            refused = self._refused()  # a transaction in error: the refused records say why
            why = f" after {refused}" if refused else ""
            raise TransactionError(f"produce to {topic}: {exc}{why}") from exc

    def _delivered(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report (served inside flush/commit, maybe in a client
        thread): a refused record fails the commit; changelog ends are kept for checkpoints."""
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            return
        key = (msg.topic(), msg.partition())
        end = msg.offset() + 1
        if end > self._ends.get(key, 0):
            self._ends[key] = end

    @property
    def pending(self) -> bool:
        """Records produced and not committed yet. Under exactly-once every record is produced
        in a transaction, so that is ``in_txn``: librdkafka's queue length also counts its own
        requests waiting for a broker (while one is away), which are nothing to commit, and a
        commit_transaction outside a transaction fails ("Operation not valid in state
        Ready") and resets the session."""
        if self.transactional:
            return self.in_txn
        return bool(len(self.producer))

    # --- committing --------------------------------------------------------------------------
    async def commit(self, parts: Iterable[Committable], consumer: Consumer) -> bool:
        """Commit what ``parts`` finished, with their input offsets, in one transaction; then
        write their table changes through. False when there was nothing to commit. A commit
        not done in ``commit_timeout_s`` raises ``TransactionError``."""
        async with self._lock:
            if not self.transactional and len(self.producer):
                # at-least-once: wait for the acknowledgements while the finishers go on; the
                # flush with them held then waits only for what came meanwhile
                await self._call(self.producer.flush, self.commit_timeout_s)
            began = time.monotonic()
            await self.gate.close()
            try:
                done = await asyncio.wait_for(
                    self._commit(list(parts), consumer), self.commit_timeout_s
                )
                if done:
                    self.on_commit(time.monotonic() - began)
                return done
            except TimeoutError as exc:
                raise TransactionError(f"commit not done in {self.commit_timeout_s:g}s") from exc
            finally:
                self.gate.reopen()

    async def _commit(self, parts: list[Committable], consumer: Consumer) -> bool:
        try:
            return await self._commit_parts(parts, consumer)
        except TransactionError as exc:
            # a commit that failed because records were refused says which and why (an ACL
            # missing on one output topic, say), not only librdkafka's "see delivery reports"
            refused = self._refused()
            if refused:
                raise TransactionError(refused) from exc
            raise

    async def _commit_parts(self, parts: list[Committable], consumer: Consumer) -> bool:
        parts = [p for p in parts if not p.closed]
        offsets = {
            p.tp: p.finished_offset
            for p in parts
            if p.offset_moved and p.finished_offset is not None
        }
        if not offsets and not self.pending and not any(p.staged for p in parts):
            return False  # (staged: at-least-once table changes already flushed, to apply)
        if self.closed:
            raise TransactionError("the session's producer is closed")
        tps = [KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        if self.transactional:
            if tps:
                if not self.in_txn:
                    self.producer.begin_transaction()
                    self.in_txn = True
                if self.group_metadata is None:
                    raise TransactionError("offsets to commit before any assignment")
                bound = min(self.commit_timeout_s, SEND_OFFSETS_TIMEOUT_S)
                await self._call(
                    self.producer.send_offsets_to_transaction,
                    tps,
                    self.group_metadata,
                    bound,
                    timeout_s=bound,
                )
            if self.in_txn:  # (not: no record produced and no offset moved since the last)
                await self._call(self.producer.commit_transaction, self.commit_timeout_s)
                self.in_txn = False
        else:
            left = await self._call(self.producer.flush, self.commit_timeout_s)
            if left:
                raise TransactionError(f"{left} records not acknowledged in time")
        refused = self._refused()
        if refused:
            raise TransactionError(refused)
        if not self.transactional and tps:
            # at-least-once: every output of these offsets is acknowledged; an offset commit
            # that is lost only means those records are processed again
            try:
                consumer.commit(offsets=tps, asynchronous=True)
            except KafkaException as exc:
                raise TransactionError(f"commit: {exc}") from exc
        # committed: table changes are written through, with the changelog offset after the
        # transaction's commit marker as their checkpoint
        marker = 1 if self.transactional else 0
        for part in parts:
            part.committed(
                functools.partial(self._checkpoint, partition=part.partition, marker=marker),
                offsets.get(part.tp),
            )
        self.last_commit = self.clock()
        self.commits += 1
        return True

    def _refused(self) -> str:
        """The records librdkafka refused so far ("" if none), once each: delivery reports not
        served yet are served first."""
        self.producer.poll(0)
        if not self._errors:
            return ""
        errors, self._errors = self._errors, []
        return f"records refused: {'; '.join(errors[:3])}"

    def _checkpoint(self, changelog: str, *, partition: int, marker: int) -> int:
        return self._ends.get((changelog, partition), 0) + marker

    async def _call(
        self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any
    ) -> Any:
        """A blocking librdkafka call in a thread of its own (``KafkaClients.apart``: it may
        never return), bounded; its failure is a ``TransactionError``."""
        name = getattr(fn, "__name__", "call")
        try:
            if timeout_s is None:  # bounded by the commit's own deadline
                return await self.clients.apart(fn, *args, **kwargs)
            return await asyncio.wait_for(self.clients.apart(fn, *args, **kwargs), timeout_s)
        except TimeoutError as exc:
            within = "time" if timeout_s is None else f"{timeout_s:g}s"
            raise TransactionError(f"{name} not done in {within}") from exc
        except KafkaException as exc:
            raise TransactionError(f"{name}: {exc}") from exc

    # --- ending ------------------------------------------------------------------------------
    def close(self) -> None:
        """The session ended: nothing more is produced; an open transaction is aborted in the
        background (or by the next session's fencing, or by the broker's timeout)."""
        if self.closed:
            return
        self.closed = True
        producer, in_txn = self.producer, self.in_txn
        self.in_txn = False

        def end() -> None:
            try:
                if in_txn:
                    producer.abort_transaction(5.0)
                else:
                    producer.flush(5.0)
            except Exception as exc:  # a fenced or failed producer: the broker aborts it
                log.info("ending the session's producer: %s", exc)

        # apart from every pool: an abort that conflicts with a call that hung (see _call)
        # may hang too, and must hold neither a thread the next session needs nor the exit
        threading.Thread(target=end, name="kafka-end-transaction", daemon=True).start()
