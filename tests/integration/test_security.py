"""Security on the wire and a 3-broker cluster, on a real local cluster of this module's own.

`deploy/kafka/kafka.sh start --brokers 3 --secure` on ports PORT_BASE+500..+505 (three combined
broker+controller nodes; TLS everywhere, SASL/SCRAM-SHA-512, ACLs with no allow-by-default), then
`kafka.sh acl worker ...` grants the SCRAM user "worker" the topics under `granted.`, the consumer
groups and transactional ids under `wgrp.`. Every client is built from a `Settings` (what
`kafka.sh client-env USER` prints) through `streams.security`, as the worker's are. The broker
kill runs last: the other tests want all three nodes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from pydantic import SecretStr

from streams import console, local
from streams.admin import ensure_topics
from streams.records import ConversationEvent
from streams.security import kafka_client_kwargs
from streams.settings import Settings
from streams.topics import TopicSpec, topic_specs
from tests.conftest import PORT_BASE, TEST_PORTS
from tests.integration import kafka_io

pytestmark = pytest.mark.integration

CLUSTER_PORT = PORT_BASE + 500  # nodes on +500/+502/+504, their controllers on +501/+503/+505
GRANTED = "granted."  # topic prefix the worker may use
GROUPS = "wgrp."  # consumer-group and transactional-id prefix the worker may use
FAST_START = "-XX:TieredStopAtLevel=1"
REFUSAL_S = 15.0  # a refusal must come within this many seconds (no endless retries)


@dataclass
class SecureCluster:
    settings: Settings  # the ports and run dir kafka.sh works on

    def kafka(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kafka.sh ARGS` on this cluster; with check, a failure raises with the script's log."""
        done = subprocess.run(
            ["bash", str(local.KAFKA_SCRIPT), *args],
            # C1 JIT only: three brokers start ~30% faster on 2 cores; plenty for these tests
            env=local.service_env(self.settings, INFERSTREAM_KAFKA_JVM_OPTS=FAST_START),
            capture_output=True,
            text=True,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def client(self, user: str, **fields: Any) -> Settings:
        """The settings of a client of `user`, from `kafka.sh client-env USER`."""
        lines = self.kafka("client-env", user).stdout.split()
        env = dict(line.split("=", 1) for line in lines)
        values: dict[str, Any] = {k.removeprefix("INFERSTREAM_").lower(): v for k, v in env.items()}
        return Settings(**(values | fields))


@pytest.fixture(scope="module")
def cluster() -> Iterator[SecureCluster]:
    run_dir = Path(TEST_PORTS["INFERSTREAM_RUN_DIR"])
    cl = SecureCluster(Settings(kafka_port=CLUSTER_PORT, run_dir=run_dir))
    cl.kafka("start", "--brokers", "3", "--secure", "--clean")
    try:
        cl.kafka(
            "acl", "worker", "--topic-prefix", GRANTED, "--group-prefix", GROUPS,
            "--txn-prefix", GROUPS,
        )  # fmt: skip
        yield cl
    finally:
        cl.kafka("stop", "--kill")  # a throwaway cluster: the next start wipes it anyway


def uid() -> str:
    return uuid.uuid4().hex[:8]


def records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), orjson.dumps({"i": i})) for i in range(n)]


def create(admin: Settings, *names: str) -> None:
    asyncio.run(ensure_topics(admin, [TopicSpec(name, 2, 3) for name in names]))


async def refused(action: Callable[[], Awaitable[Any]], error: type[Exception]) -> Exception:
    """Run `action`, expecting `error` within REFUSAL_S seconds; returns the error."""
    start = time.monotonic()
    with pytest.raises(error) as caught:
        await asyncio.wait_for(action(), REFUSAL_S)
    assert time.monotonic() - start < REFUSAL_S
    return caught.value


