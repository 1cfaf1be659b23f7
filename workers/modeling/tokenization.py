"""Tokenize text into the model's int64 inputs with the HF fast tokenizer (no torch).

The packaged ``tokenizer.json`` has truncation *and fixed padding to 128* baked in; both are
overridden here: truncate at ``max_len`` (256 for this model) and pad only to the longest
sequence of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

IntArray = npt.NDArray[np.int64]


def load_tokenizer(model_dir: Path, max_len: int) -> Tokenizer:
    """Load ``model_dir/tokenizer.json``: truncation at ``max_len``, pad to the batch's longest."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tok


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[IntArray, IntArray]:
    """Return ``(input_ids, attention_mask)``, both int64 ``[len(texts), longest]``."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask
