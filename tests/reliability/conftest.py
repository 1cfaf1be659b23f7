"""Fixtures of the reliability suite beyond the shared ones in tests/conftest.py (the session's
Kafka + Triton, the worker factory, the signing key): a gRPC proxy in front of Triton."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.settings import Settings
from tests.reliability.grpc_proxy import TritonProxy


@pytest.fixture
def triton_proxy(services: Settings) -> Iterator[TritonProxy]:
    """A pass-through gRPC proxy to the session's Triton (delays and refusals on demand)."""
    proxy = TritonProxy(services.triton_endpoint)
    proxy.start()
    yield proxy
    proxy.stop()
