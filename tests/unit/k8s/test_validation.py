"""Both overlays render with the pinned kustomize and every object validates offline: built-in
kinds against the Kubernetes schemas, Strimzi and KEDA resources against their CRDs in the repo.
The negative cases prove the validators reject real mistakes in our own objects."""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.k8s.manifests import (
    CRD_DIR,
    K8S_DIR,
    OVERLAYS,
    CrdValidator,
    Obj,
    name_of,
    one,
    render,
    validation_errors,
)


def test_kustomize_is_the_pinned_version(kustomize: Path) -> None:
    script = (K8S_DIR / "kustomize.sh").read_text()
    pinned = re.search(r"INFERSTREAM_KUSTOMIZE_VERSION:-(v[0-9.]+)\}", script)
    assert pinned is not None
    out = subprocess.run([str(kustomize), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == pinned.group(1)


def test_kustomize_script_is_idempotent(kustomize: Path) -> None:
    again = subprocess.run(
        ["bash", str(K8S_DIR / "kustomize.sh"), "--path"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,  # cached: no Go, no network
    )
    assert Path(again.stdout.strip()) == kustomize
    assert again.stderr == ""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(rendered: dict[str, list[Obj]], overlay: str) -> None:
    kinds = {o["kind"] for o in rendered[overlay]}
    assert {
        "Namespace",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "Deployment",
        "StatefulSet",
        "ScaledObject",
        "TriggerAuthentication",
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
    } <= kinds
    names = [name_of(o) for o in rendered[overlay]]
    assert len(names) == len(set(names)), "an object is rendered twice"
    namespaced = [o for o in rendered[overlay] if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"inferstream"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_offline(
    rendered: dict[str, list[Obj]], crds: CrdValidator, overlay: str
) -> None:
    errors = {name_of(o): validation_errors(o, crds) for o in rendered[overlay]}
    assert {k: v for k, v in errors.items() if v} == {}


def test_custom_resources_are_checked_against_their_crds(
    rendered: dict[str, list[Obj]], crds: CrdValidator
) -> None:
    custom = {(o["apiVersion"], o["kind"]) for o in rendered["gpu"] if crds.knows(o)}
    assert custom == {
        ("kafka.strimzi.io/v1", "Kafka"),
        ("kafka.strimzi.io/v1", "KafkaNodePool"),
        ("kafka.strimzi.io/v1", "KafkaTopic"),
        ("kafka.strimzi.io/v1", "KafkaUser"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
    }


# --- negative checks: a deliberately broken copy of one of our objects is rejected ------------
def _set(path: str, value: object) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


BROKEN = {
    "topic-field-typo": ("KafkaTopic", "conversations.in", _set("spec.partitons", 12), "partitons"),
    "topic-partitions-string": (
        "KafkaTopic",
        "conversations.in",
        _set("spec.partitions", "12"),
        "is not of type 'integer'",
    ),
    "acl-operation-typo": (
        "KafkaUser",
        "inferstream-worker",
        _set("spec.authorization.acls.0.operations", ["Reed"]),
        "'Reed' is not one of",
    ),
    "listener-type": (
        "Kafka",
        "inferstream",
        _set("spec.kafka.listeners.0.type", "bogus"),
        "'bogus' is not one of",
    ),
    "nodepool-role": ("KafkaNodePool", "broker", _set("spec.roles", ["brokr"]), "'brokr'"),
    "scaledobject-no-triggers": (
        "ScaledObject",
        "inferstream-worker",
        _drop("spec.triggers"),
        "'triggers' is a required property",
    ),
    "statefulset-field-typo": (
        "StatefulSet",
        "inferstream-worker",
        _set("spec.template.spec.containers.0.imagePullPolicyy", "Always"),
        "imagePullPolicyy",
    ),
    "statefulset-replicas-string": (
        "StatefulSet",
        "inferstream-worker",
        _set("spec.replicas", "two"),
        "'two' is not of type",
    ),
    "service-port-name": ("Service", "triton-cpu", _set("spec.ports.0.port", "grpc"), "'grpc'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validator_rejects_a_broken_object(
    rendered: dict[str, list[Obj]], crds: CrdValidator, case: str
) -> None:
    kind, name, mutate, expected = BROKEN[case]
    obj = copy.deepcopy(one(rendered["gpu"], kind, name))
    assert validation_errors(obj, crds) == []
    mutate(obj)
    errors = validation_errors(obj, crds)
    assert any(expected in e for e in errors), errors


def test_validator_rejects_an_unknown_kind(crds: CrdValidator) -> None:
    obj = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopik", "metadata": {"name": "x"}}
    assert validation_errors(obj, crds) == ["no schema for kafka.strimzi.io/v1 KafkaTopik"]


def test_kustomize_rejects_a_broken_kustomization(kustomize: Path, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RuntimeError, match=r"missing\.yaml"):
        render(kustomize, tmp_path)


# --- the CRDs kept in the repo are the recorded upstream files --------------------------------
def test_crds_match_their_recorded_checksums() -> None:
    recorded = {}
    for line in (CRD_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        recorded[name] = digest
    present = {str(p.relative_to(CRD_DIR)) for p in CRD_DIR.rglob("*.yaml")}
    assert present == set(recorded)
    readme = (K8S_DIR / "README.md").read_text()
    for name, digest in recorded.items():
        data = (CRD_DIR / name).read_bytes()
        assert len(data) < 5 * 1024 * 1024, name
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} was edited"
        assert Path(name).name in readme, f"README does not say where {name} comes from"
