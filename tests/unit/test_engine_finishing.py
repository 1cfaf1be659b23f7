"""When the session's one transaction commits (streams/finishing.py ``Committer``) and how the
partitions' ``Finisher``s finish records around it (the transaction's gate), with the clock
frozen: the committer's and finishers' decisions read only the injected clocks, so a commit (or
a sweep after a record) comes when the test moves the clock and never otherwise. Real time
passes only in the short waits they make between their checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from confluent_kafka import Consumer

from streams.finishing import Committer, CommitTiming, Finisher
from streams.partition import Partition
from streams.records import SourceRecord
from streams.settings import Settings
from streams.transaction import Transaction
from tests.unit.engine_fakes import (
    EchoHandler,
    FakeBroker,
    FakeClients,
    FakeProducer,
    FrozenClock,
    joined_consumer,
    until,
)

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


class CountingTransaction(Transaction):
    """Counts the committer's commit calls, including any that would find nothing to do."""

    commit_calls = 0

    async def commit(self, parts: Iterable[Partition], consumer: Consumer) -> bool:
        self.commit_calls += 1
        return await super().commit(parts, consumer)


@dataclass
class Rig:
    clock: FrozenClock
    broker: FakeBroker
    producer: FakeProducer
    txn: CountingTransaction
    parts: dict[TopicPartition, Partition]
    committer: Committer
    handler: EchoHandler

    def feed(
        self,
        tp: TopicPartition,
        *offsets: int,
        prepared: asyncio.Future[Any] | None = None,
        key: bytes | None = b"k",
    ) -> None:
        """Records as the fetch loop queues them: prepared (by default: done at once),
        outstanding."""
        part = self.parts[tp]
        for offset in offsets:
            rec = SourceRecord(tp.topic, tp.partition, offset, key, _value(tp, offset), 0.0, ())
            if prepared is None:
                done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                done.set_result(rec.value)
            part.queue.put_nowait((rec, done if prepared is None else prepared))
            part.outstanding += 1

    def finished(self, tp: TopicPartition) -> int | None:
        return self.parts[tp].finished_offset

    def committed(self, tp: TopicPartition) -> int | None:
        return self.parts[tp].committed_offset

    @property
    def sent(self) -> list[bytes | None]:
        """The values produced so far, committed or not."""
        return [c[2] for c in self.producer.calls if c[0] == "produce"]

    @property
    def produced(self) -> int:
        return sum(1 for c in self.producer.calls if c[0] == "produce")


def _value(tp: TopicPartition, offset: int) -> bytes:
    return b"v%d-%d" % (tp.partition, offset)


def _run(
    timing: CommitTiming,
    test: Callable[[Rig], Awaitable[None]],
    *,
    handler: EchoHandler | None = None,
    wall_clock: FrozenClock | None = None,
    finishers: list[Finisher] | None = None,
) -> None:
    async def main() -> None:
        clock = FrozenClock(100.0)
        broker = FakeBroker()
        clients = FakeClients(Settings(app_id="app", instance_id="w1"), broker)
        producer = clients.producer(True)
        txn = CountingTransaction(producer, clients, transactional=True, clock=clock)
        await txn.start()
        parts = {tp: Partition(tp, txn, tables={}) for tp in (TP0, TP1)}
        consumer = joined_consumer(broker)
        txn.group_metadata = consumer.consumer_group_metadata()  # as the engine's assignment
        committer = Committer(txn, lambda: parts, consumer, timing, clock=clock)
        rig = Rig(clock, broker, producer, txn, parts, committer, handler or EchoHandler())
        loop = asyncio.get_running_loop()
        made = [
            Finisher(
                part,
                rig.handler,
                timing=timing,
                on_finished=committer.wake.set,
                clock=clock,
                wall_clock=wall_clock or FrozenClock(0.0),
            )
            for part in parts.values()
        ]
        if finishers is not None:
            finishers.extend(made)
        tasks = [loop.create_task(committer.run())] + [loop.create_task(f.run()) for f in made]
        try:
            await test(rig)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            clients.shutdown()
        assert all(t.cancelled() for t in tasks)  # they ran until cancelled: no error

    asyncio.run(main())


