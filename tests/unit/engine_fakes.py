"""Fakes for the processing engine (streams/engine.py and the modules it uses): a broker in
memory with transactions, a transactional producer, a consumer that reads the broker's log, the
Kafka client factory that makes them, a frozen clock and a handler that echoes its input."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.clients import KafkaClients
from streams.partition import Sink
from streams.records import SourceRecord
from streams.settings import Settings


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


@dataclass
class FakeBroker:
    """Input log, committed group offsets and the outputs of committed transactions;
    ``epochs`` fences a transactional id's older producers, as InitProducerId does."""

    log: dict[TopicPartition, list[bytes]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    outputs: list[tuple[str, bytes | None]] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)
    zombie_commits: int = 0  # commits tried by a fenced producer (must stay 0)
    on_consumer_start: Callable[[], None] = lambda: None  # may raise: the broker is away


@dataclass
class _Meta:
    offset: int


@dataclass
class FakeTxnProducer:
    transactional_id: str | None = None
    broker: FakeBroker | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    next_offset: int = 0
    hold_acks: bool = False  # acknowledgements wait (a broker that is away)
    held: list[asyncio.Future[_Meta]] = field(default_factory=list)
    epoch: int = 0
    txn_outputs: list[tuple[str, bytes | None]] = field(default_factory=list)
    txn_offsets: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return ("stop",) in self.calls

    @property
    def commits(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "commit"]

    async def start(self) -> None:
        self.calls.append(("start",))
        if self.broker is not None and self.transactional_id is not None:
            self.epoch = self.broker.epochs.get(self.transactional_id, 0) + 1
            self.broker.epochs[self.transactional_id] = self.epoch

    async def stop(self) -> None:
        self.calls.append(("stop",))

    async def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    async def send(self, topic: str, value: bytes | None, **kw: Any) -> asyncio.Future[_Meta]:
        self.calls.append(("send", topic, value))
        self.txn_outputs.append((topic, value))
        fut: asyncio.Future[_Meta] = asyncio.get_running_loop().create_future()
        if self.hold_acks:
            self.held.append(fut)
        else:
            fut.set_result(_Meta(self.next_offset))
        self.next_offset += 1
        return fut

    def release(self) -> None:
        """The broker is back: every held record is acknowledged."""
        for i, fut in enumerate(self.held):
            fut.set_result(_Meta(100 + i))
        self.held.clear()

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self.calls.append(("offsets", dict(offsets), group))
        self.txn_offsets.update(offsets)

    async def commit_transaction(self) -> None:
        self.calls.append(("commit",))
        broker = self.broker
        if broker is not None and self.transactional_id is not None:
            if broker.epochs.get(self.transactional_id) != self.epoch:
                broker.zombie_commits += 1
            else:
                broker.outputs.extend(self.txn_outputs)
                broker.committed.update(self.txn_offsets)
        self.txn_outputs, self.txn_offsets = [], {}

    async def abort_transaction(self) -> None:
        self.calls.append(("abort",))
        self.txn_outputs, self.txn_offsets = [], {}


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeConsumer:
    """Assigned every partition of the broker's log at ``start`` (the listener is told then);
    reads from the group's committed offset, or the beginning."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.listener: Any = None
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.stopped = False

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        self.broker.on_consumer_start()
        self.assigned = set(self.broker.log)
        self.positions = {tp: self.broker.committed.get(tp, 0) for tp in self.assigned}
        await self.listener.on_partitions_assigned(set(self.assigned))

    async def stop(self) -> None:
        self.stopped = True
        self.assigned = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[_Record]]:
        left = max_records if max_records is not None else 10**9
        out: dict[TopicPartition, list[_Record]] = {}
        for tp in sorted(self.assigned - self.paused):
            if (partitions and tp not in partitions) or left <= 0:
                continue
            at = self.positions[tp]
            values = self.broker.log[tp][at : at + left]
            if values:
                out[tp] = [
                    _Record(tp.topic, tp.partition, at + i, b"k", v) for i, v in enumerate(values)
                ]
                self.positions[tp] = at + len(values)
                left -= len(values)
        if not out:
            await asyncio.sleep(timeout_ms / 1000)
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.broker.committed.get(tp)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)


class FakeClients(KafkaClients):
    """Makes fakes on one ``FakeBroker``; ``events`` records each consumer made."""

    def __init__(self, settings: Settings, broker: FakeBroker, events: list[str]) -> None:
        super().__init__(settings, lambda: {})
        self.broker = broker
        self.events = events
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeTxnProducer] = []

    def consumer(self, group_id: str) -> Any:
        self.consumers.append(FakeConsumer(self.broker))
        self.events.append(f"consumer {len(self.consumers)}")
        return self.consumers[-1]

    def producer(self, transactional_id: str | None) -> Any:
        self.producers.append(FakeTxnProducer(transactional_id, self.broker))
        return self.producers[-1]


@dataclass
class EchoHandler:
    """Sends each input value to ``out``; raises a Kafka error once at each of ``fail_at``
    ((partition, offset)); remembers the partitions (``Sink``) it wrote through and its sweeps."""

    topics: tuple[str, ...] = ("in",)
    tables: tuple[Any, ...] = ()
    fail_at: set[tuple[int, int]] = field(default_factory=set)
    parts: list[Sink] = field(default_factory=list)
    sweeps: list[float] = field(default_factory=list)

    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(rec.value)
        return done

    async def finish(self, rec: SourceRecord, outcome: Any, part: Sink) -> None:
        if not any(p is part for p in self.parts):
            self.parts.append(part)
        if (rec.partition, rec.offset) in self.fail_at:
            self.fail_at.discard((rec.partition, rec.offset))
            raise KafkaConnectionError("connection to the broker lost")
        await part.send("out", rec.key, outcome, {})

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None:
        raise AssertionError(f"no record should be dead-lettered here: {exc!r}")

    async def sweep(self, part: Sink, now: float) -> None:
        self.sweeps.append(now)
