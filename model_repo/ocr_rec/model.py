"""Triton python_backend model: PP-OCRv4 text-line recogniser (CTC) on OpenVINO, CPU.

Each request holds one image's line crops (uint8 RGB, height 48, line ``i``'s pixels in its first
``widths[i]`` columns). The dynamic batcher hands several requests to one ``execute``: their
lines are normalised, padded to the widest (zeros: what the reference pads with) and run as one
call per ``max_lines``; each line's argmax path is CTC-decoded here with the recogniser's
character set (``charset.txt`` in the version folder: the ONNX file's metadata, which an IR does
not carry), so only text and a confidence travel back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE if (_HERE / "ocr_model.py").is_file() else _HERE.parent))

import numpy as np  # noqa: E402
from ocr_model import (  # noqa: E402
    OcrModel,
    RequestError,
    error_response,
    input_array,
    pb_utils,
    processing,
)

__all__ = ["TritonPythonModel"]


class TritonPythonModel(OcrModel):
    def setup(self) -> None:
        self.charset = processing.load_charset(self.version_dir / processing.CHARSET_FILE)
        self.cfg = processing.RecConfig()
        self.max_lines = int(self.params.get("max_lines", "32"))
        self.run(np.zeros((1, 3, self.cfg.height, self.cfg.base_width), dtype=np.float32))

    def _lines(self, request: Any) -> list[Any]:
        crops = input_array(request, "crops")
        widths = input_array(request, "widths").reshape(-1)
        if crops.ndim != 4 or crops.shape[1] != self.cfg.height or crops.shape[3] != 3:
            raise RequestError(f"crops must be [n, {self.cfg.height}, W, 3], got {crops.shape}")
        if widths.shape[0] != crops.shape[0]:
            raise RequestError("one width per crop")
        if widths.min() < 1 or widths.max() > crops.shape[2]:
            raise RequestError(f"widths must be in [1, {crops.shape[2]}]")
        return [processing.rec_normalize(c[:, :w]) for c, w in zip(crops, widths, strict=True)]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        lines: list[Any] = []
        owners: list[tuple[int, int, int]] = []  # (request, first line, count)
        for i, request in enumerate(requests):
            try:
                mine = self._lines(request)
            except RequestError as exc:
                responses[i] = error_response(str(exc))
                continue
            owners.append((i, len(lines), len(mine)))
            lines += mine
        try:
            decoded = self._decode(lines)
        except Exception as exc:  # every request still waiting gets the error
            for i, _, _ in owners:
                responses[i] = error_response(f"inference failed: {exc}", "INTERNAL")
            return responses
        for i, first, count in owners:
            mine = decoded[first : first + count]
            text = np.array([[t.encode("utf-8")] for t, _ in mine], dtype=np.object_)
            conf = np.array([[c] for _, c in mine], dtype=np.float32)
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("text", text.reshape(count, 1)),
                    pb_utils.Tensor("confidence", conf.reshape(count, 1)),
                ]
            )
        return responses

    def _decode(self, lines: list[Any]) -> list[tuple[str, float]]:
        # by width, as the reference sorts by aspect ratio: each call pads as little as it can
        order = sorted(range(len(lines)), key=lambda k: lines[k].shape[2])
        out: list[tuple[str, float]] = [("", 0.0)] * len(lines)
        for lo in range(0, len(order), self.max_lines):
            chunk = order[lo : lo + self.max_lines]
            probs = self.run(processing.pad_batch([lines[k] for k in chunk]))
            for k, p in zip(chunk, probs, strict=True):
                out[k] = processing.ctc_decode(p, self.charset)
        return out
