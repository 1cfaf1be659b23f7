"""What Kafka transactions cost the broker and the client, for aiokafka and for confluent-kafka
(librdkafka): a loop of units shaped like the worker's (``--partitions`` records, one per output
partition, plus the input offset), one after the other, against a broker of its own (started on
``--kafka-port`` if none is listening there, and then stopped; Kafka only, no Triton).

    .venv/bin/python -m bench.kafka_txn [--client both] [--transactions 600] [--partitions 5]
        [--records-per-txn 1] [--rounds 3] [--kafka-port 45092] [--rdkafka KEY=VALUE ...]

Each round runs, for each client, two modes. "transaction + offsets": begin, the records of
``--records-per-txn`` K units, the input offset (send_offsets_to_transaction), commit; K = 1 is
one transaction per unit, a larger K shows how the cost falls when many units share one.
"plain idempotent sends": the same records, K units at a time, sent and acknowledged with no
transaction (aiokafka: awaits every record's future; confluent-kafka: produce() then flush()).

Printed per round: units/s, the broker's CPU ms per unit (its JVM, from /proc), the same less
the broker's idle CPU (measured for ``--idle-s`` before each round) over the loop's wall time,
and this process's CPU ms per unit and µs per record (``time.process_time()``, which counts
librdkafka's threads and the asyncio loop alike). Both producers use acks=all, idempotence and
linger 2 ms. confluent-kafka uses the synchronous Producer, with the group metadata of a
Consumer that has the run's group.id (not subscribed: like aiokafka's group-id string,
generation -1); ``--rdkafka`` adds librdkafka producer properties. With librdkafka's default
retry.backoff.ms (100) a transaction that begins right after a commit waits about 100 ms (in
send_offsets_to_transaction): the broker answers CONCURRENT_TRANSACTIONS while the previous
commit's markers are being written (try ``--rdkafka retry.backoff.ms=10``). The first round
runs on a JVM that is still compiling; later rounds show the warm figure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import confluent_kafka
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cpu import CpuMeter, pid_file
from bench.stack import Ports, settings_from_env
from streams import local

CLIENTS = ("aiokafka", "confluent")
PAYLOAD = b"x" * 300
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Run:
    """One round's fresh topics (one partition each) and names."""

    bootstrap: str
    outputs: list[str]
    input: str
    group: str
    transactional_id: str

    @classmethod
    def create(cls, bootstrap: str, parts: int) -> Run:
        run = uuid.uuid4().hex[:8]
        made = cls(
            bootstrap=bootstrap,
            outputs=[f"txn-{run}.{i}" for i in range(parts)],
            input=f"txn-{run}.in",
            group=f"txn-{run}",
            transactional_id=f"txn-{run}",
        )
        asyncio.run(made._create_topics())
        return made

    async def _create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, 1, 1) for t in [*self.outputs, self.input]])
        finally:
            await admin.close()


@dataclass
class Measure:
    """Wall time, the broker's CPU seconds and this process's CPU seconds of the timed loop."""

    meter: CpuMeter
    wall_s: float = 0.0
    broker_s: float = 0.0
    client_s: float = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        broker0 = self.meter.sample().seconds["kafka"]
        wall0, client0 = time.monotonic(), time.process_time()
        yield
        self.wall_s = time.monotonic() - wall0
        self.client_s = time.process_time() - client0
        self.broker_s = self.meter.sample().seconds["kafka"] - broker0


def _batches(n: int, k: int) -> list[range]:
    """Unit indices 0..n-1 in groups of k (the last may be shorter)."""
    return [range(s, min(s + k, n)) for s in range(0, n, k)]


async def _aiokafka_round(run: Run, measure: Measure, n: int, k: int, txn: bool) -> None:
    extra = {"transactional_id": run.transactional_id} if txn else {}
    producer = AIOKafkaProducer(
        bootstrap_servers=run.bootstrap, acks="all", enable_idempotence=True, linger_ms=2, **extra
    )
    await producer.start()
    try:
        with measure.timed():
            for batch in _batches(n, k):
                if txn:
                    await producer.begin_transaction()
                sent = [
                    await producer.send(t, PAYLOAD, key=b"k") for _ in batch for t in run.outputs
                ]
                await asyncio.gather(*sent)
                if txn:
                    offsets = {TopicPartition(run.input, 0): batch[-1] + 1}
                    await producer.send_offsets_to_transaction(offsets, run.group)
                    await producer.commit_transaction()
    finally:
        await producer.stop()


def _confluent_round(
    run: Run, measure: Measure, n: int, k: int, txn: bool, extra: dict[str, str]
) -> None:
    failed: list[str] = []

    def on_error(err: Any, msg: Any) -> None:  # delivery reports of failed records only
        if err is not None:
            failed.append(str(err))

    conf: dict[str, Any] = {
        "bootstrap.servers": run.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "delivery.report.only.error": True,
        "on_delivery": on_error,
        **extra,
    }
    if txn:
        conf["transactional.id"] = run.transactional_id
    producer = confluent_kafka.Producer(conf)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": run.bootstrap, "group.id": run.group, "enable.auto.commit": False}
    )
    try:
        metadata = consumer.consumer_group_metadata()
        if txn:
            producer.init_transactions(TIMEOUT_S)
        with measure.timed():
            for batch in _batches(n, k):
                if txn:
                    producer.begin_transaction()
                for _ in batch:
                    for t in run.outputs:
                        _produce(producer, t)
                if txn:
                    offsets = [confluent_kafka.TopicPartition(run.input, 0, batch[-1] + 1)]
                    producer.send_offsets_to_transaction(offsets, metadata, TIMEOUT_S)
                    producer.commit_transaction(TIMEOUT_S)
                elif (left := producer.flush(TIMEOUT_S)) or failed:
                    raise click.ClickException(f"{left} records unsent, failed: {failed[:3]}")
    finally:
        consumer.close()
        producer.close()


