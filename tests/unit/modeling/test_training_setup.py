"""How fine-tuning is set up: precision by CPU, frozen first layers, one source per entity batch."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from workers.modeling import multitask
from workers.modeling.multitask import TrainConfig, _Sampler, build_model, resolved

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_is_chosen_by_what_the_cpu_computes_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(multitask, "native_bf16", lambda: native)
    assert resolved(TrainConfig()).bf16 is native
    # a choice made by the caller stands
    assert resolved(TrainConfig(bf16=not native)).bf16 is (not native)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer XLM-R of the served width (the heads are 384 wide), random weights."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=64,
        hidden_size=multitask.HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    path = tmp_path_factory.mktemp("backbone")
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(path)
    return path


def test_the_first_layers_stay_pretrained_and_get_no_gradient(tiny_backbone: Path) -> None:
    model = build_model(tiny_backbone, 3, 5, TrainConfig(frozen_layers=2))
    layers = model.backbone.encoder.layer
    before = [p.detach().clone() for p in layers[0].parameters()]
    ids = torch.randint(3, 64, (2, 7))
    model.train()
    hidden, pooled, _ = model.encode(ids, torch.ones_like(ids))
    (model.token_head(hidden).sum() + model.intent_head(pooled).sum()).backward()
    for frozen in (layers[0], layers[1], model.backbone.get_input_embeddings()):
        assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    for trained in (layers[2], layers[3]):
        assert all(p.requires_grad and p.grad is not None for p in trained.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, layers[0].parameters(), strict=True))


def test_attention_dropout_is_off_and_hidden_dropout_stays(tiny_backbone: Path) -> None:
    config = build_model(tiny_backbone, 3, 5, TrainConfig()).backbone.config
    assert config.attention_probs_dropout_prob == 0.0
    assert config.hidden_dropout_prob == pytest.approx(0.1)


def _entity_data(weights: dict[str, float]) -> Any:
    entities = {s: tuple(SimpleNamespace(source=s, i=i) for i in range(50)) for s in weights}
    return SimpleNamespace(train=SimpleNamespace(entities=entities), entity_weights=weights)


def test_an_entity_batch_is_drawn_from_one_source_by_weight() -> None:
    sampler = _Sampler(_entity_data({"long": 3.0, "short": 1.0, "never": 0.0}), random.Random(5))
    drawn: Counter[str] = Counter()
    for _ in range(400):
        batch = sampler.entities(16)
        assert len(batch) == 16
        (source,) = {d.source for d in batch}
        drawn[source] += 1
    assert drawn["never"] == 0
    assert 2.0 < drawn["long"] / drawn["short"] < 4.5
