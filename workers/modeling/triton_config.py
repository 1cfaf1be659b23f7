"""Read what the build needs from a Triton ``config.pbtxt`` (no protobuf dependency).

Only the flat ``parameters: { key: "..." value: { string_value: "..." } }`` entries and a few
scalar fields are read; the file stays the single source of labels and serving knobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EMBEDDING_DIM = 384

_PARAM_RE = re.compile(
    r'parameters\s*:?\s*\{\s*key\s*:\s*"(?P<key>[^"]+)"\s*'
    r'value\s*:?\s*\{\s*string_value\s*:\s*"(?P<value>[^"]*)"\s*\}\s*\}'
)
_COMMENT_RE = re.compile(r"#[^\n]*")
_TENSOR_RE = re.compile(
    r'name\s*:\s*"(?P<name>[^"]+)"\s*data_type\s*:\s*\w+\s*dims\s*:\s*\[(?P<dims>[^\]]*)\]'
)


class ModelConfigError(ValueError):
    """config.pbtxt lacks something the build needs, or has it malformed."""


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a Triton model config that the build and checks use."""

    name: str
    max_batch_size: int
    labels: tuple[str, ...]
    max_seq_len: int
    parameters: dict[str, str]
    dims: dict[str, tuple[int, ...]]


def parse_parameters(text: str) -> dict[str, str]:
    """All ``parameters`` entries of a config.pbtxt text, comments ignored."""
    clean = _COMMENT_RE.sub("", text)
    return {m["key"]: m["value"] for m in _PARAM_RE.finditer(clean)}


def _scalar(text: str, field: str) -> str:
    m = re.search(rf"^\s*{field}\s*:\s*\"?([^\"\s]+)\"?", _COMMENT_RE.sub("", text), re.MULTILINE)
    if m is None:
        raise ModelConfigError(f"config.pbtxt has no {field!r}")
    return m.group(1)


def parse_instance_count(text: str) -> int:
    """Instances of the model Triton runs: the first ``instance_group`` ``count`` (1 if unset)."""
    m = re.search(r"instance_group\s*\[\s*\{[^}]*count\s*:\s*(\d+)", _COMMENT_RE.sub("", text))
    return int(m.group(1)) if m else 1


def parse_dims(text: str) -> dict[str, tuple[int, ...]]:
    """``{tensor name: dims}`` of inputs and outputs written as ``name, data_type, dims``."""
    clean = _COMMENT_RE.sub("", text)
    return {
        m["name"]: tuple(int(d) for d in m["dims"].split(",") if d.strip())
        for m in _TENSOR_RE.finditer(clean)
    }


def parse_labels(value: str) -> tuple[str, ...]:
    """Split the comma-separated ``labels`` parameter; reject empty or duplicate names."""
    labels = tuple(x.strip() for x in value.split(","))
    if not labels or any(not x for x in labels):
        raise ModelConfigError(f"empty label in {value!r}")
    if len(set(labels)) != len(labels):
        raise ModelConfigError(f"duplicate label in {value!r}")
    return labels


def read_model_config(path: Path) -> ModelConfig:
    """Parse ``path`` (a config.pbtxt) into a :class:`ModelConfig`."""
    text = path.read_text(encoding="utf-8")
    params = parse_parameters(text)
    for key in ("labels", "max_seq_len"):
        if key not in params:
            raise ModelConfigError(f"{path}: parameter {key!r} missing")
    labels = parse_labels(params["labels"])
    dims = parse_dims(text)
    want = {"logits": (len(labels),), "embedding": (EMBEDDING_DIM,)}
    if any(dims.get(name) != shape for name, shape in want.items()):
        raise ModelConfigError(f"{path}: output dims {dims} do not match {want} (labels: {labels})")
    try:
        max_seq_len = int(params["max_seq_len"])
        max_batch_size = int(_scalar(text, "max_batch_size"))
    except ValueError as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    return ModelConfig(
        name=_scalar(text, "name"),
        max_batch_size=max_batch_size,
        labels=labels,
        max_seq_len=max_seq_len,
        parameters=params,
        dims=dims,
    )