def test_a_busy_worker_commits_once_per_interval_and_not_before() -> None:
    async def test(rig: Rig) -> None:
        rig.feed(TP0, 0, 1, 2)
        rig.feed(TP1, 0)
        await until(lambda: rig.finished(TP0) == 3 and rig.finished(TP1) == 1)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 0 and rig.producer.commits == []  # the clock stood
        assert rig.txn.pending and all(p.offset_moved for p in rig.parts.values())

        rig.clock.now = 100.5  # half an interval later, more work: still no commit
        rig.feed(TP0, 3)
        await until(lambda: rig.finished(TP0) == 4)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 0 and rig.producer.commits == []

        rig.clock.now = 101.0  # an interval after the last commit (the session's start)
        rig.feed(TP1, 1)
        await until(lambda: rig.committed(TP1) == 2)
        assert rig.txn.commit_calls == 1 and len(rig.producer.commits) == 1
        # one transaction for both partitions' records and offsets
        assert rig.producer.offsets == [{TP0: 4, TP1: 2}] and rig.committed(TP0) == 4

        rig.feed(TP0, 4, 5)  # the same instant: they wait for the next interval
        await until(lambda: rig.finished(TP0) == 6)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 1 and rig.committed(TP0) == 4

        rig.clock.now = 102.5
        rig.feed(TP1, 2)
        await until(lambda: rig.committed(TP1) == 3)
        assert rig.txn.commit_calls == 2 and len(rig.producer.commits) == 2
        assert rig.producer.offsets == [{TP0: 4, TP1: 2}, {TP0: 6, TP1: 3}]
        outputs = [v for _, v in rig.broker.outputs]
        for tp, n in ((TP0, 6), (TP1, 3)):  # every record once, in offset order
            assert [v for v in outputs if v in {_value(tp, i) for i in range(n)}] == [
                _value(tp, i) for i in range(n)
            ]
        assert len(outputs) == 9

    # idle_gap equal to the interval: only the interval can make these commits
    _run(CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9), test)


def test_an_idle_worker_commits_after_the_gap_and_not_again_without_progress() -> None:
    async def test(rig: Rig) -> None:
        rig.feed(TP0, 0, 1)
        rig.feed(TP1, 0)
        await until(lambda: rig.finished(TP0) == 2 and rig.finished(TP1) == 1)
        # idle, with work to commit: the committer looks again every 20 ms of real time, but
        # by the (frozen) clock the gap after the last commit has not passed
        await asyncio.sleep(0.15)
        assert rig.txn.commit_calls == 0 and rig.producer.commits == []

        rig.clock.now = 100.02
        await until(lambda: rig.committed(TP0) == 2 and rig.committed(TP1) == 1)
        assert rig.txn.commit_calls == 1 and rig.producer.offsets == [{TP0: 2, TP1: 1}]

        rig.clock.now = 200.0  # much later, nothing moved: no commit, not even a call
        await asyncio.sleep(0.3)  # the idle committer wakes every interval (0.04 s)
        assert rig.txn.commit_calls == 1 and len(rig.producer.commits) == 1
        assert [c[0] for c in rig.producer.calls].count("begin") == 1  # no empty transaction

        rig.feed(TP1, 1)  # progress again, long after the last commit: committed at once
        await until(lambda: rig.committed(TP1) == 2)
        assert rig.txn.commit_calls == 2 and rig.producer.offsets[-1] == {TP1: 2}

    _run(CommitTiming(interval_s=0.04, idle_gap_s=0.02, sweep_interval_s=1e9), test)


def test_a_record_still_in_the_model_does_not_hold_back_the_commit_of_finished_ones() -> None:
    """Idle means no partition has a record it could finish now: a record whose outcome is
    still being prepared (the model call) lets what is finished commit after the idle gap, not
    the interval; it goes into the next transaction."""

    async def test(rig: Rig) -> None:
        slow: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rig.feed(TP0, 0, prepared=slow)  # still being prepared (the model call)
        rig.feed(TP1, 0, 1)
        await until(lambda: rig.finished(TP1) == 2)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 0  # the clock stood: under the gap
        rig.clock.now = 100.03  # past the idle gap, well short of the interval
        rig.committer.wake.set()
        await until(lambda: rig.committed(TP1) == 2)
        assert rig.producer.offsets == [{TP1: 2}]  # in[0] has finished nothing yet

        slow.set_result(b"late")
        await until(lambda: rig.finished(TP0) == 1)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 1  # under the gap since the last commit
        rig.clock.now = 100.06
        rig.committer.wake.set()
        await until(lambda: rig.committed(TP0) == 1)
        assert rig.producer.offsets == [{TP1: 2}, {TP0: 1}]
        assert rig.txn.commit_calls == 2

    _run(CommitTiming(interval_s=1.0, idle_gap_s=0.02, sweep_interval_s=1e9), test)


