"""Changelog table partitions over a real RocksDB (rocksdict) in a temp dir: staged changes are
visible to reads at once and reach the store only when their transaction committed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from rocksdict import Options, Rdict

from streams.tables import ChangelogTable, TablePartition


def open_part(path: Path) -> TablePartition:
    return TablePartition(
        "context", "app-context-changelog", 0, Rdict(str(path), Options(raw_mode=True))
    )


def test_staged_reads_commit_and_abort(tmp_path: Path) -> None:
    part = open_part(tmp_path / "db")
    part.stage(b"c1", b"v1", 10.0)
    assert part.get(b"c1") == b"v1"  # visible to the transaction that staged it
    part.discard_staged()  # aborted
    assert part.get(b"c1") is None
    part.stage(b"c1", b"v1", 10.0)
    part.stage(b"c2", b"v2", 20.0)
    part.apply_committed(next_offset=7)
    part.stage(b"c1", None, 30.0)  # a tombstone, not yet committed
    assert part.get(b"c1") is None and part.get(b"c2") == b"v2"
    part.close()
    again = open_part(tmp_path / "db")  # what a restart finds: only committed rows
    assert again.get(b"c1") == b"v1" and again.get(b"c2") == b"v2"
    assert len(again) == 2
    again.close()


def test_expired_keys_by_row_time(tmp_path: Path) -> None:
    part = open_part(tmp_path / "db")
    for i in range(5):
        part.stage(f"k{i}".encode(), b"x", float(i))
    part.apply_committed(next_offset=5)
    assert sorted(part.expired(before=3.0)) == [b"k0", b"k1", b"k2"]
    part.stage(b"k0", None, 9.0)  # already being deleted in the open transaction
    part.stage(b"k1", b"y", 9.0)  # touched again: no longer old
    assert part.expired(before=3.0) == [b"k2"]
    part.close()


@dataclass
class _Rec:
    offset: int
    key: bytes
    value: bytes
    timestamp: int = 1_000


class FakeChangelog:
    """What ``ChangelogTable.open`` uses of a group-less read_committed consumer: the committed
    records of one changelog partition, and an end (the last stable offset) past them."""

    def __init__(self, records: list[_Rec], end: int) -> None:
        self.records, self.end, self.pos = records, end, 0

    def assign(self, tps: list[TopicPartition]) -> None:
        self.tp = tps[0]

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {self.tp: 0}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {self.tp: self.end}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def getmany(self, tp: TopicPartition, timeout_ms: int) -> dict[Any, list[_Rec]]:
        out = [r for r in self.records if r.offset >= self.pos]
        self.pos = self.end  # read_committed: past the aborted records and markers too
        return {tp: out}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos


def test_only_a_cleanly_closed_store_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A store is rebuilt from the changelog unless it was closed cleanly: a row written
    through after a commit the broker then lost (its records aborted; the changelog never
    shows it) must not survive an unclean end, as it does not in the changelog."""
    table = ChangelogTable("dedupe", "app-dedupe-changelog", tmp_path)
    log = [_Rec(0, b"e1", b"1"), _Rec(1, b"e2", b"1")]

    async def run() -> None:
        part = await table.open(0, FakeChangelog(log, end=2))  # type: ignore[arg-type]
        assert part.restored == 2 and part.get(b"e1") == b"1"
        part.stage(b"e3", b"1", 5.0)
        part.apply_committed(next_offset=4)  # "committed"; the changelog ends up without it
        part.close(clean=True)
        # clean: the checkpoint is trusted, nothing replayed, the row written through stays
        part = await table.open(0, FakeChangelog(log, end=4))  # type: ignore[arg-type]
        assert part.restored == 0 and part.get(b"e3") == b"1"
        part.close()  # unclean (a session that failed, a crash)
        part = await table.open(0, FakeChangelog(log, end=4))  # type: ignore[arg-type]
        assert part.restored == 2 and part.get(b"e3") is None  # rebuilt: as the changelog says
        assert part.get(b"e2") == b"1"
        part.close()

    asyncio.run(run())
