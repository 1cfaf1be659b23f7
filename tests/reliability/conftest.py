"""Fixtures of the reliability suite: the integration session's Kafka + Triton and its worker
factory, plus an RSS sampler, policy set-up and a gRPC proxy in front of Triton.

`start_worker` and `watermark_keys` are the integration fixtures themselves. `services` is not
imported: pytest registers an imported fixture once per conftest, so a second session-scoped copy
would run `kafka.sh start --clean` against the broker the integration copy already runs. Instead
ours re-uses the services when they are already up on the test ports (the integration tests ran
first in this session) and otherwise starts and stops them around this package.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from streams import local
from streams.settings import Settings
from tests.integration.conftest import TEST_PORTS, start_worker, watermark_keys
from tests.reliability.grpc_proxy import TritonProxy

__all__ = ["services", "start_worker", "triton_proxy", "watermark_keys"]


def _running(settings: Settings) -> bool:
    try:
        local.kafka(settings, "status")
        local.triton(settings, "status")
    except subprocess.CalledProcessError:
        return False
    return True


@pytest.fixture(scope="package")
def services() -> Iterator[Settings]:
    fields: dict[str, Any] = {
        k.removeprefix("INFERSTREAM_").lower(): v for k, v in TEST_PORTS.items()
    }
    settings = Settings(**fields)
    if _running(settings):  # started by tests/integration's session fixture (or by hand)
        yield settings
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workers.modeling.build import build_models

    build_models(settings.model_repo, settings.cache_dir)
    local.kafka(settings, "start", "--clean")
    try:
        local.triton(settings, "start")
        yield settings
    finally:
        local.triton(settings, "stop")
        local.kafka(settings, "stop")


@pytest.fixture
def triton_proxy(services: Settings) -> Iterator[TritonProxy]:
    """A pass-through gRPC proxy to the session's Triton (delays and refusals on demand)."""
    proxy = TritonProxy(services.triton_endpoint)
    proxy.start()
    yield proxy
    proxy.stop()
