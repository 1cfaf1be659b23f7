"""Which network ``inferstream_cpu/1`` serves, and a config that labels it truthfully."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streams.settings import REPO_ROOT
from workers.modeling import cache, mt_install
from workers.modeling.hardware import Choice
from workers.modeling.steps import BuildError
from workers.modeling.triton_config import parse_parameters

TRACKED = REPO_ROOT / "model_repo"
FP32 = {"intent_zh": 84.0, "intent_en": 82.5, "sentiment_zh": 80.8}
GATED = tuple(FP32)
AUTO = Choice("int8", "the CPU has avx512_vnni: INT8, behind its accuracy gate")


def test_fp32_chosen_serves_fp32_without_a_gate() -> None:
    choice = Choice("fp32", "the CPU has no VNNI or AMX")
    assert mt_install.decide(choice, FP32, None, GATED, 1.0) == ("fp32", choice.reason, None)


def test_int8_within_the_gate_is_served() -> None:
    int8 = {"intent_zh": 83.2, "intent_en": 82.5, "sentiment_zh": 81.0}
    precision, reason, gate = mt_install.decide(AUTO, FP32, int8, GATED, 1.0)
    assert precision == "int8" and reason.endswith("INT8 within 1 point of FP32")
    assert gate == {"tolerance": 1.0, "deltas": {"intent_zh": -0.8, "intent_en": 0.0,
                    "sentiment_zh": 0.2}, "failures": []}  # fmt: skip


def test_int8_past_the_gate_falls_back_when_automatic_and_fails_when_asked_for() -> None:
    int8 = {"intent_zh": 82.9, "intent_en": 82.5, "sentiment_zh": 80.8}
    precision, reason, gate = mt_install.decide(AUTO, FP32, int8, GATED, 1.0)
    assert precision == "fp32" and gate is not None
    assert reason.startswith("INT8 failed its gate (tolerance 1 points: intent_zh: 82.90 vs 84.00")
    assert gate["failures"] == ["intent_zh: 82.90 vs 84.00 (-1.10 < -1)"]
    with pytest.raises(BuildError, match=r"INT8 gate failed .*intent_zh"):
        mt_install.decide(Choice("int8", "requested (int8)", True), FP32, int8, GATED, 1.0)


def test_relabelled_changes_only_the_label() -> None:
    text = (TRACKED / mt_install.CPU_MODEL / "config.pbtxt").read_text(encoding="utf-8")
    out = mt_install.relabelled(text, "openvino-fp32")
    assert parse_parameters(out) == parse_parameters(text) | {"backend_label": "openvino-fp32"}
    assert len(out.splitlines()) == len(text.splitlines())
    with pytest.raises(BuildError, match="one backend_label parameter in the config, found 0"):
        mt_install.relabelled('name: "x"\n', "openvino-fp32")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The tracked files of the models the install touches."""
    root = tmp_path / "model_repo"
    for model in (mt_install.CPU_MODEL, mt_install.REPLIES_MODEL):
        (root / model).mkdir(parents=True)
        for name in ("config.pbtxt", "model.py"):
            shutil.copy2(TRACKED / model / name, root / model / name)
    shutil.copy2(TRACKED / cache.SHARED_PY, root / cache.SHARED_PY)
    return root


def test_built_config_is_written_for_fp32_and_removed_for_int8(repo: Path) -> None:
    target = mt_install.write_built_config(repo, "fp32")
    assert target == repo / mt_install.CPU_MODEL / "configs" / "built.pbtxt"
    assert parse_parameters(target.read_text(encoding="utf-8"))["backend_label"] == "openvino-fp32"
    assert mt_install.write_built_config(repo, "int8") is None and not target.exists()
    assert mt_install.write_built_config(repo, "int8") is None  # nothing to remove: no error


