"""The engine's per-partition commit (streams/engine.py ``Partition``) against a fake
transactional producer: what goes into each transaction, when offsets are sent, and that a sweep's
table changes alone still make a transaction (the real-broker behaviour is covered by
tests/integration/test_stateful.py and tests/reliability)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from rocksdict import Options, Rdict

from streams.engine import Partition
from streams.tables import TablePartition

TP = TopicPartition("in", 2)


@dataclass
class _Meta:
    offset: int


@dataclass
class FakeTxnProducer:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    next_offset: int = 0

    async def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    async def send(self, topic: str, value: bytes | None, **kw: Any) -> asyncio.Future[_Meta]:
        self.calls.append(("send", topic, value))
        fut: asyncio.Future[_Meta] = asyncio.get_running_loop().create_future()
        fut.set_result(_Meta(self.next_offset))
        self.next_offset += 1
        return fut

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self.calls.append(("offsets", dict(offsets), group))

    async def commit_transaction(self) -> None:
        self.calls.append(("commit",))


def _partition(
    tmp_path: Path, *, transactional: bool = True
) -> tuple[Partition, FakeTxnProducer, TablePartition]:
    table = TablePartition(
        "context", "app-context-changelog", 2, Rdict(str(tmp_path / "db"), Options(raw_mode=True))
    )
    producer = FakeTxnProducer()
    part = Partition(TP, producer, transactional=transactional, tables={"context": table})  # type: ignore[arg-type]
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
