"""ONNX export of the torch classifier, OpenVINO conversion, and the numerical check.

Flags that matter (see shared NOTES): the legacy exporter (``dynamo=False``, opset 17, dynamic
batch/sequence axes); ``compress_to_fp16=False`` when saving the IR; and an explicit
``INFERENCE_PRECISION_HINT=f32`` when comparing, because OpenVINO otherwise runs FP32 models in
BF16 on CPUs that have it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import openvino as ov
    import torch

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("logits", "embedding")
OPSET = 17
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class VerificationError(RuntimeError):
    """The converted model disagrees with the torch model, or has the wrong signature."""


@dataclass(frozen=True)
class Agreement:
    """Max abs differences between two engines over the checked batches."""

    logits: float
    embedding: float
    batches: int
    sequences: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "max_abs_diff_logits": self.logits,
            "max_abs_diff_embedding": self.embedding,
            "batches": self.batches,
            "sequences": self.sequences,
        }


def export_onnx(model: torch.nn.Module, path: Path, sample: tuple[IntArray, IntArray]) -> None:
    """Export ``model`` to ONNX at ``path`` with dynamic batch and sequence axes."""
    import torch

    axes = {0: "batch", 1: "sequence"}
    dynamic_axes: dict[str, dict[int, str]] = {
        "input_ids": axes,
        "attention_mask": axes,
        "logits": {0: "batch"},
        "embedding": {0: "batch"},
    }
    args = (torch.from_numpy(sample[0]), torch.from_numpy(sample[1]))
    with torch.inference_mode():
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def convert_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Convert the ONNX file to an FP32 OpenVINO IR (``.xml`` + ``.bin``, no FP16 compression)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    _check_signature(model)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def _check_signature(model: ov.Model) -> None:
    inputs = {p.get_any_name(): p.get_element_type().get_type_name() for p in model.inputs}
    outputs = {p.get_any_name(): p.get_element_type().get_type_name() for p in model.outputs}
    want_in, want_out = dict.fromkeys(INPUT_NAMES, "i64"), dict.fromkeys(OUTPUT_NAMES, "f32")
    if inputs != want_in or outputs != want_out:
        raise VerificationError(f"IR {inputs} -> {outputs}, expected {want_in} -> {want_out}")


def compile_openvino(
    xml_path: Path, precision: str = "f32", config: Mapping[str, str] | None = None
) -> ov.CompiledModel:
    """Compile the IR on CPU with an explicit inference precision."""
    import openvino as ov

    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    props.update(config or {})
    return ov.Core().compile_model(str(xml_path), "CPU", props)


def run_openvino(
    compiled: ov.CompiledModel, ids: IntArray, mask: IntArray
) -> tuple[FloatArray, FloatArray]:
    """``(logits, embedding)`` for one batch."""
    result = compiled({"input_ids": ids, "attention_mask": mask})
    logits = np.array(result[compiled.output("logits")], dtype=np.float32)
    embedding = np.array(result[compiled.output("embedding")], dtype=np.float32)
    return logits, embedding


def run_torch(
    model: torch.nn.Module, ids: IntArray, mask: IntArray
) -> tuple[FloatArray, FloatArray]:
    """``(logits, embedding)`` for one batch with the torch model."""
    import torch

    with torch.inference_mode():
        logits, embedding = model(torch.from_numpy(ids), torch.from_numpy(mask))
    return logits.numpy().astype(np.float32), embedding.numpy().astype(np.float32)


def compare(
    reference: Sequence[tuple[FloatArray, FloatArray]],
    candidate: Sequence[tuple[FloatArray, FloatArray]],
) -> Agreement:
    """Max abs differences over paired ``(logits, embedding)`` batches; shapes must match."""
    d_logits = d_emb = 0.0
    for (ref_l, ref_e), (cand_l, cand_e) in zip(reference, candidate, strict=True):
        if ref_l.shape != cand_l.shape or ref_e.shape != cand_e.shape:
            raise VerificationError(f"shape mismatch {ref_l.shape}/{cand_l.shape}")
        d_logits = max(d_logits, float(np.max(np.abs(ref_l - cand_l))))
        d_emb = max(d_emb, float(np.max(np.abs(ref_e - cand_e))))
    return Agreement(d_logits, d_emb, len(reference), sum(r[0].shape[0] for r in reference))
