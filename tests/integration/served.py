"""What the build installed, read from its ``build.json``: the label results must then carry.

Tests compare the ``backend`` of results with this, not with the config Triton serves (which is
where the worker reads its label from), so a mislabelled config fails them.
"""

from __future__ import annotations

import json
from pathlib import Path


def cpu_backend(model_repo: Path, model: str = "inferstream_cpu") -> str:
    """``openvino-int8`` or ``openvino-fp32``: the precision of the network ``model/1`` holds."""
    build = json.loads((model_repo / model / "1" / "build.json").read_text(encoding="utf-8"))
    return f"openvino-{build['precision']}"
