"""Adaptive inference routing: the GPU model (TensorRT FP16) when it is ready, else the CPU model
(OpenVINO INT8), decided per batch.

* The GPU route is used while its last probe said ready and no call has failed since. A probe
  (``probe(route) -> bool``, e.g. Triton's model-ready check) is bounded by ``timeout_s``; one
  that raises or times out counts as "not ready"; concurrent batches share one probe.
* A GPU failure of any kind (retriable or not, or a timeout) sends *that* batch to the CPU route
  and marks the GPU down; it is probed again once ``reprobe_s`` passed since it went down (on the
  next batch, or by the wiring calling ``probe_now()`` from a timer).
* CPU errors propagate with their ``retriable`` flag, so the caller's ``Backoff`` retries the
  retriable ones (the retry may land on a recovered GPU) and dead-letters the rest.

Each result carries the ``backend_label`` of the route that produced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import numpy.typing as npt

from workers.errors import InferenceUnavailable
from workers.inference.triton import InferenceOutput, ModelInfo

TENSORRT_FP16 = "tensorrt-fp16"
OPENVINO_INT8 = "openvino-int8"

log = logging.getLogger(__name__)
X = TypeVar("X")


class InferClient(Protocol):
    async def infer(
        self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> InferenceOutput: ...


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # e.g. the Triton model name
    backend_label: str  # recorded on each result: TENSORRT_FP16 | OPENVINO_INT8
    client: InferClient


Probe = Callable[[Route], Awaitable[bool]]


class RouteTimeout(InferenceUnavailable):
    """A model call or a probe ran past ``timeout_s``."""

    reason = "inference_timeout"


class AdaptiveRouter:
    def __init__(
        self,
        gpu: Route | None,
        cpu: Route,
        *,
        probe: Probe,
        reprobe_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if reprobe_s < 0 or timeout_s <= 0:
            raise ValueError("need reprobe_s >= 0 and timeout_s > 0")
        self.gpu = gpu
        self.cpu = cpu
        self.probe = probe
        self.reprobe_s = reprobe_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.sleep = sleep
        self.counts: dict[str, int] = {r.name: 0 for r in (gpu, cpu) if r is not None}
        self.fallbacks = 0  # batches that tried the GPU and were served by the CPU
        self.last_gpu_error: str | None = None
        self._gpu_ready = False
        self._checked_at: float | None = None  # last probe or GPU failure; None = never probed
        self._probing: asyncio.Task[bool] | None = None

    @property
    def gpu_ready(self) -> bool:
        return self.gpu is not None and self._gpu_ready

    async def infer(
        self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> tuple[InferenceOutput, str]:
        """One batch; returns the output and the backend label of the route that served it."""
        if self.gpu is not None and await self._use_gpu():
            try:
                out = await self._call(self.gpu, input_ids, attention_mask)
            except Exception as exc:  # any GPU failure: this batch goes to the CPU
                self._gpu_failed(exc)
            else:
                self.counts[self.gpu.name] += 1
                return out, self.gpu.backend_label
        out = await self._call(self.cpu, input_ids, attention_mask)
        self.counts[self.cpu.name] += 1
        return out, self.cpu.backend_label

    async def probe_now(self) -> bool:
        """Probe the GPU route now (one probe at a time; concurrent callers share it)."""
        if self.gpu is None:
            return False
        task = self._probing
        if task is None:
            task = asyncio.get_running_loop().create_task(self._probe(self.gpu))
            self._probing = task
            task.add_done_callback(self._probe_done)
        return await asyncio.shield(task)

    def _probe_done(self, task: asyncio.Task[bool]) -> None:
        if self._probing is task:
            self._probing = None

    async def _use_gpu(self) -> bool:
        due = self._checked_at is None or self.clock() - self._checked_at >= self.reprobe_s
        if not self._gpu_ready and due:
            await self.probe_now()
        return self._gpu_ready

    async def _probe(self, route: Route) -> bool:
        try:
            ready = bool(await self._within(self.probe(route), f"probe of {route.name}"))
        except Exception as exc:
            log.warning("probe of %s failed: %s", route.name, exc)
            ready = False
        if ready != self._gpu_ready:
            log.warning("route %s is now %s", route.name, "ready" if ready else "down")
        self._gpu_ready = ready
        self._checked_at = self.clock()
        return ready

    def _gpu_failed(self, exc: Exception) -> None:
        assert self.gpu is not None
        self.fallbacks += 1
        self.last_gpu_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s failed (%s); batch falls back to %s", self.gpu.name, exc, self.cpu.name)
        self._gpu_ready = False
        self._checked_at = self.clock()

    async def _call(
        self, route: Route, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> InferenceOutput:
        call = route.client.infer(input_ids, attention_mask)
        return await self._within(call, f"inference on {route.name}")

    async def _within(self, aw: Awaitable[X], what: str) -> X:
        """``aw`` under ``timeout_s`` measured with the injected ``sleep`` (tests freeze time)."""
        work = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self.sleep(self.timeout_s))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                work.cancel()
        if not work.done():  # cancelled just now: the timer won
            raise RouteTimeout(f"{what} took longer than {self.timeout_s:g}s")
        return work.result()


class InfoClient(InferClient, Protocol):
    async def info(self) -> ModelInfo: ...


class RoutedClient:
    """An ``InferenceClient`` over an ``AdaptiveRouter``: model facts (labels, limits) from the
    CPU model, which every route shares; each output names the route that served it."""

    def __init__(self, router: AdaptiveRouter, cpu: InfoClient) -> None:
        self.router = router
        self.cpu = cpu

    async def info(self) -> ModelInfo:
        return await self.cpu.info()

    async def infer(
        self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> InferenceOutput:
        out, label = await self.router.infer(input_ids, attention_mask)
        gpu = self.router.gpu
        if gpu is not None and label == gpu.backend_label:
            return replace(out, backend=label, model_name=gpu.name)
        info = await self.cpu.info()
        return replace(out, backend=info.backend, model_name=self.router.cpu.name)
