"""The OCR install (issue 19): the INT8 gate's decision, the files each decision installs, the
cache rule, and the Triton models' load path (``model.xml`` before ``model.onnx``) run outside
Triton from the installed folders. The gate is a fake here except in the last test, which
quantizes for real on a tiny calibration set (20-32 s on a shared 2-core machine)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.modeling import hardware
from workers.modeling.triton_config import parse_parameters
from workers.ocr import evalset, install, quantize
from workers.ocr import processing as P
from workers.ocr.quantize import Decision, decide

pytest.importorskip("openvino")
TRACKED = Path(__file__).resolve().parents[3] / "model_repo"
CODE = {"model.py", "ocr_model.py", "openvino_model.py", "ocr_processing.py", "build.json"}


def test_decide_int8_within_one_point_in_every_language() -> None:
    ok = decide({"zh": 0.02, "en": 0.01}, {"zh": 0.03, "en": 0.005})  # zh exactly 1 point worse
    assert ok.precision == "int8" and "zh +1.00, en -0.50" in ok.reason
    bad = decide({"zh": 0.02, "en": 0.01}, {"zh": 0.0301, "en": 0.01})
    assert bad.precision == "fp32" and "in zh (" in bad.reason
    assert decide({"en": 0.0}, {"en": 0.004}, max_delta=0.005).precision == "int8"
    assert decide({"en": 0.0}, {"en": 0.006}, max_delta=0.005).precision == "fp32"
    with pytest.raises(ValueError, match="languages differ"):
        decide({"zh": 0.0, "en": 0.0}, {"zh": 0.0})
    with pytest.raises(ValueError, match="languages differ"):
        decide({}, {})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A model repository holding what the install reads: the OCR models' tracked files."""
    dest = tmp_path / "model_repo"
    for model in install.MODELS:
        (dest / model).mkdir(parents=True)
        for name in ("model.py", "config.pbtxt"):
            shutil.copyfile(TRACKED / model / name, dest / model / name)
    for helper in install._HELPERS:
        shutil.copyfile(TRACKED / helper, dest / helper)
    return dest


def fake_measure(precision: str, calls: list[Path]) -> Any:
    """``quantize.measure`` without NNCF: placeholder IR files and a fixed decision."""

    def measure(dest: Path, *, cache_root: Path | None = None) -> tuple[Decision, dict[str, Any]]:
        calls.append(dest)
        for net in ("det", "rec"):
            (dest / f"{net}_int8.xml").write_text(f"<{net}/>")
            (dest / f"{net}_int8.bin").write_bytes(net.encode())
        gate = {"cer_fp32": {"zh": 0.01}, "cer_int8": {"zh": 0.02}}
        return Decision(precision, f"fake {precision}"), {"gate": gate}

    return measure


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != "__pycache__"}


def build(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "build.json").read_text(encoding="utf-8")))


