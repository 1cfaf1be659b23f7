"""Scale-out acceptance (issue 6): two workers in one group on a 3-broker KRaft cluster, topics
with 6 partitions, replication 3 and min.insync.replicas 2. Mid-stream one broker (the group's
coordinator) is SIGKILLed and one worker gets kill -9; every event must still have exactly one
result (read_committed), none may be dead-lettered, and every conversation keeps its order and
its context.

The cluster is this module's own: `deploy/kafka/kafka.sh start --brokers 3` on ports
PORT_BASE+600..+605 (nodes on +600/+602/+604, their controllers on +601/+603/+605). Triton is the
session's (it does not depend on Kafka); the session's single broker is left alone.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from streams import local
from streams.settings import Settings
from tests.conftest import PORT_BASE, TEST_PORTS, WorkerFactory
from tests.integration import kafka_io
from tests.integration.test_stateful import allow, check_dialogues, dialogue_events, produce

pytestmark = pytest.mark.integration

CLUSTER_PORT = PORT_BASE + 600
BROKERS = 3
CONVERSATIONS, TURNS = 500, 20  # 10,000 events; every conversation spans the whole run
KILL_BROKER_AT, KILL_WORKER_AT = 2_000, 4_500  # input records committed by the group
ASSIGNED = "[INFO] assigned "  # the engine's line once its partitions are open (not aiokafka's)


class Cluster:
    """Three combined broker+controller nodes, driven through kafka.sh."""

    def __init__(self, run_dir: Path) -> None:
        self.settings = Settings(kafka_port=CLUSTER_PORT, run_dir=run_dir)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{CLUSTER_PORT + 2 * i}" for i in range(BROKERS))

    def kafka(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(local.KAFKA_SCRIPT), *args],
            env=local.service_env(
                self.settings,
                # C1 JIT only: three JVMs start ~30% faster on 2 cores (as test_security does)
                INFERSTREAM_KAFKA_JVM_OPTS="-XX:TieredStopAtLevel=1",
                INFERSTREAM_KAFKA_START_TIMEOUT="180",  # a busy 2-core machine
            ),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cl = Cluster(Path(TEST_PORTS["INFERSTREAM_RUN_DIR"]))
    cl.kafka("start", "--brokers", str(BROKERS), "--clean")
    try:
        yield cl
    finally:
        cl.kafka("stop", "--kill")  # a throwaway cluster: the next start wipes it anyway


def group_coordinator(bootstrap: str, group: str) -> int:
    """The node id (= kafka.sh's node number) coordinating `group`: its offset commits, and so
    every TxnOffsetCommit of the workers' transactions, go there."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            return int(await admin.find_coordinator(group))
        finally:
            await admin.close()

    return asyncio.run(run())


def lag(settings: Settings) -> int | None:
    """Input records the group has not committed; None when unknown (nothing committed yet, or
    the admin request met the dead broker before the cluster noticed it was gone)."""
    try:
        return kafka_io.group_lag(settings.bootstrap_servers, settings.app_id, settings.topic_in)
    except KafkaError:
        return None


def wait_committed(settings: Settings, n: int, timeout_s: float, total: int) -> float:
    """Wait until the group has committed at least `n` input records; returns the wait (s)."""
    start = time.monotonic()
    while True:
        behind = lag(settings)
        if behind is not None and total - behind >= n:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{n} inputs not committed in {timeout_s:.0f}s (lag {behind})")
        time.sleep(1.0)


def partition_spans(
    results: list[Any], t0: float, partitions: int
) -> dict[int, tuple[float, float]]:
    """Seconds from t0 to the first and the last result of each input partition (the producer's
    default partitioner on the key, as for the input)."""
    partitioner = DefaultPartitioner()
    ids = list(range(partitions))
    spans: dict[int, tuple[float, float]] = {}
    for r in results:
        p = partitioner(r["_key"], ids, ids)
        t = r["produced_at"] - t0
        lo, hi = spans.get(p, (t, t))
        spans[p] = (min(lo, t), max(hi, t))
    return dict(sorted(spans.items()))


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s:.0f}s")
        time.sleep(1.0)


