"""MicroBatcher under a frozen clock: size and time flushes, in-flight limit, per-key order,
error isolation, drain and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from workers.batching import BatchResultMismatch, MicroBatcher
from workers.errors import InferenceRejected, InferenceUnavailable


class FakeClock:
    """Virtual time: ``sleep`` only returns when a test ``advance``s past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in list(self.sleepers):
            if entry[0] <= self.now:
                self.sleepers.remove(entry)
                entry[1].set_result(None)
        await settle()


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Model:
    """A fake batched model: records batches; each batch waits for its gate when ``gated``."""

    def __init__(
        self, gated: bool = False, fail: Callable[[list[str]], Exception | None] | None = None
    ) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.gated = gated
        self.fail = fail or (lambda items: None)
        self.running = 0
        self.max_running = 0

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        gate = asyncio.Event()
        self.gates.append(gate)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gated:
                await gate.wait()
            error = self.fail(items)
            if error is not None:
                raise error
            return [f"r:{x}" for x in items]
        finally:
            self.running -= 1


def batcher(model: Model, clock: FakeClock, **kw: object) -> MicroBatcher[str, str]:
    args: dict[str, object] = {"max_batch": 4, "max_wait_s": 0.25, "max_inflight": 1}
    args.update(kw)
    return MicroBatcher(model, clock=clock, sleep=clock.sleep, **args)  # type: ignore[arg-type]


async def test_flushes_when_full_without_waiting() -> None:
    clock, model = FakeClock(), Model()
    b = batcher(model, clock, max_batch=3)
    futs = [b.submit(f"k{i}", f"x{i}") for i in range(3)]
    await settle()
    assert model.batches == [["x0", "x1", "x2"]]
    assert [f.result() for f in futs] == ["r:x0", "r:x1", "r:x2"]
    assert clock.now == 0.0 and b.pending() == 0


async def test_flushes_when_the_oldest_item_waited_max_wait() -> None:
    clock, model = FakeClock(), Model()
    b = batcher(model, clock, max_batch=10, max_wait_s=0.25)
    first = b.submit("a", "x0")
    await clock.advance(0.125)
    second = b.submit("b", "x1")
    await clock.advance(0.0625)
    assert model.batches == []  # oldest waited 0.1875 < 0.25
    await clock.advance(0.0625)  # oldest waited exactly 0.25
    assert model.batches == [["x0", "x1"]]
    assert (await first, await second) == ("r:x0", "r:x1")
    third = b.submit("a", "x2")  # a new batch's timer starts from its own oldest item
    await clock.advance(0.125)
    assert len(model.batches) == 1
    await clock.advance(0.125)
    assert model.batches[1] == ["x2"] and await third == "r:x2"


async def test_zero_wait_sends_at_once() -> None:
    clock, model = FakeClock(), Model()
    b = batcher(model, clock, max_batch=8, max_wait_s=0.0)
    assert await b.submit("a", "x") == "r:x"


async def test_inflight_limit_and_full_batches_under_load() -> None:
    clock, model = FakeClock(), Model(gated=True)
    b = batcher(model, clock, max_batch=4, max_wait_s=0.25, max_inflight=2)
    futs = [b.submit(f"k{i % 3}", f"x{i}") for i in range(14)]
    await clock.advance(1.0)
    assert len(model.batches) == 2 and model.running == 2 and b.inflight() == 2
    assert b.pending() == 14
    model.gates[0].set()
    await settle()
    assert len(model.batches) == 3 and model.running == 2
    while not all(f.done() for f in futs):
        for gate in model.gates:
            gate.set()
        await settle()
    assert [len(x) for x in model.batches] == [4, 4, 4, 2]  # waited, then went out full
    assert model.max_running == 2
    assert [f.result() for f in futs] == [f"r:x{i}" for i in range(14)]


