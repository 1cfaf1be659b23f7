"""Reads a turn's image attachments: load, validate and decode each one, find its text lines on
Triton's detector, cut them from the full-resolution image and read them on the recogniser.

Image turns never stall text turns: decoding and cropping run in a thread (the event loop keeps
serving text batches), at most ``max_inflight`` images are in OCR at once per worker (more wait
here, counted in ``inferstream_ocr_waiting``), and the OCR models are separate Triton models
with their own instances, one thread each. Retriable Triton errors back off and retry like text
inference (``Backoff``); an attachment that can never be read raises ``InvalidEvent`` with its
reason (the turn becomes a dead letter).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from workers.attachments import Attachment, AttachmentLimits, DecodedImage, ObjectStore, load_image
from workers.errors import InvalidEvent
from workers.ocr import processing
from workers.ocr.client import Detected, Recognised
from workers.ocr.turn import ReadImage, ReadLine
from workers.retry import Backoff
from workers.telemetry.metrics import Metrics


class OcrModels(Protocol):
    async def detect(
        self, image: npt.NDArray[np.uint8], source: tuple[int, int, int]
    ) -> Detected: ...

    async def recognize(
        self, crops: npt.NDArray[np.uint8], widths: npt.NDArray[np.int32]
    ) -> Recognised: ...


def _crops(
    decoded: DecodedImage, boxes: npt.NDArray[np.float32], cfg: processing.RecConfig
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Every box's line at the recogniser's height, uint8, left-aligned in one array."""
    lines = [processing.rec_resize(processing.crop_line(decoded.rgb, b), cfg) for b in boxes]
    widths = np.array([line.shape[1] for line in lines], dtype=np.int32)
    out = np.zeros((len(lines), cfg.height, int(widths.max()), 3), dtype=np.uint8)
    for i, line in enumerate(lines):
        out[i, :, : line.shape[1]] = line
    return out, widths


class ImageReader:
    def __init__(
        self,
        models: OcrModels,
        store: ObjectStore | None,
        limits: AttachmentLimits,
        backoff: Backoff,
        *,
        max_inflight: int = 2,
        min_confidence: float = 0.5,
        det: processing.DetConfig | None = None,
        rec: processing.RecConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.limits = limits
        self.backoff = backoff
        self.min_confidence = min_confidence
        self.det = det or processing.DetConfig()
        self.rec = rec or processing.RecConfig()
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_inflight)
        self.inflight = 0
        self.waiting = 0

    def load(self) -> int:
        """Images in OCR or waiting for it (what a router or a shedder looks at)."""
        return self.inflight + self.waiting

    async def read(self, attachments: Sequence[Attachment]) -> tuple[ReadImage, ...]:
        """Each attachment's lines, in the attachments' order."""
        return tuple([await self._read(a) for a in attachments])

    def _step(self, name: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.ocr_step(name, seconds)

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.ocr_inflight.set(self.inflight)
            self.metrics.ocr_waiting.set(self.waiting)

    async def _read(self, att: Attachment) -> ReadImage:
        started = time.perf_counter()
        try:
            decoded = await asyncio.to_thread(load_image, att, self.store, self.limits)
        except InvalidEvent as exc:
            if self.metrics is not None:
                self.metrics.ocr_image(exc.code)
            raise
        self._step("decode", time.perf_counter() - started)
        self.waiting += 1
        self._gauges()
        try:
            async with self._slots:
                self.waiting -= 1
                self.inflight += 1
                self._gauges()
                try:
                    lines = await self._lines(decoded)
                finally:
                    self.inflight -= 1
        finally:
            self._gauges()
        if self.metrics is not None:
            self.metrics.ocr_image("read")
            self.metrics.ocr_lines.inc(len(lines))
        self._step("total", time.perf_counter() - started)
        return ReadImage(
            att.id, decoded.width, decoded.height, decoded.sha256, decoded.orientation, lines
        )

    async def _lines(self, decoded: DecodedImage) -> tuple[ReadLine, ...]:
        scaled = await asyncio.to_thread(processing.det_scale, decoded.rgb, self.det)
        source = (scaled.src_shape[0], scaled.src_shape[1], scaled.pad_top)
        found = await self.backoff.run(
            lambda: self.models.detect(scaled.image, source), "OCR detection"
        )
        self._step("detect", found.seconds)
        if len(found.boxes) == 0:
            return ()
        crops, widths = await asyncio.to_thread(_crops, decoded, found.boxes, self.rec)
        read = await self.backoff.run(
            lambda: self.models.recognize(crops, widths), "OCR recognition"
        )
        self._step("recognize", read.seconds)
        out = []
        for box, text, conf in zip(found.boxes, read.texts, read.confidences, strict=True):
            if conf < self.min_confidence or not text.strip():
                continue
            corners: Any = tuple((round(float(x)), round(float(y))) for x, y in box)
            out.append(ReadLine(text, conf, corners))
        return tuple(out)
