from typing import Any

import numpy as np
import pytest

from tests.unit.fakes import LABELS, FakeInferenceClient
from workers.errors import InferenceRejected, InferenceUnavailable
from workers.inference.classifier import TurnClassifier
from workers.retry import Backoff


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def classifier(client: FakeInferenceClient, max_batch: int = 32, **backoff: Any) -> TurnClassifier:
    return TurnClassifier(client, Backoff(**backoff), max_seq_len=64, max_batch=max_batch)


async def test_labels_and_scores_follow_the_model_output() -> None:
    client = FakeInferenceClient()
    preds = await classifier(client).classify(["hi", "hi you"])  # 3 and 4 tokens
    assert [p.label for p in preds] == [LABELS[0], LABELS[1]]
    assert set(preds[0].scores) == set(LABELS)
    assert sum(preds[0].scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert preds[0].scores["greeting"] > 0.98
    assert preds[0].model_version == "7" and preds[0].backend == "fake-backend"


async def test_batches_are_split_at_max_batch() -> None:
    client = FakeInferenceClient()
    preds = await classifier(client, max_batch=4).classify([f"text {i}" for i in range(10)])
    assert len(preds) == 10
    assert [shape[0] for shape in client.calls] == [4, 4, 2]


async def test_retriable_errors_back_off_then_succeed() -> None:
    failures = [InferenceUnavailable("UNAVAILABLE: down")] * 3
    client = FakeInferenceClient(fail=lambda ids: failures.pop() if failures else None)
    sleeps = Sleeps()
    preds = await classifier(client, sleep=sleeps, initial_s=0.1, max_s=0.3).classify(["hi"])
    assert len(preds) == 1
    assert len(sleeps.waits) == 3
    assert all(0.05 <= w <= 0.3 for w in sleeps.waits)


async def test_rejections_are_not_retried() -> None:
    client = FakeInferenceClient(fail=lambda ids: InferenceRejected("INVALID_ARGUMENT: bad"))
    sleeps = Sleeps()
    with pytest.raises(InferenceRejected):
        await classifier(client, sleep=sleeps).classify(["hi"])
    assert sleeps.waits == [] and len(client.calls) == 1


async def test_bounded_attempts_give_up() -> None:
    client = FakeInferenceClient(fail=lambda ids: InferenceUnavailable("UNAVAILABLE"))
    with pytest.raises(InferenceUnavailable):
        await classifier(client, sleep=Sleeps(), max_attempts=3).classify(["hi"])
    assert len(client.calls) == 3


async def test_wrong_output_shape_is_a_rejection() -> None:
    client = FakeInferenceClient(labels=["a", "b"])
    orig = client.infer

    async def short(ids: np.ndarray, mask: np.ndarray):  # type: ignore[no-untyped-def]
        out = await orig(ids, mask)
        return type(out)(out.logits[:, :1], out.embedding, "7", 0.0)

    client.infer = short  # type: ignore[method-assign]
    with pytest.raises(InferenceRejected, match="expected"):
        await classifier(client).classify(["x"])


def test_backoff_delay_grows_and_caps() -> None:
    b = Backoff(initial_s=0.1, max_s=1.0, rand=lambda: 1.0)
    assert [b.delay(a) for a in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
