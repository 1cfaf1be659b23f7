"""LP-FT: the intent head is fitted on the encoder's frozen features before fine-tuning."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from workers.modeling.examples import TextExample
from workers.modeling.multitask import TrainConfig, _probe_intent_head

torch = pytest.importorskip("torch")

LABELS = {"cancel": 0, "greeting": 1, "thanks": 2}


class _Tok:
    """Stands in for ModelTokenizer: the 'ids' are the label index of each text's first word."""

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        ids = np.array([[LABELS[t.split()[0]]] for t in texts], dtype=np.int64)
        return SimpleNamespace(input_ids=ids, attention_mask=np.ones_like(ids), offsets=[])


class _Model(torch.nn.Module):
    """An 'encoder' whose pooled feature is a noisy one-hot of the label, and a random head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.intent_head = torch.nn.Linear(8, len(LABELS))
        self.encoded_in_training_mode = False

    def encode(self, ids: Any, mask: Any) -> tuple[Any, Any, Any]:
        self.encoded_in_training_mode |= self.training
        pooled = torch.nn.functional.one_hot(ids[:, 0], 8).float() * 3
        pooled = pooled + 0.1 * torch.randn_like(pooled)
        return pooled, pooled, pooled


def _data(n: int) -> Any:
    turns = tuple(
        TextExample(f"{label} turn {i}", label, "en", "test", str(i))
        for i in range(n)
        for label in LABELS
    )
    return SimpleNamespace(train=SimpleNamespace(intent=turns))


def test_the_probe_fits_the_intent_head_on_frozen_features() -> None:
    model = _Model()
    model.train()
    before = model.intent_head.weight.detach().clone()
    cfg = TrainConfig(probe_items=60, probe_steps=100)
    report = _probe_intent_head(model, _data(40), cfg, _Tok(), LABELS, random.Random(1))  # type: ignore[arg-type]
    assert report["items"] == 60
    assert report["train_accuracy"] == 100.0
    assert not torch.equal(before, model.intent_head.weight)
    assert not model.encoded_in_training_mode  # features taken without dropout


def test_no_probe_leaves_the_random_head() -> None:
    model = _Model()
    before = model.intent_head.weight.detach().clone()
    cfg = TrainConfig(probe_items=0)
    assert _probe_intent_head(model, _data(5), cfg, _Tok(), LABELS, random.Random(1)) == {}  # type: ignore[arg-type]
    assert torch.equal(before, model.intent_head.weight)
