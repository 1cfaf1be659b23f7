"""ImageReader with fake OCR models: order, confidence cut, slots, retries, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests import attachment_samples as samples
from workers.attachments import Attachment, AttachmentLimits
from workers.errors import InferenceUnavailable, InvalidEvent
from workers.ocr.client import Detected, Recognised
from workers.ocr.reader import ImageReader
from workers.retry import Backoff
from workers.telemetry.metrics import Metrics

BOXES = np.array(
    [[[10, 10], [200, 10], [200, 40], [10, 40]], [[10, 50], [120, 50], [120, 80], [10, 80]]],
    dtype=np.float32,
)


class FakeModels:
    def __init__(self, texts: list[tuple[str, float]], fail_first: int = 0) -> None:
        self.texts = texts
        self.fail_first = fail_first
        self.detect_calls: list[tuple[tuple[int, ...], tuple[int, int, int]]] = []
        self.rec_shapes: list[tuple[int, ...]] = []
        self.active = self.peak = 0

    async def detect(self, image: Any, source: tuple[int, int, int]) -> Detected:
        if self.fail_first:
            self.fail_first -= 1
            raise InferenceUnavailable("UNAVAILABLE: starting")
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.01)
        self.active -= 1
        self.detect_calls.append((tuple(image.shape), source))
        return Detected(BOXES.copy(), np.array([0.9, 0.8], dtype=np.float32), 0.001)

    async def recognize(self, crops: Any, widths: Any) -> Recognised:
        self.rec_shapes.append(tuple(crops.shape))
        assert crops.dtype == np.uint8 and crops.shape[1] == 48
        assert widths.max() == crops.shape[2]
        return Recognised([t for t, _ in self.texts], [c for _, c in self.texts], 0.001)


def reader(models: FakeModels, **kw: Any) -> ImageReader:
    backoff = Backoff(initial_s=0.001, max_s=0.002, sleep=lambda s: asyncio.sleep(0))
    return ImageReader(models, None, AttachmentLimits(), backoff, **kw)


def png(att_id: str = "a0") -> Attachment:
    item = samples.inline(samples.text_png(), "image/png", att_id)
    return Attachment(att_id, "image/png", data=item["data"])


def test_lines_in_order_low_confidence_dropped_and_geometry_sent() -> None:
    models = FakeModels([("Total 42", 0.97), ("smudge", 0.3)])
    metrics = Metrics(CollectorRegistry())
    (image,) = asyncio.run(reader(models, metrics=metrics).read([png()]))
    assert [line.text for line in image.lines] == ["Total 42"]
    assert image.lines[0].box == ((10, 10), (200, 10), (200, 40), (10, 40))
    assert (image.width, image.height, image.attachment) == (320, 64, "a0")
    ((shape, source),) = models.detect_calls
    assert shape[0] % 32 == 0 and shape[1] % 32 == 0 and shape[2] == 3
    assert source[:2] == (64, 320)  # the source image's height and width
    assert models.rec_shapes[0][0] == 2  # both boxes' lines in one call
    assert metrics.ocr_lines._value.get() == 1


def test_retriable_triton_errors_are_retried() -> None:
    models = FakeModels([("a", 0.9), ("b", 0.9)], fail_first=2)
    (image,) = asyncio.run(reader(models).read([png()]))
    assert len(image.lines) == 2 and len(models.detect_calls) == 1


def test_at_most_max_inflight_images_in_ocr() -> None:
    models = FakeModels([("a", 0.9), ("b", 0.9)])
    r = reader(models, max_inflight=2)

    async def many() -> None:
        await asyncio.gather(*(r.read([png(f"a{i}")]) for i in range(6)))

    asyncio.run(many())
    assert models.peak == 2 and r.load() == 0


def test_a_bad_attachment_raises_with_its_reason_and_is_counted() -> None:
    metrics = Metrics(CollectorRegistry())
    bad = Attachment("x", "image/png", data=samples.b64(samples.HTML_AS_PNG))
    with pytest.raises(InvalidEvent) as err:
        asyncio.run(reader(FakeModels([]), metrics=metrics).read([bad]))
    assert err.value.code == "attachment_not_image"
    assert metrics.ocr_images.labels("attachment_not_image")._value.get() == 1