def _produce(producer: confluent_kafka.Producer, topic: str) -> None:
    while True:
        try:
            producer.produce(topic, PAYLOAD, key=b"k")
            return
        except BufferError:  # the local queue is full: serve delivery reports, then retry
            producer.poll(0.05)


def _committed(run: Run) -> int:
    """The run group's committed offset on the input topic (-1001 when none)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": run.bootstrap, "group.id": run.group, "enable.auto.commit": False}
    )
    try:
        [tp] = consumer.committed([confluent_kafka.TopicPartition(run.input, 0)], TIMEOUT_S)
        return tp.offset
    finally:
        consumer.close()


def _round(
    client: str,
    bootstrap: str,
    meter: CpuMeter,
    n: int,
    parts: int,
    k: int,
    txn: bool,
    rdkafka: dict[str, str],
) -> Measure:
    run = Run.create(bootstrap, parts)
    measure = Measure(meter)
    if client == "aiokafka":
        asyncio.run(_aiokafka_round(run, measure, n, k, txn))
    else:
        _confluent_round(run, measure, n, k, txn, rdkafka)
    if txn and (offset := _committed(run)) != n:
        raise click.ClickException(f"{client}: committed input offset {offset}, expected {n}")
    return measure


def _properties(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--rdkafka")
        out[key.strip()] = value.strip()
    return out


def _idle_rate(meter: CpuMeter, seconds: float) -> float:
    """The broker's CPU seconds per second while nobody uses it (0.0 for 0 seconds)."""
    if seconds <= 0:
        return 0.0
    a = meter.sample()
    time.sleep(seconds)
    b = meter.sample()
    return (b.seconds["kafka"] - a.seconds["kafka"]) / (b.wall - a.wall)


@click.command(
    "kafka_txn", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option(
    "--client", type=click.Choice([*CLIENTS, "both"]), default="both", help="which Kafka client"
)
@click.option("--transactions", type=int, default=600, help="units per round")
@click.option("--partitions", type=int, default=5, help="records per unit, one per partition")
@click.option(
    "--records-per-txn",
    "per_txn",
    type=click.IntRange(min=1),
    default=1,
    help="units whose records share one transaction (and one ack wait in plain mode)",
)
@click.option("--rounds", type=int, default=3)
@click.option(
    "--kafka-port",
    type=int,
    default=Ports().kafka,
    help="the broker's client port (the KRaft controller takes port + 1)",
)
@click.option(
    "--idle-s",
    type=click.FloatRange(min=0),
    default=3.0,
    help="seconds of the idle broker's CPU measured before each round (0: none)",
)
@click.option(
    "--rdkafka",
    "rdkafka_props",
    multiple=True,
    metavar="KEY=VALUE",
    help="a librdkafka property for the confluent producer (repeatable)",
)
def main(
    client: str,
    transactions: int,
    partitions: int,
    per_txn: int,
    rounds: int,
    kafka_port: int,
    idle_s: float,
    rdkafka_props: tuple[str, ...],
) -> None:
    rdkafka = _properties(rdkafka_props)
    ports = Ports(kafka=kafka_port)
    settings = settings_from_env(ports.env)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    started = False
    if local.port_open(kafka_port):
        print(f"reusing the Kafka already on port {kafka_port}")
    else:
        local.kafka(settings, "start", "--clean")
        started = True
    try:
        pid = pid_file(ports.kafka_pid_file)()
        if pid is None:
            raise click.ClickException(f"no Kafka pid in {ports.kafka_pid_file}")
        meter = CpuMeter({"kafka": lambda: pid}, self_only=())
        clients = CLIENTS if client == "both" else (client,)
        print(
            f"{partitions} records (one per partition) per unit, {transactions} units,"
            f" {per_txn} unit(s) per transaction / ack wait"
            + (f", librdkafka {rdkafka}" if rdkafka and "confluent" in clients else "")
        )
        print(
            f"{'':8s} {'client':9s} {'mode':24s} {'units/s':>8s} {'broker ms/unit':>15s}"
            f" {'(less idle)':>11s} {'client ms/unit':>15s} {'client µs/record':>17s}"
        )
        for r in range(1, rounds + 1):
            idle = _idle_rate(meter, idle_s)
            print(f"round {r:<2d} broker idle {1000 * idle:.1f} CPU ms/s")
            for name in clients:
                for txn in (True, False):
                    m = _round(
                        name, settings.bootstrap_servers, meter, transactions, partitions,
                        per_txn, txn, rdkafka,
                    )  # fmt: skip
                    what = "transaction + offsets" if txn else "plain idempotent sends"
                    print(
                        f"round {r:<2d} {name:9s} {what:24s} {transactions / m.wall_s:8.1f}"
                        f" {1000 * m.broker_s / transactions:15.3f}"
                        f" {1000 * (m.broker_s - idle * m.wall_s) / transactions:11.3f}"
                        f" {1000 * m.client_s / transactions:15.3f}"
                        f" {1e6 * m.client_s / (transactions * partitions):17.1f}"
                    )
    finally:
        if started:
            local.kafka(settings, "stop")


if __name__ == "__main__":
    main()
