"""What one Kafka transaction costs the broker: a loop of transactions shaped like the worker's
(``--partitions`` records, one per output partition, plus the input offset), one after the other,
against the benchmark's broker (started on its port if none is listening, and then stopped).

    .venv/bin/python -m bench.kafka_txn [--transactions 600] [--partitions 5] [--rounds 3]

Prints, per round, transactions/s and the broker's CPU milliseconds per transaction (from /proc),
next to the same records sent and acknowledged without a transaction. The first round runs on a
JVM that is still compiling; later rounds show the warm figure.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import click
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cpu import CpuMeter, pid_file
from bench.stack import Ports, Services


async def _round(
    bootstrap: str, kafka_pid: int, n: int, parts: int, txn: bool
) -> tuple[float, float]:
    run = uuid.uuid4().hex[:8]
    topics = [f"txn-{run}.{i}" for i in range(parts)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in [*topics, f"txn-{run}.in"]])
    finally:
        await admin.close()
    extra = {"transactional_id": f"txn-{run}"} if txn else {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2, **extra
    )
    await producer.start()
    try:
        meter = CpuMeter({"kafka": lambda: kafka_pid}, self_only=())
        cpu0, t0 = meter.sample().seconds["kafka"], time.monotonic()
        for i in range(n):
            if txn:
                await producer.begin_transaction()
            sent = [await producer.send(t, b"x" * 300, key=b"k") for t in topics]
            await asyncio.gather(*sent)
            if txn:
                offsets = {TopicPartition(f"txn-{run}.in", 0): i + 1}
                await producer.send_offsets_to_transaction(offsets, f"txn-{run}")
                await producer.commit_transaction()
        wall = time.monotonic() - t0
        cpu = meter.sample().seconds["kafka"] - cpu0
    finally:
        await producer.stop()
    return n / wall, 1000 * cpu / n


@click.command(
    "kafka_txn", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--transactions", type=int, default=600, help="units per round")
@click.option("--partitions", type=int, default=5, help="records per unit, one per partition")
@click.option("--rounds", type=int, default=3)
def main(transactions: int, partitions: int, rounds: int) -> None:
    ports = Ports()
    services = Services(ports)
    services.start()
    try:
        pid = pid_file(ports.kafka_pid_file)()
        if pid is None:
            raise click.ClickException(f"no Kafka pid in {ports.kafka_pid_file}")
        bootstrap = services.settings.bootstrap_servers
        print(f"{partitions} records (one per partition) per unit, {transactions} units")
        for r in range(1, rounds + 1):
            for txn in (True, False):
                rate, cpu = asyncio.run(_round(bootstrap, pid, transactions, partitions, txn))
                what = "transaction + offsets" if txn else "plain idempotent sends"
                print(f"round {r}  {what:24s} {rate:7.1f} /s  broker {cpu:6.2f} CPU ms each")
    finally:
        services.stop()


if __name__ == "__main__":
    main()
