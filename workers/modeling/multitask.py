"""The multi-task torch model (MiniLM + LoRA + heads), its seeded CPU fine-tuning and merge.

Outputs, in this order (the ONNX/IR/TensorRT output names): ``logits`` [B, C] topic,
``safety`` [B, 2], ``embedding`` [B, 384] (unit norm, mean pooled), ``token_logits`` [B, L, T]
BIO tags, ``reply_index`` [B, K] int64 and ``reply_score`` [B, K] (cosine to the reply bank,
MatMul + TopK inside the graph). torch/peft are imported inside the functions only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from workers.modeling.metrics import token_tags
from workers.modeling.taskdata import TaskData
from workers.modeling.tokenization import load_tokenizer

if TYPE_CHECKING:
    import torch

OUTPUT_NAMES = ("logits", "safety", "embedding", "token_logits", "reply_index", "reply_score")
TOP_K = 3
MAX_LEN = 256
TRAIN_MAX_LEN = 96


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 13
    steps: int = 360
    batch: int = 16
    lr: float = 1e-3
    lora_r: int = 8
    lora_alpha: int = 16
    temperature: float = 0.05
    threads: int = 2


def build_model(model_dir: Path, n_topics: int, n_tags: int, cfg: TrainConfig) -> Any:
    """The HF encoder wrapped with LoRA adapters (peft) and fresh task heads."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(cfg.seed)
    backbone = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=["query", "key", "value", "dense"],
    )
    backbone = get_peft_model(backbone, lora)

    class MultiTask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.topic_head = torch.nn.Linear(384, n_topics)
            self.safety_head = torch.nn.Linear(384, 2)
            self.token_head = torch.nn.Linear(384, n_tags)
            self.register_buffer("reply_bank", torch.zeros(1, 384))

        def encode(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return hidden, pooled, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            hidden, pooled, embedding = self.encode(input_ids, attention_mask)
            scores = embedding @ self.get_buffer("reply_bank").t()
            reply_score, reply_index = torch.topk(scores, TOP_K, dim=1)
            return (
                self.topic_head(pooled),
                self.safety_head(pooled),
                embedding,
                self.token_head(hidden),
                reply_index,
                reply_score,
            )

    return MultiTask()


def _batches(
    tok: Any, texts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, list[list[tuple[int, int]]]]:
    import torch

    enc = tok.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    return ids, mask, [list(e.offsets) for e in enc]


def train(
    model: Any,
    data: TaskData,
    model_dir: Path,
    cfg: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Round-robin over the four tasks for ``cfg.steps`` steps; returns the loss history."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    tok = load_tokenizer(model_dir, TRAIN_MAX_LEN)
    topic_ix = {t: i for i, t in enumerate(data.labels)}
    turns, safety, notes = data.train.turns, data.train.safety, data.train.notes
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.train()
    losses: dict[str, list[float]] = {"topic": [], "safety": [], "entities": [], "reply": []}
    started = time.perf_counter()
    for step in range(cfg.steps):
        task = ("topic", "safety", "entities", "reply")[step % 4]
        if task == "topic":
            picked = rng.sample(turns, cfg.batch)
            ids, mask, _ = _batches(tok, [t.text for t in picked])
            target = torch.tensor([topic_ix[t.topic] for t in picked])
            loss = F.cross_entropy(model.topic_head(model.encode(ids, mask)[1]), target)
        elif task == "safety":
            items = rng.sample(safety, cfg.batch)
            ids, mask, _ = _batches(tok, [s.text for s in items])
            target = torch.tensor([s.unsafe for s in items])
            loss = F.cross_entropy(model.safety_head(model.encode(ids, mask)[1]), target)
        elif task == "entities":
            batch_notes = rng.sample(notes, cfg.batch)
            ids, mask, offsets = _batches(tok, [n.text for n in batch_notes])
            tags = [
                token_tags(o, n.spans, data.tags) for o, n in zip(offsets, batch_notes, strict=True)
            ]
            target = torch.tensor(tags)
            logits = model.token_head(model.encode(ids, mask)[0])
            loss = F.cross_entropy(logits.reshape(-1, len(data.tags)), target.reshape(-1))
        else:
            picked = _distinct_replies(rng, turns, cfg.batch)
            ids, mask, _ = _batches(
                tok, [t.text for t in picked] + [data.replies[t.reply] for t in picked]
            )
            emb = model.encode(ids, mask)[2]
            q, a = emb[: len(picked)], emb[len(picked) :]
            sim = q @ a.t() / cfg.temperature
            labels = torch.arange(len(picked))
            loss = (F.cross_entropy(sim, labels) + F.cross_entropy(sim.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        losses[task].append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, {task: losses[task][-1]})
    model.eval()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "final_loss": {k: round(float(np.mean(v[-10:])), 4) for k, v in losses.items() if v},
    }


def _distinct_replies(rng: random.Random, turns: Sequence[Any], n: int) -> list[Any]:
    """``n`` turns with pairwise different replies (in-batch negatives must be negatives)."""
    seen: set[int] = set()
    out = []
    for t in rng.sample(list(turns), len(turns)):
        if t.reply not in seen:
            seen.add(t.reply)
            out.append(t)
            if len(out) == n:
                break
    return out


def merge_and_attach_bank(model: Any, bank: npt.NDArray[np.float32]) -> Any:
    """Fold the LoRA adapters into the encoder weights and install the reply-bank matrix."""
    import torch

    model.backbone = model.backbone.merge_and_unload()
    model.reply_bank = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    return model.eval()


def embed(
    model: Any, model_dir: Path, texts: Sequence[str], batch: int = 64
) -> npt.NDArray[np.float32]:
    """Unit-norm embeddings of ``texts`` with the torch model (no grad)."""
    import torch

    tok = load_tokenizer(model_dir, MAX_LEN)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            ids, mask, _ = _batches(tok, texts[i : i + batch])
            rows.append(model.encode(ids, mask)[2].numpy())
    return np.asarray(np.concatenate(rows), dtype=np.float32)
