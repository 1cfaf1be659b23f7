"""The engine's session (streams/engine.py ``Engine``) on the fake broker: a failed session (a
finisher's Kafka error, a commit the broker refuses, offsets from an old group generation)
abandons its partitions (nothing more committed), aborts its open transaction, waits the back-off
of ``workers.retry.Backoff`` and rebuilds the session from committed state with the same
transactional id; the outputs that become visible answer each input exactly once. A rebalance's
revoke, and the worker stopping, commit what was finished; a rebalance (or a lost assignment)
while fetching is paused leaves no partition paused. The clock is frozen, so nothing commits
until the test moves it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from confluent_kafka import KafkaError

from streams.engine import Engine
from streams.partition import Partition
from streams.settings import Settings
from streams.tables import ChangelogTable
from tests.unit.engine_fakes import (
    EchoHandler,
    FakeBroker,
    FakeClients,
    FrozenClock,
    kafka_error,
    until,
)
from workers.retry import Backoff

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)
INPUTS = {TP0: [b"a0", b"a1", b"a2"], TP1: [b"b0", b"b1", b"b2"]}
ALL = sorted(INPUTS[TP0] + INPUTS[TP1])


async def _stop(task: asyncio.Task[None]) -> None:
    """Stop the engine as the worker does (cancel its task); it must end, and promptly."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5.0)
    assert done, "the engine did not stop when its task was cancelled"
    assert task.cancelled()


def _engine(
    broker: FakeBroker,
    handler: EchoHandler,
    clock: FrozenClock,
    backoff: Backoff,
    park_after: int | None = None,
    max_pending: int = 256,
    commit_timeout_s: float = 30.0,
    fetch_stall_s: float = 30.0,
) -> tuple[Engine, FakeClients, list[str], list[list[Partition]]]:
    """The engine on fakes; ``events`` logs consumers made and back-off sleeps, ``resets`` the
    partitions the handler had written through at each reset. After ``park_after`` resets its
    back-off sleep lasts until the engine is stopped ("parked" in ``events``)."""
    settings = Settings(
        app_id="app",
        instance_id="w1",
        processing_guarantee="exactly_once",
        max_pending=max_pending,
        commit_timeout_s=commit_timeout_s,
        fetch_stall_s=fetch_stall_s,
    )
    events: list[str] = []
    resets: list[list[Partition]] = []
    clients = FakeClients(settings, broker, events)

    async def sleep(delay: float) -> None:
        events.append(f"sleep {delay:g}")
        if park_after is not None and len(resets) >= park_after:
            events.append("parked")
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    engine = Engine(
        settings,
        [handler],
        clients=clients,
        backoff=backoff,
        clock=clock,
        sleep=sleep,
        on_reset=lambda: resets.append([p for p in handler.parts if isinstance(p, Partition)]),
    )
    return engine, clients, events, resets


def _all_finished(engine: Engine, n: int = 3) -> bool:
    return (
        engine.ready.is_set()
        and engine.pending == 0
        and len(engine.parts) == 2
        and all(p.finished_offset == n for p in engine.parts.values())
    )


