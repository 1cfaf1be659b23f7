"""Retry with jittered exponential back-off for errors whose class says ``retriable``."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from workers.errors import InferstreamError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential back-off with equal jitter; ``sleep`` and ``rand`` are injected for tests.

    The wait before retry ``attempt`` (0 first) is uniform in ``[ceiling/2, ceiling]`` with
    ``ceiling = min(max_s, initial_s * 2**attempt)``: never shorter than half the ceiling (full
    jitter would draw from ``[0, ceiling]``). ``max_attempts`` counts calls, the first included.
    ``max_attempts=None`` retries until success: with Kafka that is the right default, since the
    consumer stops fetching while the agent waits (backpressure) and nothing is lost.
    """

    initial_s: float = 0.2
    max_s: float = 5.0
    max_attempts: int | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = field(default=random.random)
    on_retry: Callable[[InferstreamError], None] | None = None  # e.g. count it in metrics

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.initial_s * 2.0 ** min(attempt, 64))  # no overflow
        return float(ceiling / 2 + self.rand() * ceiling / 2)

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except InferstreamError as exc:
                if not exc.retriable:
                    raise
                if self.max_attempts is not None and attempt + 1 >= self.max_attempts:
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc)
                wait = self.delay(attempt)
                log.warning("%s failed (%s); retry %d in %.2fs", what, exc, attempt + 1, wait)
                await self.sleep(wait)
                attempt += 1
