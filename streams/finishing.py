"""Finishing and committing (see ``streams.engine``): a partition's ``Finisher`` finishes its
prepared records strictly in offset order, each inside the session's transaction; the session's
``Committer`` decides when that one transaction commits, for every partition at once. Their
clocks are injected, so tests can freeze time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import Consumer

from streams.partition import Clock, Handler, Partition
from streams.records import SourceRecord
from streams.settings import Settings
from streams.transaction import Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitTiming:
    """When the session commits: every ``interval_s`` while it is busy finishing records; when
    no partition has a record it could finish now (each waits for its next record, or for the
    model's answer to it), as soon as the idle budget allows: one such commit per
    ``idle_gap_s`` on average, with up to ``idle_burst`` of them banked while commits are
    rarer than that (a token bucket), so that an idle moment just after another commit (an
    image turn's, at a low text rate) need not wait out the gap, while a steady stream of idle
    moments still makes at most one transaction per gap (work that comes meanwhile joins it).
    ``idle_burst`` 1 is a plain gap after the last commit. Each partition with nothing to
    commit sweeps its tables every ``sweep_interval_s``."""

    interval_s: float
    idle_gap_s: float
    sweep_interval_s: float = 30.0
    idle_burst: int = 1

    @classmethod
    def of(cls, settings: Settings, sweep_interval_s: float = 30.0) -> CommitTiming:
        interval = settings.commit_interval_ms / 1000.0
        idle_gap = min(settings.commit_idle_gap_ms / 1000.0, interval)
        return cls(interval, idle_gap, sweep_interval_s, settings.commit_idle_burst)


class IdleBudget:
    """The idle commits ``timing`` allows: a bucket that gains one every ``idle_gap_s`` up to
    ``idle_burst``, empty when the session starts, and loses one for each commit made (of any
    kind; never below empty). It reads the transaction's ``commits`` and ``last_commit``, so
    commits made by others (a revoke's) count too."""

    def __init__(self, txn: Transaction, timing: CommitTiming, clock: Clock) -> None:
        self.txn = txn
        self.timing = timing
        self.clock = clock
        self.level = 0.0  # as of ``self.at``
        self.at = txn.last_commit
        self.commits = txn.commits

    def wait(self) -> float:
        """Seconds until an idle commit is allowed (0 or less: now)."""
        gap = self.timing.idle_gap_s
        if gap <= 0:
            return 0.0
        if self.txn.commits != self.commits:  # commits since the last look: each spends one
            made = self.txn.commits - self.commits
            self.level = max(0.0, self._level(self.txn.last_commit) - made)
            self.at, self.commits = self.txn.last_commit, self.txn.commits
        # when the bucket holds one again (the plain gap's arithmetic when it was empty)
        return self.at + (1.0 - self.level) * gap - self.clock()

    def _level(self, now: float) -> float:
        return min(
            float(self.timing.idle_burst), self.level + (now - self.at) / self.timing.idle_gap_s
        )


class Committer:
    """Commits the session's transaction when ``timing`` says so, until cancelled; a failed
    commit raises (the session resets). ``wake`` is set by each finished record."""

    def __init__(
        self,
        txn: Transaction,
        parts: Callable[[], Mapping[TopicPartition, Partition]],
        consumer: Consumer,
        timing: CommitTiming,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.txn = txn
        self.parts = parts
        self.consumer = consumer
        self.timing = timing
        self.clock = clock
        self.wake = asyncio.Event()
        self.budget = IdleBudget(txn, timing, clock)

    def due_in(self) -> float | None:
        """Seconds until the next commit is due; None when there is nothing to commit."""
        parts = self.parts().values()
        if not (self.txn.pending or any(p.offset_moved for p in parts)):
            return None
        # idle: no partition has a record it could finish now (each waits for its next
        # record or for the model's answer to it); the work finished so far commits, and
        # what is still in inference goes into the next transaction
        if all(p.waiting for p in parts):
            return self.budget.wait()
        return self.txn.last_commit + self.timing.interval_s - self.clock()

    async def run(self) -> None:
        while True:
            wait = self.due_in()
            if wait is not None and wait <= 0:
                await self.commit()
                continue
            self.wake.clear()
            timeout = self.timing.interval_s if wait is None else wait
            # asyncio.timeout, not wait_for: 3.11's wait_for returns the inner result when the
            # wake and a cancellation land together, and the committer then never stopped
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.wake.wait()

    async def commit(self) -> None:
        # shielded: a cancellation (the worker stopping) does not cut a commit short; the
        # partitions' close waits for it (the transaction's lock) and sees its error
        task = asyncio.ensure_future(self.txn.commit(self.parts().values(), self.consumer))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Finisher:
    """Finishes one partition's records until cancelled; a Kafka error (a refused send)
    raises, and the session resets. ``on_finished`` is told of each finished record (it makes
    room for fetching and wakes the committer).

    Records finish in offset order, except where the handler lets an outcome overtake
    (``Overtaking.overtakes``: an image turn still in OCR need not hold back the text turns of
    other conversations behind it). A record overtakes only older records of other keys (a
    keyless record is never overtaken and never overtakes), and the offset committed stays that
    of the oldest record not finished; after a crash the records that overtook it are read
    again, so an outcome may overtake only when finishing it leaves a trace that makes its
    replay a no-op (the conversation flow's dedupe row)."""

    def __init__(
        self,
        part: Partition,
        handler: Handler,
        *,
        timing: CommitTiming,
        on_finished: Callable[[], None] = lambda: None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.part = part
        self.handler = handler
        self.timing = timing
        self.on_finished = on_finished
        self.clock = clock  # sweep intervals
        self.wall_clock = wall_clock  # the ``now`` a sweep compares table rows with
        self.last_sweep = clock()
        self.overtakes = handler.overtakes if isinstance(handler, Overtaking) else None
        self.pending: list[tuple[SourceRecord, Awaitable[Any]]] = []  # taken, not finished
        self.overtaken = 0  # records finished ahead of an older one
        self.past = 0  # the offset past every record finished

    async def run(self) -> None:
        self.last_sweep = self.clock()
        part = self.part
        while True:
            self._take()
            at = self._next()
            if at is None:
                if not await self._wait_for_work():
                    await self._sweep()
                continue
            rec, prepared = self.pending.pop(at)
            self.overtaken += at > 0
            await self._finish(rec, prepared)
            if (
                not self.pending
                and part.queue.empty()
                and self.clock() - self.last_sweep >= self.timing.sweep_interval_s
            ):
                await self._sweep()

    def _take(self) -> None:
        """Everything queued joins ``pending`` (all of it: a later record may overtake)."""
        queue = self.part.queue
        while not queue.empty() and (self.overtakes is not None or not self.pending):
            rec, prepared = queue.get_nowait()
            if self.overtakes is not None:
                prepared = asyncio.ensure_future(prepared)
            self.pending.append((rec, prepared))

    def _next(self) -> int | None:
        """Where in ``pending`` the record to finish now is; None when there is none. Without
        overtaking that is the oldest, whose outcome ``_finish`` waits for."""
        if not self.pending:
            return None
        if self.overtakes is None or _done(self.pending[0][1]):
            return 0
        held: set[bytes] = set()  # keys of older records not finished
        for at, (rec, prepared) in enumerate(self.pending):
            if rec.key is None:
                return None  # nothing overtakes a keyless record
            if at and rec.key not in held and self._may_overtake(prepared):
                return at
            held.add(rec.key)
        return None

    def _may_overtake(self, prepared: Awaitable[Any]) -> bool:
        assert self.overtakes is not None
        if not _done(prepared):
            return False
        assert isinstance(prepared, asyncio.Future)
        return prepared.exception() is None and self.overtakes(prepared.result())

    async def _wait_for_work(self) -> bool:
        """Nothing can be finished now: wait for a record, or (overtaking) for any pending
        outcome; False after ``sweep_interval_s`` of neither."""
        part = self.part
        self._wait()
        get = asyncio.ensure_future(part.queue.get())
        waits: set[asyncio.Future[Any]] = {get}
        # outcomes still being prepared; a done one waits for an elder of its key (or its turn),
        # which only this loop can finish: waiting on it would return at once, and spin
        waits.update(p for _, p in self.pending if isinstance(p, asyncio.Future) and not p.done())
        try:
            done, _ = await asyncio.wait(
                waits, timeout=self.timing.sweep_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            part.waiting = False
            if not get.cancel():  # a record came (else it stays queued)
                self.pending.append(get.result())
                if self.overtakes is not None:  # as ``_take`` keeps them: futures
                    rec, prepared = self.pending[-1]
                    self.pending[-1] = (rec, asyncio.ensure_future(prepared))
        return bool(done)

    async def _sweep(self) -> None:
        self.last_sweep = self.clock()
        async with self.part.txn.gate.entry():
            if not self.part.closed:
                await self.handler.sweep(self.part, self.wall_clock())
        self.on_finished()

    def _wait(self) -> None:
        """Nothing of this partition can be finished now (its queue is empty, or its next
        record is still being prepared): the committer may commit what is finished."""
        self.part.waiting = True
        self.on_finished()

    async def _finish(self, rec: SourceRecord, prepared: Awaitable[Any]) -> None:
        part = self.part
        if not _done(prepared):
            self._wait()
        try:
            outcome: Any = await prepared
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler's prepare failed unexpectedly
            outcome = exc
        finally:
            part.waiting = False
        async with part.txn.gate.entry():  # not while a commit is under way
            # the next offset to commit: the oldest record still pending, else past them all
            self.past = max(self.past, rec.offset + 1)
            part.finishing_offset = self.pending[0][0].offset if self.pending else self.past
            finishing = part.finishing = asyncio.get_running_loop().create_task(
                finish_one(self.handler, rec, outcome, part)
            )
            try:
                await asyncio.shield(finishing)
            except asyncio.CancelledError:  # a revoke: the record ends inside the gate
                await asyncio.wait([finishing])
                if finishing.cancelled() or finishing.exception() is not None:
                    # half done: no commit may take its outputs (the partition's close resets)
                    part.txn.close()
                else:  # its offset goes with its outputs, into whichever commit comes next
                    part.finishing = None
                    part.finished_offset = part.finishing_offset
                raise
            part.finishing = None
            part.finished_offset = part.finishing_offset
        part.outstanding -= 1
        self.on_finished()


@runtime_checkable
class Overtaking(Protocol):
    """A handler whose finished ``outcome`` may overtake older records of other keys."""

    def overtakes(self, outcome: Any) -> bool: ...


def _done(prepared: Awaitable[Any]) -> bool:
    return isinstance(prepared, asyncio.Future) and prepared.done()


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