def test_served_key_follows_the_builds_the_tolerance_the_choice_and_the_serving_files(
    repo: Path,
) -> None:
    f, i = "f" * 64, "i" * 64
    key = mt_install.served_key(repo, f, i, 1.0, AUTO)
    assert key == mt_install.served_key(repo, f, i, 1.0, AUTO)
    assert key != mt_install.served_key(repo, f, i, 0.5, AUTO)
    assert key != mt_install.served_key(repo, f, None, 1.0, AUTO)
    # a named INT8 is not the automatic one: where the gate failed, it must fail the build
    named = Choice("int8", "requested (int8)", True)
    assert key != mt_install.served_key(repo, f, i, 1.0, named)
    # without INT8 the tolerance does not matter
    fp32 = Choice("fp32", "the CPU has no VNNI or AMX")
    assert mt_install.served_key(repo, f, None, 1.0, fp32) == mt_install.served_key(
        repo, f, None, 0.5, fp32
    )
    with (repo / mt_install.CPU_MODEL / "model.py").open("a") as out:
        out.write("# changed\n")
    assert key != mt_install.served_key(repo, f, i, 1.0, AUTO)


def _network(tmp_path: Path, tag: bytes) -> tuple[Path, Path]:
    xml, weights = tmp_path / f"{tag.decode()}.xml", tmp_path / f"{tag.decode()}.bin"
    xml.write_bytes(b"<net " + tag + b"/>")
    weights.write_bytes(tag * 10)
    return xml, weights


def test_install_swaps_in_both_folders_and_the_config(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mt_install, "describe", lambda data: {"sizes": "fake"})
    data = SimpleNamespace(intents=("greeting", "other"), tags=("O",), replies=("hi", "bye"))
    record: dict[str, Any] = {"precision": "fp32", "precision_reason": "why", "fp32_key": "f"}
    cpu = mt_install.install(repo, "k1", _network(tmp_path, b"fp32"), data, record)  # type: ignore[arg-type]
    assert cache.verify_folder(cpu, "k1", names=mt_install.CPU_FILES)
    assert (cpu / "model.bin").read_bytes() == b"fp32" * 10
    build = json.loads((cpu / "build.json").read_text(encoding="utf-8"))
    assert build["precision"] == "fp32" and build["labels"] == ["greeting", "other"]
    replies = repo / mt_install.REPLIES_MODEL / "1"
    assert cache.verify_folder(replies, "k1", names=mt_install.REPLY_FILES)
    assert json.loads((replies / "replies.json").read_text(encoding="utf-8")) == ["hi", "bye"]
    assert (repo / mt_install.CPU_MODEL / "configs" / "built.pbtxt").is_file()

    record |= {"precision": "int8"}
    mt_install.install(repo, "k2", _network(tmp_path, b"int8"), data, record)  # type: ignore[arg-type]
    assert cache.verify_folder(cpu, "k2", names=mt_install.CPU_FILES)
    assert (cpu / "model.bin").read_bytes() == b"int8" * 10
    assert not (repo / mt_install.CPU_MODEL / "configs" / "built.pbtxt").exists()
    assert sorted(p.name for p in (repo / mt_install.CPU_MODEL).iterdir()) == [
        "1", "config.pbtxt", "configs", "model.py"
    ]  # fmt: skip


def _served_model(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "openvino_model", raising=False)
    path = TRACKED / mt_install.CPU_MODEL / "model.py"
    spec = importlib.util.spec_from_file_location("inferstream_cpu_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_model_refuses_a_label_that_is_not_its_precision(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _served_model(monkeypatch)
    text = (TRACKED / mt_install.CPU_MODEL / "config.pbtxt").read_text(encoding="utf-8")
    params = parse_parameters(text)
    build = {"entity_labels": params["entity_labels"].split(","), "precision": precision}
    good = params | {"backend_label": mt_install.LABELS[precision]}
    assert model.check_build(build, good) == int(params["vocab_size"])
    other = "fp32" if precision == "int8" else "int8"
    bad = params | {"backend_label": mt_install.LABELS[other]}
    with pytest.raises(ValueError, match=f"but {precision} was built here"):
        model.check_build(build, bad)
