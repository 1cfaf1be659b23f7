"""Install the multi-task build into Triton's repository: which network ``inferstream_cpu/1``
serves, the reply bank beside it, and a config whose label says which network that is.

Which network: :func:`decide`. INT8 where :mod:`workers.modeling.hardware` says it pays (or it
is asked for) and its held-out metrics are within the gate's tolerance of FP32's on every task;
FP32 otherwise. An INT8 request that fails the gate is an error; ``auto`` falls back to FP32 and
records why.

Results carry the ``backend_label`` of the model's config. The tracked ``config.pbtxt`` says
``openvino-int8``. Where FP32 is served, the install writes ``configs/built.pbtxt`` beside it: the
same config labelled ``openvino-fp32``, which Triton loads instead when started with
``--model-config-name=built`` (``deploy/triton/triton.sh``, the k8s manifest). Where INT8 is
served the file is removed and Triton falls back to ``config.pbtxt``. At load the model refuses a
label that does not name the precision in its ``build.json``.

Nothing here is in the FP32 stage's cache key, so changing how a build is installed does not
retrain it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workers.modeling import cache
from workers.modeling.cache import SHARED_PY
from workers.modeling.examples import SAFETY, SENTIMENTS
from workers.modeling.hardware import Choice, Precision
from workers.modeling.metrics import check_gate
from workers.modeling.steps import BuildError
from workers.modeling.taskdata import TaskData, describe

CPU_MODEL, REPLIES_MODEL, FP32_MODEL = (
    "inferstream_cpu",
    "inferstream_replies",
    "inferstream_cpu_fp32",
)
VERSION = "1"
CONFIG_NAME = "built"  # Triton's --model-config-name: <model>/configs/built.pbtxt
CPU_FILES = ("model.xml", "model.bin", "model.py", SHARED_PY)
REPLY_FILES = ("replies.json", "model.py")
LABELS: dict[str, str] = {"int8": "openvino-int8", "fp32": "openvino-fp32"}
_LABEL_RE = re.compile(r'(key:\s*"backend_label"\s*value:\s*\{\s*string_value:\s*")([^"]*)(")')


def served_key(
    repo: Path, fp32_key: str, int8_key: str | None, tolerance: float, choice: Choice
) -> str:
    """What an installed ``inferstream_cpu/1`` depends on: the FP32 build, the INT8 build and
    the gate's tolerance when INT8 was tried, the choice (a named INT8 must fail where an
    automatic one fell back), and the serving files copied beside them."""
    here = Path(__file__)
    files = {
        "mt_install.py": here,
        f"{CPU_MODEL}/model.py": repo / CPU_MODEL / "model.py",
        f"{CPU_MODEL}/config.pbtxt": repo / CPU_MODEL / "config.pbtxt",
        f"{REPLIES_MODEL}/model.py": repo / REPLIES_MODEL / "model.py",
        SHARED_PY: repo / SHARED_PY,
    }
    blob = {
        "fp32": fp32_key,
        "int8": int8_key,
        "tolerance": tolerance if int8_key else None,
        "choice": [choice.precision, choice.reason, choice.requested],
        "files": {name: cache.sha256_file(path) for name, path in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def decide(
    choice: Choice,
    fp32: Mapping[str, float],
    int8: Mapping[str, float] | None,
    gated: tuple[str, ...],
    tolerance: float,
) -> tuple[Precision, str, dict[str, Any] | None]:
    """``(precision served, why, the gate's record or None)``; raises where INT8 was asked for
    by name and failed the gate."""
    if choice.precision == "fp32" or int8 is None:
        return "fp32", choice.reason, None
    gate = check_gate({k: fp32[k] for k in gated}, int8, tolerance)
    record = {"tolerance": tolerance, "deltas": gate.deltas, "failures": list(gate.failures)}
    if gate.passed:
        return "int8", f"{choice.reason}; INT8 within {tolerance:g} point of FP32", record
    failed = "; ".join(gate.failures)
    if choice.requested:
        raise BuildError(f"INT8 gate failed (tolerance {tolerance:g} points): {failed}")
    return "fp32", f"INT8 failed its gate (tolerance {tolerance:g} points: {failed})", record


def relabelled(config_text: str, label: str) -> str:
    """``config_text`` with its ``backend_label`` parameter set to ``label``."""
    text, n = _LABEL_RE.subn(lambda m: f"{m[1]}{label}{m[3]}", config_text)
    if n != 1:
        raise BuildError(f"expected one backend_label parameter in the config, found {n}")
    return text


def write_built_config(repo: Path, precision: Precision) -> Path | None:
    """Write (FP32) or remove (INT8) ``inferstream_cpu/configs/built.pbtxt``; returns it or None."""
    target = repo / CPU_MODEL / "configs" / f"{CONFIG_NAME}.pbtxt"
    if precision == "int8":
        target.unlink(missing_ok=True)
        return None
    tracked = (repo / CPU_MODEL / "config.pbtxt").read_text(encoding="utf-8")
    header = (
        "# Written by `inferstream build-models` from ../config.pbtxt (edit that one):\n"
        f"# the build installed the FP32 network in {VERSION}/, so results say {LABELS['fp32']}.\n"
        f"# Triton reads it instead of config.pbtxt under --model-config-name={CONFIG_NAME}.\n"
    )
    target.parent.mkdir(exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(header + relabelled(tracked, LABELS["fp32"]), encoding="utf-8")
    os.replace(tmp, target)
    return target


def install(
    repo: Path,
    key: str,
    network: tuple[Path, Path],
    data: TaskData,
    record: Mapping[str, Any],
) -> Path:
    """Install ``network`` (an IR's .xml and .bin) as ``inferstream_cpu/1`` with ``record`` in its
    build.json, the reply bank as ``inferstream_replies/1``, and the config that labels it;
    returns the CPU version folder."""
    cpu_dir = repo / CPU_MODEL / VERSION
    manifest = {
        **record,
        "key": key,
        "labels": list(data.intents),
        "entity_labels": list(data.tags),
        "safety_labels": list(SAFETY),
        "sentiment_labels": list(SENTIMENTS),
        "data": describe(data),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _install_folder(cpu_dir, _network_files(repo, *network), manifest)
    replies: dict[str, Path | bytes] = {
        "replies.json": json.dumps(list(data.replies)).encode(),
        "model.py": repo / REPLIES_MODEL / "model.py",
    }
    _install_folder(repo / REPLIES_MODEL / VERSION, replies, {"key": key})
    write_built_config(repo, record["precision"])
    return cpu_dir


def install_fp32(repo: Path, cache_dir: Path, say: Callable[[str], None]) -> Path:
    """Install the FP32 IR of the build that ``inferstream_cpu/1`` holds as
    ``inferstream_cpu_fp32/1`` (same training run, no quantization), from the build cache."""
    installed = cache.read_manifest(repo / CPU_MODEL / VERSION) or {}
    fp32_key = installed.get("fp32_key")
    if not fp32_key:
        raise BuildError(
            f"no {CPU_MODEL}/{VERSION} build installed: run `inferstream build-models`"
        )
    fp32_dir = cache_dir / "multitask" / f"fp32-{fp32_key[:24]}"
    names = ("model.onnx", "fp32.xml", "fp32.bin")
    if not cache.verify_folder(fp32_dir, fp32_key, deep=False, names=names):
        raise BuildError(f"the FP32 stage {fp32_dir} is not in the cache: rebuild with --force")
    target = repo / FP32_MODEL / VERSION
    if cache.verify_folder(target, fp32_key, deep=False, names=CPU_FILES):
        return target
    same = ("labels", "entity_labels", "safety_labels", "sentiment_labels", "top_k", "outputs")
    manifest = {k: installed[k] for k in same if k in installed}
    metrics = installed.get("metrics", {})
    manifest |= {"key": fp32_key, "precision": "fp32", "metrics": {"fp32": metrics.get("fp32")}}
    files = _network_files(repo, fp32_dir / "fp32.xml", fp32_dir / "fp32.bin")
    _install_folder(target, files, manifest)
    say(f"{FP32_MODEL} installed from {fp32_dir.name} -> {target}")
    return target


def _network_files(repo: Path, xml: Path, weights: Path) -> dict[str, Path | bytes]:
    return {
        "model.xml": xml,
        "model.bin": weights,
        "model.py": repo / CPU_MODEL / "model.py",
        SHARED_PY: repo / SHARED_PY,
    }


def _install_folder(
    version_dir: Path, files: Mapping[str, Path | bytes], manifest: Mapping[str, Any]
) -> None:
    """Stage ``files`` (a source path or the bytes) with ``manifest`` as build.json beside them,
    then swap the folder in whole."""
    staging = version_dir.parent / f".staging-build-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name, source in files.items():
            if isinstance(source, bytes):
                (staging / name).write_bytes(source)
            else:
                shutil.copy2(source, staging / name)
        records = cache.file_records(staging, files)
        cache.write_manifest(staging, {**manifest, "files": records})
        cache.install_version(staging, version_dir, tuple(files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
