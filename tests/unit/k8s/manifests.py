"""Render the Kustomize overlays of deploy/k8s and validate what comes out, offline.

* ``render`` runs the pinned kustomize (deploy/k8s/kustomize.sh) and parses its output.
* Built-in kinds are checked by ``kubernetes-validate`` against the Kubernetes OpenAPI schemas it
  ships (strict: unknown fields are errors), for ``KUBERNETES_VERSION``.
* Custom resources (Strimzi, KEDA) are checked by ``CrdValidator`` against the ``openAPIV3Schema``
  of the CRDs kept in deploy/k8s/crds, read the way the API server reads a structural schema:
  unknown fields are errors (the server would drop them silently; kubectl's strict field validation
  rejects them), ``x-kubernetes-int-or-string`` accepts both, ``nullable`` accepts null.
  ``x-kubernetes-validations`` (CEL rules) are not evaluated here; the tests check the one that
  matters to us (KEDA min <= max) themselves.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from streams.settings import REPO_ROOT

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
CRD_DIR = K8S_DIR / "crds"
OVERLAYS = ("cpu-only", "gpu")
# libyaml's loader when PyYAML has it: the Strimzi Kafka CRD alone is 330 kB.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The oldest minor that kubernetes-validate ships schemas for and that has every API we use
# (StatefulSet persistentVolumeClaimRetentionPolicy, autoscaling/v2, policy/v1) as GA.
KUBERNETES_VERSION = "1.33"

Obj = dict[str, Any]


def kustomize_path() -> Path:
    """The pinned kustomize binary; installs it on first use (Go module proxy, ~2 min cold)."""
    out = subprocess.run(
        ["bash", str(K8S_DIR / "kustomize.sh"), "--path"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return Path(out.stdout.strip())


def render(kustomize: Path, kustomization_dir: Path) -> list[Obj]:
    """``kustomize build`` of a folder, as a list of objects; raises with kustomize's message."""
    out = subprocess.run(
        [str(kustomize), "build", str(kustomization_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {kustomization_dir} failed:\n{out.stderr}")
    return [doc for doc in yaml.load_all(out.stdout, Loader=YAML_LOADER) if doc]


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def pod_spec(obj: Obj) -> Obj:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def containers(obj: Obj, *, init: bool = True) -> Iterator[Obj]:
    spec = pod_spec(obj)
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def _structural(node: Any) -> Any:
    """An API server's reading of a CRD schema, as plain JSON Schema (see the module doc)."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


class CrdValidator:
    """Validates custom resources against the CRDs (one file each) in a folder tree."""

    def __init__(self, crd_dir: Path) -> None:
        self.schemas: dict[tuple[str, str], Obj] = {}  # (apiVersion, kind) -> JSON Schema
        for path in sorted(crd_dir.rglob("*.yaml")):
            for crd in yaml.load_all(path.read_text(), Loader=YAML_LOADER):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served", False):
                        schema = _structural(version["schema"]["openAPIV3Schema"])
                        self.schemas[(f"{group}/{version['name']}", kind)] = schema

    def knows(self, obj: Obj) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) in self.schemas

    def errors(self, obj: Obj) -> list[str]:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self.schemas:
            return [f"no CRD serves {key[0]} {key[1]}"]
        validator = jsonschema.Draft7Validator(self.schemas[key])
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]


def validation_errors(obj: Obj, crds: CrdValidator) -> list[str]:
    """Why ``obj`` would be rejected (empty when valid): CRD schema or Kubernetes schema."""
    if crds.knows(obj):
        return crds.errors(obj)
    try:
        kubernetes_validate.validate(copy.deepcopy(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')}"]
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "<root>"
        return [f"{where}: {exc.message}"]
    return []
