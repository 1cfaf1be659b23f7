"""The side-by-side tracing benchmark's window: rates are compared only while every worker was
busy (bench/tracing_e2e.py, ``--side-by-side``)."""

from __future__ import annotations

import pytest

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