@pytest.mark.parametrize("cause", ["finish", "commit", "generation"])
def test_a_failed_session_is_abandoned_and_restarts_from_committed_state(
    cause: str, tmp_path: Path
) -> None:
    async def main() -> None:
        broker = FakeBroker(INPUTS)
        # the handler answers each value once (a dedupe table): a table change of the failed
        # session that leaked into the next one would drop an answer
        handler = EchoHandler(dedupe=ChangelogTable("seen", "app-seen-changelog", tmp_path))
        if cause == "finish":
            handler.fail_at = {(0, 2)}  # in[0]@2: the connection is lost
        clock = FrozenClock(1000.0)
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 0.5)
        engine, clients, events, resets = _engine(broker, handler, clock, backoff)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            if cause != "finish":
                await until(lambda: _all_finished(engine))
                assert broker.committed == {} and broker.outputs == []  # the clock stood
                if cause == "commit":
                    broker.refuse_commits = 1  # the coordinator is away
                else:
                    broker.expel()  # the group moved on without this consumer
                clock.now += 1.0  # the commit is due, and fails
            await until(lambda: len(clients.consumers) == 2 and engine.ready.is_set())
            first, second = clients.producers

            # the reset: once, after the first session's consumer, then the back-off, then anew
            assert len(resets) == 1
            assert events == ["consumer 1", "sleep 0.75", "consumer 2"]
            assert backoff.delay(0) == 0.75
            # partitions of the failed session abandoned: closed, finishers ended, no commit
            old_parts = resets[0]
            assert {p.tp for p in old_parts} == {TP0, TP1}
            assert all(p.closed and p.task is not None and p.task.done() for p in old_parts)
            assert all(p.committed_offset is None for p in old_parts)
            assert clients.consumers[0].stopped
            # its open transaction aborted: nothing of it is visible
            await until(lambda: ("abort",) in first.calls)
            assert first.commits == ([("commit",)] if cause == "commit" else [])
            assert broker.outputs == [] and broker.committed == {}
            aborted = set(broker.values(aborted=True))
            assert {b"a0", b"a1"} <= aborted <= set(ALL)
            assert aborted == set(ALL) or cause == "finish"

            # the new session: new partitions, a producer with the same transactional id (its
            # new epoch fences the old), tables restored from the changelog, all input again
            assert first.transactional_id == second.transactional_id == "app-w1"
            assert second.epoch == first.epoch + 1
            assert not any(p is q for p in engine.parts.values() for q in old_parts)
            await until(lambda: _all_finished(engine))
            assert broker.committed == {}  # the clock stands still
            # each session restored each partition's table (the aborted rows left out)
            assert len(clients.restorers) == 4 and all(r.stopped for r in clients.restorers)

            clock.now += 1.0  # time moves: the idle worker commits
            await until(lambda: broker.committed == {TP0: 3, TP1: 3})
            assert second.offsets == [{TP0: 3, TP1: 3}]  # one transaction for both
            assert broker.values() == ALL  # each input answered exactly once
            assert broker.zombie_commits == 0
            assert len(resets) == 1 and len(clients.consumers) == 2  # no further reset
            # librdkafka's rebalance callbacks ran in the clients' threads, not the loop's
            threads = clients.consumers[1].callback_threads
            assert threads and all(t.startswith("kafka") for t in threads)
        finally:
            await _stop(task)
        assert len(resets) == 1  # the worker stopping is no reset
        assert clients.consumers[1].stopped and ("flush",) in clients.producers[1].calls

    asyncio.run(main())


def test_librdkafkas_own_queued_requests_are_nothing_to_commit() -> None:
    """While a broker is away librdkafka's queue length counts its own requests; a worker with
    nothing produced since its last commit must not call commit_transaction for them (outside a
    transaction it fails, and the session reset for nothing)."""

    async def main() -> None:
        broker = FakeBroker(INPUTS)
        clock = FrozenClock(1000.0)
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 0.5)
        engine, clients, _events, resets = _engine(broker, EchoHandler(), clock, backoff)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: _all_finished(engine))
            clock.now += 1.0
            await until(lambda: broker.committed == {TP0: 3, TP1: 3})
            producer = clients.producers[0]
            commits = len(producer.commits)
            broker.queued_requests = 3  # the broker goes away: metadata requests queue up
            for _ in range(5):
                clock.now += 1.0
                await asyncio.sleep(0.05)
            assert resets == [] and len(producer.commits) == commits
            assert producer.state == "ready"
        finally:
            await _stop(task)

    asyncio.run(main())


def test_commits_that_never_return_cost_a_session_each_and_never_the_next_ones_threads() -> None:
    """librdkafka's send_offsets_to_transaction can hang past its timeout (#5456, #5511: after
    a broker restart here). Each hung commit times out and resets the session; the hung calls
    keep their own threads, so more of them than the clients' pool has threads (4) still leave
    the next session able to poll and commit."""

    async def main() -> None:
        broker = FakeBroker(INPUTS)
        handler = EchoHandler()
        clock = FrozenClock(1000.0)
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 0.5)
        engine, clients, events, resets = _engine(
            broker, handler, clock, backoff, commit_timeout_s=0.1
        )
        hangs = 6
        broker.hang_offsets = hangs
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            deadline = time.monotonic() + 30.0
            while broker.committed != {TP0: 3, TP1: 3}:
                assert time.monotonic() < deadline, (
                    f"not committed after {len(resets)} resets, {broker.hung} calls hung"
                )
                clock.now += 1.0  # a commit is due whenever a session has finished work
                await asyncio.sleep(0.02)
            assert len(resets) == hangs and broker.hung == hangs  # each hung call still hangs
            assert len(clients.consumers) == hangs + 1
            assert sum(e.startswith("sleep") for e in events) == hangs  # a back-off each
            assert broker.values() == ALL  # each input answered exactly once
            assert broker.zombie_commits == 0
        finally:
            broker.unhang.set()
            await _stop(task)

    asyncio.run(main())