async def test_per_key_results_resolve_in_submit_order_across_batches() -> None:
    clock, model = FakeClock(), Model(gated=True)
    b = batcher(model, clock, max_batch=2, max_inflight=2)
    order: list[str] = []
    futs = [b.submit(k, x) for k, x in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")]]
    for f in futs:
        f.add_done_callback(lambda f: order.append(f.result()))
    await settle()
    assert model.batches == [["a1", "b1"], ["a2", "c1"]]
    model.gates[1].set()  # the second batch finishes first
    await settle()
    assert order == ["r:c1"]  # a2 waits behind a1; c1 has no predecessor
    assert not futs[2].done()
    model.gates[0].set()
    await settle()
    assert order == ["r:c1", "r:a1", "r:b1", "r:a2"]


async def test_a_batch_error_goes_to_exactly_its_items() -> None:
    clock = FakeClock()
    model = Model(fail=lambda items: InferenceRejected("bad input") if "bad" in items else None)
    b = batcher(model, clock, max_batch=2, max_inflight=3)
    futs = [b.submit(k, x) for k, x in [("a", "ok1"), ("b", "bad"), ("a", "ok2"), ("c", "ok3")]]
    await settle()
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert isinstance(results[0], InferenceRejected) and isinstance(results[1], InferenceRejected)
    assert results[0] is results[1]  # the same error object, with its `retriable` flag
    assert not results[0].retriable
    assert results[2:] == ["r:ok2", "r:ok3"]  # a2 still resolves (after a1's error)
    assert b.pending() == 0


async def test_error_then_success_keeps_key_order() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    async def flaky(items: list[str]) -> list[str]:
        calls["n"] += 1
        n = calls["n"]
        if n == 1:
            await settle(5)  # the first batch finishes after the second
        if n == 1:
            raise InferenceUnavailable("triton down")
        return items

    b: MicroBatcher[str, str] = MicroBatcher(
        flaky, max_batch=1, max_wait_s=0.0, max_inflight=2, clock=clock, sleep=clock.sleep
    )
    order: list[str] = []
    first, second = b.submit("k", "1"), b.submit("k", "2")
    first.add_done_callback(lambda f: order.append("error" if f.exception() else "1"))
    second.add_done_callback(lambda f: order.append(f.result()))
    await b.drain()
    assert order == ["error", "2"]
    assert isinstance(first.exception(), InferenceUnavailable)


async def test_wrong_result_count_is_an_error_for_the_batch() -> None:
    async def short(items: list[str]) -> list[str]:
        return items[:-1]

    clock = FakeClock()
    b: MicroBatcher[str, str] = MicroBatcher(
        short, max_batch=2, max_wait_s=0.0, clock=clock, sleep=clock.sleep
    )
    fut = b.submit("a", "x")
    with pytest.raises(BatchResultMismatch):
        await fut


async def test_drain_flushes_early_and_waits_for_everything() -> None:
    clock, model = FakeClock(), Model()
    b = batcher(model, clock, max_batch=100, max_wait_s=60.0)
    futs = [b.submit("a", f"x{i}") for i in range(5)]
    await b.drain()  # no clock advance needed
    assert model.batches == [[f"x{i}" for i in range(5)]]
    assert all(f.done() for f in futs) and b.pending() == 0
    await b.drain()  # idle: returns at once


async def test_a_cancelled_submission_is_not_sent() -> None:
    clock, model = FakeClock(), Model()
    b = batcher(model, clock, max_batch=3)
    gone = b.submit("a", "gone")
    gone.cancel()
    kept = b.submit("a", "kept")
    await clock.advance(0.25)
    assert model.batches == [["kept"]] and await kept == "r:kept"
    assert b.pending() == 0


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Model(), max_batch=0, max_wait_s=0.1)


async def test_backlog_counts_what_waits_for_a_slot_only() -> None:
    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        await release.wait()
        return items

    b: MicroBatcher[int, int] = MicroBatcher(slow, max_batch=2, max_wait_s=0.0, max_inflight=1)
    first = [b.submit("k", 0)]  # due at once: in flight
    await asyncio.sleep(0)
    assert b.inflight() == 1 and b.backlog() == 0
    later = [b.submit("k", i) for i in range(1, 5)]  # no free slot: they wait for the model
    assert b.backlog() == 4
    release.set()
    assert await asyncio.gather(*first, *later) == [0, 1, 2, 3, 4]
    assert b.backlog() == 0