def test_idle_commits_follow_one_another_up_to_the_burst_then_one_per_gap() -> None:
    """After a quiet spell the idle budget holds ``idle_burst`` commits: results finished one
    after another (each its own idle moment) commit at once, the clock standing still; then
    one per gap."""

    async def test(rig: Rig) -> None:
        rig.clock.now = 101.0  # long after the session's start: the bucket is full (3)
        for n, (tp, offset) in enumerate(((TP0, 0), (TP1, 0), (TP0, 1)), start=1):
            rig.feed(tp, offset)
            await until(lambda n=n: rig.txn.commit_calls == n)
        assert rig.producer.offsets == [{TP0: 1}, {TP1: 1}, {TP0: 2}]

        rig.feed(TP1, 1)  # the bucket is empty: this one waits for the gap
        await until(lambda: rig.finished(TP1) == 2)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 3
        rig.clock.now = 101.01  # half a gap: still not
        rig.committer.wake.set()
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 3
        rig.clock.now = 101.02
        rig.committer.wake.set()
        await until(lambda: rig.committed(TP1) == 2)
        assert rig.producer.offsets[-1] == {TP1: 2} and rig.txn.commit_calls == 4

        rig.clock.now = 101.03  # half a gap after that commit (the bucket at 0.5): waits
        rig.feed(TP0, 2)
        await until(lambda: rig.finished(TP0) == 3)
        await asyncio.sleep(0.05)
        assert rig.txn.commit_calls == 4

    _run(CommitTiming(interval_s=1.0, idle_gap_s=0.02, sweep_interval_s=1e9, idle_burst=3), test)


def test_a_steady_stream_of_idle_moments_makes_at_most_one_commit_per_gap_past_the_burst() -> None:
    async def test(rig: Rig) -> None:
        rig.clock.now = 101.0
        for step in range(40):  # a record every quarter gap, for ten gaps
            rig.feed(TP0 if step % 2 else TP1, step // 2)
            await until(lambda step=step: rig.finished(TP0 if step % 2 else TP1) == step // 2 + 1)
            await asyncio.sleep(0.005)
            rig.clock.now += 0.005
        # the first three at once, then one per 20 ms of the 200 ms: 3 + 10 at most
        assert 11 <= rig.txn.commit_calls <= 13
        assert len(rig.producer.commits) == rig.txn.commit_calls

    _run(CommitTiming(interval_s=1.0, idle_gap_s=0.02, sweep_interval_s=1e9, idle_burst=3), test)


def test_a_commit_waits_for_the_record_being_finished() -> None:
    """The commit closes the gate and waits: the record half-way through its sends finishes
    first, and its outputs go into the transaction together with its offset."""
    handler = EchoHandler(gate=asyncio.Event())

    async def test(rig: Rig) -> None:
        assert handler.gate is not None
        rig.feed(TP0, 0)
        await until(lambda: handler.halfway == [(0, 0)])  # one of its two outputs sent
        rig.clock.now = 101.0
        rig.committer.wake.set()
        await until(lambda: rig.txn.commit_calls == 1)
        await asyncio.sleep(0.05)
        assert rig.producer.offsets == [] and rig.producer.commits == []  # it waits
        assert rig.finished(TP0) is None

        handler.gate.set()
        await until(lambda: rig.committed(TP0) == 1)
        assert rig.producer.offsets == [{TP0: 1}] and len(rig.producer.commits) == 1
        assert rig.broker.outputs == [("out", b"v0-0/1"), ("out", b"v0-0")]

    _run(CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9), test, handler=handler)


def test_nothing_is_produced_while_a_commit_is_in_flight() -> None:
    """Records (and sweeps) wait at the gate until the commit is done: librdkafka would put
    their outputs into the committing transaction, or refuse them."""

    async def test(rig: Rig) -> None:
        rig.feed(TP0, 0)
        await until(lambda: rig.finished(TP0) == 1)
        rig.producer.hold()  # the broker is slow to answer the commit
        rig.clock.now = 101.0
        rig.committer.wake.set()
        await until(rig.producer.commits_begun.is_set)
        rig.feed(TP0, 1)
        rig.feed(TP1, 0)
        await asyncio.sleep(0.1)
        assert rig.produced == 1 and rig.producer.produced_while_committing == 0
        assert rig.finished(TP0) == 1 and rig.finished(TP1) is None

        rig.producer.release()
        await until(lambda: rig.finished(TP0) == 2 and rig.finished(TP1) == 1)
        assert rig.producer.produced_while_committing == 0
        assert rig.broker.outputs == [("out", b"v0-0")]  # the first transaction only
        calls = [c[0] for c in rig.producer.calls]
        assert (
            calls == [*("init", "begin", "produce", "offsets", "commit", "begin")] + ["produce"] * 2
        )  # the waiting records open the next transaction

        rig.clock.now = 102.0
        rig.committer.wake.set()
        await until(lambda: rig.committed(TP0) == 2 and rig.committed(TP1) == 1)
        assert rig.producer.offsets == [{TP0: 1}, {TP0: 2, TP1: 1}]
        assert rig.broker.values() == [b"v0-0", b"v0-1", b"v1-0"]

    _run(CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9), test)


