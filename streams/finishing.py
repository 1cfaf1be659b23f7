"""A partition's finisher (see ``streams.engine``): it finishes the partition's prepared records
strictly in offset order, each inside the partition's transaction, and decides when that
transaction commits. Its clocks are injected, so tests can freeze time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from streams.partition import Clock, Handler, Partition
from streams.records import SourceRecord
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitTiming:
    """When a partition commits: every ``interval_s`` while it is busy; when its queue runs
    empty, but no sooner than ``idle_gap_s`` after its last commit (work that comes meanwhile
    joins the transaction); with nothing to commit, a sweep every ``sweep_interval_s``."""

    interval_s: float
    idle_gap_s: float
    sweep_interval_s: float = 30.0

    @classmethod
    def of(cls, settings: Settings, sweep_interval_s: float = 30.0) -> CommitTiming:
        interval = settings.commit_interval_ms / 1000.0
        idle_gap = min(settings.commit_idle_gap_ms / 1000.0, interval)
        return cls(interval, idle_gap, sweep_interval_s)


class Finisher:
    """Finishes one partition's records until cancelled; a Kafka error (a refused send, a
    commit that failed or timed out) raises, and the session resets. ``on_finished`` is told
    of each finished record (it makes room for fetching)."""

    def __init__(
        self,
        part: Partition,
        handler: Handler,
        consumer: AIOKafkaConsumer,
        *,
        group_id: str,
        timing: CommitTiming,
        on_finished: Callable[[], None] = lambda: None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.part = part
        self.handler = handler
        self.consumer = consumer
        self.group_id = group_id
        self.timing = timing
        self.on_finished = on_finished
        self.clock = clock  # commit intervals, idle gaps, sweep intervals
        self.wall_clock = wall_clock  # the ``now`` a sweep compares table rows with
        self.last_sweep = clock()

    async def run(self) -> None:
        self.last_sweep = self.clock()
        while True:
            item = await self._next()
            if item is not None:
                await self._finish(*item)

    async def _next(self) -> tuple[SourceRecord, Awaitable[Any]] | None:
        """The next record, or None after an idle step (a commit, a sweep, a wait that ran out)."""
        part = self.part
        if not part.queue.empty():
            return part.queue.get_nowait()
        # idle: commit now, unless the last commit was under idle_gap ago; then wait for more
        # work until the gap is over (it joins this transaction)
        wait = self.timing.interval_s * 5
        if part.uncommitted:
            wait = part.last_commit + self.timing.idle_gap_s - self.clock()
            if wait <= 0:
                await self._commit()
                return None
        elif self.clock() - self.last_sweep >= self.timing.sweep_interval_s:
            self.last_sweep = self.clock()
            await self.handler.sweep(part, self.wall_clock())
            return None
        try:
            return await asyncio.wait_for(part.queue.get(), wait)
        except TimeoutError:
            return None

    async def _finish(self, rec: SourceRecord, prepared: Awaitable[Any]) -> None:
        part = self.part
        try:
            outcome: Any = await prepared
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's prepare failed unexpectedly
            outcome = exc
        part.finishing_offset = rec.offset + 1
        part.finishing = asyncio.get_running_loop().create_task(
            finish_one(self.handler, rec, outcome, part)
        )
        await asyncio.shield(part.finishing)
        part.finishing = None
        part.finished_offset = rec.offset + 1
        part.outstanding -= 1
        self.on_finished()
        if self.clock() - part.last_commit >= self.timing.interval_s:
            await self._commit()

    async def _commit(self) -> None:
        # shielded: a cancellation (a revoke) does not cut a commit short; the next commit
        # waits for it (the partition's commit lock)
        await asyncio.shield(self.part.commit(self.group_id, self.consumer))


async def finish_one(handler: Handler, rec: SourceRecord, outcome: Any, part: Partition) -> None:
    """Finish one record; a bug (not a Kafka error) dead-letters it instead of stopping the
    partition."""
    try:
        await handler.finish(rec, outcome, part)
    except KafkaError:
        raise
    except Exception as exc:  # a bug must not stop the partition: dead-letter the record
        log.exception("finishing %s[%d]@%d failed", rec.topic, rec.partition, rec.offset)
        await handler.fail(rec, exc, part)
