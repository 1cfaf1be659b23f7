"""Assigned partitions that never start fetching reset the session (streams/fetching.py
``StallWatch``), on the real broker and librdkafka's real statistics.

CI once saw a worker get every partition after a broker restart and then consume nothing for
110 s, with no error logged: the committed-offset fetch that must come before fetching never
finished. That client-side fault was not reproduced here. What this test reproduces is the
same symptom from a cause the broker gives on demand: a dead producer's transaction holding
offsets of the worker's group, so that the committed-offset fetch (``require_stable``) waits
until the broker aborts that transaction. With ``fetch_stall_s`` at 4 s the worker must see its
partitions not fetching in librdkafka's statistics, reset its session (as often as it takes),
and once the transaction is gone give every event exactly one result, in the same process."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

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

TENANTS = ("acme", "globex")
ZOMBIE_TIMEOUT_MS = 15_000  # the broker aborts it this long after it began (checked every 10 s)


def test_partitions_held_back_from_fetching_reset_the_session_and_nothing_is_lost(
    start_worker: WorkerFactory,
) -> None:
    worker, settings = start_worker(INFERSTREAM_FETCH_STALL_S="4")
    pid = worker.pid()
    allow_tenants(settings, TENANTS)
    before = valid_turns("before", 100, TENANTS)
    after = valid_turns("after", 100, TENANTS)
    bootstrap = settings.bootstrap_servers
    kafka_io.produce(bootstrap, settings.topic_in, as_records(before))
    wait_until(lambda: output_records(settings) >= len(before), 90)

    # a dead worker's transaction: offsets of the group sent, never committed nor aborted
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": settings.app_id})
    zombie = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{settings.app_id}-zombie",
            "transaction.timeout.ms": ZOMBIE_TIMEOUT_MS,
        }
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    offsets = [TopicPartition(settings.topic_in, p, 0) for p in range(4)]
    zombie.send_offsets_to_transaction(offsets, group.consumer_group_metadata(), 30)
    group.close()
    held_since = time.time()

    # a rebalance makes the worker fetch its committed offsets again: a consumer joins the
    # group and leaves at once
    joiner = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": settings.app_id,
            "partition.assignment.strategy": "range",
            "isolation.level": "read_committed",
        }
    )
    joiner.subscribe([settings.topic_in])
    deadline = time.time() + 30
    while not joiner.assignment() and time.time() < deadline:
        joiner.poll(0.2)
    joiner.close()
    kafka_io.produce(bootstrap, settings.topic_in, as_records(after))

    want = {e.event_id for e in before + after}
    out = collect(settings, want, timeout_s=120, settle_s=3.0)
    ids = out.ids()
    missing = want - set(ids)
    doubled = {i: n for i, n in ids.items() if n > 1}
    log = worker.log_since_start()
    stalls = log.count("processing session reset after FetchStalled")
    first_after = out.first_produced_after(held_since)
    print(
        f"\nfetch stall: {stalls} session resets for partitions not fetching; first result "
        f"{first_after if first_after is None else round(first_after, 1)}s after the "
        f"transaction held the offsets; {len(want)} events, missing {len(missing)}, "
        f"duplicated {len(doubled)}, dead letters {len(out.dead)}"
    )
    assert stalls >= 1, f"the guard never fired: nothing tested\n{worker.tail()}"
    assert "not fetching" in log and f"{settings.topic_in}[" in log
    assert not missing, f"{sorted(missing)[:20]}\n{worker.diagnose()}"
    assert not doubled, sorted(doubled.items())[:20]
    assert not out.dead, out.dead[:3]
    assert worker.pid() == pid, worker.tail()
