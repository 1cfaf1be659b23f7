import pytest

from workers.experiments.config import GuardRails
from workers.experiments.guard import ArmStats, GuardWindow, percentile


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def window(
    clock: Clock,
    *,
    enabled: bool = True,
    window_s: float = 60.0,
    min_events: int = 10,
    max_error_rate_delta: float = 0.02,
    max_p99_ratio: float = 1.5,
) -> GuardWindow:
    rails = GuardRails(enabled, window_s, min_events, max_error_rate_delta, max_p99_ratio)
    return GuardWindow(rails, clock)


def feed(
    guard: GuardWindow, arm: str, n: int, *, errors: int = 0, latency_ms: float = 10.0
) -> None:
    for i in range(n):
        guard.observe(arm, error=i < errors, latency_ms=latency_ms)


# --- percentile -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99.0, 5.0),
        ([5.0], 1.0, 5.0),
        ([3.0, 1.0, 2.0], 50.0, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50.0, 2.0),  # rank ceil(0.5 * 4) = 2
        ([1.0, 2.0, 3.0, 4.0], 75.0, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 76.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 100.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.1, 1.0),  # rank at least 1
        ([float(v) for v in range(100, 0, -1)], 99.0, 99.0),
        ([float(v) for v in range(1, 101)], 50.0, 50.0),
        ([float(v) for v in range(1, 201)], 99.0, 198.0),
        ([float(v) for v in range(1, 1001)], 99.0, 990.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_does_not_mutate_its_input() -> None:
    values = [3.0, 1.0, 2.0]
    percentile(values, 50.0)
    assert values == [3.0, 1.0, 2.0]


@pytest.mark.parametrize(("q", "n"), [(7.0, 100), (14.0, 50), (28.0, 25), (55.0, 100)])
def test_percentile_rank_is_exact_when_q_times_n_is_whole(q: float, n: int) -> None:
    values = [float(v) for v in range(1, n + 1)]
    assert percentile(values, q) == q * n // 100


# --- the window -------------------------------------------------------------------------------


def test_arm_stats_error_rate() -> None:
    assert ArmStats(0, 0, None).error_rate == 0.0
    assert ArmStats(8, 2, 5.0).error_rate == 0.25


def test_stats_count_events_errors_and_p99_of_successes() -> None:
    guard = window(Clock())
    for ms in range(1, 101):
        guard.observe("primary", error=False, latency_ms=float(ms))
    guard.observe("primary", error=True, latency_ms=10_000.0)  # a failure's latency is not counted
    guard.observe("primary", error=False, latency_ms=None)  # an unknown latency is not counted
    stats = guard.stats("primary")
    assert stats.events == 102 and stats.errors == 1
    assert stats.p99_ms == 99.0
    assert guard.stats("candidate") == ArmStats(0, 0, None)


def test_unknown_arms_are_ignored() -> None:
    guard = window(Clock())
    guard.observe("shadow", error=True, latency_ms=1.0)
    assert guard.stats("primary").events == 0 and guard.stats("candidate").events == 0


def test_no_verdict_below_min_events() -> None:
    guard = window(Clock(), min_events=10)
    feed(guard, "primary", 10)
    feed(guard, "candidate", 9, errors=9, latency_ms=1000.0)  # terrible, but too few
    assert guard.verdict() is None and guard.tripped is None
    feed(guard, "candidate", 1, errors=1)
    why = guard.verdict()
    assert why is not None and "error rate" in why


def test_no_verdict_while_the_primary_has_too_few_events() -> None:
    guard = window(Clock(), min_events=10)
    feed(guard, "primary", 9)
    feed(guard, "candidate", 100, errors=100)
    assert guard.verdict() is None


def test_error_rate_trip() -> None:
    guard = window(Clock(), min_events=100, max_error_rate_delta=0.02)
    feed(guard, "primary", 100, errors=1)
    feed(guard, "candidate", 100, errors=2)  # +1 point: within the rails
    assert guard.verdict() is None
    feed(guard, "candidate", 100, errors=10)  # 12 of 200 = 6 % against 1 %
    why = guard.verdict()
    assert why is not None
    assert why.startswith("candidate error rate 0.060 > primary 0.010 + 0.02")
    assert "200/100 events" in why
    assert guard.tripped == why


def test_p99_trip() -> None:
    guard = window(Clock(), min_events=100, max_p99_ratio=1.5)
    feed(guard, "primary", 100, latency_ms=10.0)
    feed(guard, "candidate", 100, latency_ms=14.0)  # 1.4 x: within the rails
    assert guard.verdict() is None
    feed(guard, "candidate", 100, latency_ms=20.0)  # p99 of the candidate is now 20 ms
    why = guard.verdict()
    assert why is not None
    assert why.startswith("candidate p99 20.0 ms > primary p99 10.0 ms x 1.5")


def test_p99_exactly_at_the_limit_does_not_trip() -> None:
    guard = window(Clock(), min_events=10, max_p99_ratio=2.0)
    feed(guard, "primary", 10, latency_ms=10.0)
    feed(guard, "candidate", 10, latency_ms=20.0)
    assert guard.verdict() is None


def test_faster_or_better_candidate_never_trips() -> None:
    guard = window(Clock(), min_events=10)
    feed(guard, "primary", 50, errors=10, latency_ms=100.0)
    feed(guard, "candidate", 50, errors=0, latency_ms=1.0)
    assert guard.verdict() is None


def test_no_p99_verdict_when_an_arm_has_no_successful_latency() -> None:
    guard = window(Clock(), min_events=10, max_error_rate_delta=1.0)
    feed(guard, "primary", 10, errors=10)  # every primary event failed: no p99
    feed(guard, "candidate", 10, latency_ms=1000.0)
    assert guard.verdict() is None


def test_old_observations_leave_the_window() -> None:
    clock = Clock(1000.0)
    guard = window(clock, window_s=60.0, min_events=10)
    feed(guard, "candidate", 10, errors=10)  # at t = 1000
    clock.now = 1030.0
    feed(guard, "primary", 10)
    assert guard.stats("candidate").events == 10
    clock.now = 1060.0  # exactly window_s later: still in
    assert guard.stats("candidate").events == 10
    clock.now = 1060.5
    assert guard.stats("candidate").events == 0
    assert guard.stats("primary").events == 10
    feed(guard, "candidate", 10)  # healthy now
    assert guard.verdict() is None
    clock.now = 1091.0  # the primary's events are gone too
    assert guard.stats("primary").events == 0
    assert guard.stats("candidate").events == 10


def test_an_old_bad_spell_does_not_trip_once_it_left_the_window() -> None:
    clock = Clock(0.0)
    guard = window(clock, window_s=10.0, min_events=5)
    feed(guard, "candidate", 50, errors=50, latency_ms=500.0)
    clock.now = 20.0
    feed(guard, "primary", 5)
    feed(guard, "candidate", 5)
    assert guard.verdict() is None
    assert guard.stats("candidate") == ArmStats(5, 0, 10.0)


def test_verdict_is_returned_once() -> None:
    guard = window(Clock(), min_events=10)
    feed(guard, "primary", 10)
    feed(guard, "candidate", 10, errors=5)
    why = guard.verdict()
    assert why is not None and guard.tripped == why
    assert guard.verdict() is None  # already reported
    feed(guard, "candidate", 10, errors=10)
    assert guard.verdict() is None
    assert guard.tripped == why


def test_disabled_rails_never_trip() -> None:
    clock = Clock()
    guard = window(clock, enabled=False, min_events=1)
    for _ in range(5):
        feed(guard, "primary", 100)
        feed(guard, "candidate", 100, errors=100, latency_ms=1e6)
        assert guard.verdict() is None
        clock.now += 1.0
    assert guard.tripped is None


def test_default_clock_is_monotonic_time() -> None:
    guard = GuardWindow(GuardRails(min_events=1))
    guard.observe("primary", error=False, latency_ms=1.0)
    assert guard.stats("primary").events == 1
