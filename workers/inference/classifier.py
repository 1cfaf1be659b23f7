"""Turn classification: tokenize a batch, one model call (with retries), softmax, pick labels."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from workers.errors import InferenceRejected
from workers.inference.entities import Entity, decode_bio
from workers.inference.tokenizer import ModelTokenizer
from workers.inference.triton import InferenceOutput, ModelInfo
from workers.retry import Backoff


class InferenceClient(Protocol):
    async def info(self) -> ModelInfo: ...

    async def infer(
        self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> InferenceOutput: ...


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    scores: dict[str, float]
    embedding: npt.NDArray[Any]
    model_name: str
    model_version: str
    backend: str
    inference_ms: float
    batch_size: int
    truncated: bool
    safety_score: float | None = None  # probability the turn is unsafe, when the model has it
    entities: tuple[Entity, ...] = ()  # token-classification entities, when the model has them
    tokens: int = 0  # the turn's length as the model saw it (incl. [CLS]/[SEP])
    sentiment: dict[str, Any] | None = None  # {"label", "score"} when the model has the head


def softmax(logits: npt.NDArray[Any]) -> npt.NDArray[Any]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[Any] = exp / exp.sum(axis=1, keepdims=True)
    return out


@functools.lru_cache(maxsize=8)
def _named_tokenizer(max_seq_len: int, name: str) -> ModelTokenizer:
    """One tokenizer per (length, name) in the process: versions of a model share theirs."""
    return ModelTokenizer(max_seq_len, name=name)


def _sentiment(positive: float) -> dict[str, Any]:
    label = "positive" if positive >= 0.5 else "negative"
    return {"label": label, "score": round(positive if label == "positive" else 1 - positive, 4)}


class TurnClassifier:
    """Classifies texts with the served model; retriable failures back off inside ``backoff``."""

    def __init__(
        self,
        client: InferenceClient,
        backoff: Backoff,
        *,
        max_seq_len: int,
        max_batch: int,
        tokenizer_factory: Callable[[int, str], ModelTokenizer] | None = None,
    ) -> None:
        self.client = client
        self.backoff = backoff
        self.max_seq_len = max_seq_len
        self.max_batch = max_batch
        self._tokenizer_factory = tokenizer_factory or _named_tokenizer
        self._tokenizer: ModelTokenizer | None = None

    async def _tokenizer_for(self, info: ModelInfo) -> ModelTokenizer:
        if self._tokenizer is None:  # loading one takes ~1 s: not on the event loop
            length = min(self.max_seq_len, info.max_seq_len)
            made = await asyncio.to_thread(self._tokenizer_factory, length, info.tokenizer)
            self._tokenizer = self._tokenizer or made
        return self._tokenizer

    async def model_info(self) -> ModelInfo:
        return await self.backoff.run(self.client.info, "model info")

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        info = await self.model_info()
        tokenizer = await self._tokenizer_for(info)
        predictions: list[Prediction] = []
        for start in range(0, len(texts), self.max_batch):
            chunk = texts[start : start + self.max_batch]
            predictions.extend(await self._classify_chunk(chunk, info, tokenizer))
        return predictions

    async def _classify_chunk(
        self, texts: Sequence[str], info: ModelInfo, tokenizer: ModelTokenizer
    ) -> list[Prediction]:
        enc = tokenizer.encode(texts)
        out = await self.backoff.run(
            lambda: self.client.infer(enc.input_ids, enc.attention_mask), "inference"
        )
        n, c = len(texts), len(info.labels)
        if out.logits.shape != (n, c) or out.embedding.shape[0] != n:
            raise InferenceRejected(
                f"model returned logits {out.logits.shape}, embedding {out.embedding.shape}; "
                f"expected ({n}, {c}) and ({n}, D)"
            )
        probs = softmax(out.logits.astype(np.float64))
        ms = out.seconds * 1000.0
        unsafe = softmax(out.safety.astype(np.float64))[:, 1] if out.safety is not None else None
        positive = None
        if out.sentiment is not None:
            positive = softmax(out.sentiment.astype(np.float64))[:, 1]

        return [
            Prediction(
                label=info.labels[int(row.argmax())],
                scores={lab: round(float(p), 6) for lab, p in zip(info.labels, row, strict=True)},
                embedding=out.embedding[i],
                model_name=out.model_name or info.name,
                model_version=out.model_version or info.version,
                backend=out.backend or info.backend,
                inference_ms=ms,
                batch_size=n,
                truncated=enc.truncated[i],
                safety_score=None if unsafe is None else float(unsafe[i]),
                entities=self._entities(out, enc.offsets[i], info, i, texts[i]),
                tokens=int(enc.attention_mask[i].sum()),
                sentiment=None if positive is None else _sentiment(float(positive[i])),
            )
            for i, row in enumerate(probs)
        ]

    @staticmethod
    def _entities(
        out: InferenceOutput, offsets: list[tuple[int, int]], info: ModelInfo, row: int, text: str
    ) -> tuple[Entity, ...]:
        if out.token_logits is None or not info.entity_labels:
            return ()
        return tuple(decode_bio(out.token_logits[row], offsets, info.entity_labels, text))
