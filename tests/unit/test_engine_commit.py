"""The engine's per-partition commit (streams/partition.py ``Partition``) against a fake
transactional producer: what goes into each transaction, when offsets are sent, and that a sweep's
table changes alone still make a transaction (the real-broker behaviour is covered by
tests/integration/test_stateful.py and tests/reliability)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from rocksdict import Options, Rdict

from streams.partition import Partition, PartitionClosed
from streams.tables import TablePartition
from tests.unit.engine_fakes import FakeTxnProducer

TP = TopicPartition("in", 2)


def _partition(
    tmp_path: Path, *, transactional: bool = True, commit_timeout_s: float = 30.0
) -> tuple[Partition, FakeTxnProducer, TablePartition]:
    table = TablePartition(
        "context", "app-context-changelog", 2, Rdict(str(tmp_path / "db"), Options(raw_mode=True))
    )
    producer = FakeTxnProducer()
    part = Partition(
        TP,
        producer,  # type: ignore[arg-type]
        transactional=transactional,
        tables={"context": table},
        commit_timeout_s=commit_timeout_s,
    )
    return part, producer, table


def test_outputs_table_changes_and_offset_commit_in_one_transaction(tmp_path: Path) -> None:
    async def run() -> None:
        part, producer, table = _partition(tmp_path)
        assert not part.uncommitted
        await part.commit("app", None)  # type: ignore[arg-type]
        assert producer.calls == []  # nothing finished: no empty transaction
        await part.send("out", b"k", b"result", {})
        await part.put("context", b"c1", b"row", 1.0)
        part.finished_offset = 8
        assert part.uncommitted
        await part.commit("app", None)  # type: ignore[arg-type]
        assert [c[0] for c in producer.calls] == ["begin", "send", "send", "offsets", "commit"]
        assert producer.calls[3] == ("offsets", {TP: 8}, "app")
        assert not part.uncommitted and part.committed_offset == 8
        assert table.get(b"c1") == b"row" and not table.staged  # applied after the commit
        table.close()

    asyncio.run(run())


def test_a_sweep_alone_commits_its_tombstones_without_offsets(tmp_path: Path) -> None:
    """A sweep's tombstones open a transaction although no record finished: it must commit
    (an open transaction would otherwise time out and fence the producer), without offsets."""

    async def run() -> None:
        part, producer, table = _partition(tmp_path)
        await part.put("context", b"old", None, 5.0)
        assert part.uncommitted and part.in_txn
        await part.commit("app", None)  # type: ignore[arg-type]
        assert [c[0] for c in producer.calls] == ["begin", "send", "commit"]
        assert not part.uncommitted and part.committed_offset is None
        table.close()

    asyncio.run(run())


def test_at_least_once_a_sweep_is_applied_once_its_tombstones_are_acknowledged(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        part, producer, table = _partition(tmp_path, transactional=False)
        table.stage(b"old", b"row", 1.0)
        table.apply_committed(next_offset=1)
        await part.put("context", b"old", None, 5.0)
        assert part.uncommitted and not part.in_txn
        await part.commit("app", None)  # type: ignore[arg-type]  # no offset moved: no consumer call
        assert [c[0] for c in producer.calls] == ["send"]
        assert not part.uncommitted and not table.staged and table.get(b"old") is None
        table.close()

    asyncio.run(run())


def test_a_commit_that_cannot_finish_times_out_and_commits_nothing(tmp_path: Path) -> None:
    """aiokafka waits for ever for acknowledgements from a broker that is away; the commit is
    bounded (the finisher's error resets the session) and changes nothing meanwhile."""

    async def run() -> None:
        part, producer, table = _partition(tmp_path, commit_timeout_s=0.05)
        producer.hold_acks = True
        await part.put("context", b"c1", b"row", 1.0)
        part.finished_offset = 3
        with pytest.raises(KafkaTimeoutError, match=r"commit of in\[2\] not done in 0.05s"):
            await part.commit("app", None)  # type: ignore[arg-type]
        assert [c[0] for c in producer.calls] == ["begin", "send"]  # no offsets, no commit
        assert not producer.held[0].cancelled()  # aiokafka's own future is left alone
        assert part.committed_offset is None and table.get(b"c1") == b"row"  # still staged
        table.close()

    asyncio.run(run())


def test_an_abandoned_partitions_commit_in_flight_neither_commits_nor_applies(
    tmp_path: Path,
) -> None:
    """The session ended while a (shielded) commit waited for acknowledgements: when the
    broker answers later, that commit must not send offsets, commit, or write the table cache
    (the next owner fences the producer; an aborted transaction's rows must never be read)."""

    async def run() -> None:
        part, producer, table = _partition(tmp_path)
        producer.hold_acks = True
        await part.put("context", b"c1", b"row", 1.0)
        part.finished_offset = 3
        commit = asyncio.ensure_future(part.commit("app", None))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        part.abandon()
        assert part.closed and table.closed and not table.staged
        producer.release()
        with pytest.raises(PartitionClosed):
            await commit
        assert [c[0] for c in producer.calls] == ["begin", "send"]
        assert part.committed_offset is None

    asyncio.run(run())
    db = Rdict(str(tmp_path / "db"), Options(raw_mode=True))
    try:
        assert db.get(b"vc1") is None and db.get(b"o") is None  # nothing written through
    finally:
        db.close()
