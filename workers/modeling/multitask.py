"""The multi-task torch model (multilingual-e5-small + task heads), its seeded CPU fine-tuning.

Outputs, in this order (the ONNX/IR/TensorRT output names): ``logits`` [B, C] intent,
``sentiment`` [B, 2], ``safety`` [B, 2], ``embedding`` [B, 384] (unit norm, mean pooled),
``token_logits`` [B, L, T] BIO tags, ``reply_index`` [B, K] int64 and ``reply_score`` [B, K]
(cosine to the reply bank, MatMul + TopK inside the graph).

The graph takes the ids of the shipped (full, 250k-piece) tokenizer, so the worker tokenizes
with the shipped ``tokenizer.json`` as it is (an optional ``id_map`` Gather maps them onto a
trimmed embedding table). Position ids are counted from 2 (XLM-R's padding offset) for every
position, which equals the reference for right-padded input and does not depend on the pad id.

Fine-tuning: the word embeddings and the first ``frozen_layers`` encoder layers stay frozen (so
pieces absent from the training text keep their pre-trained vectors, and the lower layers what
pre-training taught them); the other layers are either fine-tuned whole (``lora_r = 0``) or
through LoRA adapters (peft) that are merged before export. torch/peft are imported inside
functions.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from workers.inference.tokenizer import ModelTokenizer
from workers.modeling.examples import SAFETY, SENTIMENTS
from workers.modeling.metrics import token_tags
from workers.modeling.taskdata import TaskData

if TYPE_CHECKING:
    import torch

OUTPUT_NAMES = (
    "logits", "sentiment", "safety", "embedding", "token_logits", "reply_index", "reply_score",
)  # fmt: skip
TOP_K = 3
MAX_LEN = 256
HIDDEN = 384


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 13
    steps: int = 840
    batch: int = 16
    lr: float = 2e-4
    head_lr: float = 3e-3
    # autocast matmuls to bfloat16 while training: None = where the CPU has native bfloat16
    # (AVX512-BF16 / AMX: ~1.6x); on AVX2 alone torch emulates it, ~25x *slower* than float32
    bf16: bool | None = None
    lora_r: int = 0  # 0: fine-tune the encoder layers whole; > 0: LoRA adapters of this rank
    layers: int = 6  # encoder layers kept from the 12
    frozen_layers: int = 2  # the first ones stay as pre-trained (no backward through them)
    # dropout on the attention probabilities (XLM-R's default 0.1): drawing its mask over every
    # [heads, L, L] map was ~10 % of a step's CPU; the hidden-state dropout (0.1) stays
    attention_dropout: float = 0.0
    keep: str = "bottom"  # which: "bottom" (the first ones) or "spread" (evenly spaced)
    temperature: float = 0.05
    threads: int = 2
    cls_len: int = 64  # training truncation for the sentence tasks
    token_len: int = 160  # and for the entity task (a generated note is at most ~150)
    # LP-FT (Kumar et al. 2022): the intent head starts as a linear probe fitted on the
    # pre-trained encoder's features of this many training turns (0: a random head)
    probe_items: int = 2400
    probe_steps: int = 300
    # share of the steps per task (the entity task samples its sources by their own weights)
    tasks: dict[str, float] = field(
        default_factory=lambda: {
            "intent": 0.24, "sentiment": 0.14, "safety": 0.06, "entities": 0.50, "reply": 0.06,
        }
    )  # fmt: skip


def kept_layers(layers: int, keep: str = "bottom", total: int = 12) -> list[int]:
    """Which encoder layers a ``layers``-deep model keeps: the first ``layers`` (``bottom``: a
    prefix of the pre-trained stack, whose output is a state the full model computes) or evenly
    spaced ending with the last one (``spread``: every other layer for 6)."""
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be in 1..{total}")
    if keep == "bottom":
        return list(range(layers))
    if keep != "spread":
        raise ValueError(f"keep must be 'bottom' or 'spread', not {keep!r}")
    step = total / layers
    return sorted({min(total - 1, round(total - 1 - i * step)) for i in range(layers)})


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's own check)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolved(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its machine-dependent choices made (the build keys its cache on this)."""
    return cfg if cfg.bf16 is not None else dataclasses.replace(cfg, bf16=native_bf16())


