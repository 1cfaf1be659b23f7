"""Kafka stopped and started again mid-stream (same ports, same data, no --clean): the worker
reconnects by itself and every input event gets exactly one result (read_committed)."""

from __future__ import annotations

import subprocess
import time

import pytest

from streams import local
from streams.settings import Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io
from tests.reliability.support import (
    allow_tenants,
    as_records,
    collect,
    output_records,
    valid_turns,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BEFORE, AFTER = 1000, 300
DOWN_S = 5.0


def restart_kafka(settings: Settings) -> None:
    """kafka.sh start without --clean; once more if the first try timed out (it stops a broker
    that is not ready in time, and the rest of the session needs one). kafka.sh misses the
    "Kafka Server started" line when server.log rolls over (50 MB) during the start, and then
    times out although the broker is up: the second try starts it with a fresh log."""
    try:
        local.kafka(settings, "start")
    except subprocess.CalledProcessError:
        local.kafka(settings, "start")


@pytest.mark.parametrize(
    ("commit_timeout_s", "down_s"),
    [
        (None, DOWN_S),
        # away longer than aiokafka's 40 s request timeout, with commits bounded at 3 s: whatever
        # the worker waits in when the broker goes (a commit, a send into a full batch), its
        # session resets while the broker is away, more than once, with transactions open and
        # records in flight, and it must still lose nothing
        ("3", 45.0),
    ],
    ids=["reconnects", "resets-while-away"],
)
def test_worker_survives_a_broker_restart_without_loss_or_duplicates(
    start_worker: WorkerFactory,
    services: Settings,
    monkeypatch: pytest.MonkeyPatch,
    commit_timeout_s: str | None,
    down_s: float,
) -> None:
    # a loaded 2-core host takes up to a minute to reload a broker full of test topics
    monkeypatch.setenv("INFERSTREAM_KAFKA_START_TIMEOUT", "120")
    extra = {} if commit_timeout_s is None else {"INFERSTREAM_COMMIT_TIMEOUT_S": commit_timeout_s}
    worker, settings = start_worker(**extra)
    pid = worker.pid()
    tenants = ("acme", "globex")
    allow_tenants(settings, tenants)
    first = valid_turns("before", BEFORE, tenants)
    second = valid_turns("after", AFTER, tenants)

    t0 = time.time()
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(first))
    wait_until(lambda: output_records(settings) >= 150, 120, every_s=0.2)  # mid-stream
    stopping = time.time()
    try:
        local.kafka(services, "stop")
        stopped = time.time()
        time.sleep(down_s)
    finally:
        restart_kafka(services)  # same data dir, same ports
    up = time.time()
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, as_records(second))

    want = {e.event_id for e in first + second}
    out = collect(settings, want, timeout_s=120, settle_s=5.0)
    ids = out.ids()
    missing = want - set(ids)
    doubled = {i: n for i, n in ids.items() if n > 1}
    first_after = out.first_produced_after(up)
    print(
        f"\nbroker restart: {out.produced_between(t0, stopping)} of {BEFORE} results out when "
        f"stopped; stop took {stopped - stopping:.1f}s, down {up - stopped:.1f}s (start "
        f"included); first result {first_after if first_after is None else round(first_after, 1)}s "
        f"after the broker was back, last {out.last_produced() - up:.1f}s after; {len(want)} "
        f"events, missing {len(missing)}, duplicated {len(doubled)}, dead letters {len(out.dead)}"
    )
    assert not missing, f"{sorted(missing)[:20]}\n{worker.diagnose()}"
    assert not doubled, f"{sorted(doubled.items())[:20]}\n{worker.diagnose()}"
    assert set(ids) == want
    assert not out.dead, out.dead[:3]
    assert worker.pid() == pid, worker.tail()
    if commit_timeout_s is not None:  # the path this case is for was taken
        assert "processing session reset after" in worker.log_path.read_text(errors="replace")
