"""Triton python_backend model: PP-OCRv4 text-line detector (DB) on OpenVINO, CPU.

Each request is one image the worker already scaled to the detector's size (uint8 RGB) and its
``source`` geometry (height, width, letterbox rows). The network's probability map is decoded
here (DB: threshold, contours, unclip) so only the boxes travel back, in the source image's
pixels and in reading order. Images of different sizes share a batch; each runs at its own size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE if (_HERE / "ocr_model.py").is_file() else _HERE.parent))

import numpy as np  # noqa: E402
from ocr_model import OcrModel, RequestError, input_array, pb_utils, processing  # noqa: E402

__all__ = ["TritonPythonModel"]


class TritonPythonModel(OcrModel):
    def setup(self) -> None:
        p = self.params
        self.cfg = processing.DetConfig(
            thresh=float(p.get("thresh", "0.3")),
            box_thresh=float(p.get("box_thresh", "0.5")),
            unclip_ratio=float(p.get("unclip_ratio", "1.6")),
            max_candidates=int(p.get("max_candidates", "1000")),
        )
        self.run(np.zeros((1, 3, 64, 64), dtype=np.float32))  # warm-up

    def answer(self, request: Any) -> list[Any]:
        image = input_array(request, "image")
        source = input_array(request, "source").reshape(-1)
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[3] != 3:
            raise RequestError(f"image must be [1, H, W, 3] uint8, got {list(image.shape)}")
        height, width = int(image.shape[1]), int(image.shape[2])
        if height % 32 or width % 32 or not 32 <= height <= 4096 or not 32 <= width <= 4096:
            raise RequestError(
                f"image sides must be multiples of 32 in [32, 4096]: {height}x{width}"
            )
        if source.shape != (3,) or source[0] < 1 or source[1] < 1 or source[2] < 0:
            raise RequestError(f"source must be (height, width, pad_top), got {source.tolist()}")
        src_h, src_w, pad = (int(v) for v in source)
        det = processing.DetInput(
            tensor=processing.det_normalize(image[0]),
            ratio_h=(src_h + 2 * pad) / height,
            ratio_w=src_w / width,
            pad_top=pad,
            src_shape=(src_h, src_w),
        )
        prob = self.run(det.tensor[None])
        boxes = processing.db_boxes(prob, det, self.cfg)
        points = np.zeros((1, len(boxes), 4, 2), dtype=np.float32)
        scores = np.zeros((1, len(boxes)), dtype=np.float32)
        for i, box in enumerate(boxes):
            points[0, i] = box.points
            scores[0, i] = box.score
        return [pb_utils.Tensor("boxes", points), pb_utils.Tensor("scores", scores)]
