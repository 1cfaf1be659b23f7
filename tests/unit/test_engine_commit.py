"""The session's one transaction (streams/transaction.py ``Transaction``) against the fake broker
(tests/unit/engine_fakes.py): what goes into each transaction, that one commit carries the
offsets of every partition that moved, that table changes are written through only after their
transaction committed (with the changelog offset after its commit marker as their checkpoint),
and what fencing (the transactional id's epoch, the group's generation) refuses. The real-broker
behaviour is covered by tests/integration/test_stateful.py and tests/reliability."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from rocksdict import Options, Rdict

from streams.partition import Partition
from streams.settings import Settings
from streams.tables import TablePartition
from streams.transaction import Transaction, TransactionError
from tests.unit.engine_fakes import (
    FakeBroker,
    FakeClients,
    FakeProducer,
    GroupMetadata,
    joined_consumer,
    until,
)

TP1, TP2 = TopicPartition("in", 1), TopicPartition("in", 2)
CHANGELOG = "app-context-changelog"


@dataclass
class Rig:
    broker: FakeBroker
    clients: FakeClients
    consumer: Any  # a FakeConsumer, standing for confluent-kafka's Consumer
    producer: FakeProducer
    txn: Transaction

    async def transaction(self, *, transactional: bool = True) -> tuple[FakeProducer, Transaction]:
        """Another session's producer and transaction, with the same transactional id."""
        producer = self.clients.producer(transactional)
        txn = Transaction(producer, self.clients, transactional=transactional)
        await txn.start()
        txn.group_metadata = self.consumer.consumer_group_metadata()
        return producer, txn


@asynccontextmanager
async def _rig(*, transactional: bool = True, commit_timeout_s: float = 30.0) -> AsyncIterator[Rig]:
    broker = FakeBroker()
    clients = FakeClients(Settings(app_id="app", instance_id="w1"), broker)
    producer = clients.producer(transactional)
    txn = Transaction(
        producer, clients, transactional=transactional, commit_timeout_s=commit_timeout_s
    )
    try:
        await txn.start()
        consumer = joined_consumer(broker)
        # what the engine does at each assignment, in the consumer's thread
        txn.group_metadata = consumer.consumer_group_metadata()
        yield Rig(broker, clients, consumer, producer, txn)
    finally:
        clients.shutdown()


def _table(tmp_path: Path, partition: int = 2) -> TablePartition:
    db = Rdict(str(tmp_path / f"db{partition}"), Options(raw_mode=True))
    return TablePartition("context", CHANGELOG, partition, db)


def _checkpoint(db: Rdict) -> int | None:
    raw = db.get(b"o")
    return None if raw is None else int(struct.unpack(">d", bytes(raw))[0])