def build_model(
    backbone_dir: Path,
    n_intents: int,
    n_tags: int,
    cfg: TrainConfig,
    id_map: npt.NDArray[np.int64] | None = None,
) -> Any:
    """The converted encoder (frozen embeddings, optional LoRA) with fresh task heads."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.manual_seed(cfg.seed)
    backbone = AutoModel.from_pretrained(
        str(backbone_dir),
        attn_implementation="eager",
        add_pooling_layer=False,
        attention_probs_dropout_prob=cfg.attention_dropout,
    )
    backbone.get_input_embeddings().weight.requires_grad_(False)
    for layer in backbone.encoder.layer[: cfg.frozen_layers]:
        layer.requires_grad_(False)
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=2 * cfg.lora_r,
            lora_dropout=0.0,
            target_modules=["query", "key", "value", "dense"],
        )
        backbone = get_peft_model(backbone, lora)

    class MultiTask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            table = None if id_map is None else torch.from_numpy(np.ascontiguousarray(id_map))
            self.register_buffer("id_map", table)
            self.intent_head = torch.nn.Linear(HIDDEN, n_intents)
            self.sentiment_head = torch.nn.Linear(HIDDEN, 2)
            self.safety_head = torch.nn.Linear(HIDDEN, 2)
            self.token_head = torch.nn.Linear(HIDDEN, n_tags)
            self.register_buffer("reply_bank", torch.zeros(1, HIDDEN))

        def encode(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            table = self._buffers["id_map"]
            ids = input_ids if table is None else table[input_ids]
            positions = torch.cumsum(torch.ones_like(ids), dim=1) + 1
            hidden = self.backbone(
                input_ids=ids, attention_mask=attention_mask, position_ids=positions
            )[0]
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
                self.intent_head(pooled),
                self.sentiment_head(pooled),
                self.safety_head(pooled),
                embedding,
                self.token_head(hidden),
                reply_index,
                reply_score,
            )

    return MultiTask()


def _tensors(tok: ModelTokenizer, texts: Sequence[str]) -> tuple[Any, Any, list[Any]]:
    import torch

    enc = tok.encode(texts)
    ids, mask = torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask)
    return ids, mask, enc.offsets


class _Sampler:
    """Seeded batches per task; the entity task draws its sources by weight."""

    def __init__(self, data: TaskData, rng: random.Random) -> None:
        self.rng = rng
        self.data = data
        self.sources = list(data.train.entities)
        self.weights = [data.entity_weights.get(s, 1.0) for s in self.sources]

    def texts(self, pool: Sequence[Any], n: int) -> list[Any]:
        return self.rng.sample(list(pool), min(n, len(pool)))

    def entities(self, n: int) -> list[Any]:
        """``n`` documents of one source drawn by weight: a batch pads to its longest text, and
        a clinical note (~110-150 pieces) in a batch of People's Daily sentences (~35) would
        make the whole batch pay for its length."""
        (source,) = self.rng.choices(self.sources, self.weights, k=1)
        return [self.rng.choice(self.data.train.entities[source]) for _ in range(n)]


def train(
    model: Any,
    data: TaskData,
    cfg: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """``cfg.steps`` steps, each one task drawn by ``cfg.tasks``; returns the loss history."""
    import torch

    cfg = resolved(cfg)  # bfloat16 where this CPU has it natively, unless the caller chose
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    cls_tok, token_tok = ModelTokenizer(cfg.cls_len), ModelTokenizer(cfg.token_len)
    sampler = _Sampler(data, rng)
    label_ids = {
        "intent": {t: i for i, t in enumerate(data.intents)},
        "sentiment": {t: i for i, t in enumerate(SENTIMENTS)},
        "safety": {t: i for i, t in enumerate(SAFETY)},
    }
    probe_rng = random.Random(cfg.seed + 1)  # its own draws: the task schedule stays the same
    probe = _probe_intent_head(model, data, cfg, cls_tok, label_ids["intent"], probe_rng)
    heads = [p for n, p in model.named_parameters() if "_head." in n]
    body = [p for n, p in model.named_parameters() if p.requires_grad and "_head." not in n]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}], weight_decay=0.01
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, [cfg.lr, cfg.head_lr], total_steps=cfg.steps, pct_start=0.1
    )
    names = list(cfg.tasks)
    schedule = rng.choices(names, [cfg.tasks[n] for n in names], k=cfg.steps)
    model.train()
    losses: dict[str, list[float]] = {n: [] for n in names}
    started = time.perf_counter()
    for step, task in enumerate(schedule):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg.bf16)):
            loss = _loss(model, task, data, cfg, sampler, label_ids, (cls_tok, token_tok), rng)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        sched.step()
        losses[task].append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, {task: losses[task][-1]})
    model.eval()
    return {
        "probe": probe,
        "seconds": round(time.perf_counter() - started, 2),
        "steps": {k: len(v) for k, v in losses.items()},
        "final_loss": {k: round(float(np.mean(v[-20:])), 4) for k, v in losses.items() if v},
    }


def _probe_intent_head(
    model: Any,
    data: TaskData,
    cfg: TrainConfig,
    tok: ModelTokenizer,
    labels: dict[str, int],
    rng: random.Random,
) -> dict[str, float]:
    """Fit the intent head on the frozen pre-trained features of ``cfg.probe_items`` training
    turns before fine-tuning starts (LP-FT: a random head's first gradients would bend the
    encoder's features towards the training templates; a fitted one bends them less)."""
    import torch
    import torch.nn.functional as F

    if cfg.probe_items <= 0:
        return {}
    started = time.perf_counter()
    items = rng.sample(list(data.train.intent), min(cfg.probe_items, len(data.train.intent)))
    model.eval()
    feats = []
    with torch.inference_mode():
        for i in range(0, len(items), 64):
            ids, mask, _ = _tensors(tok, [x.text for x in items[i : i + 64]])
            feats.append(model.encode(ids, mask)[1].float())
    x = torch.cat(feats).clone()
    y = torch.tensor([labels[it.label] for it in items])
    head = model.intent_head
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.01)
    for _ in range(cfg.probe_steps):
        loss = F.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    with torch.no_grad():
        acc = float((head(x).argmax(dim=1) == y).float().mean())
    return {
        "items": len(items),
        "train_accuracy": round(100 * acc, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _loss(
    model: Any,
    task: str,
    data: TaskData,
    cfg: TrainConfig,
    sampler: _Sampler,
    label_ids: dict[str, dict[str, int]],
    toks: tuple[ModelTokenizer, ModelTokenizer],
    rng: random.Random,
) -> Any:
    """One batch of ``task``: its loss (float32)."""
    import torch
    import torch.nn.functional as F

    cls_tok, token_tok = toks
    if task in ("intent", "sentiment", "safety"):
        pool = getattr(data.train, task)
        items = sampler.texts(pool, cfg.batch)
        ids, mask, _ = _tensors(cls_tok, [x.text for x in items])
        target = torch.tensor([label_ids[task][x.label] for x in items])
        head = getattr(model, f"{task}_head")
        loss = F.cross_entropy(head(model.encode(ids, mask)[1]).float(), target)
    elif task == "entities":
        docs = sampler.entities(cfg.batch)
        ids, mask, offsets = _tensors(token_tok, [d.text for d in docs])
        tags = [token_tags(o, d.spans, data.tags) for o, d in zip(offsets, docs, strict=True)]
        width = ids.shape[1]
        target = torch.tensor([t + [-100] * (width - len(t)) for t in tags])
        logits = model.token_head(model.encode(ids, mask)[0]).float()
        loss = F.cross_entropy(logits.reshape(-1, len(data.tags)), target.reshape(-1))
    else:
        picked = _distinct_replies(rng, data.train.reply_pairs, cfg.batch)
        ids, mask, _ = _tensors(
            cls_tok, [t.text for t in picked] + [data.replies[t.reply] for t in picked]
        )
        emb = model.encode(ids, mask)[2]
        q, a = emb[: len(picked)], emb[len(picked) :]
        sim = (q @ a.t()).float() / cfg.temperature
        labels_t = torch.arange(len(picked))
        loss = (F.cross_entropy(sim, labels_t) + F.cross_entropy(sim.t(), labels_t)) / 2
    return loss.float()


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
    """Fold LoRA adapters (if any) into the encoder weights and install the reply-bank matrix."""
    import torch

    if hasattr(model.backbone, "merge_and_unload"):
        model.backbone = model.backbone.merge_and_unload()
    model.reply_bank = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    return model.eval()


def embed(model: Any, texts: Sequence[str], batch: int = 64) -> npt.NDArray[np.float32]:
    """Unit-norm embeddings of ``texts`` with the torch model (no grad)."""
    import torch

    tok = ModelTokenizer(MAX_LEN)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            ids, mask, _ = _tensors(tok, texts[i : i + batch])
            rows.append(model.encode(ids, mask)[2].numpy())
    return np.asarray(np.concatenate(rows), dtype=np.float32)