def test_a_rebalance_commits_what_is_finished_before_the_partitions_go() -> None:
    """Eager rebalancing: every partition is revoked; the revoke commits what was finished
    (one transaction, with the generation the records were read in); the partition kept goes
    on from its committed offset, the one lost is no longer read. The worker stopping commits
    what it finished since."""

    async def main() -> None:
        broker = FakeBroker(INPUTS)
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, EchoHandler(), clock, Backoff())
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: _all_finished(engine))
            assert broker.committed == {}
            old = dict(engine.parts)
            broker.rebalance([TP1])  # another worker takes in[0]
            await until(
                lambda: (
                    engine.ready.is_set()
                    and set(engine.parts) == {TP1}
                    and engine.parts[TP1] is not old[TP1]
                )
            )
            producer = clients.producers[0]
            assert producer.offsets == [{TP0: 3, TP1: 3}]  # committed by the revoke
            (offsets_call,) = [c for c in producer.calls if c[0] == "offsets"]
            assert offsets_call[2].generation == 1  # the generation the records were read in
            assert broker.committed == {TP0: 3, TP1: 3} and broker.values() == ALL
            assert all(p.closed for p in old.values())
            assert clients.consumers[0].generation == 2 and resets == []

            broker.append(TP0, b"a3")
            broker.append(TP1, b"b3")
            await until(lambda: engine.parts[TP1].finished_offset == 4)
            await asyncio.sleep(0.05)
            assert engine.pending == 0 and set(engine.parts) == {TP1}
            assert broker.committed == {TP0: 3, TP1: 3}  # the clock stands still
        finally:
            await _stop(task)
        assert broker.committed == {TP0: 3, TP1: 4}  # committed as the worker stopped
        assert producer.offsets[-1] == {TP1: 4}
        assert broker.values() == sorted([*ALL, b"b3"]) and resets == []
        assert clients.consumers[0].stopped

    asyncio.run(main())


@pytest.mark.parametrize("committing", [False, True], ids=["commit-due-later", "commit-waiting"])
def test_a_commit_during_a_revoke_carries_the_revoked_offsets_with_their_outputs(
    committing: bool,
) -> None:
    """The revoke waits for records half-way; a commit the committer makes meanwhile (due
    during the revoke, or already waiting at the gate for those records) must not take their
    outputs without their offsets: when the revoke's own commit is then refused (the group moved
    on), those outputs would stay committed and their records be answered again."""

    async def main() -> None:
        broker = FakeBroker({TP0: [b"a0"]})
        handler = EchoHandler(gate=asyncio.Event())
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff(rand=lambda: 0.0))
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: handler.halfway == [(0, 0)])
            first = clients.producers[0]
            txn = engine._txn
            assert txn is not None
            if committing:  # past the interval: the commit waits at the gate for the record
                clock.now += 1.0
                await until(lambda: not txn.gate._open.is_set())
            else:  # past the idle gap (20 ms), not the interval (100 ms): busy, no commit
                clock.now += 0.05
                await asyncio.sleep(0.1)
            assert first.commits == []
            broker.rebalance()  # eager: every partition revoked; the revoke waits for the record
            await until(lambda: not engine.ready.is_set())
            await asyncio.sleep(0.2)  # the committer looks again meanwhile
            broker.expel()  # the group moves on before the revoke commits
            assert handler.gate is not None
            handler.gate.set()
            await until(
                lambda: (
                    len(clients.consumers) == 2
                    and engine.ready.is_set()
                    and engine.pending == 0
                    and engine.parts[TP0].finished_offset == 1
                )
            )
            assert len(resets) == 1 and first.commits == [] and broker.outputs == []
            clock.now += 1.0
            await until(lambda: broker.committed == {TP0: 1})
            assert broker.values() == [b"a0", b"a0/1"]  # once each
        finally:
            await _stop(task)

    asyncio.run(main())


