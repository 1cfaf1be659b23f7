"""Throughput and latency of the multi-task model: OpenVINO FP32 / INT8 in-process for the
served 6-layer multilingual-e5-small, the 12-layer one and today's predecessor (MiniLM-L6), and
the served ``inferstream_cpu`` through Triton with the real perf_analyzer binary.

    .venv/bin/python bench/model.py [--seconds 2] [--triton 127.0.0.1:18001] [--no-triton]
        [--archs e5-6,e5-12,minilm-6]

Needs a finished ``inferstream build-models`` (the FP32 stage in the cache, the INT8 model in
model_repo/). ``e5-6`` is the served model itself; the other architectures are built here with
the same heads and untrained head weights (the same FLOPs: speed, not quality), their INT8 by
NNCF with 32 calibration batches, cached in ``bench/out/arch-*``. Rows: sequence length 64 and
128 at batch 1/8/32; in-process cells give sequences/s and p50 per call, Triton gives
sequences/s and p99 (perf_analyzer, concurrency 2, requests of batch B). Start Triton first
(``deploy/triton/triton.sh start``) for that column.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from streams.settings import Settings  # noqa: E402
from workers.modeling.mt_export import openvino_engine  # noqa: E402

CASES = [(64, 1), (64, 8), (64, 32), (128, 1), (128, 8), (128, 32)]
OUT = REPO / "bench" / "out"


def _inputs(length: int, batch: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, size=(batch, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s> (the MiniLM ids are in its vocabulary too)
    return ids, np.ones_like(ids)


def _time(fn, ids: np.ndarray, mask: np.ndarray, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def,type-arg]
    fn(ids, mask)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        fn(ids, mask)
        times.append(time.perf_counter() - t)
    return ids.shape[0] * len(times) / sum(times), 1000 * float(np.median(times))


def _arch(name: str) -> Path:
    """FP32 and INT8 IRs of an architecture with the served model's heads (cached)."""
    import warnings

    from workers.modeling import e5convert, mt_export
    from workers.modeling.examples import BIO_TAGS, INTENTS
    from workers.modeling.multitask import (
        TrainConfig,
        build_model,
        kept_layers,
        merge_and_attach_bank,
    )

    out = OUT / f"arch-{name}"
    if (out / "model.xml").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    if name.startswith("e5-"):
        layers = int(name.split("-")[1])
        backbone = e5convert.convert(out / "hf", layers=kept_layers(layers))
    else:
        from workers.modeling.build import default_model_dir

        backbone = default_model_dir()
    model = build_model(backbone, len(INTENTS), len(BIO_TAGS), TrainConfig())
    model = merge_and_attach_bank(model, np.zeros((1209, 384), dtype=np.float32))  # bank's size
    ids, mask = _inputs(64, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mt_export.export_onnx(model, out / "model.onnx", ids, mask)
    mt_export.convert(out / "model.onnx", out / "fp32.xml")
    calib = [_inputs(64, 1) for _ in range(32)]
    mt_export.quantize(out / "fp32.xml", out / "model.xml", calib)
    return out


def _perf_analyzer(url: str, length: int, batch: int) -> tuple[float, float] | None:
    from bench.ceiling import pa_libs

    libs = pa_libs()
    ids, mask = _inputs(length, 1)
    data = {"data": [{"input_ids": {"content": ids[0].tolist(), "shape": [length]},
                      "attention_mask": {"content": mask[0].tolist(), "shape": [length]}}]}  # fmt: skip  # noqa: E501
    (OUT / "pa_input.json").write_text(json.dumps(data))
    report = OUT / f"pa_{length}_{batch}.csv"
    # --stability-percentage 25 / --max-trials 20: on 2 shared cores the default 10 % window
    # often never settles.
    cmd = [
        str(Path(sys.executable).parent / "perf_analyzer"), "-m", "inferstream_cpu", "-u", url,
        "-i", "grpc", "-b", str(batch), "--concurrency-range", "2",
        "--input-data", str(OUT / "pa_input.json"), "--measurement-interval", "4000",
        "--stability-percentage", "25", "--max-trials", "20", "-f", str(report),
    ]  # fmt: skip
    env = dict(os.environ, LD_LIBRARY_PATH=str(libs))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        print(f"perf_analyzer failed: {proc.stdout[-400:]} {proc.stderr[-400:]}", file=sys.stderr)
        return None
    row = next(csv.DictReader(report.open()))
    return float(row["Inferences/Second"]), float(row["p99 latency"]) / 1000


@click.command(
    "model", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--seconds", type=float, default=2.0, help="timed seconds per in-process cell")
@click.option("--triton", default="127.0.0.1:18001", help="Triton gRPC HOST:PORT")
@click.option("--no-triton", is_flag=True, help="skip the Triton column")
@click.option("--archs", default="e5-6,e5-12,minilm-6", help="architectures, comma-separated")
def main(seconds: float, triton: str, no_triton: bool, archs: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    version = REPO / "model_repo" / "inferstream_cpu" / "1"
    build = json.loads((version / "build.json").read_text())
    stages = Settings().cache_dir / "multitask"
    fp32_dir = stages / f"fp32-{build['fp32_key'][:24]}"
    engines = {}
    for arch in archs.split(","):
        if arch == "e5-6":  # the served model: its INT8 twin only where the build made one
            fp32, int8 = fp32_dir / "fp32.xml", version / "model.xml"
            if build.get("precision") == "fp32":
                int8 = stages / f"int8-{(build.get('int8_key') or '')[:24]}" / "model.xml"
        else:
            folder = _arch(arch)
            fp32, int8 = folder / "fp32.xml", folder / "model.xml"
        engines[f"{arch} fp32"] = openvino_engine(fp32, "f32")
        if int8.is_file():
            engines[f"{arch} int8"] = openvino_engine(int8, "f32")
        else:
            print(f"{arch}: no INT8 network built on this machine ({int8})")
    head = "| L | B | " + " | ".join(f"{n} seq/s / p50 ms" for n in engines)
    print(
        head
        + (" |" if no_triton else f" | Triton {build.get('precision', 'int8')} seq/s / p99 ms |")
    )
    print("|---" * (2 + len(engines) + (0 if no_triton else 1)) + "|")
    for length, batch in CASES:
        ids, mask = _inputs(length, batch)
        cells = [
            f"{tp:.0f} / {p50:.1f}"
            for tp, p50 in (_time(e, ids, mask, seconds) for e in engines.values())
        ]
        if not no_triton:
            pa = _perf_analyzer(triton, length, batch)
            cells.append("n/a" if pa is None else f"{pa[0]:.0f} / {pa[1]:.1f}")
        print(f"| {length} | {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
