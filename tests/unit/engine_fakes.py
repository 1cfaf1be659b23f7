"""Fakes for the processing engine (streams/engine.py and the modules it uses): a broker in
memory with transactions and one consumer group, confluent-kafka's ``Producer`` and ``Consumer``
as the engine uses them, the aiokafka restore consumer the tables read changelogs with, the
client factory that makes them (``FakeClients``: the real ``KafkaClients.call`` thread pool), a
frozen clock and a handler that echoes its input.

The broker keeps a log per partition that was produced to: a transactional producer's records
sit there as ``open`` until its transaction commits (then ``committed``, and a commit marker
takes the next offset, as in Kafka) or aborts. ``outputs`` lists what a read_committed reader of
the output topics sees, in commit order. A transactional id's ``init_transactions`` fences its
older producers (their commits are refused and counted in ``zombie_commits``) and aborts the
transaction they left open. Offsets sent into a transaction carry the consumer group metadata;
the broker refuses them from a generation that is not the group's current one.

Like librdkafka, the fake consumer joins the group and calls ``on_assign`` inside ``consume``
or ``poll`` (in the thread that runs it: the clients' pool), calls ``on_revoke`` there at the
next rebalance (``FakeBroker.rebalance``, ``FakeBroker.lose``) and in ``close``, the revoke and
the next assignment in separate polls (the group's join comes between); a partition's pause
outlives a rebalance, as librdkafka's does (an application pause is a flag of the partition,
not of its assignment); ``consume(n, timeout)`` waits for ``n`` messages or the timeout, as
librdkafka's does. Every fake is thread-safe (one lock on the broker).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streams.clients import KafkaClients, transactional_id
from streams.partition import Sink
from streams.records import SourceRecord
from streams.settings import Settings
from streams.tables import ChangelogTable


class FrozenClock:
    """Time stands still until a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (real time) for ``cond``; fail the test if it does not come."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout_s}s: {cond}")
        await asyncio.sleep(0.005)


def kafka_error(code: int, reason: str, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, reason, **flags))


# --- the broker ------------------------------------------------------------------------------


@dataclass
class Entry:
    """One offset of a produced-to partition: a record or a transaction marker."""

    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    state: str  # "open" (in a transaction), "committed", "aborted" or "marker"


@dataclass
class GroupMetadata:
    """What ``consumer_group_metadata()`` returns (opaque to the engine)."""

    group_id: str
    generation: int


