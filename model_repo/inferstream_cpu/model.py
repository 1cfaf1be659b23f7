"""Triton python_backend model: multi-task multilingual-e5-small, an OpenVINO IR on CPU.

The version folder is built by ``inferstream build-models``; this file and
``openvino_model.py`` (the request handling both OpenVINO models share) are copied there.
``token_logits`` is cut back to each request's own sequence length.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE if (_HERE / "openvino_model.py").is_file() else _HERE.parent))

from openvino_model import OpenVINOModel, compile_properties  # noqa: E402

__all__ = ["TritonPythonModel", "compile_properties"]


class TritonPythonModel(OpenVINOModel):
    """Triton's entry point (python backend)."""

    OUTPUTS = (
        "logits", "sentiment", "safety", "embedding", "token_logits", "reply_index", "reply_score",
    )  # fmt: skip
    INT_OUTPUTS = frozenset({"reply_index"})
    SEQUENCE_OUTPUTS = ("token_logits",)
    WARMUP_IDS = (0, 2)  # <s> </s>

    def check_build(self, build: Mapping[str, Any], params: Mapping[str, str]) -> int:
        if build.get("entity_labels") != params["entity_labels"].split(","):
            raise ValueError("config entity_labels differ from the built ones")
        label, precision = params.get("backend_label"), build.get("precision", "int8")
        if label != f"openvino-{precision}":  # results carry the label: it must be true
            raise ValueError(
                f"config backend_label {label!r}, but {precision} was built here: run "
                "`inferstream build-models` and start Triton with --model-config-name=built"
            )
        return int(params["vocab_size"])
