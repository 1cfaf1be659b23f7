"""The model's own ceiling: the built OpenVINO INT8 IR in-process (the served compile properties,
read from config.pbtxt), and the served model through Triton with the real perf_analyzer binary.

    .venv/bin/python -m bench.ceiling --inprocess --lengths 64 --batches 1,8,32 --seconds 3

prints one JSON line (the harness runs it as a subprocess, so OpenVINO's threads are gone before
the streaming runs start). Inputs are real turns of exactly L tokens (bench/texts.py).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from streams.settings import REPO_ROOT
from workers.modeling.triton_config import parse_instance_count, parse_parameters

OUT = REPO_ROOT / "bench" / "out"


def model_dir(repo: Path, model: str = "inferstream_cpu") -> Path:
    """The newest built version folder of the model."""
    versions = [p for p in (repo / model).iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"no built version of {model} in {repo} (inferstream build-models)")
    return max(versions, key=lambda p: int(p.name))


def served_properties(config: Path) -> dict[str, Any]:
    """The OpenVINO compile properties the served model.py derives from config.pbtxt."""
    spec = importlib.util.spec_from_file_location("served_model", config.parent / "model.py")
    assert spec is not None and spec.loader is not None
    served = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(served)
    props: dict[str, Any] = served.compile_properties(parse_parameters(config.read_text()))
    return props


def encoded(length: int, count: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from bench.texts import TextPool

    pool = TextPool()
    enc = pool.tok.encode(pool.texts(length, max(count, 16)))
    ids, mask = enc.input_ids[:, :length], enc.attention_mask[:, :length]
    reps = -(-count // ids.shape[0])
    return np.tile(ids, (reps, 1))[:count], np.tile(mask, (reps, 1))[:count]


def _infer_loop(
    request: Any, inputs: dict[str, Any], seconds: float, barrier: Any, times: list[float]
) -> None:
    barrier.wait()
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds or len(times) < 3:
        t = time.perf_counter()
        request.infer(inputs)
        times.append(time.perf_counter() - t)


def inprocess(lengths: list[int], batches: list[int], seconds: float) -> list[dict[str, Any]]:
    """Sequences/s of the served configuration: as many requests in parallel as Triton runs
    instances (one Python thread each; OpenVINO releases the GIL while it infers)."""
    import threading

    import openvino as ov

    vdir = model_dir(REPO_ROOT / "model_repo")
    props = served_properties(vdir.parent / "config.pbtxt")
    instances = parse_instance_count((vdir.parent / "config.pbtxt").read_text())
    core = ov.Core()  # one compiled model per instance, as each Triton instance compiles its own
    requests = [
        core.compile_model(str(vdir / "model.xml"), "CPU", props).create_infer_request()
        for _ in range(instances)
    ]
    rows = []
    for length in lengths:
        for batch in batches:
            ids, mask = encoded(length, batch)
            inputs = {"input_ids": ids, "attention_mask": mask}
            for request in requests:
                request.infer(inputs)  # warm-up
            times: list[list[float]] = [[] for _ in requests]
            barrier = threading.Barrier(len(requests))
            threads = [
                threading.Thread(target=_infer_loop, args=(r, inputs, seconds, barrier, t))
                for r, t in zip(requests, times, strict=True)
            ]
            begin = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - begin
            calls = [t for mine in times for t in mine]
            rows.append(
                {
                    "length": length,
                    "batch": batch,
                    "instances": instances,
                    "seq_per_s": round(batch * len(calls) / wall, 1),
                    "p50_ms": round(1000 * float(np.median(calls)), 2),
                    "calls": len(calls),
                }
            )
            print(
                f"  in-process L={length} B={batch} x{instances}: {rows[-1]['seq_per_s']} seq/s",
                file=sys.stderr,
            )
    return rows


def best(rows: list[dict[str, Any]], length: int, key: str = "seq_per_s") -> dict[str, Any] | None:
    mine = [r for r in rows if r.get("length") == length and r.get(key)]
    return max(mine, key=lambda r: float(r[key])) if mine else None


def pa_libs() -> Path:
    """perf_analyzer needs libb64.so.0d and libcudart.so.12: renamed copies ship in
    nvidia_pytriton.libs; link them under their real names."""
    site = Path(sysconfig.get_paths()["purelib"])
    libs = OUT / "lib"
    libs.mkdir(parents=True, exist_ok=True)
    for want, prefix in (("libb64.so.0d", "libb64"), ("libcudart.so.12", "libcudart")):
        found = sorted((site / "nvidia_pytriton.libs").glob(f"{prefix}*"))
        if found and not (libs / want).exists():
            (libs / want).symlink_to(found[0])
    return libs


def perf_analyzer(
    url: str,
    model: str,
    length: int,
    batch: int,
    concurrency: int,
    interval_ms: int,
    max_trials: int,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """One perf_analyzer run (gRPC, batch-``batch`` requests, ``concurrency`` callers); when
    it cannot settle (a busy machine), once more with a doubled window and a 50 % band."""
    row = _perf_analyzer(url, model, length, batch, concurrency, interval_ms, max_trials, 25)
    if "stable measurement" in row.get("error", ""):
        retry = _perf_analyzer(
            url, model, length, batch, concurrency, 2 * interval_ms, max_trials, 50, timeout_s
        )
        row = retry | {"first_try": row["error"][-120:]}
    return row


def _perf_analyzer(
    url: str,
    model: str,
    length: int,
    batch: int,
    concurrency: int,
    interval_ms: int,
    max_trials: int,
    stability: int,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    binary = Path(sys.executable).parent / "perf_analyzer"
    row: dict[str, Any] = {
        "length": length,
        "batch": batch,
        "concurrency": concurrency,
        "interval_ms": interval_ms,
        "stability_pct": stability,
    }
    ids, mask = encoded(length, 16)
    data = {
        "data": [
            {
                "input_ids": {"content": i.tolist(), "shape": [length]},
                "attention_mask": {"content": m.tolist(), "shape": [length]},
            }
            for i, m in zip(ids, mask, strict=True)
        ]
    }
    OUT.mkdir(parents=True, exist_ok=True)
    data_path = OUT / f"pa_data_{length}.json"
    data_path.write_text(json.dumps(data))
    report = OUT / f"pa_{model}_L{length}_b{batch}_c{concurrency}.csv"
    report.unlink(missing_ok=True)
    # --stability-percentage 25 (not 10): on 2 shared cores the default rarely settles.
    cmd = [
        str(binary), "-m", model, "-u", url, "-i", "grpc", "-b", str(batch),
        "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", str(data_path),
        "--measurement-interval", str(interval_ms), "--stability-percentage", str(stability),
        "--max-trials", str(max_trials), "-f", str(report),
    ]  # fmt: skip
    env = dict(os.environ, LD_LIBRARY_PATH=str(pa_libs()))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return row | {"error": f"perf_analyzer ran past {timeout_s:.0f}s"}
    if proc.returncode != 0 or not report.exists():
        tail = (proc.stdout[-300:] + proc.stderr[-300:]).strip().replace("\n", " | ")
        return row | {"error": f"perf_analyzer exit {proc.returncode}: {tail}"}
    got = next(csv.DictReader(report.open()))
    return row | {
        "seq_per_s": round(float(got["Inferences/Second"]), 1),
        **{
            f"p{q}_ms": round(float(got[f"p{q} latency"]) / 1000, 2)
            for q in (50, 95, 99)
            if f"p{q} latency" in got
        },
        "server_queue_ms": round(float(got.get("Server Queue", 0)) / 1000, 2),
        "server_infer_ms": round(float(got.get("Server Compute Infer", 0)) / 1000, 2),
    }


@click.command(
    "ceiling", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--inprocess", "in_process", is_flag=True, help="time the IR in this process")
@click.option("--lengths", default="64", help="sequence lengths, comma-separated")
@click.option("--batches", default="1,8,16,32,64", help="batch sizes, comma-separated")
@click.option("--seconds", type=float, default=3.0, help="timed seconds per cell")
def main(in_process: bool, lengths: str, batches: str, seconds: float) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not in_process:
        raise click.UsageError("only --inprocess runs stand-alone; bench.run drives perf_analyzer")
    rows = inprocess(
        [int(x) for x in lengths.split(",")], [int(x) for x in batches.split(",")], seconds
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
