"""The torch model: MiniLM encoder + mean pooling + L2 norm + prototype head.

torch and transformers are imported inside the functions only, so importing this module is
cheap and the serving path never pulls them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from workers.modeling.tokenization import encode, load_tokenizer

if TYPE_CHECKING:
    import torch

FloatArray = npt.NDArray[np.float32]
EMBEDDING_DIM = 384


def load_encoder(model_dir: Path) -> torch.nn.Module:
    """Wrap the HF encoder as ``(input_ids, attention_mask) -> embedding`` [B, 384], unit norm."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self, backbone: torch.nn.Module) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)

    # Eager attention: plain MatMul/Softmax ops that the legacy ONNX exporter handles well.
    backbone = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    return MeanPooledEncoder(backbone).eval()


def embed_texts(
    encoder: torch.nn.Module, model_dir: Path, texts: Sequence[str], max_len: int
) -> FloatArray:
    """Embeddings of ``texts`` with the torch encoder (fp32, no grad)."""
    import torch

    ids, mask = encode(load_tokenizer(model_dir, max_len), texts)
    with torch.inference_mode():
        out = encoder(torch.from_numpy(ids), torch.from_numpy(mask))
    return np.asarray(out.numpy(), dtype=np.float32)


def compute_prototypes(
    encoder: torch.nn.Module,
    model_dir: Path,
    sentences_per_label: Sequence[Sequence[str]],
    max_len: int,
) -> FloatArray:
    """One unit-norm row per label: the normalised mean of its sentences' embeddings."""
    rows: list[FloatArray] = []
    for sentences in sentences_per_label:
        mean = embed_texts(encoder, model_dir, sentences, max_len).mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.asarray(np.stack(rows), dtype=np.float32)


def build_classifier(
    encoder: torch.nn.Module, prototypes: FloatArray, scale: float
) -> torch.nn.Module:
    """``(input_ids, attention_mask) -> (logits [B, C], embedding [B, 384])``.

    ``logits = scale * embedding @ prototypes.T`` (cosine similarity, scaled for a softmax).
    """
    import torch

    class PrototypeClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.register_buffer("prototypes", torch.from_numpy(np.ascontiguousarray(prototypes)))
            self.scale = float(scale)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            embedding = self.encoder(input_ids, attention_mask)
            logits = self.scale * embedding @ self.get_buffer("prototypes").t()
            return logits, embedding

    return PrototypeClassifier().eval()
