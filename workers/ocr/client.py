"""Async Triton client of the two OCR models (``model_repo/ocr_det``, ``model_repo/ocr_rec``).

The worker orchestrates them (not a BLS model): it already holds the decoded image (it had to
decode it to validate it), so it sends the detector a uint8 image scaled to the detector's size,
crops the found lines from the full-resolution image itself, and sends the crops (uint8, height
48) to the recogniser, whose dynamic batcher joins the lines of every image in flight into one
network call. Both models' inputs are uint8: a quarter of the bytes of normalised floats.
The client has its own gRPC channel, so a large image never queues behind or in front of the
text model's calls on one HTTP/2 connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from workers.inference.triton import map_error


@dataclass(frozen=True, slots=True)
class Detected:
    boxes: npt.NDArray[np.float32]  # [n, 4, 2] in the source image's pixels, reading order
    scores: npt.NDArray[np.float32]  # [n]
    seconds: float


@dataclass(frozen=True, slots=True)
class Recognised:
    texts: list[str]
    confidences: list[float]
    seconds: float


class TritonOcrClient:
    def __init__(
        self,
        url: str,
        *,
        det_model: str = "ocr_det",
        rec_model: str = "ocr_rec",
        timeout_s: float = 10.0,
        rec_max_batch: int = 32,
    ) -> None:
        self.url = url
        self.det_model = det_model
        self.rec_model = rec_model
        self.timeout_s = timeout_s
        self.rec_max_batch = rec_max_batch
        self._client: Any = None

    def _conn(self) -> Any:
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(url=self.url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ready(self) -> bool:
        try:
            conn = self._conn()
            det = await conn.is_model_ready(self.det_model, client_timeout=self.timeout_s)
            rec = await conn.is_model_ready(self.rec_model, client_timeout=self.timeout_s)
        except InferenceServerException:
            return False
        return bool(det and rec)

    async def _infer(self, model: str, inputs: list[Any], outputs: list[str]) -> Any:
        requested = [grpcclient.InferRequestedOutput(n) for n in outputs]
        try:
            return await self._conn().infer(
                model, inputs, outputs=requested, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            raise map_error(exc) from exc

    async def detect(self, image: npt.NDArray[np.uint8], source: tuple[int, int, int]) -> Detected:
        """Text boxes, in source pixels, of ``image`` ([H, W, 3] RGB uint8 at the detector's
        size) scaled from a source of ``(height, width, letterbox rows)``."""
        tensor = grpcclient.InferInput("image", [1, *image.shape], "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(image[None]))
        src = grpcclient.InferInput("source", [1, 3], "INT32")
        src.set_data_from_numpy(np.array([source], dtype=np.int32))
        start = time.perf_counter()
        result = await self._infer(self.det_model, [tensor, src], ["boxes", "scores"])
        seconds = time.perf_counter() - start
        boxes = result.as_numpy("boxes").reshape(-1, 4, 2).astype(np.float32, copy=False)
        scores = result.as_numpy("scores").reshape(-1).astype(np.float32, copy=False)
        return Detected(boxes, scores, seconds)

    async def recognize(
        self, crops: npt.NDArray[np.uint8], widths: npt.NDArray[np.int32]
    ) -> Recognised:
        """Text of each line: ``crops`` [n, 48, W, 3] RGB uint8 (each line's pixels in its first
        ``widths[i]`` columns), at most ``rec_max_batch`` lines per call."""
        texts: list[str] = []
        confidences: list[float] = []
        start = time.perf_counter()
        step = self.rec_max_batch
        for lo in range(0, len(crops), step):
            part, part_w = crops[lo : lo + step], widths[lo : lo + step]
            used = int(part_w.max())  # the request's own widest line
            x = grpcclient.InferInput("crops", [len(part), *part.shape[1:2], used, 3], "UINT8")
            x.set_data_from_numpy(np.ascontiguousarray(part[:, :, :used]))
            w = grpcclient.InferInput("widths", [len(part), 1], "INT32")
            w.set_data_from_numpy(part_w.reshape(-1, 1).astype(np.int32))
            result = await self._infer(self.rec_model, [x, w], ["text", "confidence"])
            texts += [t.decode("utf-8") for t in result.as_numpy("text").reshape(-1)]
            confidences += [float(c) for c in result.as_numpy("confidence").reshape(-1)]
        return Recognised(texts, confidences, time.perf_counter() - start)
