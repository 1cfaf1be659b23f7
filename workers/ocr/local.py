"""In-process PP-OCRv4 OCR: the detector and recogniser networks run by OpenVINO on CPU.

The networks are the ONNX files of the rapidocr wheel by default, or any OpenVINO IR of them,
such as the INT8 IR that ``workers.ocr.quantize`` makes and the install serves. Used by the
benchmarks, the evaluation and the install's INT8 gate, and the model for the Triton python
models (which run only the networks and reuse ``processing``). No angle classifier: inputs are
upright after the EXIF transpose and tilted by at most a few degrees (see ``processing``).

Precision: ``"f32"`` (the default) forces true FP32 inference; ``"bf16"`` leaves OpenVINO at its
own default, which on CPUs with AVX-512 BF16/AMX is BF16 execution (faster, slightly different
probabilities); in an INT8 IR, to the layers NNCF left unquantized. Not thread-safe: use one
instance per thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from workers.ocr.processing import (
    CHARSET_FILE,
    DET_MODEL,
    REC_MODEL,
    DetConfig,
    OcrLine,
    RecConfig,
    TextBox,
    assemble_lines,
    crop_line,
    ctc_decode,
    db_boxes,
    det_preprocess,
    load_charset,
    pad_batch,
    rapidocr_models_dir,
    rec_preprocess,
)

Precision = Literal["f32", "bf16"]


def _compile(path: Path, precision: Precision, rec_height: int | None = None) -> Any:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if rec_height is not None:  # the exported height is dynamic ("?"): pin it to 48
        model.reshape({model.input(0): ov.PartialShape([-1, 3, rec_height, -1])})
    props: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision == "f32":
        props["INFERENCE_PRECISION_HINT"] = "f32"
    return core.compile_model(model, "CPU", props)


class LocalOcr:
    """Detect, crop and recognise text lines of one RGB image.

    ``det_model`` and ``rec_model`` are ONNX files or OpenVINO IR (``.xml``), the wheel's ONNX
    files where not given. ``charset`` is what ``load_charset`` reads the characters from: by
    default ``rec_model`` when it is ONNX, else the wheel's recogniser ONNX (an IR carries no
    metadata).
    """

    def __init__(
        self,
        det_model: Path | None = None,
        rec_model: Path | None = None,
        *,
        charset: Path | None = None,
        precision: Precision = "f32",
        det_cfg: DetConfig | None = None,
        rec_cfg: RecConfig | None = None,
        min_confidence: float = 0.5,
    ) -> None:
        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', not {precision!r}")
        shipped = rapidocr_models_dir  # called only for what is not given
        det_model = det_model or shipped() / DET_MODEL
        rec_model = rec_model or shipped() / REC_MODEL
        if charset is None:
            charset = rec_model if rec_model.suffix == ".onnx" else shipped() / REC_MODEL
        self.precision = precision
        self.det_cfg = det_cfg or DetConfig()
        self.rec_cfg = rec_cfg or RecConfig()
        self.min_confidence = min_confidence
        self.charset = load_charset(charset)
        self._det = _compile(det_model, precision)
        self._rec = _compile(rec_model, precision, self.rec_cfg.height)
        classes = self._rec.output(0).get_partial_shape()[-1]
        if classes.is_static and classes.get_length() != len(self.charset):
            raise ValueError(
                f"{rec_model}: {classes.get_length()} classes but {len(self.charset)} characters"
            )

    @classmethod
    def installed(cls, repo: Path, **options: Any) -> LocalOcr:
        """The networks the version folders ``repo/ocr_det/1`` and ``repo/ocr_rec/1`` serve, as
        their ``model.py`` picks them (``model.xml`` where there is one, else ``model.onnx``),
        with the folder's ``charset.txt``: the served precision, in-process."""
        det, rec = repo / "ocr_det" / "1", repo / "ocr_rec" / "1"
        pick = {d: d / "model.xml" if (d / "model.xml").is_file() else d / "model.onnx"
                for d in (det, rec)}  # fmt: skip
        return cls(pick[det], pick[rec], charset=rec / CHARSET_FILE, **options)

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[TextBox]:
        det = det_preprocess(rgb, self.det_cfg)
        prob = self._det(det.tensor[np.newaxis])[self._det.output(0)]
        return db_boxes(np.asarray(prob)[0, 0], det, self.det_cfg)

    def recognize(self, crops: Sequence[npt.NDArray[np.uint8]]) -> list[tuple[str, float]]:
        """(text, confidence) per crop, in input order; batches are formed by width."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        tensors = [rec_preprocess(c, self.rec_cfg) for c in crops]
        order = sorted(range(len(crops)), key=lambda i: tensors[i].shape[2])
        size = max(1, self.rec_cfg.batch_size)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            batch = pad_batch([tensors[i] for i in chunk], self.rec_cfg.base_width)
            probs = np.asarray(self._rec(batch)[self._rec.output(0)])
            for row, i in enumerate(chunk):
                results[i] = ctc_decode(probs[row], self.charset)
        return results

    def read(self, rgb: npt.NDArray[np.uint8]) -> list[OcrLine]:
        """Lines in reading order, without those under ``min_confidence``."""
        boxes = self.detect(rgb)
        if not boxes:
            return []
        texts = self.recognize([crop_line(rgb, b) for b in boxes])
        return assemble_lines(boxes, texts, self.min_confidence)
