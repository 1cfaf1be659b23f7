"""PP-OCR pre- and post-processing on hand-made inputs: no model runs here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import orjson
import pytest

from workers.ocr import processing as P
from workers.ocr.processing import DetConfig, DetInput, OcrLine, RecConfig, TextBox


def _rgb(h: int, w: int, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = color
    return img


# --- detector input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (540, 960, (736, 1312)),  # shorter side up to 736, like the reference
        (1000, 800, (992, 800)),  # big enough: only rounded to multiples of 32
        (300, 1500, (320, 1600)),  # the reference would give 736 x 3680: capped at 1600
        (4000, 3000, (1600, 1216)),  # a huge photo: longer side capped
        (10, 10, (736, 736)),
    ],
)
def test_det_size_multiples_of_32_and_capped(h: int, w: int, expected: tuple[int, int]) -> None:
    assert P.det_size(h, w) == expected
    assert all(s % 32 == 0 and 32 <= s <= 1600 for s in expected)


def test_det_size_limit_type_max_and_other_cap() -> None:
    assert P.det_size(2000, 1000, DetConfig(limit_type="max", limit_side_len=960)) == (960, 480)
    assert P.det_size(3000, 3000, DetConfig(max_side=1000)) == (992, 992)


def test_det_preprocess_bgr_normalised_with_ratios() -> None:
    img = _rgb(540, 960, (255, 0, 0))  # pure red
    det = P.det_preprocess(img)
    assert det.tensor.shape == (3, 736, 1312) and det.tensor.dtype == np.float32
    assert det.tensor.flags.c_contiguous
    # BGR: red is the last channel; (x / 255 - 0.5) / 0.5
    np.testing.assert_allclose(det.tensor[2], 1.0)
    np.testing.assert_allclose(det.tensor[0], -1.0)
    assert det.ratio_h == pytest.approx(540 / 736) and det.ratio_w == pytest.approx(960 / 1312)
    assert det.pad_top == 0 and det.src_shape == (540, 960)


def test_det_preprocess_letterboxes_wide_and_short_images() -> None:
    wide = P.det_preprocess(_rgb(50, 800))  # ratio 16 > 8: padded to 200 rows
    assert wide.pad_top == 75 and wide.src_shape == (50, 800)
    assert wide.ratio_h == pytest.approx(200 / wide.tensor.shape[1])
    # the black bands are -1 after normalisation, the white page +1
    assert wide.tensor[:, 0].max() == pytest.approx(-1.0)
    assert wide.tensor[:, wide.tensor.shape[1] // 2].min() == pytest.approx(1.0)
    assert P.det_preprocess(_rgb(20, 100)).pad_top > 0  # height <= 30
    assert P.det_preprocess(_rgb(100, 400)).pad_top == 0


def test_det_scale_then_normalize_is_det_preprocess() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 700, 3), dtype=np.uint8)
    scaled = P.det_scale(img)
    assert scaled.image.dtype == np.uint8 and scaled.image.shape[2] == 3
    assert scaled.image.shape[:2] == P.det_preprocess(img).tensor.shape[1:]
    assert scaled.pad_top == 62 and scaled.src_shape == (50, 700)
    whole, split = P.det_preprocess(img), scaled.det_input()
    np.testing.assert_array_equal(whole.tensor, P.det_normalize(scaled.image))
    assert (whole.ratio_h, whole.ratio_w, whole.pad_top, whole.src_shape) == (
        split.ratio_h,
        split.ratio_w,
        split.pad_top,
        split.src_shape,
    )


def test_det_preprocess_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        P.det_preprocess(np.zeros((10, 10), dtype=np.uint8))


# --- DB boxes ---------------------------------------------------------------------------------


def _det_input(h: int, w: int, scale: float, pad_top: int = 0) -> DetInput:
    src = (round(h * scale) - 2 * pad_top, round(w * scale))
    return DetInput(np.zeros((3, h, w), np.float32), scale, scale, pad_top, src)


def test_db_boxes_two_rectangles_in_reading_order_scaled_back() -> None:
    prob = np.zeros((160, 320), dtype=np.float32)
    prob[100:120, 20:200] = 0.9  # lower line, further left
    prob[30:46, 60:300] = 0.9  # upper line
    prob[140:150, 250:300] = 0.4  # above thresh but under box_thresh: dropped
    prob[5:7, 5:7] = 0.9  # too small: dropped
    boxes = P.db_boxes(prob[np.newaxis, np.newaxis], _det_input(160, 320, 2.0))
    assert len(boxes) == 2
    upper, lower = boxes
    # the mean over the inclusive bounding pixels of the min-area box, as the reference scores
    assert 0.8 < upper.score < 0.9 and upper.points.dtype == np.float32
    assert upper.points.shape == (4, 2)
    # source pixels (x2) of the rectangle (60..300, 30..46) grown by the unclip distance,
    # area * 1.6 / perimeter ~ 12.7 detector pixels
    x0, y0 = upper.points.min(axis=0)
    x1, y1 = upper.points.max(axis=0)
    assert 90 < x0 < 110 and 610 < x1 < 640 and 25 < y0 < 45 and 105 < y1 < 125
    assert lower.points[:, 1].min() > y1
    np.testing.assert_array_equal(upper.points[0], [x0, y0])  # tl, tr, br, bl
    np.testing.assert_array_equal(upper.points[2], [x1, y1])


def test_db_boxes_undo_letterbox_and_clip_to_source() -> None:
    prob = np.zeros((64, 256), dtype=np.float32)
    prob[26:38, 10:250] = 0.95
    det = _det_input(64, 256, 1.0, pad_top=16)  # source is 32 x 256
    [box] = P.db_boxes(prob, det)
    assert box.points[:, 1].min() >= 0 and box.points[:, 1].max() <= 32
    assert box.points[:, 0].max() <= 256


def test_db_boxes_empty_map() -> None:
    assert P.db_boxes(np.zeros((64, 64), np.float32), _det_input(64, 64, 1.0)) == []


def test_sort_reading_order_same_line_goes_left_to_right() -> None:
    def box(x: float, y: float) -> TextBox:
        pts = np.array([[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]], np.float32)
        return TextBox(pts, 0.9)

    right_higher, left, below = box(300, 100), box(10, 105), box(200, 160)
    ordered = P.sort_reading_order([below, right_higher, left])
    assert [b.points[0, 0] for b in ordered] == [10, 300, 200]


# --- crops ------------------------------------------------------------------------------------


def test_crop_line_rectifies_a_rotated_rectangle() -> None:
    img = _rgb(300, 400)
    rect = ((200.0, 150.0), (200.0, 40.0), 8.0)
    corners = cv2.boxPoints(rect)
    cv2.fillPoly(img, [np.round(corners).astype(np.int32)], (0, 0, 255))
    by_x = corners[np.argsort(corners[:, 0])]
    tl, bl = sorted(by_x[:2].tolist(), key=lambda p: p[1])
    tr, br = sorted(by_x[2:].tolist(), key=lambda p: p[1])
    crop = P.crop_line(img, np.array([tl, tr, br, bl], np.float32))
    assert abs(crop.shape[0] - 40) <= 1 and abs(crop.shape[1] - 200) <= 1
    inner = crop[4:-4, 4:-4].reshape(-1, 3).astype(int)
    assert (np.abs(inner - [0, 0, 255]).max(axis=1) < 40).mean() > 0.98


def test_crop_line_turns_tall_crops() -> None:
    img = _rgb(300, 300)
    pts = np.array([[100, 20], [130, 20], [130, 220], [100, 220]], np.float32)
    crop = P.crop_line(img, TextBox(pts, 1.0))
    assert crop.shape == (30, 200, 3) and crop.flags.c_contiguous


# --- recogniser input -------------------------------------------------------------------------


def test_rec_preprocess_natural_width_and_cap() -> None:
    crop = _rgb(32, 161, (255, 0, 0))
    x = P.rec_preprocess(crop)
    assert x.shape == (3, 48, 242) and x.dtype == np.float32  # ceil(48 * 161 / 32)
    np.testing.assert_allclose(x[2], 1.0)  # BGR
    np.testing.assert_allclose(x[0], -1.0)
    assert P.rec_preprocess(_rgb(10, 2000)).shape == (3, 48, 1200)
    assert P.rec_preprocess(_rgb(10, 2000), RecConfig(max_width=480)).shape == (3, 48, 480)


def test_rec_resize_then_normalize_is_rec_preprocess() -> None:
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (30, 200, 3), dtype=np.uint8)
    line = P.rec_resize(crop)
    assert line.shape == (48, 320, 3) and line.dtype == np.uint8
    np.testing.assert_array_equal(P.rec_normalize(line), P.rec_preprocess(crop))


def test_pad_batch_zero_pads_on_the_right_to_at_least_320() -> None:
    a = np.ones((3, 48, 100), np.float32)
    b = np.full((3, 48, 400), 0.5, np.float32)
    assert P.pad_batch([a]).shape == (1, 3, 48, 320)
    batch = P.pad_batch([a, b])
    assert batch.shape == (2, 3, 48, 400) and batch.dtype == np.float32
    assert (batch[0, :, :, :100] == 1).all() and (batch[0, :, :, 100:] == 0).all()
    assert (batch[1] == 0.5).all()
    assert P.pad_batch([a], min_width=0).shape == (1, 3, 48, 100)
    with pytest.raises(ValueError):
        P.pad_batch([])


# --- CTC --------------------------------------------------------------------------------------

CHARSET = ["blank", "a", "b", "c", " "]


def _probs(steps: list[int], p: float = 0.9) -> np.ndarray:
    out = np.full((len(steps), len(CHARSET)), (1 - p) / (len(CHARSET) - 1), np.float32)
    out[np.arange(len(steps)), steps] = p
    return out


def test_ctc_decode_collapses_repeats_and_drops_blanks() -> None:
    probs = _probs([1, 1, 0, 1, 2, 2, 0, 4, 3, 0])
    probs[0, 1] = 0.5  # kept step: counts in the confidence
    probs[1, 1] = 0.6  # repeat: collapsed, does not count
    text, conf = P.ctc_decode(probs, CHARSET)
    assert text == "aab c"
    assert conf == pytest.approx(np.mean([0.5, 0.9, 0.9, 0.9, 0.9]))


def test_ctc_decode_empty_and_indices() -> None:
    assert P.ctc_decode(_probs([0, 0, 0]), CHARSET) == ("", 0.0)
    idx = np.array([3, 3, 0, 3])
    text, conf = P.ctc_decode(np.array([0.8, 0.9, 0.99, 0.6]), CHARSET, indices=idx)
    assert text == "cc" and conf == pytest.approx(0.7)


GAP_CHARSET = ["blank", "a", "b", "中", "文", " "]


def _line(pattern: str) -> np.ndarray:
    """[T, C] probabilities, one step a pattern character: ``_`` a blank step where the space
    class stays low, ``~`` one where it rises faintly (0.01), ``^`` strongly (0.1); any other
    character is emitted with probability 0.9."""
    space = {"_": 1e-4, "~": 0.01, "^": 0.1}
    out = np.full((len(pattern), len(GAP_CHARSET)), 1e-4, np.float32)
    for t, ch in enumerate(pattern):
        out[t, -1] = space.get(ch, 1e-4)
        out[t, 0 if ch in space else GAP_CHARSET.index(ch)] = 0.9
    return out


def test_ctc_decode_restores_a_space_the_blank_won() -> None:
    text, conf = P.ctc_decode(_line("a__b_^^^_a"), GAP_CHARSET)
    assert text == "ab a"  # one space however many steps rise
    assert conf == pytest.approx(0.9)  # the restored space is not a kept step
    assert P.ctc_decode(_line("a^___b"), GAP_CHARSET)[0] == "a b"  # a short line too


def test_ctc_decode_faint_space_needs_a_gap_wider_than_the_pitch() -> None:
    uniform = "a__b__a~_b__a__b__a__b"  # pitch 3 throughout
    assert P.ctc_decode(_line(uniform), GAP_CHARSET)[0] == "abababab"
    wide = "a__b__a~___b__a__b__a__b"  # 5 steps where the line's median is 3
    assert P.ctc_decode(_line(wide), GAP_CHARSET)[0] == "aba babab"
    assert P.ctc_decode(_line("a~___b__a"), GAP_CHARSET)[0] == "aba"  # too few to trust a median


def test_ctc_decode_no_space_beside_cjk_nor_a_second_one() -> None:
    assert P.ctc_decode(_line("中^^a^^文^^中^^b"), GAP_CHARSET)[0] == "中a文中b"
    assert P.ctc_decode(_line("a^ ^b"), GAP_CHARSET)[0] == "a b"  # emitted: not doubled
    probs = _line("a__b_^^^_a")  # the indices form has no space column: decoded as it was
    text, _ = P.ctc_decode(probs.max(axis=1), GAP_CHARSET, indices=probs.argmax(axis=1))
    assert text == "aba"


def test_load_charset_blank_first_space_last(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, {"character": "甲\nb\n'"})
    onnx.save(model, tmp_path / "rec.onnx")
    assert P.load_charset(tmp_path / "rec.onnx") == ["blank", "甲", "b", "'", " "]
    (tmp_path / P.CHARSET_FILE).write_bytes(P.onnx_characters(tmp_path / "rec.onnx").encode())
    assert P.load_charset(tmp_path / P.CHARSET_FILE) == ["blank", "甲", "b", "'", " "]
    onnx.helper.set_model_props(model, {})
    onnx.save(model, tmp_path / "bare.onnx")
    with pytest.raises(ValueError, match="character"):
        P.load_charset(tmp_path / "bare.onnx")


# --- results and model location ---------------------------------------------------------------


def test_assemble_lines_filters_and_rounds() -> None:
    pts = np.array([[1.4, 2.6], [10, 2], [10, 9], [1, 9]], np.float32)
    boxes = [TextBox(pts, 0.9)] * 3
    texts = [("ok", 0.93), ("low", 0.4), ("", 0.0)]
    [line] = P.assemble_lines(boxes, texts)
    assert line == OcrLine("ok", 0.93, ((1, 3), (10, 2), (10, 9), (1, 9)))
    assert orjson.loads(line.to_json()) == {
        "text": "ok",
        "confidence": 0.93,
        "box": [[1, 3], [10, 2], [10, 9], [1, 9]],
    }
    assert P.assemble_lines(boxes, texts, min_confidence=0.3)[1].text == "low"


def test_rapidocr_models_dir_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "REFERENCE_PACKAGE", "no_such_package_for_ocr_models")
    with pytest.raises(FileNotFoundError, match="no_such_package_for_ocr_models"):
        P.rapidocr_models_dir()


def test_serving_path_never_imports_rapidocr() -> None:
    pytest.importorskip("openvino")
    code = (
        "import sys\n"
        "from workers.ocr import local, processing\n"
        "d = processing.rapidocr_models_dir()\n"
        "assert (d / processing.DET_MODEL).is_file()\n"
        "assert not any(m.startswith('rapidocr') for m in sys.modules), 'rapidocr imported'\n"
    )
    if P.importlib.util.find_spec(P.REFERENCE_PACKAGE) is None:
        pytest.skip("rapidocr-onnxruntime (the model source) is not installed")
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)
