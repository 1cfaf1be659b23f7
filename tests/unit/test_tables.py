"""Changelog table partitions over a real RocksDB (rocksdict) in a temp dir: staged changes are
visible to reads at once and reach the store only when their transaction committed."""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

from streams.tables import TablePartition


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
