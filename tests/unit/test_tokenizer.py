import numpy as np
import pytest

from workers.inference.tokenizer import ModelTokenizer, clean_offsets


def test_pads_to_longest_with_the_pad_id_and_masks() -> None:
    tok = ModelTokenizer(max_seq_len=64)
    enc = tok.encode(["hi", "my card was charged twice"])
    assert enc.input_ids.shape == enc.attention_mask.shape
    assert enc.input_ids.dtype == np.int64
    lengths = enc.attention_mask.sum(axis=1)
    assert lengths[0] == 3  # <s> hi </s>
    assert lengths[1] == enc.input_ids.shape[1]
    assert tok.pad_id == 1 and (enc.input_ids[0, 3:] == 1).all()
    assert enc.truncated == [False, False]


def test_truncation_keeps_both_special_tokens() -> None:
    tok = ModelTokenizer(max_seq_len=16)
    enc = tok.encode(["word " * 100])
    assert enc.input_ids.shape == (1, 16)
    assert enc.truncated == [True]
    assert enc.input_ids[0, 0] == 0 and enc.input_ids[0, -1] == 2  # <s> ... </s>


@pytest.mark.parametrize(
    "text",
    [
        "My card  was charged twice",
        "患者主诉胸痛三天，服用阿司匹林100mg",
        " 张伟 男 ",
        "１２月３１日",
    ],
)
def test_offsets_slice_real_text_without_white_space(text: str) -> None:
    enc = ModelTokenizer(64).encode([text])
    pieces = [text[a:b] for a, b in enc.offsets[0] if b > a]
    assert pieces and all(p == p.strip() and p for p in pieces)
    assert "".join(pieces) == "".join(text.split())  # every character covered once, in order


def test_chinese_is_not_unknown() -> None:
    enc = ModelTokenizer(64).encode(["患者主诉胸痛三天，服用阿司匹林100mg"])
    assert 3 not in enc.input_ids[0]  # <unk>


def test_clean_offsets_rules() -> None:
    text = "a  bc"
    got = clean_offsets(text, ["<s>", "▁a", "▁", "▁bc"], [(0, 0), (0, 1), (1, 2), (2, 5)])
    assert got == [(0, 0), (0, 1), (1, 1), (3, 5)]


def test_named_tokenizers() -> None:
    minilm = ModelTokenizer(16, name="all-minilm-l6-v2")
    enc = minilm.encode(["hi"])
    assert enc.input_ids[0, 0] == 101 and enc.input_ids[0, -1] == 102  # [CLS] ... [SEP]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        ModelTokenizer(16, name="nope")