def test_secure_nodes_have_no_plaintext_listener(cluster: SecureCluster) -> None:
    for port in (CLUSTER_PORT, CLUSTER_PORT + 2, CLUSTER_PORT + 4):
        conf = (cluster.settings.run_dir / f"kafka-{port}" / "server.properties").read_text()
        lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
        props = dict(line.split("=", 1) for line in lines)
        assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
        assert props["allow.everyone.if.no.acl.found"] == "false"
        assert "PLAINTEXT://" not in props["listeners"]
    status = cluster.kafka("status").stdout
    assert status.count("SASL_SSL") == 3, status


def test_worker_produces_and_consumes_on_granted_topics(cluster: SecureCluster) -> None:
    admin, worker = cluster.client("admin"), cluster.client("worker")
    topic, group = f"{GRANTED}{uid()}", f"{GROUPS}{uid()}"
    create(admin, topic)

    assert kafka_io.produce(worker.bootstrap_servers, topic, records(20), settings=worker) == 20
    got = kafka_io.consume(
        worker.bootstrap_servers,
        [topic],
        until=lambda out: len(out[topic]) >= 20,
        timeout_s=20,
        settle_s=0.5,
        settings=worker,
    )
    assert sorted(r["i"] for r in got[topic]) == list(range(20))

    async def transaction_then_group_commit() -> bytes | None:
        # the exactly-once path: a transactional producer and a committing consumer group
        options = kafka_client_kwargs(worker)
        producer = AIOKafkaProducer(
            bootstrap_servers=worker.bootstrap_servers, transactional_id=f"{group}-0", **options
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send(topic, key=b"txn", value=b'{"i": "txn"}')
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=worker.bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            **options,
        )
        await consumer.start()
        try:
            while True:
                rec = await consumer.getone()
                if rec.key == b"txn":
                    await consumer.commit()
                    value: bytes | None = rec.value
                    return value
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(transaction_then_group_commit(), 60)) == b'{"i": "txn"}'