@dataclass
class _OpenTxn:
    entries: list[tuple[tuple[str, int], int]] = field(default_factory=list)  # (partition, offset)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class FakeBroker:
    """Input log (``log``: values of committed records, read by the consumer), the group's
    committed offsets, the logs of the partitions produced to, transactional ids' epochs and
    open transactions, and the consumer group's generation."""

    def __init__(self, log: Mapping[TopicPartition, Iterable[bytes]] | None = None) -> None:
        self.log: dict[TopicPartition, list[bytes]] = {
            tp: list(values) for tp, values in (log or {}).items()
        }
        self.committed: dict[TopicPartition, int] = {}
        self.produced: dict[tuple[str, int], list[Entry]] = {}
        self.outputs: list[tuple[str, bytes | None]] = []  # committed records, in commit order
        self.aborted: list[tuple[str, bytes | None]] = []
        self.epochs: dict[str, int] = {}
        self.txns: dict[str, _OpenTxn] = {}
        self.zombie_commits = 0  # commits tried by a fenced producer (must stay 0)
        self.refuse_commits = 0  # the next this many commits fail (abortable)
        # the next this many send_offsets_to_transaction calls hang, their timeout ignored (as
        # librdkafka's do when the group coordinator it cached went away: #5456, #5511) until
        # ``unhang`` is set; then they fail
        self.hang_offsets = 0
        # librdkafka's own requests waiting for a broker that is away: its queue length
        # (``len(producer)``) counts them, in a transaction or not
        self.queued_requests = 0
        self.hung = 0  # calls hanging now
        self.unhang = threading.Event()
        self.generation = 0
        self.rebalancing = False
        self.assignment: list[TopicPartition] | None = None  # at the next join; None: all
        self.on_join: Callable[[], None] = lambda: None  # may raise: the broker is away
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)

    # what tests do
    def append(self, tp: TopicPartition, *values: bytes) -> None:
        """More input (a consumer waiting in ``consume`` gets it at once)."""
        with self.changed:
            self.log.setdefault(tp, []).extend(values)
            self.changed.notify_all()

    def rebalance(self, assignment: Iterable[TopicPartition] | None = None) -> None:
        """Another member joins: at its next ``consume`` the consumer revokes everything (eager)
        and rejoins with a new generation, assigned ``assignment`` (None: every partition)."""
        with self.changed:
            self.rebalancing = True
            self.assignment = None if assignment is None else sorted(assignment)
            self.changed.notify_all()

    def expel(self) -> None:
        """The group moves to a new generation without this worker's consumer knowing yet (its
        session timed out): offsets it sends with its old metadata are refused."""
        with self.lock:
            self.generation += 1

    def lose(self) -> None:
        """The consumer's session timed out (a broker away longer than the session timeout):
        the group has moved on (``expel``) and the consumer, told at its next poll, revokes its
        whole assignment as lost (confluent-kafka calls ``on_revoke`` when no ``on_lost`` is
        given) and joins again, as librdkafka does."""
        with self.changed:
            self.generation += 1
            self.rebalancing = True
            self.changed.notify_all()

    def values(self, topic: str = "out", *, aborted: bool = False) -> list[bytes]:
        """The values of ``topic``'s committed (or aborted) records, tombstones left out,
        sorted."""
        with self.lock:
            records = self.aborted if aborted else self.outputs
            return sorted(v for t, v in records if t == topic and v is not None)

    def end_offset(self, topic: str, partition: int) -> int:
        with self.lock:
            return len(self.produced.get((topic, partition), []))

    def last_stable_offset(self, topic: str, partition: int) -> int:
        with self.lock:
            entries = self.produced.get((topic, partition), [])
            return next((i for i, e in enumerate(entries) if e.state == "open"), len(entries))

    # what producers do (under the lock)
    def _write(self, topic: str, partition: int, entry: Entry) -> int:
        entries = self.produced.setdefault((topic, partition), [])
        entries.append(entry)
        return len(entries) - 1

    def _end_txn(self, tid: str, commit: bool) -> None:
        txn = self.txns.pop(tid, None)
        if txn is None:
            return
        for (topic, partition), offset in txn.entries:
            entry = self.produced[(topic, partition)][offset]
            entry.state = "committed" if commit else "aborted"
            (self.outputs if commit else self.aborted).append((topic, entry.value))
        for topic, partition in sorted({tp for tp, _ in txn.entries}):
            self._write(topic, partition, Entry(None, None, 0, "marker"))
        if commit:
            self.committed.update(txn.offsets)


# --- messages --------------------------------------------------------------------------------


