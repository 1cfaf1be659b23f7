"""NNCF INT8 of the PP-OCRv4 networks, and the gate that decides whether it is served (issue 19).

:func:`quantize_int8`: post-training INT8 (NNCF, OpenVINO backend, default preset) of the
detector and the recogniser, calibrated on the evaluation-set builder's images of seed
``evalset.SEED + 1`` (``CAL_PER_LANG`` a language): the detector on their detector inputs, the
recogniser (its height pinned to 48) on the line crops the FP32 detector finds there. Saved as
OpenVINO IR without FP16 weight compression: ``det_int8.xml``/``.bin``, ``rec_int8.xml``/``.bin``.

:func:`gate`: another set (seed ``evalset.SEED + 3``, ``GATE_PER_LANG`` images a language) read by
``LocalOcr`` in FP32 and with both INT8 networks (the same pre- and post-processing, the
characters from the ONNX file), the CER with spaces of each per language (``metrics.CerCounter``).
:func:`decide`: INT8 only if, in every language, its CER exceeds FP32's by at most ``MAX_DELTA``
(1 point); the two networks are measured and decided together. :func:`measure` does all three
for the install (``workers.ocr.install``); ``bench.ocr_accuracy --int8`` measures the same
quantization on the 300-image held-out set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from workers.ocr import evalset
from workers.ocr import processing as P
from workers.ocr.local import LocalOcr
from workers.ocr.metrics import CerCounter

CAL_PER_LANG, CAL_SEED = 50, evalset.SEED + 1  # the calibration set
GATE_PER_LANG, GATE_SEED = 30, evalset.SEED + 3  # the gate set
MAX_DELTA = 0.01  # "INT8 if NNCF keeps the character error rate within 1 point"
NETWORKS = (("det", P.DET_MODEL), ("rec", P.REC_MODEL))


@dataclass(frozen=True)
class Decision:
    """What both OCR models are installed as, and why."""

    precision: Literal["int8", "fp32"]
    reason: str


def decide(
    cer_fp32: Mapping[str, float], cer_int8: Mapping[str, float], max_delta: float = MAX_DELTA
) -> Decision:
    """INT8 where, in every language, its CER exceeds FP32's by at most ``max_delta`` (to within
    float rounding); FP32 otherwise, naming the languages that failed. Both give the same
    languages, at least one."""
    if not cer_fp32 or cer_fp32.keys() != cer_int8.keys():
        raise ValueError(f"languages differ: {sorted(cer_fp32)} vs {sorted(cer_int8)}")
    delta = {lang: cer_int8[lang] - cer_fp32[lang] for lang in cer_fp32}
    points = ", ".join(f"{lang} {100 * d:+.2f}" for lang, d in delta.items())
    failed = [lang for lang, d in delta.items() if d > max_delta + 1e-12]
    if failed:
        return Decision(
            "fp32",
            f"INT8 CER exceeds FP32's by more than {100 * max_delta:g} point in "
            f"{', '.join(failed)} (INT8 - FP32, points: {points})",
        )
    return Decision(
        "int8", f"INT8 CER within {100 * max_delta:g} point of FP32 (INT8 - FP32, points: {points})"
    )


def _set(per_lang: int, seed: int, cache_root: Path | None) -> evalset.Manifest:
    where = evalset.default_dir(per_lang=per_lang, seed=seed, cache_root=cache_root)
    return evalset.build_evalset(where, per_lang=per_lang, seed=seed)


def _rgb(path: Path) -> npt.NDArray[np.uint8]:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def quantize_int8(
    dest: Path, *, per_lang: int = CAL_PER_LANG, cache_root: Path | None = None
) -> dict[str, Any]:
    """INT8 IR of both networks in ``dest``; what it was calibrated on, and per network its
    calibration items, seconds, IR and ONNX sizes and ``xml`` path."""
    import nncf
    import openvino as ov

    cal = _set(per_lang, CAL_SEED, cache_root)
    ocr = LocalOcr(precision="f32")
    items: dict[str, list[Any]] = {"det": [], "rec": []}
    for sample in cal.samples:
        rgb = _rgb(cal.path(sample))
        items["det"].append(P.det_preprocess(rgb).tensor[np.newaxis])
        crops = [P.crop_line(rgb, box) for box in ocr.detect(rgb)]
        items["rec"] += [P.pad_batch([P.rec_preprocess(c)]) for c in crops]
    dest.mkdir(parents=True, exist_ok=True)
    models, core = P.rapidocr_models_dir(), ov.Core()
    info: dict[str, Any] = {"calibration_key": cal.key, "per_lang": per_lang, "seed": CAL_SEED}
    for name, file in NETWORKS:
        model = core.read_model(str(models / file))
        if name == "rec":
            model.reshape({model.input(0): ov.PartialShape([-1, 3, ocr.rec_cfg.height, -1])})
        start = time.perf_counter()
        quantized = nncf.quantize(model, nncf.Dataset(items[name]), subset_size=len(items[name]))
        xml = dest / f"{name}_int8.xml"
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
        info[name] = {"items": len(items[name]), "seconds": round(time.perf_counter() - start, 1),
                      "ir_bytes": size, "onnx_fp32_bytes": (models / file).stat().st_size,
                      "xml": str(xml)}  # fmt: skip
    return info


def gate(
    det_xml: Path, rec_xml: Path, *, per_lang: int = GATE_PER_LANG, cache_root: Path | None = None
) -> dict[str, Any]:
    """CER with spaces per language of FP32 (the wheel's ONNX) and of INT8 (these IR) on the gate
    set, with the set's key, seed, size, truth characters per language and the seconds taken."""
    start = time.perf_counter()
    manifest = _set(per_lang, GATE_SEED, cache_root)
    readers = {"fp32": LocalOcr(), "int8": LocalOcr(det_xml, rec_xml)}
    counters = {name: CerCounter() for name in readers}
    for sample in manifest.samples:
        rgb, truth = _rgb(manifest.path(sample)), [line.text for line in sample.lines]
        for name, ocr in readers.items():
            counters[name].add(truth, [line.text for line in ocr.read(rgb)], sample.lang)
    chars = {k: int(v["chars"]) for k, v in counters["fp32"].summary().items() if k != "all"}
    return {"key": manifest.key, "seed": GATE_SEED, "per_lang": per_lang, "chars": chars,
            **{f"cer_{n}": {lang: c.cer(lang) for lang in chars} for n, c in counters.items()},
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def measure(
    dest: Path,
    *,
    cal_per_lang: int = CAL_PER_LANG,
    gate_per_lang: int = GATE_PER_LANG,
    cache_root: Path | None = None,
) -> tuple[Decision, dict[str, Any]]:
    """Quantize into ``dest``, gate, decide; the decision and its record for ``build.json``."""
    calibration = quantize_int8(dest, per_lang=cal_per_lang, cache_root=cache_root)
    for name, _ in NETWORKS:
        del calibration[name]["xml"]  # a temporary path
    figures = gate(dest / "det_int8.xml", dest / "rec_int8.xml", per_lang=gate_per_lang,
                   cache_root=cache_root)  # fmt: skip
    decision = decide(figures["cer_fp32"], figures["cer_int8"])
    return decision, {"max_delta": MAX_DELTA, "gate": figures, "calibration": calibration}
