import numpy as np

from workers.inference.tokenizer import WordPieceTokenizer


def test_pads_to_longest_and_masks() -> None:
    enc = WordPieceTokenizer(max_seq_len=64).encode(["hi", "my card was charged twice"])
    assert enc.input_ids.shape == enc.attention_mask.shape
    assert enc.input_ids.dtype == np.int64
    lengths = enc.attention_mask.sum(axis=1)
    assert lengths[0] == 3  # [CLS] hi [SEP]
    assert lengths[1] == enc.input_ids.shape[1]
    assert (enc.input_ids[0, 3:] == 0).all()
    assert enc.truncated == [False, False]


def test_truncation_keeps_cls_and_sep() -> None:
    tok = WordPieceTokenizer(max_seq_len=16)
    enc = tok.encode(["word " * 100])
    assert enc.input_ids.shape == (1, 16)
    assert enc.truncated == [True]
    assert enc.input_ids[0, 0] == 101 and enc.input_ids[0, -1] == 102  # [CLS] ... [SEP]
