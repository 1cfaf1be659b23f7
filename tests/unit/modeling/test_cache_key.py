"""The build cache key follows code and data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workers.modeling import cache


def _model_dir(tmp: Path) -> Path:
    d = tmp / "encoder"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"w")
    return d


def test_key_changes_with_code_and_with_data(tmp_path: Path) -> None:
    code, data = tmp_path / "train.py", tmp_path / "corpus.yml"
    code.write_text("x = 1\n")
    data.write_text("conversations: []\n")
    model_dir = _model_dir(tmp_path)
    sources = {"train.py": code, "corpus/a.yml": data}

    def key() -> str:
        return cache.compute_cache_key(sources, model_dir, {"torch": "1"}, {"steps": 1})[0]

    first = key()
    assert key() == first
    code.write_text("x = 2\n")
    after_code = key()
    data.write_text("conversations: [[a, b]]\n")
    assert len({first, after_code, key()}) == 3


def test_key_changes_with_training_config(tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path)
    a = cache.compute_cache_key({}, model_dir, {}, {"steps": 1})[0]
    assert a != cache.compute_cache_key({}, model_dir, {}, {"steps": 2})[0]


def test_key_follows_the_weights_content_not_their_install_time(tmp_path: Path) -> None:
    """A fresh .venv installs the same encoder with new mtimes: same key, no retraining."""
    model_dir = _model_dir(tmp_path)
    first = cache.compute_cache_key({}, model_dir, {}, {})[0]
    again = tmp_path / "reinstalled"
    shutil.copytree(model_dir, again)
    weights = again / "model.safetensors"
    os.utime(weights, ns=(10**18, 10**18))
    assert cache.compute_cache_key({}, again, {}, {})[0] == first
    weights.write_bytes(b"other weights")
    assert cache.compute_cache_key({}, again, {}, {})[0] != first
