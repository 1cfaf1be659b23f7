"""Build ``inferstream_gpu/1/model.plan``: a TensorRT FP16 engine from the CPU model's ONNX.

Run on a GPU host: ``inferstream build-tensorrt`` (needs ``pip install tensorrt``, the PyPI
wheels). It refuses clearly (exit 2) where no NVIDIA GPU or no TensorRT is found. The
ONNX is the one the CPU build exported (same merged weights, same output names); the CPU build
runs first, from its cache when it can. Optimization profile: batch 1-64, sequence 16-256
(clients pad shorter inputs to 16 tokens for this model).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

PROFILE = {"min": (1, 16), "opt": (16, 128), "max": (64, 256)}
GPU_MODEL = "inferstream_gpu"


class NoGpuError(RuntimeError):
    """This host cannot build a TensorRT engine."""


def require_gpu() -> None:
    """Raise :class:`NoGpuError` unless nvidia-smi sees a GPU and ``tensorrt`` imports."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpuError(
            "no NVIDIA GPU here (nvidia-smi not found): build the GPU model on a GPU host"
        )
    probe = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or "GPU" not in probe.stdout:
        raise NoGpuError(f"nvidia-smi finds no usable GPU: {probe.stderr.strip() or probe.stdout}")
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise NoGpuError("TensorRT's Python API is missing: pip install tensorrt") from exc


def build_engine(onnx_path: Path, plan_path: Path, workspace_gib: int = 4) -> None:
    """Parse the ONNX and serialize an FP16 engine with the batch/sequence profile."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name in ("input_ids", "attention_mask"):
        profile.set_shape(name, PROFILE["min"], PROFILE["opt"], PROFILE["max"])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    plan_path.write_bytes(bytes(engine))


def build_gpu_model(repo_dir: Path, cache_dir: Path) -> Path:
    """Build (or reuse) the CPU model, then its FP16 engine into ``<repo_dir>/inferstream_gpu/1``.

    Raises :class:`NoGpuError` first where this host cannot build an engine.
    """
    require_gpu()
    from workers.modeling.build import build_models
    from workers.modeling.mt_install import CPU_MODEL

    build_models(repo_dir, cache_dir)
    cpu = json.loads((repo_dir / CPU_MODEL / "1" / "build.json").read_text(encoding="utf-8"))
    onnx_path = cache_dir / "multitask" / f"fp32-{cpu['fp32_key'][:24]}" / "model.onnx"
    version = repo_dir / GPU_MODEL / "1"
    version.mkdir(parents=True, exist_ok=True)
    build_engine(onnx_path, version / "model.plan")
    manifest = {"key": cpu["key"], "source_onnx": str(onnx_path), "profile": PROFILE}
    (version / "build.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return version / "model.plan"
