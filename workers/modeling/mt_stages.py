"""The two cached stages of the multi-task build (:mod:`workers.modeling.mt_build` runs them):
the FP32 stage (fine-tuning to an FP32 IR and its held-out metrics) and the INT8 stage (NNCF on
that IR, calibrated on the train split, and its held-out metrics).

This module's source is part of the FP32 stage's cache key; the orchestration and the install
are not, so changing those does not retrain.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

from rich.progress import Progress

from workers.inference.tokenizer import ModelTokenizer
from workers.modeling import mt_export as ex
from workers.modeling import multitask as mt
from workers.modeling.multitask import TrainConfig
from workers.modeling.steps import BuildError, Steps
from workers.modeling.taskdata import TaskData

CALIBRATION = 300  # NNCF calibration items, the same number from every source


def fp32_stage(
    work: Path, data: TaskData, backbone: Path, cfg: TrainConfig, steps: Steps, progress: Progress
) -> dict[str, Any]:
    """Fine-tune, merge, export to ONNX and an FP32 IR in ``work``; the held-out metrics."""
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


def int8_stage(work: Path, fp32_dir: Path, data: TaskData, steps: Steps) -> dict[str, Any]:
    """NNCF INT8 of ``fp32_dir``'s IR in ``work``, calibrated on the train split; its metrics."""
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
    return {"metrics": {"int8": int8}, "calibration": len(calib)}
