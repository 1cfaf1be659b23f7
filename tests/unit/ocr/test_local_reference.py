"""``LocalOcr`` (our processing, OpenVINO FP32) against rapidocr's own pipeline (onnxruntime) on
images rendered here with the evaluation fonts (``deploy/fonts/fetch.sh``).

The pages are 960x540, so both pipelines feed the detector the same 1312x736 input (our
``max_side`` cap only differs from the reference on images wider than ~2.2:1). The reference runs
without its angle classifier (``use_cls=False``), as we do.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from workers.ocr import processing as P

pytest.importorskip("openvino")
rapidocr = pytest.importorskip("rapidocr_onnxruntime")
Levenshtein = pytest.importorskip("rapidfuzz.distance").Levenshtein

ZH = ("wqy-zenhei.ttc", "uming.ttc")
EN = ("LiberationSans-Regular.ttf", "DejaVuSans.ttf")
ORDER_ZH = (
    "您好，您的订单20231205-8842已发货",
    "客服电话：138-1234-5678",
    "退款将在3个工作日内到账",
)
ADDRESS = ("请核对收货地址", "北京市朝阳区建国路88号", "联系人：王先生 139-8765-4321")
ORDER_EN = (
    "Order number: A1234-5678",
    "Call us at 138-1234-5678",
    "Your refund has been processed.",
)
INVOICE = ("Invoice INV-2024-0042", "Total due: $199.00", "Tracking: SF1234567890")
PAGES: list[tuple[str, tuple[str, ...], float]] = [
    (ZH[0], ORDER_ZH, 0),
    (ZH[1], ORDER_ZH, 0),
    (ZH[0], ADDRESS, 0),
    (ZH[1], ADDRESS, 0),
    (ZH[0], ("发票号码：04401234", "金额：人民币1280.50元", "开票日期：2024年3月15日"), 3),
    (ZH[1], ("会员积分已过期", "如有疑问请拨打400-820-8820"), 0),
    (EN[0], ORDER_EN, 0),
    (EN[1], ORDER_EN, 0),
    (EN[0], INVOICE, 0),
    (EN[1], INVOICE, 3),
    (ZH[0], ("订单号 SO-20240315-0007", "Payment received, thank you"), 0),
    (EN[0], ("Meeting at 10:30 tomorrow", "Room 4B, Building 2"), 0),
]


def _fonts_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferstream/fonts"
    folder = Path(os.environ.get("INFERSTREAM_FONTS", default))
    if not all((folder / f).is_file() for f in ZH + EN):
        pytest.skip(f"fonts missing in {folder}: run deploy/fonts/fetch.sh")
    return folder


def render(font: Path, lines: tuple[str, ...], angle: float, pt: int = 36) -> np.ndarray:
    img = Image.new("RGB", (960, 540), "white")
    draw = ImageDraw.Draw(img)
    face = ImageFont.truetype(str(font), pt)
    for i, line in enumerate(lines):
        draw.text((50, 60 + i * (2 * pt + 10)), line, font=face, fill=(20, 20, 20))
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor="white")
    return np.asarray(img)


def _squash(texts: list[str] | tuple[str, ...]) -> str:
    """The lines joined without whitespace: the model often drops or adds a space."""
    return "".join("".join(texts).split())


@dataclass
class Page:
    truth: tuple[str, ...]
    ours: list[str]
    ref: list[str]
    ours_s: float
    ref_s: float


@pytest.fixture(scope="module")
def ocr() -> Any:
    from workers.ocr.local import LocalOcr

    return LocalOcr()


@pytest.fixture(scope="module")
def pages(ocr: Any) -> list[Page]:
    fonts = _fonts_dir()
    reference = rapidocr.RapidOCR()
    out = []
    for font, lines, angle in PAGES:
        rgb = render(fonts / font, lines, angle)
        start = time.perf_counter()
        ours = [line.text for line in ocr.read(rgb)]
        mid = time.perf_counter()
        result, _ = reference(np.ascontiguousarray(rgb[..., ::-1]), use_cls=False)  # BGR
        end = time.perf_counter()
        out.append(Page(lines, ours, [r[1] for r in result or []], mid - start, end - mid))
    return out


def test_lines_agree_with_rapidocr(pages: list[Page]) -> None:
    exact = sum(p.ours == p.ref for p in pages)
    modulo_spaces = sum(
        [_squash([t]) for t in p.ours] == [_squash([t]) for t in p.ref] for p in pages
    )
    diffs = [(p.ours, p.ref) for p in pages if p.ours != p.ref]
    # measured: 12/12 modulo spaces; 8/12 exact: the other 4 are pages where rapidocr loses a
    # word space that ours restores (``ctc_decode``), and ours then reads exactly the truth
    assert modulo_spaces >= 11, diffs
    assert exact >= 7, diffs
    assert all(
        list(p.truth) == p.ours
        for p in pages
        if p.ours != p.ref and [_squash([t]) for t in p.ours] == [_squash([t]) for t in p.ref]
    ), diffs


def test_text_matches_the_rendered_truth(pages: list[Page]) -> None:
    cers = [Levenshtein.normalized_distance(_squash(p.ours), _squash(p.truth)) for p in pages]
    assert sum(c == 0 for c in cers) >= 10, [(p.ours, p.truth) for p in pages]
    assert float(np.mean(cers)) < 0.02
    assert all(len(p.ours) == len(p.truth) for p in pages)


def test_recognize_keeps_input_order_across_batches(ocr: Any) -> None:
    rgb = render(_fonts_dir() / EN[0], ORDER_EN, 0)
    crops = [P.crop_line(rgb, b) for b in ocr.detect(rgb)]
    assert len(crops) == 3
    single = [ocr.recognize([c])[0][0] for c in crops]
    many = crops[::-1] * 4  # 12 crops: two batches of mixed widths
    got = [text for text, _ in ocr.recognize(many)]
    assert got == single[::-1] * 4
    assert ocr.recognize([]) == []


def test_read_blank_image_is_empty(ocr: Any) -> None:
    assert ocr.read(np.full((200, 300, 3), 255, np.uint8)) == []
