"""The engine's session reset (streams/engine.py ``Engine.run``) on fakes: a fatal Kafka error in
a session abandons its partitions (nothing more committed), retires their producers (open
transactions aborted), waits the back-off of ``workers.retry.Backoff`` and rebuilds the session
from committed state; the outputs that become visible are each input's, exactly once. The clock
is frozen, so nothing commits until the test moves it."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.engine import Engine
from streams.partition import Partition
from streams.settings import Settings
from tests.unit.engine_fakes import EchoHandler, FakeBroker, FakeClients, FrozenClock, until
from workers.retry import Backoff

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)
INPUTS = {TP0: [b"a0", b"a1", b"a2"], TP1: [b"b0", b"b1", b"b2"]}


async def _stop(task: asyncio.Task[None]) -> None:
    """Stop the engine as the worker does (cancel its task); it must end, and promptly."""
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5.0)
    assert done, "the engine did not stop when its task was cancelled"
    assert task.cancelled()


def _engine(
    broker: FakeBroker, handler: EchoHandler, clock: FrozenClock, backoff: Backoff
) -> tuple[Engine, FakeClients, list[str], list[list[Partition]]]:
    """The engine on fakes; ``events`` logs consumers made and back-off sleeps, ``resets`` the
    partitions the handler had written through at each reset."""
    settings = Settings(app_id="app", processing_guarantee="exactly_once")
    events: list[str] = []
    resets: list[list[Partition]] = []
    clients = FakeClients(settings, broker, events)

    async def sleep(delay: float) -> None:
        events.append(f"sleep {delay:g}")
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


def test_a_fatal_error_abandons_the_session_and_restarts_it_from_committed_state() -> None:
    async def main() -> None:
        broker = FakeBroker(log={tp: list(values) for tp, values in INPUTS.items()})
        handler = EchoHandler(fail_at={(0, 2)})  # in[0]@2: the connection is lost
        clock = FrozenClock(1000.0)
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 0.5)
        engine, clients, events, resets = _engine(broker, handler, clock, backoff)
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: len(clients.consumers) == 2 and engine.ready.is_set())
            first = clients.consumers[0]
            old_producers = clients.producers[:2]

            # the reset: once, after the first session's consumer, then the back-off, then anew
            assert len(resets) == 1
            old_parts = resets[0]
            assert events == ["consumer 1", f"sleep {backoff.delay(0):g}", "consumer 2"]
            assert backoff.delay(0) == 0.75
            # partitions of the failed session abandoned: closed, finishers ended, no commit
            assert {p.tp for p in old_parts} == {TP0, TP1}
            assert all(p.closed and p.task is not None and p.task.done() for p in old_parts)
            assert all(p.committed_offset is None for p in old_parts)
            assert first.stopped
            # their producers retired in the background: open transactions aborted, stopped
            await until(lambda: all(p.stopped for p in old_producers))
            assert all(("abort",) in p.calls and p.commits == [] for p in old_producers)
            assert {p.transactional_id for p in old_producers} == {"app-in-0", "app-in-1"}

            # the new session: new partitions and producers (same ids: they fence the old),
            # nothing committed yet (the clock stands still), all input to do again
            new_parts = engine.parts
            assert set(new_parts) == {TP0, TP1}
            assert not any(p is q for p in new_parts.values() for q in old_parts)
            new_producers = clients.producers[2:]
            assert {p.transactional_id for p in new_producers} == {"app-in-0", "app-in-1"}
            assert broker.committed == {} and broker.outputs == []
            await until(
                lambda: engine.pending == 0 and all(p.uncommitted for p in new_parts.values())
            )
            assert broker.committed == {}

            clock.now += 1.0  # time moves: the idle partitions commit
            await until(lambda: broker.committed == {TP0: 3, TP1: 3})
            assert sorted(v for _, v in broker.outputs) == sorted(INPUTS[TP0] + INPUTS[TP1])
            assert broker.zombie_commits == 0
            assert len(resets) == 1 and len(clients.consumers) == 2  # no further reset
        finally:
            await _stop(task)
        assert len(resets) == 1  # the worker stopping is no reset
        assert clients.consumers[1].stopped and all(p.stopped for p in clients.producers)

    asyncio.run(main())


def test_session_restarts_back_off_and_start_over_after_a_long_session() -> None:
    """A broker that refuses every session: waits grow as ``Backoff.delay`` (capped at its
    ``max_s``); after a session that lasted over a minute they start from the first again."""

    async def main() -> None:
        broker = FakeBroker(log={TP0: [b"a0"]})
        clock = FrozenClock(1000.0)
        starts: list[int] = []

        def refuse() -> None:
            starts.append(len(starts) + 1)
            if len(starts) == 5:  # this session ran for a while before the error
                clock.now += 61.0
            raise KafkaConnectionError("broker away")

        broker.on_consumer_start = refuse
        backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 1.0)  # delay = its ceiling
        engine, clients, events, resets = _engine(broker, EchoHandler(), clock, backoff)
        task = asyncio.get_running_loop().create_task(engine.run())
        # a broker away for hours: well over a thousand restarts (Backoff.delay alone would
        # overflow at attempt 1024), each waiting the ceiling
        await until(lambda: len(resets) >= 1100 or task.done(), timeout_s=30.0)
        assert not task.done()
        await _stop(task)
        sleeps = [float(e.split()[1]) for e in events if e.startswith("sleep")]
        assert sleeps[:7] == [1.0, 2.0, 4.0, 5.0, 1.0, 2.0, 4.0]
        assert set(sleeps[7:]) == {5.0} and len(sleeps) >= 1100
        assert all(c.stopped for c in clients.consumers)
        assert Engine(Settings(), []).backoff.max_s == 5.0  # the default: back within seconds

    asyncio.run(main())