def test_one_transaction_carries_two_partitions_outputs_table_changes_and_offsets(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with _rig() as rig:
            table = _table(tmp_path)
            p1 = Partition(TP1, rig.txn, tables={})
            p2 = Partition(TP2, rig.txn, tables={"context": table})
            assert not await rig.txn.commit([p1, p2], rig.consumer)  # nothing finished
            assert rig.producer.calls == [("init",)]  # no empty transaction

            await p1.send("out", b"k", b"r1", {})
            await p2.send("out", b"k", b"r2", {})
            await p2.put("context", b"c1", b"row", 1.0)
            p1.finished_offset, p2.finished_offset = 5, 8
            assert table.get(b"c1") == b"row"  # the handler reads its own staged change
            assert table.db.get(b"vc1") is None and _checkpoint(table.db) is None
            assert rig.broker.outputs == [] and rig.broker.committed == {}

            assert await rig.txn.commit([p1, p2], rig.consumer)
            assert [c[0] for c in rig.producer.calls] == [
                *("init", "begin", "produce", "produce", "produce"),
                *("offsets", "commit"),
            ]
            # one transaction: both partitions' offsets, sent with the group's metadata
            assert rig.producer.offsets == [{TP1: 5, TP2: 8}]
            assert rig.producer.calls[5][2] == GroupMetadata("app", rig.broker.generation)
            assert rig.broker.committed == {TP1: 5, TP2: 8}
            assert rig.broker.outputs == [("out", b"r1"), ("out", b"r2"), (CHANGELOG, b"row")]
            assert (p1.committed_offset, p2.committed_offset) == (5, 8)
            assert not p1.offset_moved and not p2.offset_moved and rig.txn.commits == 1
            # written through after the commit; checkpoint: the offset after the commit marker
            assert not table.staged and table.db.get(b"vc1") == b"row"
            assert _checkpoint(table.db) == rig.broker.end_offset(CHANGELOG, 2) == 2

            await p2.put("context", b"c2", b"row2", 2.0)
            p2.finished_offset = 9
            assert await rig.txn.commit([p1, p2], rig.consumer)
            assert rig.producer.offsets[-1] == {TP2: 9}  # in[1] did not move: not sent again
            assert _checkpoint(table.db) == rig.broker.end_offset(CHANGELOG, 2) == 4
            assert table.get(b"c2") == b"row2" and rig.txn.commits == 2
            table.close()

    asyncio.run(run())


def test_a_sweep_alone_commits_its_tombstones_without_offsets(tmp_path: Path) -> None:
    """A sweep's tombstones open the transaction although no record finished: it must commit
    (an open transaction would otherwise time out and fence the producer), without offsets."""

    async def run() -> None:
        async with _rig() as rig:
            table = _table(tmp_path)
            table.stage(b"old", b"row", 1.0)
            table.apply_committed(next_offset=0)
            part = Partition(TP2, rig.txn, tables={"context": table})
            await part.put("context", b"old", None, 5.0)
            assert rig.txn.pending and not part.offset_moved
            assert await rig.txn.commit([part], rig.consumer)
            assert [c[0] for c in rig.producer.calls] == ["init", "begin", "produce", "commit"]
            assert rig.broker.committed == {} and part.committed_offset is None
            assert not table.staged and table.get(b"old") is None
            assert _checkpoint(table.db) == rig.broker.end_offset(CHANGELOG, 2) == 2
            assert not rig.txn.pending
            table.close()

    asyncio.run(run())


def test_at_least_once_offsets_are_committed_after_the_outputs_are_acknowledged(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with _rig(transactional=False) as rig:
            table = _table(tmp_path)
            part = Partition(TP2, rig.txn, tables={"context": table})
            await part.put("context", b"old", None, 5.0)  # a sweep: no offset moved
            assert rig.txn.pending
            assert await rig.txn.commit([part], rig.consumer)
            # acknowledged first with the finishers going on, then with them held
            assert [c[0] for c in rig.producer.calls] == ["produce", "flush", "flush"]
            assert rig.consumer.commits == []  # no offset moved: no offset commit
            assert not table.staged and _checkpoint(table.db) == 1  # no commit marker

            await part.send("out", b"k", b"r", {})
            part.finished_offset = 4
            assert await rig.txn.commit([part], rig.consumer)
            assert [c[0] for c in rig.producer.calls][3:] == ["produce", "flush", "flush"]
            assert rig.consumer.commits == [{TP2: 4}] and rig.broker.committed == {TP2: 4}
            assert part.committed_offset == 4 and rig.txn.commits == 2
            table.close()

    asyncio.run(run())


def test_a_commit_that_cannot_finish_times_out_and_commits_nothing(tmp_path: Path) -> None:
    """A broker that does not answer: the commit is bounded (the session then resets), changes
    nothing meanwhile, and the transaction aborts when the session closes it."""

    async def run() -> None:
        async with _rig(commit_timeout_s=0.05) as rig:
            table = _table(tmp_path)
            part = Partition(TP2, rig.txn, tables={"context": table})
            rig.producer.hold()
            await part.put("context", b"c1", b"row", 1.0)
            part.finished_offset = 3
            with pytest.raises(TransactionError, match="commit not done in"):
                await rig.txn.commit([part], rig.consumer)
            assert [c[0] for c in rig.producer.calls][-2:] == ["offsets", "commit"]
            assert rig.broker.outputs == [] and rig.broker.committed == {}
            assert part.committed_offset is None and rig.txn.commits == 0
            assert table.staged and table.db.get(b"vc1") is None  # still only staged
            assert rig.broker.last_stable_offset(CHANGELOG, 2) == 0  # readers held back

            rig.txn.close()  # the session ends: its transaction aborts in the background
            await until(lambda: ("abort",) in rig.producer.calls)
            assert rig.broker.aborted == [(CHANGELOG, b"row")] and rig.broker.outputs == []
            assert rig.broker.last_stable_offset(CHANGELOG, 2) == 2  # readers go on
            with pytest.raises(TransactionError, match="closed"):
                await part.send("out", b"k", b"late", {})
            table.close()

    asyncio.run(run())


def test_an_abandoned_partition_neither_sends_its_offset_nor_writes_its_table(
    tmp_path: Path,
) -> None:
    """A partition abandoned before a commit sends no offset; one abandoned while the commit is
    in flight does not write its table through when it completes (the next owner replays the
    changelog; its cache must never hold rows its owner no longer vouches for)."""

    async def run() -> None:
        async with _rig() as rig:
            gone = Partition(TopicPartition("in", 0), rig.txn, tables={})
            table = _table(tmp_path)
            part = Partition(TP2, rig.txn, tables={"context": table})
            await gone.send("out", b"k", b"r0", {})
            gone.finished_offset = 7
            gone.abandon()
            rig.producer.hold()
            await part.put("context", b"c1", b"row", 1.0)
            part.finished_offset = 3
            commit = asyncio.ensure_future(rig.txn.commit([gone, part], rig.consumer))
            await until(rig.producer.commits_begun.is_set)
            part.abandon()
            assert part.closed and table.closed and not table.staged
            rig.producer.release()
            assert await commit  # the broker committed it (outputs and offset are atomic)
            assert rig.producer.offsets == [{TP2: 3}]  # not the abandoned in[0]'s
            assert part.committed_offset is None

    asyncio.run(run())
    db = Rdict(str(tmp_path / "db2"), Options(raw_mode=True))
    try:
        assert db.get(b"vc1") is None and _checkpoint(db) is None  # nothing written through
    finally:
        db.close()


def test_a_fenced_producer_can_neither_send_offsets_nor_commit() -> None:
    """The worker's next run (the same transactional id) fences this one: its open transaction
    is aborted, and neither its offsets nor its commit are accepted any more."""

    async def run() -> None:
        async with _rig() as rig:
            rig.txn.produce("out", b"k", None)  # a sweep's tombstone: a commit without offsets
            second, txn2 = await rig.transaction()
            assert second.transactional_id == rig.producer.transactional_id == "app-w1"
            assert rig.broker.aborted == [("out", None)]  # its open transaction aborted
            with pytest.raises(TransactionError, match="fenced"):
                await rig.txn.commit([], rig.consumer)
            assert rig.broker.zombie_commits == 1  # tried, and refused by the broker

            part = Partition(TP1, txn2, tables={})
            await part.send("out", b"k", b"old", {})
            part.finished_offset = 1
            _, txn3 = await rig.transaction()  # fences the second in turn
            with pytest.raises(TransactionError, match="fenced"):
                await txn2.commit([part], rig.consumer)
            assert second.commits == [] and rig.broker.zombie_commits == 1
            assert rig.broker.outputs == [] and rig.broker.committed == {}

            new = Partition(TP1, txn3, tables={})
            await new.send("out", b"k", b"new", {})
            new.finished_offset = 1
            assert await txn3.commit([new], rig.consumer)
            assert rig.broker.outputs == [("out", b"new")] and rig.broker.committed == {TP1: 1}
            assert rig.broker.aborted == [("out", None), ("out", b"old")]

    asyncio.run(run())


def test_offsets_sent_with_an_old_generation_are_refused() -> None:
    """The group moved on without this consumer (KIP-447): the broker refuses its offsets, so
    its transaction cannot commit them; nothing becomes visible."""

    async def run() -> None:
        async with _rig() as rig:
            part = Partition(TP1, rig.txn, tables={})
            await part.send("out", b"k", b"r", {})
            part.finished_offset = 1
            rig.broker.expel()
            with pytest.raises(TransactionError, match="generation"):
                await rig.txn.commit([part], rig.consumer)
            assert rig.producer.commits == []
            assert rig.broker.outputs == [] and rig.broker.committed == {}
            assert part.committed_offset is None

    asyncio.run(run())
