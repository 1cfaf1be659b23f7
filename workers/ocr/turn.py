"""A turn's text when it carries images: the typed text, then every recognised line, and the
result's ``ocr`` view of it after the content filter.

The model, the filter, the signature and the dialogue context see one text: the typed text (if
any) and each image's lines in reading order, joined by newlines. Every line keeps its offsets
``[start, end)`` in that text, so the result's entity offsets lead back to a line and its box.
A masked span inside a line is reported with the line it sits in and a box estimated from the
characters' positions along the line (full-width characters count twice a narrow one).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Point = tuple[int, int]
Box = tuple[Point, Point, Point, Point]  # top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True, slots=True)
class ReadLine:
    text: str
    confidence: float
    box: Box


@dataclass(frozen=True, slots=True)
class ReadImage:
    """What OCR read from one attachment."""

    attachment: str  # the attachment's id in the event
    width: int
    height: int
    sha256: str
    orientation: int  # the EXIF orientation applied (1: none)
    lines: tuple[ReadLine, ...]


@dataclass(frozen=True, slots=True)
class LineSpan:
    image: int
    line: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TurnText:
    text: str
    images: tuple[ReadImage, ...]
    spans: tuple[LineSpan, ...]

    @property
    def source(self) -> str:
        """ "image" when the turn's text all came from images, "text+image" when typed text
        comes first, "text" without images."""
        if not self.images:
            return "text"
        return "image" if not self.spans or self.spans[0].start == 0 else "text+image"


class Masked(Protocol):
    """A masked span of the content filter (``workers.guard.filter.MaskedSpan``)."""

    @property
    def type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def new_start(self) -> int: ...
    @property
    def new_end(self) -> int: ...


def same_row(a: ReadLine, b: ReadLine) -> bool:
    """Whether ``b`` continues ``a``'s row: their heights overlap by half the smaller one and
    ``b`` starts right of ``a``'s middle (the detector splits a row at wide gaps)."""
    a_top, a_bottom = min(p[1] for p in a.box), max(p[1] for p in a.box)
    b_top, b_bottom = min(p[1] for p in b.box), max(p[1] for p in b.box)
    overlap = min(a_bottom, b_bottom) - max(a_top, b_top)
    a_mid = (min(p[0] for p in a.box) + max(p[0] for p in a.box)) / 2
    return overlap > 0.5 * min(a_bottom - a_top, b_bottom - b_top) and b.box[0][0] > a_mid


def compose(typed: str, images: Sequence[ReadImage]) -> TurnText:
    """The turn's text: ``typed`` (kept as sent, when not blank), then each image's lines: a
    newline between rows, a space between the pieces of one row."""
    text = typed if typed.strip() else ""
    spans: list[LineSpan] = []
    for i, image in enumerate(images):
        for j, line in enumerate(image.lines):
            if text:
                text += " " if j and same_row(image.lines[j - 1], line) else "\n"
            spans.append(LineSpan(i, j, len(text), len(text) + len(line.text)))
            text += line.text
    return TurnText(text, tuple(images), tuple(spans))


def _masked_pos(spans: Sequence[Masked], pos: int, *, end: bool) -> int:
    """``pos`` (an offset in the original text) in the masked text."""
    shift = 0
    for s in spans:
        if s.end <= pos:
            shift += (s.new_end - s.new_start) - (s.end - s.start)
        elif s.start < pos:  # inside a masked span: its placeholder's edge
            return s.new_end if end else s.new_start
    return pos + shift


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _lerp(a: Point, b: Point, t: float) -> Point:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t))


def sub_box(line: ReadLine, start: int, end: int) -> Box:
    """The part of ``line.box`` holding characters ``[start, end)`` of ``line.text``."""
    widths = [_width(c) for c in line.text] or [1]
    total = float(sum(widths))
    a, b = sum(widths[:start]) / total, sum(widths[:end]) / total
    tl, tr, br, bl = line.box
    return (_lerp(tl, tr, a), _lerp(tl, tr, b), _lerp(bl, br, b), _lerp(bl, br, a))


def ocr_view(
    turn: TurnText, masked: Sequence[Masked], masked_text: str | None
) -> list[dict[str, Any]]:
    """The result's ``ocr`` field: per image its lines (the text as released: masked, or None
    when the turn was blocked), their boxes, confidences and offsets in the turn's text, and
    one redaction per masked span that falls in a line."""
    ordered = sorted(masked, key=lambda s: s.start)
    out: list[dict[str, Any]] = [
        {
            "attachment": image.attachment,
            "width": image.width,
            "height": image.height,
            "sha256": image.sha256,
            "orientation": image.orientation,
            "lines": [],
            "redactions": [],
        }
        for image in turn.images
    ]
    for span in turn.spans:
        line = turn.images[span.image].lines[span.line]
        shown = None
        if masked_text is not None:
            lo = _masked_pos(ordered, span.start, end=False)
            hi = _masked_pos(ordered, span.end, end=True)
            shown = masked_text[lo:hi]
        view = out[span.image]
        view["lines"].append(
            {
                "text": shown,
                "confidence": round(line.confidence, 4),
                "box": [list(p) for p in line.box],
                "start": span.start,
                "end": span.end,
            }
        )
        for s in ordered:
            lo, hi = max(s.start, span.start), min(s.end, span.end)
            if lo < hi:
                box = sub_box(line, lo - span.start, hi - span.start)
                view["redactions"].append(
                    {"line": span.line, "type": s.type, "box": [list(p) for p in box]}
                )
    return out