def test_int8_installs_the_ir_and_an_unchanged_folder_is_left_alone(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(quantize, "measure", fake_measure("int8", calls))
    det, rec = install.install_ocr(repo, say=lambda _: None)
    assert listing(det) == CODE | {"model.xml", "model.bin"}
    assert listing(rec) == CODE | {"model.xml", "model.bin", P.CHARSET_FILE}
    assert (det / "model.xml").read_text() == "<det/>"
    assert (rec / "model.bin").read_bytes() == b"rec"
    info = build(rec)
    assert (info["precision"], info["reason"], info["installed"]) == (
        "int8", "fake int8", ["charset.txt", "model.bin", "model.xml"],
    )  # fmt: skip
    assert info["gate"] == {"cer_fp32": {"zh": 0.01}, "cer_int8": {"zh": 0.02}}
    assert info["inputs"] == build(det)["inputs"] and info["inputs"]["int8_allowed"] is True
    assert set(info["inputs"]["packages"]) == {"openvino", "nncf"}
    wheel = P.rapidocr_models_dir() / P.REC_MODEL
    assert P.load_charset(rec / P.CHARSET_FILE) == P.load_charset(wheel)

    for folder in (det, rec):
        (folder / "sentinel").touch()
    assert install.install_ocr(repo, say=lambda _: None) == [det, rec]
    assert len(calls) == 1 and (det / "sentinel").exists() and (rec / "sentinel").exists()

    with (repo / "ocr_rec" / "model.py").open("a") as f:  # new code: both are measured again
        f.write("# changed\n")
    install.install_ocr(repo, say=lambda _: None)
    assert len(calls) == 2 and not (det / "sentinel").exists() and not (rec / "sentinel").exists()
    assert not list(repo.glob("*/.staging-1")) and not list(repo.glob("*/.old-1"))


def test_a_fresh_checkout_takes_the_decision_and_the_networks_from_the_cache(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second checkout with the same inputs, on a machine whose cache has them: no
    quantization and no gate, the same files and decision; other inputs measure again."""
    calls: list[Path] = []
    monkeypatch.setattr(quantize, "measure", fake_measure("int8", calls))
    cache = tmp_path / "cache"
    first = install.install_ocr(repo, say=lambda _: None, cache_root=cache)
    other = tmp_path / "checkout2" / "model_repo"
    shutil.copytree(repo, other, ignore=shutil.ignore_patterns("1"))
    again = install.install_ocr(other, say=lambda _: None, cache_root=cache)
    assert len(calls) == 1
    for a, b in zip(first, again, strict=True):
        assert listing(a) == listing(b) and build(a) == build(b)
        for name in ("model.xml", "model.bin"):
            assert (a / name).read_bytes() == (b / name).read_bytes()
    with (other / "ocr_det" / "model.py").open("a") as f:
        f.write("# changed\n")
    install.install_ocr(other, say=lambda _: None, cache_root=cache)
    assert len(calls) == 2


def test_fp32_installs_the_onnx_files_as_shipped(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure", fake_measure("fp32", []))
    said: list[str] = []
    det, rec = install.install_ocr(repo, say=said.append)
    assert listing(det) == CODE | {"model.onnx"}
    assert listing(rec) == CODE | {"model.onnx", P.CHARSET_FILE}
    wheel = P.rapidocr_models_dir()
    for folder, file in ((det, P.DET_MODEL), (rec, P.REC_MODEL)):
        assert (folder / "model.onnx").read_bytes() == (wheel / file).read_bytes()
        assert build(folder)["precision"] == "fp32" and build(folder)["file"] == file
    assert any("FP32: fake fp32" in s for s in said)


def test_int8_off_skips_quantization_and_gate(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(quantize, "measure", fake_measure("int8", calls))
    det, _ = install.install_ocr(repo, say=lambda _: None, int8=False)
    info = build(det)
    assert calls == [] and info["precision"] == "fp32"
    assert "INFERSTREAM_OCR_INT8=0" in info["reason"]
    assert info["inputs"]["int8_allowed"] is False and "gate" not in info
    assert install._version("no-such-package-here") is None  # nncf need not be there when off
    install.install_ocr(repo, say=lambda _: None)  # allowed again: an input changed
    assert len(calls) == 1 and build(det)["precision"] == "int8"


def test_unset_int8_follows_the_cpu(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(quantize, "measure", fake_measure("int8", calls))
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    det, _ = install.install_ocr(repo, say=lambda _: None, int8=None)
    info = build(det)
    assert calls == [] and info["precision"] == "fp32" and "no VNNI or AMX" in info["reason"]
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx_vnni"}))
    install.install_ocr(repo, say=lambda _: None, int8=None)
    assert len(calls) == 1 and build(det)["precision"] == "int8"


def triton_model(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The version folder's ``model.py`` imported and initialised as Triton does: beside its
    helpers, with the tracked config's parameters (no ``triton_python_backend_utils`` here)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("ocr_model", "openvino_model", "ocr_processing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    name = f"{folder.parent.name}_model"
    spec = importlib.util.spec_from_file_location(name, folder / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = parse_parameters((folder.parent / "config.pbtxt").read_text(encoding="utf-8"))
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()}}
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(folder.parent),
                      "model_version": folder.name})  # fmt: skip
    return model


def test_triton_models_run_the_onnx_without_an_ir(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure", fake_measure("fp32", []))
    det, rec = install.install_ocr(repo, say=lambda _: None)
    for folder in (det, rec):
        assert triton_model(folder, monkeypatch).model_file == folder / "model.onnx"
    assert len(triton_model(rec, monkeypatch).charset) == 6625


@pytest.fixture(scope="module")
def fonts() -> Path:
    try:
        return evalset.font_dir()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("fonts not fetched (bash deploy/fonts/fetch.sh)")


def test_real_int8_is_gated_installed_and_served_from_model_xml(
    repo: Path, tmp_path: Path, fonts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NNCF on 2 calibration images a language, the gate on 1: the install gets the real IR,
    and the Triton models compile ``model.xml`` and read as ``LocalOcr`` does with it."""
    from workers.ocr.local import LocalOcr

    sets = tmp_path / "sets"
    real = functools.partial(quantize.measure, cal_per_lang=2, gate_per_lang=1)
    made: list[tuple[Decision, dict[str, Any]]] = []

    def measure(dest: Path, *, cache_root: Path | None = None) -> tuple[Decision, dict[str, Any]]:
        decision, record = real(dest, cache_root=cache_root)
        made.append((decision, record))
        shutil.copytree(dest, tmp_path / "ir")
        return Decision("int8", decision.reason), record  # the IR whatever the tiny gate said

    monkeypatch.setattr(quantize, "measure", measure)
    det, rec = install.install_ocr(repo, say=lambda _: None, cache_root=sets)
    [(decision, record)] = made
    gate, cal = record["gate"], record["calibration"]
    assert decision == decide(gate["cer_fp32"], gate["cer_int8"])
    assert (gate["seed"], gate["per_lang"], sorted(gate["chars"])) == (1922, 1, ["en", "zh"])
    assert (cal["seed"], cal["per_lang"], cal["det"]["items"]) == (1920, 2, 4)
    assert "xml" not in cal["rec"] and cal["rec"]["items"] >= 4
    ir = tmp_path / "ir"
    digest = hashlib.sha256((ir / "rec_int8.bin").read_bytes()).digest()
    assert hashlib.sha256((rec / "model.bin").read_bytes()).digest() == digest

    det_model, rec_model = (triton_model(f, monkeypatch) for f in (det, rec))
    assert det_model.model_file == det / "model.xml" and rec_model.model_file == rec / "model.xml"
    local = LocalOcr(ir / "det_int8.xml", ir / "rec_int8.xml")
    manifest = evalset.load_manifest(evalset.default_dir(per_lang=1, seed=1922, cache_root=sets))
    sample = manifest.samples[-1]  # English
    rgb = quantize._rgb(manifest.path(sample))
    scaled = P.det_preprocess(rgb)
    boxes = P.db_boxes(det_model.run(scaled.tensor[np.newaxis])[0, 0], scaled)
    ref = local.detect(rgb)  # one thread in Triton, two here: sums may round apart
    assert len(boxes) == len(ref) >= 1
    assert all(np.allclose(a.points, b.points, atol=1) for a, b in zip(boxes, ref, strict=True))
    crops = [P.crop_line(rgb, b) for b in boxes]
    texts = [t for t, _ in rec_model._decode([P.rec_preprocess(c) for c in crops])]
    assert texts == [t for t, _ in local.recognize(crops)] and any(texts)
    served = LocalOcr.installed(repo)  # the installed IR, its charset.txt
    assert [x.text for x in served.read(rgb)] == [x.text for x in local.read(rgb)]
