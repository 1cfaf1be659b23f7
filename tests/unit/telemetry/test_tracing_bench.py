"""The side-by-side tracing benchmark's window: rates are compared only while every worker was
busy (bench/tracing_e2e.py, ``--side-by-side``)."""

from __future__ import annotations

import pytest

from bench.tracing_crossover import fit, schedule
from bench.tracing_e2e import busy_rates


def test_rates_count_only_the_seconds_every_mode_was_busy() -> None:
    # "fast" outputs 20/s from t=0 and is done at t=10; "slow" 10/s from t=2 to t=30. Only
    # [3, 10] is common (its first second after the last start is settling): 140 and 70 outputs
    # there; "slow"'s tail, when it had the machine to itself, does not count.
    fast = [i / 20 for i in range(201)]
    slow = [2 + i / 10 for i in range(281)]
    rates = busy_rates({"fast": fast, "slow": slow}, settle_s=1.0)
    assert rates["fast"] == pytest.approx(141 / 7)
    assert rates["slow"] == pytest.approx(71 / 7)
    assert rates["fast"] / rates["slow"] == pytest.approx(141 / 71)


def test_a_window_too_short_to_compare_is_an_error() -> None:
    with pytest.raises(ValueError, match="send more events"):
        busy_rates({"a": [0.0, 1.0, 2.0], "b": [1.5, 2.5]}, settle_s=0.5)


def test_the_crossover_schedule_is_balanced() -> None:
    plan = schedule(4, 12, seed=3)
    assert len(plan) == 12
    assert all(sum(p) == 2 for p in plan)  # half the workers trace each round
    assert [sum(p[w] for p in plan) for w in range(4)] == [6, 6, 6, 6]
    assert len(set(plan[:6])) == 6  # each cycle: every way to choose two of four, once
    with pytest.raises(ValueError, match="even number"):
        schedule(3, 6, seed=3)


def test_the_crossover_fit_separates_tracing_from_rounds_and_workers() -> None:
    # round drift (0.2 ms a round) and a dearer worker (w3: +0.3 ms) dwarf tracing (+0.15 ms).
    # Seven rounds: w3 traces in 3 or 4 of them, so the plain difference of means is off; the
    # fit recovers the tracing term exactly
    plan = schedule(4, 7, seed=1)
    cells = [
        (r, w, on, 3.0 + 0.2 * r + (0.3 if w == 3 else 0.0) + (0.15 if on else 0.0))
        for r, pattern in enumerate(plan)
        for w, on in enumerate(pattern)
    ]
    on_mean = sum(c[3] for c in cells if c[2]) / 14
    off_mean = sum(c[3] for c in cells if not c[2]) / 14
    assert abs(on_mean - off_mean - 0.15) > 0.01
    result = fit(cells)
    assert result.effect == pytest.approx(0.15)
    assert result.se == pytest.approx(0.0, abs=1e-9)
    assert result.dof == 28 - 7 - 3 - 1
    noisy = [(r, w, on, v + (0.01 if (r + w) % 2 else -0.01)) for r, w, on, v in cells]
    assert fit(noisy).se > 0.0


def test_the_crossover_fit_needs_rounds_enough() -> None:
    with pytest.raises(ValueError, match="too few rounds"):
        fit([(0, 0, True, 3.1), (0, 1, False, 3.0)])
