"""A session whose assigned partitions never start fetching resets (streams/fetching.py
``StallWatch``): librdkafka's statistics give each assigned partition's fetch state, and one
that stays out of "active" for ``fetch_stall_s`` while nothing is consumed ends the session.
Time paused for backpressure does not count."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from streams.fetching import FetchStalled, Poller, StallWatch
from tests.unit.engine_fakes import EchoHandler, FakeBroker, FrozenClock, until
from tests.unit.test_engine_session import INPUTS, _engine, _stop
from workers.retry import Backoff


def stats(**states: str) -> str:
    """librdkafka statistics with the given fetch state per assigned partition of topic "in"
    (plus the unassigned -1 partition and one of another topic not assigned, as it sends)."""
    parts: dict[str, Any] = {
        p: {"partition": int(p), "desired": True, "fetch_state": s} for p, s in states.items()
    }
    parts["-1"] = {"partition": -1, "desired": False, "fetch_state": "none"}
    other = {"0": {"partition": 0, "desired": False, "fetch_state": "none"}}
    return json.dumps({"topics": {"in": {"partitions": parts}, "other": {"partitions": other}}})


def test_a_partition_out_of_active_for_the_stall_time_is_a_stall() -> None:
    clock = FrozenClock(100.0)
    watch = StallWatch(30.0, clock=clock)
    watch.stats(stats(**{"0": "active", "1": "active"}))
    clock.now = 200.0
    assert watch.stalled() is None  # fetching: no time limit on an idle partition

    watch.stats(stats(**{"0": "active", "1": "none"}))
    clock.now = 229.9
    watch.stats(stats(**{"0": "active", "1": "none"}))
    assert watch.stalled() is None
    clock.now = 230.0
    why = watch.stalled()
    assert why is not None and "in[1] none" in why and "in[0]" not in why and "other" not in why

    watch.progress()  # a record was consumed: the time starts again
    assert watch.stalled() is None
    watch.stats(stats(**{"0": "offset-query", "1": "none"}))
    clock.now = 259.0
    assert watch.stalled() is None
    watch.stats(stats(**{"0": "active", "1": "active"}))  # it started
    clock.now = 1000.0
    assert watch.stalled() is None


def test_statistics_it_cannot_read_change_nothing() -> None:
    clock = FrozenClock(0.0)
    watch = StallWatch(1.0, clock=clock)
    watch.stats(stats(**{"0": "none"}))
    for raw in ("not json", "[]", json.dumps({"topics": None})):
        watch.stats(raw)
    clock.now = 2.0
    assert watch.stalled() is None  # the garbage ones said nothing was waiting


class StubConsumer:
    """What ``Poller.step`` calls; ``polls`` hold the messages each poll returns."""

    def __init__(self, watch: StallWatch) -> None:
        self.watch = watch
        self.polls: list[Any] = []
        self.paused: list[Any] = []

    def poll(self, timeout: float) -> Any:
        self.watch.stats(stats(**{"0": "none"}))  # as librdkafka calls stats_cb in its poll
        return self.polls.pop(0) if self.polls else None

    def consume(self, n: int, timeout: float) -> list[Any]:
        return []

    def assignment(self) -> list[Any]:
        return ["in[0]"]

    def pause(self, parts: list[Any]) -> None:
        self.paused = parts

    def resume(self, parts: list[Any]) -> None:
        self.paused = []

    def position(self, parts: list[Any]) -> list[Any]:
        return []


def test_the_poller_raises_a_stall_but_never_while_paused_or_consuming() -> None:
    clock = FrozenClock(0.0)
    watch = StallWatch(10.0, clock=clock)
    consumer = StubConsumer(watch)
    poller = Poller(consumer, watch=watch)  # type: ignore[arg-type]
    poller.step(10, 0.0, [])
    clock.now = 9.0
    poller.step(10, 0.0, [])  # 9 s of a partition not fetching

    clock.now = 100.0
    for _ in range(3):  # paused for backpressure: no stall, however long
        poller.step(0, 0.0, [])
    assert consumer.paused

    consumer.polls = [object()]  # resumed, and a record comes: progress
    poller.step(10, 0.0, [])
    assert not consumer.paused
    clock.now = 105.0
    poller.step(10, 0.0, [])  # out of active again, from this poll's statistics on
    clock.now = 114.0
    poller.step(10, 0.0, [])
    clock.now = 115.0
    with pytest.raises(FetchStalled, match=r"in\[0\] none"):
        poller.step(10, 0.0, [])


def test_a_session_whose_partitions_stop_fetching_resets_and_the_next_one_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        broker = FakeBroker(INPUTS)
        handler = EchoHandler()
        engine, clients, events, resets = _engine(
            broker,
            handler,
            FrozenClock(1000.0),
            Backoff(initial_s=1.0, rand=lambda: 0.5),
            fetch_stall_s=0.3,
        )
        task = asyncio.get_running_loop().create_task(engine.run())
        try:
            await until(lambda: engine.ready.is_set() and engine.pending == 0)
            assert not resets
            # the first consumer's statistics: its partitions stopped fetching (real time)
            on_stats = clients.consumers[0].on_stats
            assert on_stats is not None
            on_stats(stats(**{"0": "none", "1": "none"}))
            await until(lambda: len(resets) == 1 and engine.ready.is_set())
            assert "consumer 2" in events  # a new session, a new consumer
        finally:
            await _stop(task)

    with caplog.at_level(logging.ERROR, logger="streams.engine"):
        asyncio.run(main())
    assert any("FetchStalled" in r.getMessage() for r in caplog.records)