def test_sweeps_after_records_follow_the_injected_clocks() -> None:
    wall = FrozenClock(5000.0)

    async def test(rig: Rig) -> None:
        rig.feed(TP0, 0)
        await until(lambda: rig.finished(TP0) == 1)
        await asyncio.sleep(0.05)
        assert rig.handler.sweeps == []  # under a sweep interval since the finisher started
        rig.clock.now = 130.0  # a sweep interval later: the next record is followed by one
        rig.feed(TP0, 1)
        await until(lambda: len(rig.handler.sweeps) == 1)
        assert rig.handler.sweeps == [5000.0]  # the sweep's ``now`` is the wall clock's
        wall.now = 5100.0
        rig.feed(TP0, 2)
        await until(lambda: rig.finished(TP0) == 3)
        await asyncio.sleep(0.05)
        assert rig.handler.sweeps == [5000.0]  # the clock did not move: no second sweep
        rig.clock.now = 160.0
        rig.feed(TP0, 3)
        await until(lambda: len(rig.handler.sweeps) == 2)
        assert rig.handler.sweeps == [5000.0, 5100.0]

    _run(CommitTiming(interval_s=1e9, idle_gap_s=1e9, sweep_interval_s=30.0), test, wall_clock=wall)


def test_an_idle_partition_sweeps_and_only_a_sweep_that_changed_something_commits() -> None:
    wall = FrozenClock(5000.0)

    async def test(rig: Rig) -> None:
        rig.clock.now = 101.0  # commits would be due: only sweeps can make one here
        await until(lambda: len(rig.handler.sweeps) >= 6)  # each partition, every 50 ms
        assert set(rig.handler.sweeps) == {5000.0}
        assert rig.producer.calls == [("init",)] and rig.txn.commit_calls == 0

        rig.handler.sweep_sends = True  # a sweep that expires a row: its tombstone commits
        await until(lambda: len(rig.producer.commits) >= 1)
        assert rig.producer.offsets == []  # no record finished: no offsets
        assert rig.broker.outputs[0] == ("out", None)

    _run(
        CommitTiming(interval_s=0.04, idle_gap_s=0.02, sweep_interval_s=0.05), test, wall_clock=wall
    )


class OvertakingHandler(EchoHandler):
    """``EchoHandler`` whose outcomes may overtake older records of other keys, except an
    outcome ending in ``stay`` (the conversation flow's dead letter, which leaves no trace)."""

    def overtakes(self, outcome: Any) -> bool:
        return not bytes(outcome).endswith(b"stay")


