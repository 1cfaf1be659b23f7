"""AdaptiveRouter with fake GPU/CPU endpoints and a frozen clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from workers.errors import InferenceRejected, InferenceUnavailable, InferstreamError
from workers.inference.router import (
    OPENVINO_INT8,
    TENSORRT_FP16,
    AdaptiveRouter,
    Route,
    RouteTimeout,
)
from workers.inference.triton import InferenceOutput
from workers.retry import Backoff


class FakeClock:
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
                if not entry[1].done():
                    entry[1].set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)


@dataclass
class FakeEndpoint:
    """Scripted model endpoint: ``errors`` are raised in turn (None = answer); ``hang`` blocks."""

    tag: float
    errors: list[Exception | None] = field(default_factory=list)
    hang: bool = False
    calls: int = 0

    async def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> InferenceOutput:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        n = input_ids.shape[0]
        return InferenceOutput(np.full((n, 3), self.tag), np.zeros((n, 4)), "1", 0.001)


@dataclass
class FakeProbe:
    ready: bool = True
    calls: int = 0
    error: Exception | None = None

    async def __call__(self, route: Route) -> bool:
        self.calls += 1
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.ready


IDS = np.ones((2, 5), dtype=np.int64)


def make(
    gpu: FakeEndpoint | None, cpu: FakeEndpoint, probe: FakeProbe, clock: FakeClock
) -> AdaptiveRouter:
    return AdaptiveRouter(
        Route("minilm_trt", TENSORRT_FP16, gpu) if gpu is not None else None,
        Route("minilm_cpu", OPENVINO_INT8, cpu),
        probe=probe,
        reprobe_s=30.0,
        timeout_s=2.0,
        clock=clock,
        sleep=clock.sleep,
    )


async def test_gpu_marked_unavailable_means_every_result_is_openvino() -> None:
    gpu, cpu, probe, clock = FakeEndpoint(1.0), FakeEndpoint(2.0), FakeProbe(False), FakeClock()
    router = make(gpu, cpu, probe, clock)
    backends = []
    for _ in range(5):
        out, backend = await router.infer(IDS, IDS)
        backends.append(backend)
        assert out.logits[0, 0] == 2.0
        await clock.advance(10.0)
    assert backends == [OPENVINO_INT8] * 5
    assert gpu.calls == 0 and router.counts == {"minilm_trt": 0, "minilm_cpu": 5}
    assert probe.calls == 2  # at t=0 and again once 30 s had passed, not per batch


async def test_no_gpu_route_at_all() -> None:
    cpu, clock = FakeEndpoint(2.0), FakeClock()
    router = make(None, cpu, FakeProbe(True), clock)
    assert (await router.infer(IDS, IDS))[1] == OPENVINO_INT8
    assert router.counts == {"minilm_cpu": 1} and not router.gpu_ready


async def test_gpu_ready_serves_batches() -> None:
    gpu, cpu, clock = FakeEndpoint(1.0), FakeEndpoint(2.0), FakeClock()
    router = make(gpu, cpu, FakeProbe(True), clock)
    for _ in range(3):
        assert (await router.infer(IDS, IDS))[1] == TENSORRT_FP16
    assert router.counts == {"minilm_trt": 3, "minilm_cpu": 0} and cpu.calls == 0


async def test_erroring_gpu_falls_back_per_batch_and_recovers_after_reprobe() -> None:
    gpu = FakeEndpoint(1.0, errors=[None, InferenceUnavailable("UNAVAILABLE: gpu gone"), None])
    cpu, probe, clock = FakeEndpoint(2.0), FakeProbe(True), FakeClock()
    router = make(gpu, cpu, probe, clock)
    seen = [(await router.infer(IDS, IDS))[1]]  # GPU fine
    out, backend = await router.infer(IDS, IDS)  # GPU errors: this batch goes to the CPU
    seen.append(backend)
    assert out.logits[0, 0] == 2.0 and router.fallbacks == 1
    assert "gpu gone" in (router.last_gpu_error or "") and not router.gpu_ready
    await clock.advance(10.0)
    seen.append((await router.infer(IDS, IDS))[1])  # marked down: straight to the CPU
    assert gpu.calls == 2 and probe.calls == 1
    await clock.advance(20.0)  # 30 s since the failure: re-probed, ready again
    seen.append((await router.infer(IDS, IDS))[1])
    assert seen == [TENSORRT_FP16, OPENVINO_INT8, OPENVINO_INT8, TENSORRT_FP16]
    assert probe.calls == 2 and router.counts == {"minilm_trt": 2, "minilm_cpu": 2}


async def test_non_retriable_gpu_error_and_non_inferstream_error_also_fall_back() -> None:
    gpu = FakeEndpoint(1.0, errors=[InferenceRejected("INTERNAL: bad engine"), RuntimeError("x")])
    cpu, probe, clock = FakeEndpoint(2.0), FakeProbe(True), FakeClock()
    router = make(gpu, cpu, probe, clock)
    backends = []
    for _ in range(2):
        backends.append((await router.infer(IDS, IDS))[1])
        await clock.advance(30.0)
    assert backends == [OPENVINO_INT8, OPENVINO_INT8] and router.fallbacks == 2
    assert (await router.infer(IDS, IDS))[1] == TENSORRT_FP16


async def test_slow_gpu_times_out_and_the_batch_goes_to_the_cpu() -> None:
    gpu, cpu, clock = FakeEndpoint(1.0, hang=True), FakeEndpoint(2.0), FakeClock()
    router = make(gpu, cpu, FakeProbe(True), clock)
    call = asyncio.ensure_future(router.infer(IDS, IDS))
    await clock.advance(0.0)  # let the call start (and its timeout begin)
    await clock.advance(1.9)
    assert not call.done()
    await clock.advance(0.1)
    _, backend = await call
    assert backend == OPENVINO_INT8 and router.fallbacks == 1
    assert "RouteTimeout" in (router.last_gpu_error or "")


async def test_cpu_rejection_propagates_as_non_retriable() -> None:
    cpu = FakeEndpoint(2.0, errors=[InferenceRejected("INVALID_ARGUMENT: shape")])
    router = make(FakeEndpoint(1.0), cpu, FakeProbe(False), FakeClock())
    with pytest.raises(InferenceRejected) as info:
        await router.infer(IDS, IDS)
    assert info.value.retriable is False
    assert router.counts["minilm_cpu"] == 0


async def test_cpu_timeout_is_retriable() -> None:
    clock = FakeClock()
    router = make(None, FakeEndpoint(2.0, hang=True), FakeProbe(False), clock)
    call = asyncio.ensure_future(router.infer(IDS, IDS))
    await clock.advance(0.0)
    await clock.advance(2.0)
    with pytest.raises(RouteTimeout) as info:
        await call
    assert isinstance(info.value, InferenceUnavailable) and info.value.retriable


async def test_retriable_cpu_error_is_retried_by_the_callers_backoff() -> None:
    clock = FakeClock()
    cpu = FakeEndpoint(2.0, errors=[InferenceUnavailable("UNAVAILABLE"), None])
    router = make(FakeEndpoint(1.0), cpu, FakeProbe(False), clock)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    backoff = Backoff(initial_s=0.2, max_attempts=3, sleep=sleep, rand=lambda: 0.5)
    _, backend = await backoff.run(lambda: router.infer(IDS, IDS), "inference")
    assert backend == OPENVINO_INT8 and slept == [
        pytest.approx(0.15)
    ]  # full jitter: 0.1 + 0.5 * 0.1
    # a non-retriable one goes straight to the caller (who dead-letters the batch's events)
    cpu.errors.append(InferenceRejected("INVALID_ARGUMENT"))
    with pytest.raises(InferstreamError) as info:
        await backoff.run(lambda: router.infer(IDS, IDS), "inference")
    assert not info.value.retriable and info.value.reason == "inference_rejected"
    assert len(slept) == 1


async def test_probe_errors_and_hangs_count_as_not_ready() -> None:
    clock = FakeClock()
    probe = FakeProbe(True, error=ConnectionError("refused"))
    router = make(FakeEndpoint(1.0), FakeEndpoint(2.0), probe, clock)
    assert (await router.infer(IDS, IDS))[1] == OPENVINO_INT8
    assert await router.probe_now() is False

    async def hanging(route: Route) -> bool:
        await asyncio.Event().wait()
        return True

    router = AdaptiveRouter(
        Route("minilm_trt", TENSORRT_FP16, FakeEndpoint(1.0)),
        Route("minilm_cpu", OPENVINO_INT8, FakeEndpoint(2.0)),
        probe=hanging,
        reprobe_s=30.0,
        timeout_s=2.0,
        clock=clock,
        sleep=clock.sleep,
    )
    call = asyncio.ensure_future(router.infer(IDS, IDS))
    await clock.advance(0.0)
    await clock.advance(2.0)  # the probe is bounded by timeout_s too
    assert (await call)[1] == OPENVINO_INT8 and not router.gpu_ready


async def test_concurrent_batches_share_one_probe() -> None:
    clock, probe = FakeClock(), FakeProbe(True)
    router = make(FakeEndpoint(1.0), FakeEndpoint(2.0), probe, clock)
    results = await asyncio.gather(*(router.infer(IDS, IDS) for _ in range(6)))
    assert {b for _, b in results} == {TENSORRT_FP16} and probe.calls == 1


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        AdaptiveRouter(
            None,
            Route("c", OPENVINO_INT8, FakeEndpoint(0.0)),
            probe=FakeProbe(),
            reprobe_s=1.0,
            timeout_s=0.0,
        )
