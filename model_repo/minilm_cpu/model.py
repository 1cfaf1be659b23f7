"""Triton python_backend model: MiniLM + prototype head, OpenVINO IR on CPU.

The version folder is built by ``inferstream build-models``; this file and
``openvino_model.py`` (the request handling both OpenVINO models share) are copied there.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE if (_HERE / "openvino_model.py").is_file() else _HERE.parent))

from openvino_model import OpenVINOModel  # noqa: E402


class TritonPythonModel(OpenVINOModel):
    """Triton's entry point (python backend)."""

    OUTPUTS = ("logits", "embedding")
    WARMUP_IDS = (101, 102)  # [CLS] [SEP]

    def check_build(self, build: Mapping[str, Any], params: Mapping[str, str]) -> int:
        return int(build.get("vocab_size", 0))