def _later() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def test_records_of_other_keys_overtake_one_still_in_the_model_and_the_offset_waits() -> None:
    """in[0]@0 (key a) is still being prepared (an image in OCR): @1 (b) and @3 (c) finish and
    can commit at once; @2 (a) waits for @0, its elder of the same key; the offset committed
    stays @0's until it finishes, then moves past everything."""
    finishers: list[Finisher] = []

    async def test(rig: Rig) -> None:
        slow = _later()
        rig.feed(TP0, 0, prepared=slow, key=b"a")
        rig.feed(TP0, 1, key=b"b")
        rig.feed(TP0, 2, key=b"a")
        rig.feed(TP0, 3, key=b"c")
        await until(lambda: len(rig.sent) == 2)
        looked = [0]
        finder = finishers[0]._next

        def counted() -> int | None:
            looked[0] += 1
            return finder()

        finishers[0]._next = counted  # type: ignore[method-assign]
        await asyncio.sleep(0.2)
        assert looked[0] <= 2  # @2 (done, held back by @0) does not make the finisher spin
        assert rig.sent == [b"v0-1", b"v0-3"]
        assert rig.finished(TP0) == 0  # the oldest record not finished
        assert rig.parts[TP0].outstanding == 2 and rig.parts[TP0].waiting
        rig.clock.now = 100.03  # idle (nothing can finish now): the idle gap commits
        rig.committer.wake.set()
        await until(lambda: len(rig.producer.commits) == 1)
        assert rig.producer.offsets == [{TP0: 0}]  # @1 and @3 replay after a crash

        slow.set_result(b"late")
        await until(lambda: rig.finished(TP0) == 4)
        assert rig.sent == [b"v0-1", b"v0-3", b"late", b"v0-2"]
        rig.clock.now = 100.06
        rig.committer.wake.set()
        await until(lambda: rig.committed(TP0) == 4)
        assert rig.parts[TP0].outstanding == 0
        assert finishers[0].overtaken == 2

        rig.feed(TP0, 4, 5, key=b"d")  # nothing in the model: offset order, nothing overtakes
        await until(lambda: rig.finished(TP0) == 6)
        assert rig.sent[-2:] == [b"v0-4", b"v0-5"]
        assert finishers[0].overtaken == 2

    _run(
        CommitTiming(interval_s=1.0, idle_gap_s=0.02, sweep_interval_s=1e9),
        test,
        handler=OvertakingHandler(),
        finishers=finishers,
    )


def test_a_keyless_record_and_an_outcome_the_handler_keeps_in_place_are_not_passed() -> None:
    """Nothing overtakes a keyless record (its conversation is unknown); an outcome the handler
    does not let overtake waits its turn, and holds back the later records of its key only."""

    async def test(rig: Rig) -> None:
        slow, slow1 = _later(), _later()
        rig.feed(TP0, 0, prepared=slow, key=b"a")
        rig.feed(TP0, 1, key=None)
        rig.feed(TP0, 2, key=b"b")
        await asyncio.sleep(0.1)
        assert rig.sent == [] and rig.finished(TP0) is None

        rig.feed(TP1, 0, prepared=slow1, key=b"a")
        done = _later()
        done.set_result(b"dead letter, stay")
        rig.feed(TP1, 1, prepared=done, key=b"b")
        rig.feed(TP1, 2, key=b"b")  # after its elder of key b: waits
        rig.feed(TP1, 3, key=b"c")
        await until(lambda: len(rig.sent) == 1)
        await asyncio.sleep(0.05)
        assert rig.sent == [b"v1-3"] and rig.finished(TP1) == 0

        slow.set_result(b"late0")
        slow1.set_result(b"late1")
        await until(lambda: rig.finished(TP0) == 3 and rig.finished(TP1) == 4)
        outputs = rig.sent
        assert sorted(outputs) == sorted(
            [b"v1-3", b"late0", b"v0-1", b"v0-2", b"late1", b"dead letter, stay", b"v1-2"]
        )
        for each in ([b"late0", b"v0-1", b"v0-2"], [b"late1", b"dead letter, stay", b"v1-2"]):
            assert [v for v in outputs if v in each] == each  # the partitions interleave

    _run(
        CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9),
        test,
        handler=OvertakingHandler(),
    )


TIMING_1S = CommitTiming(interval_s=1.0, idle_gap_s=1.0, sweep_interval_s=1e9)


def test_a_committer_woken_as_it_is_cancelled_still_stops() -> None:
    """A wake and the session's cancellation in the same loop turn: the committer must end
    (3.11's ``asyncio.wait_for`` returned the wake then and dropped the cancellation, so a
    session that reset hung in its cleanup; seen in CI after a fetch stall)."""

    async def main() -> None:
        broker = FakeBroker()
        clients = FakeClients(Settings(app_id="app", instance_id="w1"), broker)
        txn = CountingTransaction(
            clients.producer(True), clients, transactional=True, clock=FrozenClock(100.0)
        )
        await txn.start()
        committer = Committer(
            txn, dict, joined_consumer(broker), TIMING_1S, clock=FrozenClock(100.0)
        )
        task = asyncio.get_running_loop().create_task(committer.run())
        try:
            await asyncio.sleep(0.01)  # it waits for a wake
            committer.wake.set()
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2.0)
            assert done, "the committer went on after its cancellation"
            assert task.cancelled()
        finally:
            task.cancel()
            clients.shutdown()

    asyncio.run(main())
