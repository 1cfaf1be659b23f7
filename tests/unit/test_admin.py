"""ensure_topics' retry loop: retriable broker errors wait ``Backoff``'s delays; the rest raise."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiokafka.errors import KafkaError, RequestTimedOutError, TopicAuthorizationFailedError

from streams import admin
from streams.settings import Settings
from streams.topics import TopicSpec
from workers.retry import Backoff

SPECS = [TopicSpec("t", 1, 1)]


def failing(monkeypatch: pytest.MonkeyPatch, errors: list[KafkaError]) -> list[int]:
    """``_ensure_topics`` raises ``errors`` one per call, then creates ``t``; returns the calls."""
    calls: list[int] = []

    async def fake(settings: Settings, specs: Sequence[TopicSpec]) -> list[str]:
        calls.append(len(calls))
        if errors:
            raise errors.pop(0)
        return [s.name for s in specs]

    monkeypatch.setattr(admin, "_ensure_topics", fake)
    return calls


def recording(max_attempts: int | None) -> tuple[Backoff, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    rands = iter([0.0, 0.5, 1.0, 0.25, 0.75])
    backoff = Backoff(
        initial_s=1.0, max_s=3.0, max_attempts=max_attempts, sleep=sleep, rand=lambda: next(rands)
    )
    return backoff, slept


async def test_retriable_errors_wait_the_backoff_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing(monkeypatch, [RequestTimedOutError() for _ in range(3)])
    backoff, slept = recording(max_attempts=6)
    assert await admin.ensure_topics(Settings(), SPECS, backoff=backoff) == ["t"]
    assert len(calls) == 4
    # Backoff.delay with rand 0.0, 0.5, 1.0: ceilings 1, 2, 3 (max_s), each in [ceiling/2, ceiling]
    assert slept == [0.5, 1.5, 3.0]


async def test_gives_up_after_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing(monkeypatch, [RequestTimedOutError() for _ in range(5)])
    backoff, slept = recording(max_attempts=3)
    with pytest.raises(RequestTimedOutError):
        await admin.ensure_topics(Settings(), SPECS, backoff=backoff)
    assert len(calls) == 3 and len(slept) == 2


async def test_a_non_retriable_error_raises_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing(monkeypatch, [TopicAuthorizationFailedError()])
    backoff, slept = recording(max_attempts=None)
    with pytest.raises(TopicAuthorizationFailedError):
        await admin.ensure_topics(Settings(), SPECS, backoff=backoff)
    assert len(calls) == 1 and slept == []


def test_backoff_delay_is_bounded_for_any_attempt() -> None:
    backoff = Backoff(initial_s=1.0, max_s=5.0, rand=lambda: 1.0)
    assert [backoff.delay(n) for n in (0, 1, 2, 3)] == [1.0, 2.0, 4.0, 5.0]
    assert backoff.delay(5000) == 5.0  # 2.0 ** 5000 would overflow
