"""Which op stays in FP32 when the encoder is quantized: the last layer's FFN down-projection."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from workers.modeling.mt_export import last_ffn_output


def _model(names: list[str]) -> Any:
    ops = [SimpleNamespace(get_friendly_name=lambda n=n: n) for n in names]
    return SimpleNamespace(get_ordered_ops=lambda: ops)


def _ops(layers: int) -> list[str]:
    parts = (
        "attention/self/query/MatMul",
        "attention/output/dense/MatMul",
        "intermediate/dense/MatMul",
        "output/dense/MatMul",
    )
    names = [f"/backbone/encoder/layer.{i}/{p}" for i in range(layers) for p in parts]
    return [*names, "/intent_head/Gemm/WithoutBiases", "/MatMul"]


@pytest.mark.parametrize("layers", [6, 12])
def test_only_the_last_layers_ffn_output_is_left_unquantized(layers: int) -> None:
    names = _ops(layers)
    pattern = last_ffn_output(_model(names))
    assert [n for n in names if re.search(pattern, n)] == [
        f"/backbone/encoder/layer.{layers - 1}/output/dense/MatMul"
    ]


def test_a_model_without_encoder_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="no encoder layers"):
        last_ffn_output(_model(["/MatMul", "/intent_head/Gemm"]))
