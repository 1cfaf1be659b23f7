"""When, and how often, a partition commits (streams/finishing.py ``Finisher``), with the clock
frozen: the finisher's decisions read only the injected clocks, so a commit (or a sweep) comes
when the test moves the clock and never otherwise. Real time passes only in the short waits the
finisher makes between its checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.finishing import CommitTiming, Finisher
from streams.partition import Partition
from streams.records import SourceRecord
from tests.unit.engine_fakes import EchoHandler, FakeTxnProducer, FrozenClock, until

TP = TopicPartition("in", 0)


class CountingPartition(Partition):
    """Counts the finisher's commit calls, including those that would find nothing to do."""

    commit_calls = 0

    async def commit(self, group_id: str, consumer: AIOKafkaConsumer) -> None:
        self.commit_calls += 1
        await super().commit(group_id, consumer)


def _feed(part: Partition, *offsets: int) -> None:
    """Records as the fetch loop queues them: prepared (here: done at once), outstanding."""
    loop = asyncio.get_running_loop()
    for offset in offsets:
        rec = SourceRecord("in", 0, offset, b"k", b"v%d" % offset, 0.0, ())
        prepared: asyncio.Future[Any] = loop.create_future()
        prepared.set_result(rec.value)
        part.queue.put_nowait((rec, prepared))
        part.outstanding += 1


def _run(
    timing: CommitTiming,
    test: Callable[[CountingPartition, FakeTxnProducer, FrozenClock, EchoHandler], Awaitable[None]],
    wall_clock: FrozenClock | None = None,
) -> None:
    async def main() -> None:
        clock = FrozenClock(100.0)
        producer = FakeTxnProducer()
        part = CountingPartition(TP, producer, transactional=True, tables={}, clock=clock)  # type: ignore[arg-type]
        handler = EchoHandler()
        finisher = Finisher(
            part,
            handler,
            None,  # type: ignore[arg-type]  # transactional: offsets go through the producer
            group_id="app",
            timing=timing,
            clock=clock,
            wall_clock=wall_clock or FrozenClock(0.0),
        )
        task = asyncio.get_running_loop().create_task(finisher.run())
        try:
            await test(part, producer, clock, handler)
        finally:
            task.cancel()
            await asyncio.wait([task])
        assert task.cancelled()  # it ran until cancelled: no error of its own

    asyncio.run(main())


def test_a_busy_partition_commits_once_per_interval_and_not_before() -> None:
    async def test(
        part: CountingPartition, producer: FakeTxnProducer, clock: FrozenClock, _: EchoHandler
    ) -> None:
        _feed(part, 0, 1, 2)
        await until(lambda: part.finished_offset == 3)
        await asyncio.sleep(0.05)
        assert part.commit_calls == 0 and producer.commits == []  # the clock has not moved
        assert part.in_txn and part.uncommitted

        clock.now = 100.5  # half an interval later, more work: still no commit
        _feed(part, 3)
        await until(lambda: part.finished_offset == 4)
        await asyncio.sleep(0.05)
        assert part.commit_calls == 0 and producer.commits == []

        clock.now = 101.0  # an interval after the last commit (the partition's start)
        _feed(part, 4)
        await until(lambda: part.committed_offset == 5)
        assert part.commit_calls == 1 and len(producer.commits) == 1
        assert ("offsets", {TP: 5}, "app") in producer.calls

        _feed(part, 5, 6)  # the same instant: they wait for the next interval
        await until(lambda: part.finished_offset == 7)
        await asyncio.sleep(0.05)
        assert part.commit_calls == 1 and part.committed_offset == 5

        clock.now = 102.5
        _feed(part, 7)
        await until(lambda: part.committed_offset == 8)
        assert part.commit_calls == 2 and len(producer.commits) == 2
        assert [c[1] for c in producer.calls if c[0] == "offsets"] == [{TP: 5}, {TP: 8}]
        sent = [c[2] for c in producer.calls if c[0] == "send"]
        assert sent == [b"v%d" % i for i in range(8)]  # every record once, in offset order

    # idle_gap equal to the interval: only the interval can make these commits
    _run(CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9), test)


def test_an_idle_partition_commits_after_the_gap_and_not_again_without_progress() -> None:
    async def test(
        part: CountingPartition, producer: FakeTxnProducer, clock: FrozenClock, _: EchoHandler
    ) -> None:
        _feed(part, 0, 1)
        await until(lambda: part.finished_offset == 2)
        # idle, with work to commit: the finisher looks again every 20 ms of real time, but by
        # the (frozen) clock the gap after the last commit has not passed
        await asyncio.sleep(0.15)
        assert part.commit_calls == 0 and producer.commits == []

        clock.now = 100.02
        await until(lambda: part.committed_offset == 2)
        assert part.commit_calls == 1 and len(producer.commits) == 1

        clock.now = 200.0  # much later, nothing moved: no commit, not even a call
        await asyncio.sleep(0.5)  # the idle finisher wakes every 5 intervals (0.2 s)
        assert part.commit_calls == 1 and len(producer.commits) == 1
        assert [c[0] for c in producer.calls].count("begin") == 1  # no empty transaction

        _feed(part, 2)  # progress again, long after the last commit: committed at once
        await until(lambda: part.committed_offset == 3)
        assert part.commit_calls == 2 and len(producer.commits) == 2

    _run(CommitTiming(interval_s=0.04, idle_gap_s=0.02, sweep_interval_s=1e9), test)


def test_sweeps_follow_the_injected_clocks() -> None:
    wall = FrozenClock(5000.0)

    async def test(
        part: CountingPartition, producer: FakeTxnProducer, clock: FrozenClock, h: EchoHandler
    ) -> None:
        await asyncio.sleep(0.5)
        assert h.sweeps == []
        clock.now = 130.0  # a sweep interval after the finisher started
        await until(lambda: len(h.sweeps) == 1, timeout_s=2.0)
        assert h.sweeps == [5000.0]  # the sweep's ``now`` is the wall clock's
        wall.now = 5100.0
        await asyncio.sleep(0.5)
        assert h.sweeps == [5000.0]  # the clock did not move: no second sweep
        clock.now = 160.0
        await until(lambda: len(h.sweeps) == 2, timeout_s=2.0)
        assert h.sweeps == [5000.0, 5100.0]
        assert part.commit_calls == 0 and producer.calls == []  # sweeps that changed nothing

    _run(CommitTiming(interval_s=0.04, idle_gap_s=0.02, sweep_interval_s=30.0), test, wall)
