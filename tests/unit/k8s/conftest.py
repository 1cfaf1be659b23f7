"""Session fixtures: the pinned kustomize, both overlays rendered once, the CRD validator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.k8s.manifests import (
    CRD_DIR,
    K8S_DIR,
    OVERLAYS,
    CrdValidator,
    Obj,
    kustomize_path,
    render,
)


@pytest.fixture(scope="session")
def kustomize() -> Path:
    return kustomize_path()


@pytest.fixture(scope="session")
def rendered(kustomize: Path) -> dict[str, list[Obj]]:
    return {overlay: render(kustomize, K8S_DIR / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    return CrdValidator(CRD_DIR)
