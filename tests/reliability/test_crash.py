"""Crash: kill -9 the worker at random points, five times during 5,000 events, restarting it each
time: exactly one output per input event id (read_committed), every conversation's context
intact across the crashes, per-conversation order kept."""

from __future__ import annotations

import random
import signal
import time

import pytest

from streams.local import ASSIGNED
from tests.conftest import WorkerFactory
from tests.integration.test_stateful import (
    allow,
    check_dialogues,
    dialogue_events,
    outputs,
    produce,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_five_kill_9_during_5000_events(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    allow(settings)
    worker.wait_log(ASSIGNED)
    events = dialogue_events(250, 20, "x")
    produce(settings, events)
    rng = random.Random(2026)
    points = sorted(rng.sample(range(300, 4700), 5))
    start = time.perf_counter()
    for n, seen in enumerate(points, 1):
        outputs(settings, seen, timeout_s=300, settle_s=rng.uniform(0.0, 1.5))
        worker.stop(grace_s=0, sig=signal.SIGKILL)
        print(f"\nkill -9 #{n} after >= {seen} outputs ({time.perf_counter() - start:.1f}s)")
        worker, _ = start_worker()
    results = outputs(settings, len(events), timeout_s=300, settle_s=5)
    elapsed = time.perf_counter() - start
    ids = [r["event_id"] for r in results]
    print(f"{len(ids)} outputs for {len(events)} events, 5 crashes, {elapsed:.1f}s")
    assert len(ids) == len(set(ids)), "an event id has two outputs"
    assert set(ids) == {e.event_id for e in events}
    assert check_dialogues(results, settings.context_budget_tokens) == 250 * 19