def test_fetching_pauses_at_max_pending_and_resumes_when_records_finish() -> None:
    """Backpressure: at ``max_pending`` unfinished records the consumer's partitions are
    paused and nothing more is taken; finished records make room and fetching resumes."""

    async def main() -> None:
        broker = FakeBroker(INPUTS)
        handler = EchoHandler(hold_prepares=True)
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff(), max_pending=4)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: len(handler.preparing) == 4)
            consumer = clients.consumers[0]
            await until(lambda: consumer.paused == {TP0, TP1})  # at max_pending: paused
            await asyncio.sleep(0.2)
            assert engine.pending == 4 and len(handler.preparing) == 4  # nothing more taken
            assert handler.release_prepares() == 4
            await until(lambda: len(handler.preparing) == 2)  # the rest, once there is room
            assert handler.release_prepares() == 2
            await until(lambda: _all_finished(engine))
            assert consumer.paused == set() and resets == []
            clock.now += 1.0
            await until(lambda: broker.committed == {TP0: 3, TP1: 3})
            assert broker.values() == ALL
        finally:
            await _stop(task)

    asyncio.run(main())


def test_paused_fetching_resumes_only_when_a_quarter_of_max_pending_has_finished() -> None:
    """Each pause and resume drops librdkafka's prefetched records: at ``max_pending`` (8) the
    partitions stay paused while records finish one by one, and resume at 6 unfinished."""
    log = {tp: [b"%s%d" % (n, i) for i in range(12)] for tp, n in ((TP0, b"a"), (TP1, b"b"))}

    async def main() -> None:
        broker = FakeBroker(log)
        handler = EchoHandler(hold_prepares=True)
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff(), max_pending=8)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: len(handler.preparing) == 8)
            consumer = clients.consumers[0]
            await until(lambda: consumer.paused == {TP0, TP1})
            held, handler.preparing = handler.preparing, []
            for done, value in held[:1]:  # 7 unfinished: still paused, nothing more taken
                done.set_result(value)
            await until(lambda: engine.pending == 7)
            await asyncio.sleep(0.3)
            assert consumer.paused == {TP0, TP1} and handler.preparing == []
            for done, value in held[1:]:
                done.set_result(value)
            await until(lambda: len(handler.preparing) > 0)  # resumed: fetching again
            for _ in range(200):  # the rest, as they are fetched; then a commit
                handler.release_prepares()
                if _all_finished(engine, 12) and len(broker.values()) == 24:
                    break
                clock.now += 1.0
                await asyncio.sleep(0.02)
            assert consumer.paused == set() and resets == []
            assert broker.values() == sorted(v for vs in log.values() for v in vs)
        finally:
            await _stop(task)

    asyncio.run(main())


@pytest.mark.parametrize("how", ["revoked", "lost"])
def test_a_rebalance_while_fetching_is_paused_leaves_no_partition_paused(how: str) -> None:
    """At ``max_pending`` the partitions are paused; a rebalance comes (another member, or the
    consumer's own session timing out: its assignment is lost) before anything finished, so the
    revoke has nothing to commit and the same consumer is assigned the partitions again. A
    pause outlives a rebalance in librdkafka: the partitions must be fetched again all the
    same, from the committed offsets, and each input answered once."""

    async def main() -> None:
        broker = FakeBroker(INPUTS)
        handler = EchoHandler(hold_prepares=True)
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff(), max_pending=4)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: len(handler.preparing) == 4)
            consumer = clients.consumers[0]
            await until(lambda: consumer.paused == {TP0, TP1})  # at max_pending: paused
            old = dict(engine.parts)
            if how == "lost":
                broker.lose()
            else:
                broker.rebalance()
            await until(
                lambda: (
                    engine.ready.is_set()
                    and set(engine.parts) == {TP0, TP1}
                    and all(engine.parts[tp] is not old[tp] for tp in old)
                )
            )
            assert all(p.closed for p in old.values())
            assert consumer.generation == broker.generation == (3 if how == "lost" else 2)
            handler.hold_prepares = False
            handler.release_prepares()  # the model answers the records of the ended partitions
            await until(lambda: _all_finished(engine), timeout_s=3.0)
            assert consumer.paused == set()
            clock.now += 1.0
            await until(lambda: broker.committed == {TP0: 3, TP1: 3})
            assert broker.values() == ALL  # once each
            assert resets == [] and len(clients.consumers) == 1  # the same consumer throughout
        finally:
            await _stop(task)

    asyncio.run(main())


