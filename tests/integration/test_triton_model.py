"""The served model through the real Triton: labels, padding-invariance, batching, bad requests."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streams.settings import Settings
from workers.errors import InferenceRejected
from workers.inference.tokenizer import ModelTokenizer
from workers.inference.triton import TritonClassifierClient

pytestmark = pytest.mark.integration

TEXTS = [
    "hi there, good morning",
    "my card was charged twice this month",
    "I forgot my password and cannot sign in",
    "the app crashes when I open settings " * 6,
]


def client(settings: Settings) -> TritonClassifierClient:
    """The zero-shot support-intent model (the trained one has tests of its own)."""
    return TritonClassifierClient(settings.triton_endpoint, "minilm_cpu", timeout_s=30)


async def test_labels_come_from_the_model_config(services: Settings) -> None:
    c = client(services)
    info = await c.info()
    await c.close()
    assert info.labels[:3] == ["greeting", "account_access", "billing"]
    assert len(info.labels) == 8 and info.backend == "openvino-fp32"
    assert info.max_seq_len == 256


async def test_batched_padded_and_concurrent_answers_agree(services: Settings) -> None:
    c = client(services)
    tok = ModelTokenizer(256, name="all-minilm-l6-v2")
    batch = tok.encode(TEXTS)  # padded to the longest text
    together = await c.infer(batch.input_ids, batch.attention_mask)
    singles = await asyncio.gather(
        *(c.infer(e.input_ids, e.attention_mask) for e in (tok.encode([t]) for t in TEXTS * 4))
    )  # 16 concurrent requests of different lengths: Triton's dynamic batcher merges them
    await c.close()
    assert together.logits.shape == (4, 8) and together.embedding.shape == (4, 384)
    for i, single in enumerate(singles):
        np.testing.assert_allclose(single.logits[0], together.logits[i % 4], atol=2e-3)
        np.testing.assert_allclose(single.embedding[0], together.embedding[i % 4], atol=2e-4)
    norms = np.linalg.norm(together.embedding, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)


async def test_predictions_are_sensible(services: Settings) -> None:
    c = client(services)
    info = await c.info()
    enc = ModelTokenizer(256, name="all-minilm-l6-v2").encode(TEXTS[:3])
    out = await c.infer(enc.input_ids, enc.attention_mask)
    await c.close()
    assert [info.labels[i] for i in out.logits.argmax(axis=1)] == [
        "greeting",
        "billing",
        "account_access",
    ]


async def test_too_long_request_is_rejected_and_server_stays_healthy(services: Settings) -> None:
    c = client(services)
    ids = np.full((1, 300), 1000, dtype=np.int64)
    with pytest.raises(InferenceRejected):
        await c.infer(ids, np.ones_like(ids))
    enc = ModelTokenizer(256, name="all-minilm-l6-v2").encode(["still alive?"])
    out = await c.infer(enc.input_ids, enc.attention_mask)
    await c.close()
    assert out.logits.shape == (1, 8)