def test_worker_is_refused_outside_its_grants(cluster: SecureCluster) -> None:
    admin, worker = cluster.client("admin"), cluster.client("worker")
    granted, denied = f"{GRANTED}{uid()}", f"denied.{uid()}"
    create(admin, granted, denied)
    options = kafka_client_kwargs(worker)
    bootstrap = worker.bootstrap_servers

    async def check() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
        await producer.start()  # its credentials are good: it connects
        try:
            err = await refused(
                lambda: producer.send_and_wait(denied, b"x"), TopicAuthorizationFailedError
            )
            assert denied in str(err)
            await producer.send_and_wait(granted, b"{}")  # still fine where granted
        finally:
            await producer.stop()

        async def consume(topic: str, group: str) -> None:
            consumer = AIOKafkaConsumer(
                topic, bootstrap_servers=bootstrap, group_id=group, **options
            )
            try:
                await consumer.start()
                await consumer.getone()
            finally:
                await consumer.stop()

        await refused(lambda: consume(denied, f"{GROUPS}{uid()}"), TopicAuthorizationFailedError)
        await refused(lambda: consume(granted, f"other.{uid()}"), GroupAuthorizationFailedError)

        async def foreign_transaction() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap, transactional_id=f"other.{uid()}", **options
            )
            try:
                await producer.start()
            finally:
                await producer.stop()

        await refused(foreign_transaction, TransactionalIdAuthorizationFailed)
        # the worker may not create topics, not even under its prefix
        spec = TopicSpec(f"{GRANTED}{uid()}", 1, 3)
        await refused(lambda: ensure_topics(worker, [spec]), TopicAuthorizationFailedError)

    asyncio.run(check())


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("no credentials, plain TCP", "closed|broken"),
        ("TLS but no SASL login", "closed|broken"),
        ("wrong password", "SaslAuthenticationFailed"),
        ("unknown user", "SaslAuthenticationFailed"),
        ("broker certificate not trusted", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_clients_without_valid_credentials_are_refused(
    cluster: SecureCluster, caplog: pytest.LogCaptureFixture, how: str, reason: str
) -> None:
    worker = cluster.client("worker")
    bootstrap = worker.bootstrap_servers
    ca = worker.kafka_ssl_cafile
    client = {
        "no credentials, plain TCP": Settings(broker_url=bootstrap),
        "TLS but no SASL login": Settings(
            broker_url=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=ca
        ),
        "wrong password": worker.model_copy(
            update={"kafka_sasl_password_file": None, "kafka_sasl_password": SecretStr("not-it")}
        ),
        "unknown user": worker.model_copy(update={"kafka_sasl_username": "mallory"}),
        "broker certificate not trusted": worker.model_copy(update={"kafka_ssl_cafile": None}),
    }[how]
    # the refusal is an ERROR when the broker drops the connection during the handshake, and a
    # WARNING when it drops it at the first request after ApiVersions (a race on the broker side)
    caplog.set_level(logging.WARNING, logger="aiokafka")
    start = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        kafka_io.produce(bootstrap, f"{GRANTED}{uid()}", records(1), settings=client)
    assert time.monotonic() - start < REFUSAL_S
    assert re.search(reason, caplog.text), caplog.text


def test_the_worker_process_runs_on_its_credentials_and_waits_out_a_missing_grant(
    cluster: SecureCluster, services: Settings, watermark_keys: Path
) -> None:
    """A real worker process with the SCRAM user "worker" over TLS: one output topic is not
    granted; the worker says so clearly, stays up (no crash loop, nothing committed), and once
    the grant is added it delivers every event exactly once."""
    run = f"{GRANTED}{uid()}"
    app_id = f"{GROUPS}{uid()}"  # consumer group and transactional ids under the granted prefix
    roles = ("in", "out", "deadletter", "policies", "moderation")
    fields: dict[str, Any] = {f"topic_{role}": f"{run}.{role}" for role in roles} | {
        "topic_documents_in": f"{run}.din",
        "topic_documents_out": f"{run}.dout",
        "topic_analytics": f"ungranted.{uid()}.analytics",
        "topic_experiments": f"{run}.experiments",
        "topic_experiment_events": f"{run}.xevents",
        "app_id": app_id,
        "topic_partitions": 2,
    }
    admin = cluster.client("admin", replication_factor=3, **fields)
    asyncio.run(ensure_topics(admin))
    cluster.kafka("acl", "worker", "--topic-prefix", f"{app_id}-")  # its tables' changelogs
    lines = cluster.kafka("client-env", "worker").stdout.split()
    env = dict(os.environ) | dict(line.split("=", 1) for line in lines)
    env |= {f"INFERSTREAM_{k.upper()}": str(v) for k, v in fields.items()}
    env |= {k: v for k, v in TEST_PORTS.items() if "TRITON" in k or "RUN_DIR" in k}
    env |= {
        "INFERSTREAM_WATERMARK_KEY_DIR": str(watermark_keys),
        "INFERSTREAM_WEB_PORT": str(PORT_BASE + 8500),
        "HF_HUB_OFFLINE": "1",
    }
    worker_settings = cluster.client("worker", **fields)
    proc = local.WorkerProcess(worker_settings, env, name=f"secure-worker-{uid()}")
    proc.start()
    try:
        proc.wait_ready()
        asyncio.run(console.publish_policy(admin, "acme", console.allow_all_policy("acme", 1)))
        events = [
            ConversationEvent(f"s-{i}", f"conv-{i % 4}", "acme", "u", "hello there", time.time())
            for i in range(20)
        ]
        batch = [(e.conversation_id.encode(), e.to_json()) for e in events]
        assert (
            kafka_io.produce(admin.bootstrap_servers, admin.topic_in, batch, settings=admin) == 20
        )
        proc.wait_log("processing session reset", timeout_s=120)
        time.sleep(5)
        assert proc.pid() is not None, proc.tail()  # still the same process: no crash loop
        resets = [
            line for line in proc.log_path.read_text().splitlines()
            if "processing session reset" in line
        ]  # fmt: skip
        assert all("TOPIC_AUTHORIZATION_FAILED" in line for line in resets), resets
        nothing = kafka_io.consume(
            admin.bootstrap_servers, [admin.topic_out], until=lambda r: False, timeout_s=3,
            settle_s=0, settings=admin,
        )  # fmt: skip
        assert nothing[admin.topic_out] == []  # the aborted work left nothing visible

        cluster.kafka("acl", "worker", "--topic", admin.topic_analytics)
        out = kafka_io.consume(
            admin.bootstrap_servers, [admin.topic_out],
            until=lambda r: len(r[admin.topic_out]) >= 20, timeout_s=240, settle_s=3,
            settings=admin,
        )[admin.topic_out]  # fmt: skip
        ids = [r["event_id"] for r in out]
        assert sorted(ids) == sorted(e.event_id for e in events)  # each once, none lost
        assert proc.pid() is not None
    finally:
        proc.stop()


def test_three_brokers_keep_serving_with_one_killed(cluster: SecureCluster) -> None:
    run = f"{GRANTED}{uid()}"  # app_id too: the tables' changelog topics are "<app_id>-..."
    roles = ("in", "out", "deadletter", "policies", "analytics", "moderation")
    fields: dict[str, Any] = {f"topic_{role}": f"{run}.{role}" for role in roles} | {
        "topic_documents_in": f"{run}.din",
        "topic_documents_out": f"{run}.dout",
        "topic_experiments": f"{run}.experiments",
        "topic_experiment_events": f"{run}.xevents",
        "app_id": run,
        "topic_partitions": 2,
    }
    admin = cluster.client("admin", replication_factor=3, **fields)
    worker = cluster.client("worker", **fields)
    created = asyncio.run(ensure_topics(admin))  # the worker may not create topics
    assert sorted(created) == sorted(s.name for s in topic_specs(admin).values())

    async def layout() -> tuple[dict[str, Any], str]:
        client = AIOKafkaAdminClient(
            bootstrap_servers=admin.bootstrap_servers, **kafka_client_kwargs(admin)
        )
        await client.start()
        try:
            described = {d["topic"]: d for d in await client.describe_topics(created)}
            resource = ConfigResource(ConfigResourceType.TOPIC, admin.topic_in, {})
            configs = await client.describe_configs([resource])
            entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
            return described, entries["min.insync.replicas"]
        finally:
            await client.close()

    described, min_isr = asyncio.run(layout())
    for topic in created:
        partitions = described[topic]["partitions"]
        assert len(partitions) == 2
        assert all(sorted(p["replicas"]) == [1, 2, 3] for p in partitions), (topic, partitions)
    assert min_isr == "2"  # acks=all needs 2 of the 3 replicas: one node may be down

    # `inferstream produce`'s path with the worker's credentials: ensure_topics finds them all
    # (describe only: the worker may not create), then acks=all
    assert asyncio.run(console.produce(worker, records(100))) == 100

    cluster.kafka("kill-broker", "1")  # SIGKILL; node 1 is also the first bootstrap address
    status = cluster.kafka("status", check=False)
    assert status.returncode == 1 and "node 1 of 3, down" in status.stdout

    start = time.monotonic()
    more = records(300)[100:]
    sent = kafka_io.produce(worker.bootstrap_servers, worker.topic_in, more, settings=worker)
    got = kafka_io.consume(
        worker.bootstrap_servers,
        [worker.topic_in],
        until=lambda out: len(out[worker.topic_in]) >= 300,
        timeout_s=40,
        settle_s=0.5,
        settings=worker,
    )
    assert sent == 200
    assert sorted(r["i"] for r in got[worker.topic_in]) == list(range(300))
    assert time.monotonic() - start < 45
