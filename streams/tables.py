"""Tables materialized from Kafka topics.

``PolicyTable`` keeps every worker's ``PolicyStore`` equal to the compacted ``policies`` topic
(and, as ``PolicyTable(..., what="experiment")``, its ``ExperimentStore`` equal to the
``experiments`` topic): each worker reads *all* partitions (no consumer group) from the
beginning, then follows new records, so a change applies live on every worker within a poll
interval, and a restart rebuilds the table from the topic; nothing lives only in process memory.
(Faust's GlobalTable would do the same job, but its recovery has known hangs in faust-streaming;
this is 60 lines.)
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from streams.admin import topic_partitions
from streams.records import SourceRecord
from workers.errors import InvalidEvent

log = logging.getLogger(__name__)


class Store(Protocol):
    """A materialized view of a compacted topic (``PolicyStore``, ``ExperimentStore``)."""

    def __len__(self) -> int: ...

    def apply(self, key: str, raw: bytes | None) -> object:
        """Apply a record (None = tombstone); a bad one raises ``InvalidEvent``."""


OnInvalid = Callable[[SourceRecord, InvalidEvent], Awaitable[None]]


class PolicyTable:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        store: Store,
        on_invalid: OnInvalid,
        poll_ms: int = 200,
        client_kwargs: Mapping[str, Any] | None = None,
        what: str = "policy",
    ) -> None:
        self.what = what
        self.client_kwargs = dict(client_kwargs or {})
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.on_invalid = on_invalid
        self.poll_ms = poll_ms
        self.caught_up = asyncio.Event()
        self.applied = 0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **self.client_kwargs,
        )
        await consumer.start()
        try:
            parts = await topic_partitions(consumer, self.topic, timeout_s=None)
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            while True:
                batch = await consumer.getmany(timeout_ms=self.poll_ms)
                for records in batch.values():
                    for rec in records:
                        await self._apply(rec)
                if not self.caught_up.is_set() and all(
                    [await consumer.position(tp) >= end[tp] for tp in parts]
                ):
                    log.info("%s table caught up: %d keys", self.what, len(self.store))
                    self.caught_up.set()
        finally:
            await consumer.stop()

    async def _apply(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        key, value = rec.key, rec.value
        source = SourceRecord(
            self.topic, rec.partition, rec.offset, key, value, rec.timestamp / 1000.0
        )
        try:
            if key is None:
                raise InvalidEvent(
                    f"invalid_{self.what}", f"a {self.what} record needs the tenant as its key"
                )
            applied = self.store.apply(key.decode("utf-8", "replace"), value)
        except InvalidEvent as exc:
            log.warning("rejected %s record %s@%d: %s", self.what, self.topic, source.offset, exc)
            await self.on_invalid(source, exc)
            return
        self.applied += 1
        version = getattr(applied, "version", None)
        log.info("%s for %r now %s", self.what, key, "removed" if applied is None else version)


# --- changelog-backed tables (dialogue context, dedupe) ----------------------------------------
#
# A table is split like its input topic: partition p of the table belongs to whoever owns input
# partition p, and is written to partition p of its compacted changelog topic inside that input
# partition's Kafka transaction (streams.engine). The local RocksDB (rocksdict) is only a cache of
# the changelog: it receives a partition's changes after their transaction committed, together
# with a checkpoint (the next changelog offset it reflects). On assignment the owner replays the
# changelog from the checkpoint (or from the start) up to its last stable offset, so a crash, a
# restart on a fresh disk or a move to another worker all rebuild the same state, and an aborted
# transaction's changes are never seen.
#
# Local key layout: b"v" + key -> value; b"t" + key -> 8-byte timestamp (for expiry sweeps);
# b"o" -> checkpoint; b"c" -> present only while the store is closed cleanly. The changelog
# record's Kafka timestamp carries the row's timestamp.
#
# The cache is trusted only after a clean close (Kafka Streams' rule under exactly-once): a
# store left by a session that ended on an error, or by a process that died, is rebuilt from
# the changelog. A broker can still lose a transaction it acknowledged as committed: Kafka
# 4.4.0, stopped right after a commit, came back without that transaction's COMMIT markers,
# and the next owner's fencing aborted its records; a cache that had written them through
# would claim events whose results no reader will ever see.

_VALUE, _TIME, _CHECKPOINT, _CLEAN = b"v", b"t", b"o", b"c"
_TS = struct.Struct(">d")


@dataclass
class TablePartition:
    """One partition of a changelog table: reads see the committed RocksDB state overlaid with the
    changes staged in the open transaction."""

    table: str
    changelog: str
    partition: int
    db: Rdict
    staged: dict[bytes, tuple[bytes | None, float]] = field(default_factory=dict)
    restored: int = 0  # changelog records replayed at open
    closed: bool = False

    def get(self, key: bytes) -> bytes | None:
        if key in self.staged:
            return self.staged[key][0]
        value = self.db.get(_VALUE + key)
        return None if value is None else bytes(value)

    def stage(self, key: bytes, value: bytes | None, ts: float) -> None:
        """Note a change; the caller sends the same record to the changelog in the transaction."""
        self.staged[key] = (value, ts)

    def apply_committed(self, next_offset: int) -> None:
        """The transaction holding the staged changes committed: write them through."""
        batch = WriteBatch(raw_mode=True)
        for key, (value, ts) in self.staged.items():
            _put(batch, key, value, ts)
        batch.put(_CHECKPOINT, _TS.pack(float(next_offset)))
        self.db.write(batch)
        self.staged.clear()

    def discard_staged(self) -> None:
        self.staged.clear()

    def expired(self, before: float, limit: int = 1000) -> list[bytes]:
        """Keys (committed or staged) whose timestamp is older than ``before``."""
        out: list[bytes] = []
        it = self.db.iter()
        it.seek(_TIME)
        while it.valid() and len(out) < limit:
            raw_key = bytes(it.key())
            if not raw_key.startswith(_TIME):
                break
            key = raw_key[1:]
            staged = self.staged.get(key)
            ts = staged[1] if staged else _TS.unpack(bytes(it.value()))[0]
            if ts < before and (staged is None or staged[0] is not None):
                out.append(key)
            it.next()
        del it
        return out

    def __len__(self) -> int:
        it = self.db.iter()
        it.seek(_TIME)
        n = 0
        while it.valid() and bytes(it.key()).startswith(_TIME):
            n += 1
            it.next()
        del it
        return n

    def close(self, *, clean: bool = False) -> None:
        """``clean``: everything written through is known committed and nothing is pending,
        so the next open may resume from the checkpoint; otherwise it rebuilds."""
        if not self.closed:
            self.closed = True
            self.staged.clear()
            if clean:
                self.db.put(_CLEAN, b"1")
            self.db.close()


def _put(batch: WriteBatch, key: bytes, value: bytes | None, ts: float) -> None:
    if value is None:
        batch.delete(_VALUE + key)
        batch.delete(_TIME + key)
    else:
        batch.put(_VALUE + key, value)
        batch.put(_TIME + key, _TS.pack(ts))


class ChangelogTable:
    """Names a table and where its partitions live; ``open`` restores one partition."""

    def __init__(self, name: str, changelog: str, state_dir: Path) -> None:
        self.name = name
        self.changelog = changelog
        self.state_dir = state_dir

    def path(self, partition: int) -> Path:
        return self.state_dir / self.name / str(partition)

    async def open(
        self, partition: int, consumer: AIOKafkaConsumer, stall_s: float = 60.0
    ) -> TablePartition:
        """Open the local store of ``partition`` and replay the changelog into it, using the
        group-less ``consumer`` (read_committed)."""
        path = self.path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Rdict(str(path), Options(raw_mode=True))
        try:  # a failed restore (a Kafka error, a cancellation) leaves no handle open
            tp = TopicPartition(self.changelog, partition)
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset: read_committed
            raw = db.get(_CHECKPOINT)
            checkpoint = int(_TS.unpack(bytes(raw))[0]) if raw is not None else 0
            clean = db.get(_CLEAN) is not None
            db.delete(_CLEAN)  # in use: a crash from here on leaves it unclean
            why = ""
            if checkpoint > end or checkpoint < first:  # changelog recreated or compacted past us
                why = f"checkpoint {checkpoint} outside [{first}, {end}]"
            elif raw is not None and not clean:
                why = f"not closed cleanly (checkpoint {checkpoint})"
            if why:
                log.warning("%s[%d]: %s; rebuilding from the changelog", self.name, partition, why)
                db.close()
                Rdict.destroy(str(path), Options(raw_mode=True))
                db = Rdict(str(path), Options(raw_mode=True))
                checkpoint = first
            part = TablePartition(self.name, self.changelog, partition, db)
            consumer.seek(tp, checkpoint)
            progressed = time.monotonic()
            while checkpoint < end:
                batch = WriteBatch(raw_mode=True)
                fetched = await consumer.getmany(tp, timeout_ms=500)
                for rec in fetched.get(tp, []):
                    if rec.key is not None:
                        _put(batch, rec.key, rec.value, rec.timestamp / 1000.0)
                        part.restored += 1
                # bounded: aiokafka's position() waits in a loop for a position to be valid
                position = await asyncio.wait_for(consumer.position(tp), stall_s)
                if position > checkpoint:
                    progressed = time.monotonic()
                elif time.monotonic() - progressed > stall_s:
                    raise TimeoutError(
                        f"{self.name}[{partition}] restore stalled at {position} < {end}"
                    )
                checkpoint = position
                batch.put(_CHECKPOINT, _TS.pack(float(checkpoint)))
                db.write(batch)
        except BaseException:
            db.close()
            raise
        log.info(
            "%s[%d] restored %d records up to offset %d",
            self.name,
            partition,
            part.restored,
            checkpoint,
        )
        return part
