"""The adaptive router behind the classifier's client interface: each output names its route."""

from __future__ import annotations

import numpy as np

from tests.unit.fakes import FakeInferenceClient
from workers.errors import InferenceUnavailable
from workers.inference.router import (
    OPENVINO_INT8,
    TENSORRT_FP16,
    AdaptiveRouter,
    Route,
    RoutedClient,
)

IDS = np.ones((2, 4), dtype=np.int64)


async def test_gpu_ready_serves_and_a_gpu_failure_falls_back_for_that_batch() -> None:
    gpu = FakeInferenceClient()
    ready = {"gpu": True}

    async def probe(route: Route) -> bool:
        return ready["gpu"]

    router = AdaptiveRouter(
        Route("model_gpu", TENSORRT_FP16, gpu),
        Route("model_cpu", OPENVINO_INT8, FakeInferenceClient()),
        probe=probe, reprobe_s=0.0, timeout_s=5.0,
    )  # fmt: skip
    client = RoutedClient(router, FakeInferenceClient())
    out = await client.infer(IDS, IDS)
    assert (out.backend, out.model_name) == (TENSORRT_FP16, "model_gpu")
    gpu.fail = lambda ids: InferenceUnavailable("CUDA error")
    out = await client.infer(IDS, IDS)
    # the CPU route's backend label comes from its model config (the fake's "fake-backend")
    assert (out.backend, out.model_name) == ("fake-backend", "model_cpu")
    assert router.fallbacks == 1
    ready["gpu"] = False
    out = await client.infer(IDS, IDS)
    assert out.model_name == "model_cpu" and router.fallbacks == 1  # not tried: probe said no