class FakeMessage:
    """A consumed record or a delivery report, as confluent-kafka's ``Message``."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value = key, value
        self._timestamp_ms, self._headers = timestamp_ms, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)  # TIMESTAMP_CREATE_TIME

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> KafkaError | None:
        return None


# --- the producer ----------------------------------------------------------------------------


class FakeProducer:
    """confluent-kafka's ``Producer``, transactional when its config has a
    ``transactional.id``. ``calls`` logs each call: ("init",), ("begin",), ("produce", topic,
    value), ("offsets", {tp: offset}, GroupMetadata), ("commit",), ("abort",), ("flush",).
    Delivery reports wait for ``poll``, ``flush`` or ``commit_transaction``. ``hold`` makes
    commits wait (a broker that does not answer) until ``release`` or their timeout."""

    def __init__(self, broker: FakeBroker, config: Mapping[str, Any] | None = None) -> None:
        self.broker = broker
        self.transactional_id: str | None = (config or {}).get("transactional.id")
        self.calls: list[tuple[Any, ...]] = []
        self.epoch = 0
        # init, ready, in_txn, committing, abortable (only an abort goes), fatal (fenced)
        self.state = "init" if self.transactional_id else "ready"
        self.reports: list[tuple[Callable[..., None] | None, KafkaError | None, FakeMessage]] = []
        self.produced_while_committing = 0  # librdkafka refuses these (must stay 0)
        self.commits_begun = threading.Event()  # set by each commit_transaction call
        self._released = threading.Event()
        self._released.set()

    @property
    def commits(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "commit"]

    @property
    def offsets(self) -> list[dict[TopicPartition, int]]:
        """The offsets sent into each transaction, in order."""
        return [c[1] for c in self.calls if c[0] == "offsets"]

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def fenced(self) -> bool:
        tid = self.transactional_id
        return tid is not None and self.broker.epochs.get(tid) != self.epoch

    def _fenced_error(self) -> KafkaException:
        self.state = "fatal"
        return kafka_error(KafkaError._FENCED, "producer fenced by a newer instance", fatal=True)

    def _require(self, *states: str) -> None:
        """librdkafka's transaction states: after an abortable error only an abort (or, after
        a commit that timed out, the commit again) is accepted; a fenced producer is done."""
        if self.state in states:
            return
        if self.state == "fatal":
            raise kafka_error(KafkaError._FENCED, "fenced earlier", fatal=True)
        raise kafka_error(
            KafkaError._STATE,
            f"operation not valid in state {self.state}",
            txn_requires_abort=self.state == "abortable",
        )

    def _abortable(self, code: int, reason: str) -> KafkaException:
        self.state = "abortable"
        return kafka_error(code, reason, txn_requires_abort=True)

    # transactions
    def init_transactions(self, timeout: float | None = None) -> None:
        with self.broker.lock:
            self.calls.append(("init",))
            tid = self.transactional_id
            assert tid is not None, "init_transactions needs a transactional.id"
            self._require("init")
            self.broker._end_txn(tid, commit=False)  # the previous instance's open transaction
            self.epoch = self.broker.epochs.get(tid, 0) + 1
            self.broker.epochs[tid] = self.epoch
            self.state = "ready"

    def begin_transaction(self) -> None:
        with self.broker.lock:
            self.calls.append(("begin",))
            self._require("ready")
            self.state = "in_txn"

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: Callable[..., None] | None = None,
        timestamp: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        with self.broker.lock:
            if self.state == "committing":
                self.produced_while_committing += 1
            self.calls.append(("produce", topic, value))
            if self.transactional_id is not None:
                self._require("in_txn")
            partition = max(partition, 0)
            msg_offset = -1
            err: KafkaError | None = None
            if self.fenced:  # the broker refuses the old epoch's records
                err = KafkaError(KafkaError._FENCED, "fenced")
            else:
                state = "open" if self.transactional_id else "committed"
                entry = Entry(key, value, timestamp, state)
                msg_offset = self.broker._write(topic, partition, entry)
                if self.transactional_id is None:
                    self.broker.outputs.append((topic, value))
                else:
                    txn = self.broker.txns.setdefault(self.transactional_id, _OpenTxn())
                    txn.entries.append(((topic, partition), msg_offset))
            msg = FakeMessage(topic, partition, msg_offset, key, value, timestamp, headers)
            self.reports.append((on_delivery, err, msg))

    def send_offsets_to_transaction(
        self,
        positions: list[KafkaTopicPartition],
        group_metadata: GroupMetadata,
        timeout: float | None = None,
    ) -> None:
        with self.broker.lock:
            hang = self.broker.hang_offsets > 0
            if hang:
                self.broker.hang_offsets -= 1
                self.broker.hung += 1
        if hang:
            self.broker.unhang.wait()
            with self.broker.lock:
                self.broker.hung -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "hung until released"))
        with self.broker.lock:
            offsets = {TopicPartition(p.topic, p.partition): p.offset for p in positions}
            self.calls.append(("offsets", offsets, group_metadata))
            self._require("in_txn")
            if self.fenced:
                raise self._fenced_error()
            if group_metadata.generation != self.broker.generation:
                raise self._abortable(
                    KafkaError.ILLEGAL_GENERATION,
                    f"generation {group_metadata.generation} is not {self.broker.generation}",
                )
            assert self.transactional_id is not None
            self.broker.txns.setdefault(self.transactional_id, _OpenTxn()).offsets.update(offsets)

    def commit_transaction(self, timeout: float | None = None) -> None:
        with self.broker.lock:
            self.calls.append(("commit",))
            self._require("in_txn", "committing")  # committing: a retry after a time-out
            self.state = "committing"
            self.commits_begun.set()
        self._serve()  # librdkafka flushes first
        if not self._released.wait(timeout if timeout is not None else 1e9):
            raise kafka_error(KafkaError._TIMED_OUT, "commit not done in time", retriable=True)
        with self.broker.lock:
            assert self.transactional_id is not None
            if self.fenced:
                self.broker.zombie_commits += 1
                raise self._fenced_error()
            if self.broker.refuse_commits > 0:
                self.broker.refuse_commits -= 1
                raise self._abortable(KafkaError._TRANSPORT, "coordinator unreachable")
            self.broker._end_txn(self.transactional_id, commit=True)
            self.state = "ready"

    def abort_transaction(self, timeout: float | None = None) -> None:
        with self.broker.lock:
            self.calls.append(("abort",))
            self.reports.clear()  # librdkafka purges what is still queued
            self._require("in_txn", "committing", "abortable")
            if self.fenced:
                raise self._fenced_error()
            assert self.transactional_id is not None
            self.broker._end_txn(self.transactional_id, commit=False)
            self.state = "ready"

    # delivery reports
    def _serve(self) -> int:
        with self.broker.lock:
            reports, self.reports = self.reports, []
        for on_delivery, err, msg in reports:
            if on_delivery is not None:
                on_delivery(err, msg)
        return len(reports)

    def poll(self, timeout: float | None = None) -> int:
        return self._serve()

    def flush(self, timeout: float | None = None) -> int:
        with self.broker.lock:
            self.calls.append(("flush",))
        self._serve()
        return 0

    def __len__(self) -> int:
        with self.broker.lock:
            return len(self.reports) + self.broker.queued_requests


# --- the consumer ----------------------------------------------------------------------------


class FakeConsumer:
    """confluent-kafka's ``Consumer`` in the group: joins (and calls ``on_assign``) in its first
    ``consume``, rejoins after ``FakeBroker.rebalance`` (``on_revoke`` first, eagerly: every
    partition; the new assignment at the next ``consume``), revokes in ``close``; reads from the
    group's committed offsets. ``paused`` partitions stay paused until resumed, assigned or not."""

    def __init__(self, broker: FakeBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id
        self.on_assign: Callable[[Any, list[KafkaTopicPartition]], None] | None = None
        self.on_revoke: Callable[[Any, list[KafkaTopicPartition]], None] | None = None
        self.on_stats: Callable[[str], None] | None = None
        self.generation: int | None = None  # None: not joined yet
        self.revoked = False  # revoked for a rebalance, the new assignment not served yet
        self.assigned: list[TopicPartition] = []
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.closed = False
        self.callback_threads: set[str] = set()  # where the rebalance callbacks ran
        self.commits: list[dict[TopicPartition, int]] = []  # plain offset commits

    @property
    def stopped(self) -> bool:
        return self.closed

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Any, list[KafkaTopicPartition]], None] | None = None,
        on_revoke: Callable[[Any, list[KafkaTopicPartition]], None] | None = None,
    ) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def _revoke(self) -> None:
        """Revoke the assignment (outside the lock: the callback waits on the event loop)."""
        with self.broker.lock:
            revoked = [_ktp(tp) for tp in self.assigned]
        if revoked and self.on_revoke is not None:
            self.callback_threads.add(threading.current_thread().name)
            self.on_revoke(self, revoked)
        with self.broker.lock:
            self.assigned, self.positions = [], {}  # (a pause stays: librdkafka's does)

    def _join(self) -> bool:
        """Join the group if a rebalance needs it; False when this poll only revoked the
        assignment (librdkafka serves the new one in a later poll, after the group's join)."""
        with self.broker.lock:
            needed = (
                self.generation is None
                or self.broker.rebalancing
                or self.generation != self.broker.generation
            )
        if not needed:
            return True
        if self.generation is not None and not self.revoked:
            self._revoke()
            self.revoked = True
            return False
        self.broker.on_join()
        self.revoked = False
        with self.broker.lock:
            self.broker.generation += 1
            self.broker.rebalancing = False
            self.generation = self.broker.generation
            assignment = (
                sorted(self.broker.log)
                if self.broker.assignment is None
                else self.broker.assignment
            )
        if self.on_assign is not None:
            self.callback_threads.add(threading.current_thread().name)
            self.on_assign(self, [_ktp(tp) for tp in assignment])
        with self.broker.lock:
            self.assigned = list(assignment)
            self.positions = {tp: self.broker.committed.get(tp, 0) for tp in assignment}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        """Like librdkafka's: waits until ``num_messages`` came or ``timeout`` ran out."""
        deadline = time.monotonic() + (timeout if timeout >= 0 else 1e9)
        out: list[FakeMessage] = []
        while True:
            with self.broker.lock:
                if self.closed:
                    raise RuntimeError("Consumer closed")
                # an expelled member learns of it at its next heartbeat, not here
                rejoin = self.generation is None or self.broker.rebalancing
            if rejoin and not self._join():
                return out  # revoked: the new assignment comes at the next poll
            with self.broker.changed:
                if self.closed:
                    raise RuntimeError("Consumer closed")
                out += self._fetch(num_messages - len(out))
                left = deadline - time.monotonic()
                if len(out) >= num_messages or left <= 0:
                    return out
                if not self.broker.rebalancing:
                    self.broker.changed.wait(left)

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        msgs = self.consume(1, timeout)
        return msgs[0] if msgs else None

    def _fetch(self, limit: int) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for tp in self.assigned:
            if tp in self.paused or len(out) >= limit:
                continue
            at = self.positions[tp]
            values = self.broker.log.get(tp, [])[at : at + limit - len(out)]
            out += [
                FakeMessage(tp.topic, tp.partition, at + i, b"k", v, 1000 * (at + i))
                for i, v in enumerate(values)
            ]
            self.positions[tp] = at + len(values)
        return out

    def close(self) -> None:
        with self.broker.lock:
            if self.closed:
                return
        self._revoke()
        with self.broker.changed:
            self.closed = True
            self.broker.changed.notify_all()

    def assignment(self) -> list[KafkaTopicPartition]:
        with self.broker.lock:
            return [_ktp(tp) for tp in self.assigned]

    def pause(self, partitions: list[KafkaTopicPartition]) -> None:
        with self.broker.lock:
            self.paused.update(_atp(p) for p in partitions)

    def resume(self, partitions: list[KafkaTopicPartition]) -> None:
        with self.broker.changed:
            self.paused.difference_update(_atp(p) for p in partitions)
            self.broker.changed.notify_all()

    def seek(self, partition: KafkaTopicPartition) -> None:
        with self.broker.lock:
            tp = _atp(partition)
            if tp not in self.assigned:  # librdkafka: not assigned (any more)
                raise kafka_error(KafkaError._STATE, f"{tp} is not assigned")
            self.positions[tp] = partition.offset

    def position(self, partitions: list[KafkaTopicPartition]) -> list[KafkaTopicPartition]:
        with self.broker.lock:
            return [
                KafkaTopicPartition(p.topic, p.partition, self.positions.get(_atp(p), -1001))
                for p in partitions
            ]

    def get_watermark_offsets(
        self, partition: KafkaTopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        with self.broker.lock:
            return 0, len(self.broker.log.get(_atp(partition), []))

    def consumer_group_metadata(self) -> GroupMetadata:
        with self.broker.lock:
            if self.closed:
                raise RuntimeError("Consumer closed")
            assert self.generation is not None, "not in the group yet"
            return GroupMetadata(self.group_id, self.generation)

    def commit(
        self,
        message: Any = None,
        offsets: list[KafkaTopicPartition] | None = None,
        asynchronous: bool = True,
    ) -> list[KafkaTopicPartition] | None:
        with self.broker.lock:
            if self.generation != self.broker.generation:
                raise kafka_error(KafkaError.ILLEGAL_GENERATION, "not in this generation")
            moved = {_atp(p): p.offset for p in offsets or []}
            self.commits.append(moved)
            self.broker.committed.update(moved)
            return None if asynchronous else list(offsets or [])


def _ktp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


def _atp(tp: KafkaTopicPartition) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def joined_consumer(broker: FakeBroker, group_id: str = "app") -> Any:
    """A ``FakeConsumer`` in the group (its first ``consume`` done), for tests without an
    engine (typed ``Any``: it stands for confluent-kafka's ``Consumer``)."""
    consumer = FakeConsumer(broker, group_id)
    consumer.consume(1, 0)
    return consumer


# --- the restore consumer (aiokafka) ---------------------------------------------------------


@dataclass
class _Restored:
    key: bytes | None
    value: bytes | None
    timestamp: int


class FakeRestorer:
    """The group-less read_committed aiokafka consumer ``ChangelogTable.open`` reads a
    changelog partition with: up to its last stable offset, committed records only (aborted
    ones and markers are skipped, the position moves past them)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.positions: dict[TopicPartition, int] = {}
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return {tp: 0 for tp in partitions}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return {tp: self.broker.last_stable_offset(tp.topic, tp.partition) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0) -> dict[Any, Any]:
        out: dict[TopicPartition, list[_Restored]] = {}
        with self.broker.lock:
            for tp in partitions:
                stable = self.broker.last_stable_offset(tp.topic, tp.partition)
                entries = self.broker.produced.get((tp.topic, tp.partition), [])
                at = self.positions[tp]
                out[tp] = [
                    _Restored(e.key, e.value, e.timestamp_ms)
                    for e in entries[at:stable]
                    if e.state == "committed"
                ]
                self.positions[tp] = max(at, stable)
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


# --- the clients -----------------------------------------------------------------------------


class FakeClients(KafkaClients):
    """Makes fakes on one ``FakeBroker``; ``events`` records each consumer made. Its ``call``
    is the real one (a thread pool)."""

    def __init__(
        self, settings: Settings, broker: FakeBroker, events: list[str] | None = None
    ) -> None:
        super().__init__(settings, lambda: {}, lambda: {})
        self.broker = broker
        self.events = [] if events is None else events
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []
        self.restorers: list[FakeRestorer] = []

    def consumer(
        self,
        group_id: str,
        topics: list[str],
        on_assign: Any,
        on_revoke: Any,
        on_stats: Any = None,
        stats_every_s: float = 5.0,
    ) -> Any:
        consumer = FakeConsumer(self.broker, group_id)
        consumer.on_stats = on_stats  # a test calls it with statistics of its own
        consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
        self.consumers.append(consumer)
        self.events.append(f"consumer {len(self.consumers)}")
        return consumer

    def producer(self, transactional: bool) -> Any:
        config = {"transactional.id": transactional_id(self.settings)} if transactional else {}
        self.producers.append(FakeProducer(self.broker, config))
        return self.producers[-1]

    def restorer(self) -> Any:
        self.restorers.append(FakeRestorer(self.broker))
        return self.restorers[-1]


# --- a handler -------------------------------------------------------------------------------


@dataclass
class EchoHandler:
    """Sends each input value to ``out``; raises a Kafka error once at each of ``fail_at``
    ((partition, offset)); remembers the partitions (``Sink``) it wrote through and its sweeps.
    With ``dedupe`` (a table) it answers each value once: it skips a value the table holds
    and puts each value it answers there. ``gate`` (when set) holds each finish half-way, after
    its first output, until the test sets it; ``sweep_sends`` makes each sweep send a
    tombstone to ``out``; ``hold_prepares`` holds each record's preparation (the model call)
    until ``release_prepares``."""

    topics: tuple[str, ...] = ("in",)
    dedupe: ChangelogTable | None = None
    fail_at: set[tuple[int, int]] = field(default_factory=set)
    parts: list[Sink] = field(default_factory=list)
    sweeps: list[float] = field(default_factory=list)
    gate: asyncio.Event | None = None
    halfway: list[tuple[int, int]] = field(default_factory=list)  # finishes held at the gate
    sweep_sends: bool = False
    hold_prepares: bool = False  # prepared records wait in ``preparing`` for the test
    preparing: list[tuple[asyncio.Future[Any], bytes | None]] = field(default_factory=list)

    @property
    def tables(self) -> tuple[ChangelogTable, ...]:
        return () if self.dedupe is None else (self.dedupe,)

    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.hold_prepares:
            self.preparing.append((done, rec.value))
        else:
            done.set_result(rec.value)
        return done

    def release_prepares(self) -> int:
        """Every held record's preparation is done; how many there were (a record whose
        finisher was cancelled with its partition had its wait cancelled)."""
        held, self.preparing = self.preparing, []
        for done, value in held:
            if not done.done():
                done.set_result(value)
        return len(held)

    async def finish(self, rec: SourceRecord, outcome: Any, part: Sink) -> None:
        if not any(p is part for p in self.parts):
            self.parts.append(part)
        if self.dedupe is not None:
            if part.get(self.dedupe.name, outcome) is not None:
                return
            await part.put(self.dedupe.name, outcome, b"1", rec.timestamp or 0.0)
        if self.gate is not None:
            await part.send("out", rec.key, outcome + b"/1", {})
            self.halfway.append((rec.partition, rec.offset))
            await self.gate.wait()
        if (rec.partition, rec.offset) in self.fail_at:
            self.fail_at.discard((rec.partition, rec.offset))
            raise KafkaConnectionError("connection to the broker lost")
        await part.send("out", rec.key, outcome, {})

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None:
        raise AssertionError(f"no record should be dead-lettered here: {exc!r}")

    async def sweep(self, part: Sink, now: float) -> None:
        self.sweeps.append(now)
        if self.sweep_sends:
            await part.send("out", b"expired", None, {})