def test_session_restarts_back_off_and_start_over_after_a_long_session() -> None:
    """A broker that refuses every session: waits grow as ``Backoff.delay`` (capped at its
    ``max_s``); after a session that lasted over a minute they start from the first again."""

    async def main() -> None:
        broker = FakeBroker({TP0: [b"a0"]})
        clock = FrozenClock(1000.0)
        joins: list[int] = []

        def refuse() -> None:
            joins.append(len(joins) + 1)
            if len(joins) == 5:  # this session ran for a while before the error
                clock.now += 61.0
            raise kafka_error(KafkaError._TRANSPORT, "broker away", fatal=True)

        broker.on_join = refuse
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 1.0)  # delay = its ceiling
        engine, clients, events, resets = _engine(
            broker, EchoHandler(), clock, backoff, park_after=1100
        )
        task = asyncio.get_running_loop().create_task(engine.run())
        # a broker away for hours: well over a thousand restarts (Backoff.delay alone would
        # overflow at attempt 1024), each waiting the ceiling; stopped in a back-off wait
        await until(lambda: events[-1:] == ["parked"] or task.done(), timeout_s=30.0)
        assert not task.done() and len(resets) == 1100
        await _stop(task)
        sleeps = [float(e.split()[1]) for e in events if e.startswith("sleep")]
        assert sleeps[:7] == [1.0, 2.0, 4.0, 5.0, 1.0, 2.0, 4.0]
        assert set(sleeps[7:]) == {5.0} and len(sleeps) >= 1100
        assert all(c.stopped for c in clients.consumers)
        # every session's producer ended (nothing was in a transaction: flushed)
        await until(lambda: all(("flush",) in p.calls for p in clients.producers))
        assert len(clients.producers) == 1100 and not any(p.commits for p in clients.producers)
        assert broker.committed == {} and broker.outputs == []
        assert Engine(Settings(), []).backoff.max_s == 5.0  # the default: back within seconds

    asyncio.run(main())


def test_a_record_that_fails_half_way_is_never_committed() -> None:
    """A record whose finish fails after some of its outputs: the session resets, and no
    commit may carry those outputs (the record is processed again from its offset), not even
    one that was waiting at the gate for that record."""

    async def main() -> None:
        broker = FakeBroker({TP0: [b"a0"]})
        handler = EchoHandler(gate=asyncio.Event(), fail_at={(0, 0)})
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff(rand=lambda: 0.0))
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: handler.halfway == [(0, 0)])  # "a0/1" sent, then it waits
            clock.now += 1.0  # a commit is due: it waits at the gate for that record
            txn = engine._txn
            assert txn is not None
            await until(lambda: not txn.gate._open.is_set())
            assert handler.gate is not None
            handler.gate.set()  # the record's next send fails
            await until(lambda: len(clients.consumers) == 2 and engine.ready.is_set())
            assert len(resets) == 1 and broker.outputs == [] and broker.committed == {}
            await until(lambda: engine.pending == 0 and engine.parts[TP0].finished_offset == 1)
            clock.now += 1.0
            await until(lambda: broker.committed == {TP0: 1})
            assert broker.values() == [b"a0", b"a0/1"]  # once each
        finally:
            await _stop(task)

    asyncio.run(main())


def test_stopping_while_a_record_fails_still_ends_the_session() -> None:
    """The worker stops while a record is half-way; that record then fails: nothing of it is
    committed, and the session still ends (its transaction aborted, its consumer closed)."""

    async def main() -> None:
        broker = FakeBroker({TP0: [b"a0"]})
        handler = EchoHandler(gate=asyncio.Event(), fail_at={(0, 0)})
        clock = FrozenClock(1000.0)
        engine, clients, _, resets = _engine(broker, handler, clock, Backoff())
        task = asyncio.get_running_loop().create_task(engine.run())
        await until(lambda: handler.halfway == [(0, 0)])
        task.cancel()  # the worker stops: its close waits for the record
        await asyncio.sleep(0.05)
        assert not task.done()
        assert handler.gate is not None
        handler.gate.set()
        done, _ = await asyncio.wait([task], timeout=5.0)
        assert done and task.cancelled()
        assert broker.outputs == [] and broker.committed == {} and resets == []
        assert clients.consumers[0].stopped
        await until(lambda: ("abort",) in clients.producers[0].calls)
        assert broker.values(aborted=True) == [b"a0/1"]

    asyncio.run(main())
