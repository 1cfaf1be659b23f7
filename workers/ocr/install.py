"""Installs the OCR models' version folders (``model_repo/ocr_det/1``, ``model_repo/ocr_rec/1``).

The sources are the PP-OCRv4 ONNX files that the pinned ``rapidocr-onnxruntime`` wheel ships
(deploy/requirements-data.txt). Both networks are quantized to INT8 and gated
(:mod:`workers.ocr.quantize`): where INT8's CER is within 1 point of FP32's in every language,
each folder gets its INT8 IR (``model.xml`` + ``model.bin``); where it is not, or where INT8 is
turned off (``int8=False``: setting ``ocr_int8``, env ``INFERSTREAM_OCR_INT8=0``), or not tried
because the CPU has no VNNI or AMX (``int8=None``, the setting's default), the ONNX file as
shipped (``model.onnx``). One decision for both models. Each folder also gets ``model.py``, the
python-backend helpers it imports, and a ``build.json``: the inputs, the precision and why, the
gate's CERs, the sets' seeds and sizes; ``ocr_rec`` also the recogniser's characters
(``charset.txt``; an IR carries no metadata).

The inputs are the ONNX files' SHA-256, a hash of the code that builds, gates and serves the
models (and renders the sets), the openvino and nncf versions and whether INT8 is allowed: while
both folders hold the same inputs they are left as they are, with no quantization and no gate,
and a fresh checkout takes the decision and the INT8 networks measured for the same inputs from
the cache (``<cache_dir>/ocr-int8/<inputs>``). Each folder is staged beside its target and
renamed into place, so Triton never sees half a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from workers.modeling import hardware
from workers.modeling.cache import sha256_file
from workers.ocr import evalset, local, metrics, processing, quantize

MODELS = {"ocr_det": processing.DET_MODEL, "ocr_rec": processing.REC_MODEL}
_NETWORK = {"ocr_det": "det", "ocr_rec": "rec"}
_HELPERS = ("ocr_model.py", "openvino_model.py")
_PACKAGES = ("openvino", "nncf")
_OFF = "INT8 turned off (setting ocr_int8, env INFERSTREAM_OCR_INT8=0)"


def _version(package: str) -> str | None:
    """Its version; None where it is not installed (nncf, with INT8 off on a runtime install)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _inputs(repo: Path, models_dir: Path, int8: bool) -> dict[str, Any]:
    code = hashlib.sha256()
    modules = (processing, local, metrics, quantize)
    for path in (
        *(repo / model / "model.py" for model in MODELS),
        *(repo / h for h in _HELPERS),
        Path(__file__),
        *(Path(str(m.__file__)) for m in modules),
        *evalset._KEY_SOURCES,
    ):
        code.update(path.read_bytes())
    return {
        "onnx_sha256": {model: sha256_file(models_dir / f) for model, f in MODELS.items()},
        "code_sha256": code.hexdigest(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "int8_allowed": int8,
    }


def _built_inputs(target: Path) -> Any:
    try:
        return json.loads((target / "build.json").read_text(encoding="utf-8")).get("inputs")
    except (OSError, ValueError, AttributeError):
        return None


def _swap(repo: Path, model: str, files: dict[str, Path], info: dict[str, Any]) -> Path:
    """Stage ``files`` (name in the folder: source), the code and ``build.json``; rename into
    place."""
    staging, old, target = (repo / model / n for n in (".staging-1", ".old-1", "1"))
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, source in files.items():
        shutil.copyfile(source, staging / name)
    for helper in _HELPERS:
        shutil.copyfile(repo / helper, staging / helper)
    shutil.copyfile(repo / model / "model.py", staging / "model.py")
    shutil.copyfile(processing.__file__, staging / "ocr_processing.py")
    (staging / "build.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def install_ocr(
    repo: Path,
    say: Callable[[str], None] = print,
    *,
    int8: bool | None = True,
    cache_root: Path | None = None,
) -> list[Path]:
    """Install (or leave in place, when their inputs are unchanged) both OCR version folders;
    returns them. ``int8``: try INT8 (behind the gate), or not; None: try it where the CPU makes
    it pay (:mod:`workers.modeling.hardware`). ``cache_root``: where the calibration and gate sets
    (``evalset``) and the gate's decision with its INT8 networks are cached."""
    off = _OFF
    if int8 is None:
        choice = hardware.choose("auto", hardware.cpu_flags())
        int8, off = choice.precision == "int8", choice.reason
    models_dir = processing.rapidocr_models_dir()
    inputs = _inputs(repo, models_dir, int8)
    if all(_built_inputs(repo / model / "1") == inputs for model in MODELS):
        return [repo / model / "1" for model in MODELS]
    done, decision = [], quantize.Decision("fp32", off)
    record: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ocr-int8-") as tmp:
        irs = Path(tmp)
        if int8:
            decision, record, irs = _measured(inputs, irs, cache_root, say)
        say(f"[ocr] {decision.precision.upper()}: {decision.reason}")
        charset = Path(tmp) / processing.CHARSET_FILE
        charset.write_bytes(processing.onnx_characters(models_dir / MODELS["ocr_rec"]).encode())
        for model, filename in MODELS.items():
            onnx, ir = models_dir / filename, irs / f"{_NETWORK[model]}_int8.xml"
            files = (
                {"model.xml": ir, "model.bin": ir.with_suffix(".bin")}
                if decision.precision == "int8"
                else {"model.onnx": onnx}
            )
            files |= {processing.CHARSET_FILE: charset} if model == "ocr_rec" else {}
            info = {
                "model": model,
                "source": f"{processing.REFERENCE_PACKAGE}=="
                f"{metadata.version('rapidocr-onnxruntime')}",
                "file": filename,
                "precision": decision.precision,
                "reason": decision.reason,
                "installed": sorted(files),
                "inputs": inputs,
                **record,
            }
            done.append(_swap(repo, model, files, info))
            say(f"[ocr] {model}: installed {', '.join(sorted(files))} ({decision.precision})")
    return done


def _measured(
    inputs: dict[str, Any], tmp: Path, cache_root: Path | None, say: Callable[[str], None]
) -> tuple[quantize.Decision, dict[str, Any], Path]:
    """The gate's decision, its record and the folder of the INT8 IRs: from
    ``cache_root/ocr-int8/<inputs>`` where an install measured the same inputs before (a fresh
    checkout on a machine that built them), else measured now in ``tmp`` and kept there."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    cached = None if cache_root is None else cache_root / "ocr-int8" / key
    if cached is not None and (cached / "decision.json").is_file():
        saved = json.loads((cached / "decision.json").read_text(encoding="utf-8"))
        say(f"[ocr] the gate's decision and INT8 networks from {cached}")
        return quantize.Decision(**saved["decision"]), saved["record"], cached
    say("[ocr] quantizing both networks (NNCF INT8) and gating them against FP32 ...")
    decision, record = quantize.measure(tmp, cache_root=cache_root)
    if cached is not None:
        staging = cached.with_name(f"{key}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in tmp.glob("*_int8.*"):
            shutil.copyfile(path, staging / path.name)
        saved = {"decision": dataclasses.asdict(decision), "record": record}
        (staging / "decision.json").write_text(json.dumps(saved), encoding="utf-8")
        shutil.rmtree(cached, ignore_errors=True)
        staging.rename(cached)
    return decision, record, tmp
