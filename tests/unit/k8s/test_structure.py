"""Facts about the rendered deployment that a schema cannot see: sizing and probes on every
workload, settings that name real fields and agree with the topics, ACLs that cover what the
worker does, KEDA never past the partition count, no secret in the repo, no GPU in cpu-only."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest
import yaml

from streams.settings import Settings
from streams.topics import topic_specs
from tests.unit.k8s.manifests import (
    K8S_DIR,
    OVERLAYS,
    WORKLOAD_KINDS,
    Obj,
    containers,
    find,
    name_of,
    one,
    pod_spec,
)

Rendered = dict[str, list[Obj]]
# In settings.env ahead of its field in streams/settings.py (pydantic ignores it until then).
PENDING_SETTINGS: set[str] = set()
TOPICS = {
    "experiments",
    "experiments.events",
    "conversations.in",
    "conversations.out",
    "deadletter",
    "policies",
    "analytics.events",
    "moderation.events",
    "documents.in",
    "documents.out",
    "inferstream-context-changelog",
    "inferstream-dedupe-changelog",
}
COMPACTED = {
    "policies",
    "experiments",
    "inferstream-context-changelog",
    "inferstream-dedupe-changelog",
}


def settings_map(objs: list[Obj]) -> dict[str, str]:
    (cm,) = [o for o in objs if o["metadata"]["name"].startswith("inferstream-settings-")]
    return dict(cm["data"])


def worker(objs: list[Obj]) -> Obj:
    return one(objs, "StatefulSet", "inferstream-worker")


def topics(objs: list[Obj]) -> dict[str, Obj]:
    return {t["spec"]["topicName"]: t for t in find(objs, "KafkaTopic")}


def host_port(address: str) -> tuple[str, int]:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# --- every workload: sized, probed, pinned, disruption-budgeted ------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered: Rendered, overlay: str) -> None:
    for obj in (o for o in rendered[overlay] if o["kind"] in WORKLOAD_KINDS):
        for c in containers(obj):
            for part in ("requests", "limits"):
                got = c.get("resources", {}).get(part, {})
                assert {"cpu", "memory"} <= set(got), f"{name_of(obj)} {c['name']} {part}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_and_a_pinned_image(rendered: Rendered, overlay: str) -> None:
    for obj in (o for o in rendered[overlay] if o["kind"] in WORKLOAD_KINDS):
        for c in containers(obj, init=False):
            assert "readinessProbe" in c and "livenessProbe" in c, f"{name_of(obj)} {c['name']}"
        for c in containers(obj):
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget(rendered: Rendered, overlay: str) -> None:
    budgets = [
        p["spec"]["selector"]["matchLabels"] for p in find(rendered[overlay], "PodDisruptionBudget")
    ]
    for obj in (o for o in rendered[overlay] if o["kind"] in ("Deployment", "StatefulSet")):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b.items() <= labels.items()]
        assert len(matching) == 1, name_of(obj)


# --- worker --------------------------------------------------------------------------------
def test_worker_runs_the_cli_with_health_probes_and_metrics(rendered: Rendered) -> None:
    sts = worker(rendered["gpu"])
    (c,) = containers(sts)
    assert c["command"] == ["inferstream", "worker"]
    port = int(settings_map(rendered["gpu"])["INFERSTREAM_WEB_PORT"])
    assert port == Settings.model_fields["web_port"].default == 6066
    assert c["ports"] == [{"name": "web", "containerPort": port}]
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        assert c[probe]["httpGet"] == {"path": path, "port": "web"}
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_real_fields_with_valid_values(
    rendered: Rendered, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings_map(rendered[overlay])
    fields = {f"INFERSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert set(data) - fields <= PENDING_SETTINGS
    for key in [k for k in os.environ if k.startswith("INFERSTREAM_")]:
        monkeypatch.delenv(key)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # raises on a value a field does not accept
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.tracing_exporter == "otlp-grpc"
    assert settings.tracing_sample_ratio == 0.1
    assert settings.web_host == "0.0.0.0"
    assert settings.gpu_model_name == ("" if overlay == "cpu-only" else "inferstream_gpu")


def test_worker_paths_are_mounted(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    sts, data = worker(objs), settings_map(objs)
    (c,) = containers(sts)
    mounts = {m["name"]: PurePosixPath(m["mountPath"]) for m in c["volumeMounts"]}
    state = PurePosixPath(data["INFERSTREAM_STATE_DIR"])
    assert mounts["state"] in state.parents
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["state"]
    assert (
        mounts["kafka-user"] == PurePosixPath(data["INFERSTREAM_KAFKA_SASL_PASSWORD_FILE"]).parent
    )
    assert mounts["kafka-ca"] == PurePosixPath(data["INFERSTREAM_KAFKA_SSL_CAFILE"]).parent
    assert mounts["watermark-keys"] == PurePosixPath(data["INFERSTREAM_WATERMARK_KEY_DIR"])
    for key in ("INFERSTREAM_RUN_DIR", "INFERSTREAM_CACHE_DIR"):  # read-only root filesystem
        path = PurePosixPath(data[key])
        assert any(m == path or m in path.parents for m in mounts.values()), key


def test_worker_secrets_come_from_the_operators_or_out_of_band(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    volumes = {v["name"]: v for v in pod_spec(worker(objs))["volumes"]}
    user = settings_map(objs)["INFERSTREAM_KAFKA_SASL_USERNAME"]
    kafka = one(objs, "Kafka")["metadata"]["name"]
    assert volumes["kafka-user"]["secret"]["secretName"] == user
    assert one(objs, "KafkaUser", user)["spec"]["authentication"]["type"] == "scram-sha-512"
    assert volumes["kafka-ca"]["secret"]["secretName"] == f"{kafka}-cluster-ca-cert"
    out_of_band = volumes["watermark-keys"]["secret"]["secretName"]
    assert f"kubectl create secret generic {out_of_band}" in (K8S_DIR / "README.md").read_text()


def test_no_secret_values_in_the_repository(rendered: Rendered) -> None:
    for overlay in OVERLAYS:
        assert find(rendered[overlay], "Secret") == []
    for path in K8S_DIR.rglob("*.yaml"):
        if "crds" in path.parts:
            continue
        text = path.read_text()
        assert "secretGenerator" not in text, path
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", path


# --- Kafka ----------------------------------------------------------------------------------
def test_kafka_is_kraft_with_encrypted_authenticated_listeners(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    kafka = one(objs, "Kafka")["spec"]["kafka"]
    pools = {p["metadata"]["name"]: p["spec"] for p in find(objs, "KafkaNodePool")}
    assert sorted(tuple(p["roles"]) for p in pools.values()) == [("broker",), ("controller",)]
    assert all(p["replicas"] == 3 for p in pools.values())
    assert all(listener["tls"] for listener in kafka["listeners"])
    scram = [x for x in kafka["listeners"] if x["authentication"]["type"] == "scram-sha-512"]
    assert len(scram) == 1 and kafka["authorization"]["type"] == "simple"
    host, port = host_port(settings_map(objs)["INFERSTREAM_BROKER_URL"])
    assert (host, port) == (
        f"{one(objs, 'Kafka')['metadata']['name']}-kafka-bootstrap",
        scram[0]["port"],
    )


def test_topics_match_streams_topics(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    data, by_name = settings_map(objs), topics(objs)
    assert set(by_name) == TOPICS
    for name, topic in by_name.items():
        spec = topic["spec"]
        assert spec["partitions"] == int(data["INFERSTREAM_TOPIC_PARTITIONS"]) == 12, name
        assert spec["replicas"] == int(data["INFERSTREAM_REPLICATION_FACTOR"]) == 3, name
        assert spec["config"]["min.insync.replicas"] == 2, name
        assert (spec["config"]["cleanup.policy"] == "compact") == (name in COMPACTED), name
    settings = Settings(topic_partitions=12, replication_factor=3)
    for spec in topic_specs(settings).values():  # the retention/compaction the code asks for
        config = {k: str(v) for k, v in by_name[spec.name]["spec"]["config"].items()}
        assert spec.config.items() <= config.items(), spec.name


def test_worker_acls_cover_its_topics_group_and_transactions(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    user = one(objs, "KafkaUser", settings_map(objs)["INFERSTREAM_KAFKA_SASL_USERNAME"])
    grants: dict[tuple[str, str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        key = (res["type"], res.get("name", ""), res.get("patternType", "literal"))
        grants.setdefault(key, set()).update(acl["operations"])
    topic_grants = {name: ops for (kind, name, _), ops in grants.items() if kind == "topic"}
    assert set(topic_grants) == TOPICS  # every topic, and no other
    for name in ("conversations.in", "documents.in", "policies", "experiments"):
        assert {"Read", "Describe"} <= topic_grants[name], name
    for name in TOPICS - {"conversations.in", "documents.in", "policies"}:
        assert {"Write", "Describe"} <= topic_grants[name], name
    assert all("Create" not in ops and "Delete" not in ops for ops in topic_grants.values())
    assert {"Read"} <= grants[("group", "inferstream", "literal")]
    assert {"Write", "Describe"} <= grants[("transactionalId", "inferstream-", "prefix")]


# --- KEDA -----------------------------------------------------------------------------------
def test_scaledobject_never_exceeds_the_partitions(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    so = one(objs, "ScaledObject")["spec"]
    (trigger,) = so["triggers"]
    meta = trigger["metadata"]
    partitions = topics(objs)[meta["topic"]]["spec"]["partitions"]
    assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= partitions
    assert so["fallback"]["replicas"] <= so["maxReplicaCount"]
    assert meta["topic"] == Settings.model_fields["topic_in"].default
    assert meta["consumerGroup"] == settings_map(objs)["INFERSTREAM_APP_ID"] == "inferstream"
    assert so["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": worker(objs)["metadata"]["name"],
    }
    kafka = one(objs, "Kafka")["metadata"]
    _, port = host_port(settings_map(objs)["INFERSTREAM_BROKER_URL"])
    expected = f"{kafka['name']}-kafka-bootstrap.{kafka['namespace']}.svc:{port}"
    assert meta["bootstrapServers"] == expected
    auth = one(objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    (password,) = [r for r in auth["secretTargetRef"] if r["parameter"] == "password"]
    assert find(objs, "KafkaUser", password["name"]), "KEDA's password is not a KafkaUser's"


# --- Triton and the collector ---------------------------------------------------------------
def test_triton_pools(rendered: Rendered) -> None:
    gpu = rendered["gpu"]
    for name, models in (
        ("triton-cpu", {"inferstream_cpu", "inferstream_replies", "ocr_det", "ocr_rec"}),
        ("triton-gpu", {"inferstream_gpu"}),
    ):
        (c,) = containers(one(gpu, "Deployment", name), init=False)
        assert c["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
        loaded = {a.split("=", 1)[1] for a in c["args"] if a.startswith("--load-model=")}
        assert loaded == models, name
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    spec = pod_spec(one(gpu, "Deployment", "triton-gpu"))
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" in {t["key"] for t in spec["tolerations"]}
    assert spec["nodeSelector"]
    data = settings_map(gpu)
    for key, pool in (
        ("INFERSTREAM_TRITON_URL", "triton-cpu"),
        ("INFERSTREAM_TRITON_GPU_URL", "triton-gpu"),
    ):
        host, port = host_port(data[key])
        service = one(gpu, "Service", host)["spec"]
        assert port in {p["port"] for p in service["ports"] if p["name"] == "grpc"}
        selected = [
            d["metadata"]["name"]
            for d in find(gpu, "Deployment")
            if service["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [pool], key


def test_cpu_only_has_no_gpu(rendered: Rendered) -> None:
    objs = rendered["cpu-only"]
    assert not find(objs, "Deployment", "triton-gpu") and not find(objs, "Service", "triton-gpu")
    assert "nvidia.com/gpu" not in yaml.safe_dump(objs)
    assert settings_map(objs)["INFERSTREAM_GPU_MODEL_NAME"] == ""
    assert settings_map(objs)["INFERSTREAM_TRITON_GPU_URL"] == ""
    gpu = [o for o in rendered["gpu"] if "nvidia.com/gpu" in yaml.safe_dump(o)]
    assert [name_of(o) for o in gpu] == ["Deployment/triton-gpu"]


def test_workers_trace_to_the_collector(rendered: Rendered) -> None:
    objs = rendered["gpu"]
    host, port = host_port(settings_map(objs)["INFERSTREAM_TRACING_ENDPOINT"])
    assert port in {p["port"] for p in one(objs, "Service", host)["spec"]["ports"]}
    (cm,) = [o for o in objs if o["metadata"]["name"].startswith("otel-collector-config-")]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"] and "batch" in traces["processors"]
    assert set(traces["exporters"]) <= set(config["exporters"])
