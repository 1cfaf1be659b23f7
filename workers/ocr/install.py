"""Installs the OCR models' version folders (``model_repo/ocr_det/1``, ``model_repo/ocr_rec/1``).

Nothing is trained or converted: OpenVINO reads the PP-OCRv4 ONNX files that the pinned
``rapidocr-onnxruntime`` wheel ships (deploy/requirements-data.txt). The folder gets the ONNX
file, ``model.py``, the python-backend helpers it imports and a ``build.json`` naming the source
and its SHA-256; an unchanged folder is left as it is. Each folder is staged beside its target and
renamed into place, so Triton never sees half a folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from workers.ocr import processing

MODELS = {"ocr_det": processing.DET_MODEL, "ocr_rec": processing.REC_MODEL}
_HELPERS = ("ocr_model.py", "openvino_model.py")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build_info(model: str, onnx: Path, repo: Path) -> dict[str, str]:
    code = hashlib.sha256()
    for path in (
        repo / model / "model.py",
        *(repo / h for h in _HELPERS),
        Path(processing.__file__),
    ):
        code.update(path.read_bytes())
    return {
        "model": model,
        "source": f"{processing.REFERENCE_PACKAGE}=={metadata.version('rapidocr-onnxruntime')}",
        "file": onnx.name,
        "sha256": _sha256(onnx),
        "code_sha256": code.hexdigest(),
    }


def install_ocr(repo: Path, say: Callable[[str], None] = print) -> list[Path]:
    """Install (or leave in place, when unchanged) both OCR version folders; returns them."""
    models_dir = processing.rapidocr_models_dir()
    done = []
    for model, filename in MODELS.items():
        onnx = models_dir / filename
        target = repo / model / "1"
        info = _build_info(model, onnx, repo)
        built = target / "build.json"
        if built.is_file() and json.loads(built.read_text(encoding="utf-8")) == info:
            done.append(target)
            continue
        staging = repo / model / ".staging-1"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(onnx, staging / "model.onnx")
        shutil.copyfile(repo / model / "model.py", staging / "model.py")
        for helper in _HELPERS:
            shutil.copyfile(repo / helper, staging / helper)
        shutil.copyfile(processing.__file__, staging / "ocr_processing.py")
        (staging / "build.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        old = repo / model / ".old-1"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        say(f"[ocr] {model}: installed {filename} ({info['sha256'][:12]}) from {info['source']}")
        done.append(target)
    return done
