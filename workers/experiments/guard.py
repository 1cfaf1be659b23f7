"""The automatic rollback of a candidate that does worse than the primary.

Each worker watches what it serves: per experiment (name and version), per arm, the events of
the last ``window_s`` seconds, whether the arm's model failed them, and its model latency.
Once both arms have ``min_events`` in the window, a candidate whose error rate exceeds the
primary's by more than ``max_error_rate_delta``, or whose p99 latency exceeds the primary's
times ``max_p99_ratio``, is rolled back (the wiring publishes the rolled-back configuration; every
worker applies it within seconds). The clock is injected.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from workers.experiments.config import GuardRails

ARMS = ("primary", "candidate")


def nearest_rank(n: int, fraction: float) -> int:
    """The 1-based nearest rank of the ``fraction`` quantile among ``n`` sorted values."""
    return max(1, math.ceil(fraction * n - 1e-9))  # 0.07 of 100 is rank 7, not 8


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[nearest_rank(len(ordered), q / 100.0) - 1]


@dataclass(frozen=True, slots=True)
class ArmStats:
    events: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.events if self.events else 0.0


class GuardWindow:
    """One experiment version's sliding window; ``verdict()`` says why to roll back, or None."""

    def __init__(self, rails: GuardRails, clock: Callable[[], float] = time.monotonic) -> None:
        self.rails = rails
        self.clock = clock
        self._seen: dict[str, deque[tuple[float, bool, float | None]]] = {a: deque() for a in ARMS}
        self.tripped: str | None = None
        self._since = 0  # observations since the window was last judged

    def observe(self, arm: str, *, error: bool, latency_ms: float | None) -> None:
        if arm in self._seen:
            self._seen[arm].append((self.clock(), error, None if error else latency_ms))
            self._since += 1
            self._expire(arm)

    def _expire(self, arm: str) -> None:
        seen = self._seen[arm]
        horizon = self.clock() - self.rails.window_s
        while seen and seen[0][0] < horizon:
            seen.popleft()

    def stats(self, arm: str) -> ArmStats:
        self._expire(arm)
        seen = self._seen[arm]
        latencies = [ms for _, _, ms in seen if ms is not None]
        p99 = percentile(latencies, 99.0) if latencies else None
        return ArmStats(len(seen), sum(1 for _, err, _ in seen if err), p99)

    def verdict(self) -> str | None:
        """The window is judged again once 1 % of it is new (every time while it is small), so
        a busy worker does not sort its latencies for every turn."""
        if self.tripped is not None or not self.rails.enabled:
            return None
        if self._since < sum(len(s) for s in self._seen.values()) // 100:
            return None
        self._since = 0
        prim, cand = self.stats("primary"), self.stats("candidate")
        need = self.rails.min_events
        if prim.events < need or cand.events < need:
            return None
        why = None
        delta = cand.error_rate - prim.error_rate
        if delta > self.rails.max_error_rate_delta:
            why = (
                f"candidate error rate {cand.error_rate:.3f} > primary {prim.error_rate:.3f} "
                f"+ {self.rails.max_error_rate_delta:g} over {cand.events}/{prim.events} events"
            )
        elif prim.p99_ms is not None and cand.p99_ms is not None:
            limit = prim.p99_ms * self.rails.max_p99_ratio
            if cand.p99_ms > limit:
                why = (
                    f"candidate p99 {cand.p99_ms:.1f} ms > primary p99 {prim.p99_ms:.1f} ms "
                    f"x {self.rails.max_p99_ratio:g} over {cand.events}/{prim.events} events"
                )
        self.tripped = why
        return why
