"""ONNX export of the multi-task model, OpenVINO FP32 IR, NNCF INT8 and held-out evaluation.

The heads and the reply-bank MatMul stay out of quantization (``ignored_scope``): only the
encoder runs in INT8. Evaluation runs any engine given as ``(ids, mask) -> outputs`` over the
held-out split and returns the task metrics in points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.modeling import metrics
from workers.modeling.multitask import MAX_LEN, OUTPUT_NAMES
from workers.modeling.taskdata import Split, TaskData
from workers.modeling.tokenization import load_tokenizer

IntArray = npt.NDArray[np.int64]
Outputs = dict[str, npt.NDArray[Any]]
Engine = Callable[[IntArray, IntArray], Outputs]
OPSET = 17
IGNORED = [".*_head/.*", "^/MatMul(_[0-9]+)?$", "^/TopK.*"]


def export_onnx(model: Any, path: Path, ids: IntArray, mask: IntArray) -> None:
    import torch

    seq = {0: "batch", 1: "sequence"}
    axes: dict[str, dict[int, str]] = {"input_ids": seq, "attention_mask": seq}
    axes |= {name: {0: "batch"} for name in OUTPUT_NAMES}
    axes["token_logits"] = seq
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def convert(onnx_path: Path, xml_path: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def quantize(
    xml_path: Path, out_path: Path, calibration: Sequence[tuple[IntArray, IntArray]]
) -> None:
    """NNCF post-training INT8 quantization of the encoder (transformer preset)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    items = [{"input_ids": i, "attention_mask": m} for i, m in calibration]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        subset_size=len(items),
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(patterns=IGNORED, validate=False),
    )
    ov.save_model(quantized, str(out_path), compress_to_fp16=False)


def openvino_engine(xml_path: Path, precision: str = "f32") -> Engine:
    import openvino as ov

    props = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(xml_path), "CPU", props)

    def run(ids: IntArray, mask: IntArray) -> Outputs:
        result = compiled({"input_ids": ids, "attention_mask": mask})
        return {n: np.array(result[compiled.output(n)]) for n in OUTPUT_NAMES}

    return run


def torch_engine(model: Any) -> Engine:
    import torch

    def run(ids: IntArray, mask: IntArray) -> Outputs:
        with torch.inference_mode():
            out = model(torch.from_numpy(ids), torch.from_numpy(mask))
        return {n: t.numpy() for n, t in zip(OUTPUT_NAMES, out, strict=True)}

    return run


def _run_texts(
    engine: Engine, tok: Any, texts: Sequence[str], batch: int = 32
) -> tuple[list[Outputs], list[list[tuple[int, int]]]]:
    """Per-text outputs (token_logits cut to the text's own length) and token offsets."""
    rows: list[Outputs] = []
    offsets: list[list[tuple[int, int]]] = []
    for i in range(0, len(texts), batch):
        enc = tok.encode_batch(list(texts[i : i + batch]))
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        out = engine(ids, mask)
        for j, e in enumerate(enc):
            n = int(sum(e.attention_mask))
            row = {k: v[j] for k, v in out.items()}
            row["token_logits"] = row["token_logits"][:n]
            rows.append(row)
            offsets.append(list(e.offsets)[:n])
    return rows, offsets


def evaluate(
    engine: Engine, data: TaskData, model_dir: Path, split: Split | None = None
) -> dict[str, float]:
    """Held-out task metrics (points) for one engine."""
    split = split or data.held_out
    tok = load_tokenizer(model_dir, MAX_LEN)
    topic_ix = {t: i for i, t in enumerate(data.labels)}
    turns, _ = _run_texts(engine, tok, [t.text for t in split.turns])
    safety, _ = _run_texts(engine, tok, [s.text for s in split.safety])
    notes, offsets = _run_texts(engine, tok, [n.text for n in split.notes])
    pred_spans = []
    for row, offs in zip(notes, offsets, strict=True):
        tag_ids = row["token_logits"].argmax(axis=1)
        pred_spans.append([s[:3] for s in metrics.decode_spans(tag_ids, offs, data.tags)])
    return {
        "topic_accuracy": metrics.accuracy(
            [topic_ix[t.topic] for t in split.turns], [int(r["logits"].argmax()) for r in turns]
        ),
        "safety_macro_f1": metrics.macro_f1(
            [s.unsafe for s in split.safety], [int(r["safety"].argmax()) for r in safety], 2
        ),
        "entity_span_f1": metrics.span_f1([n.spans for n in split.notes], pred_spans),
        "reply_recall_at_3": metrics.recall_at_k(
            [t.reply for t in split.turns], np.stack([r["reply_index"] for r in turns])
        ),
    }


def max_abs_diff(
    a: Mapping[str, npt.NDArray[Any]], b: Mapping[str, npt.NDArray[Any]]
) -> dict[str, float]:
    keys = ("logits", "safety", "embedding", "token_logits", "reply_score")
    return {
        k: float(np.max(np.abs(a[k].astype(np.float32) - b[k].astype(np.float32)))) for k in keys
    }
