"""Triton python_backend model: reply-bank lookup, ``reply_index`` INT64 -> ``reply_text`` BYTES.

``initialize`` loads ``<version>/replies.json`` (a JSON list, the bank in index order, installed
by ``inferstream build-models`` with the model whose ``reply_index`` it resolves). An index
outside the bank is an error for that request only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, e.g. to unit-test lookup()
    pb_utils = None


def lookup(bank: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``bank[index]`` as a BYTES (object) array; ValueError when an index is out of range."""
    if index.size and (index.min() < 0 or index.max() >= len(bank)):
        raise ValueError(f"reply_index outside [0, {len(bank)})")
    return np.asarray(bank[index.astype(np.int64)], dtype=object)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        texts = json.loads((version_dir / "replies.json").read_text(encoding="utf-8"))
        self.bank = np.asarray([t.encode("utf-8") for t in texts], dtype=object)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            index = pb_utils.get_input_tensor_by_name(request, "reply_index").as_numpy()
            try:
                texts = lookup(self.bank, index)
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensor = pb_utils.Tensor("reply_text", texts)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