def test_two_workers_three_brokers_broker_and_worker_killed_exactly_once(
    cluster: Cluster, start_worker: WorkerFactory
) -> None:
    run_dir = Path(TEST_PORTS["INFERSTREAM_RUN_DIR"])
    env = {
        "INFERSTREAM_BROKER_URL": cluster.bootstrap,
        "INFERSTREAM_TOPIC_PARTITIONS": "6",
        "INFERSTREAM_REPLICATION_FACTOR": "3",
        "INFERSTREAM_MIN_INSYNC_REPLICAS": "2",
    }
    first, settings = start_worker(**env, INFERSTREAM_STATE_DIR=str(run_dir / "scale-a"))
    allow(settings)
    second, _ = start_worker(**env, INFERSTREAM_STATE_DIR=str(run_dir / "scale-b"))
    first.wait_log(ASSIGNED, count=2)  # the group rebalanced onto both workers
    second.wait_log(ASSIGNED)
    events = dialogue_events(CONVERSATIONS, TURNS, "s")
    total = len(events)

    t0 = time.time()  # wall clock: comparable with each result's produced_at
    produce(settings, events)
    produced = time.time() - t0
    wait_committed(settings, KILL_BROKER_AT, 180, total)
    node = group_coordinator(settings.bootstrap_servers, settings.app_id)
    cluster.kafka("kill-broker", str(node))  # SIGKILL: no controlled shutdown
    broker_killed = time.time() - t0
    wait_committed(settings, KILL_WORKER_AT, 180, total)
    second.stop(grace_s=0, sig=signal.SIGKILL)  # kill -9 in the middle of the stream
    worker_killed = time.time() - t0

    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: len({x["event_id"] for x in r[settings.topic_out]}) >= total,
        timeout_s=360,  # a busy 2-core host: ~130 s when it is quiet, ~240 s at load 15
        settle_s=5,
    )
    results, dead = out[settings.topic_out], out[settings.topic_deadletter]
    counts = Counter(r["event_id"] for r in results)
    doubled = {i: n for i, n in counts.items() if n > 1}
    missing = {e.event_id for e in events} - set(counts)
    log_a = first.log_path.read_text(errors="replace")
    log_b = second.log_path.read_text(errors="replace")
    made = sorted(r["produced_at"] - t0 for r in results)
    phases = (0.0, broker_killed, worker_killed, made[-1])
    rates = [sum(a <= m < b for m in made) / (b - a) for a, b in itertools.pairwise(phases)]
    pauses = sorted(((b - a, a) for a, b in itertools.pairwise(made)), reverse=True)[:3]
    spans = partition_spans(results, t0, 6)
    print(
        f"\n{total} events, 6 partitions, 2 workers, 3 brokers: produced in {produced:.1f}s; "
        f"broker {node} (group coordinator) killed at {broker_killed:.1f}s, worker 2 killed at "
        f"{worker_killed:.1f}s, last result at {made[-1]:.1f}s; results/s before the broker "
        f"kill, between the kills, after: {', '.join(f'{r:.0f}' for r in rates)}; longest pauses "
        f"in results: {', '.join(f'{g:.1f}s at {a:.0f}s' for g, a in pauses)}; {len(counts)} "
        f"event ids, {len(results)} results, missing {len(missing)}, doubled {len(doubled)}, "
        f"dead letters {len(dead)}; session resets: worker 1 "
        f"{log_a.count('processing session reset')}, worker 2 "
        f"{log_b.count('processing session reset')}; per input partition, first-last result: "
        f"{', '.join(f'p{p} {a:.0f}-{b:.0f}s' for p, (a, b) in spans.items())}"
    )
    assert not missing, f"{len(missing)} events without a result, e.g. {sorted(missing)[:5]}"
    assert not doubled, f"{len(doubled)} events with 2+ results, e.g. {sorted(doubled)[:5]}"
    assert not dead, dead[:3]  # every event was valid: nothing may be dead-lettered
    assert check_dialogues(results, settings.context_budget_tokens) == CONVERSATIONS * (TURNS - 1)
    assert {r["_key"] for r in results} == {e.conversation_id.encode() for e in events}
    # no partition is left behind: every input offset is committed, not only every output
    wait_until(
        lambda: lag(settings) == 0,
        60,
        "input offsets of the group committed",
    )
    # the survivor took over the killed worker's partitions and rebuilt their tables from the
    # changelog (the killed worker's RocksDB is on another "disk")
    last = [line for line in log_a.splitlines() if ASSIGNED in line][-1]
    assert all(f"{settings.topic_in}[{p}]" in last for p in range(6)), last
    restored = [int(line.split(" restored ")[1].split()[0]) for line in log_a.splitlines()
                if "context[" in line and " restored " in line]  # fmt: skip
    assert any(n > 0 for n in restored), restored
