"""OCR accuracy (issue 19): our PP-OCRv4 pipeline against ground truth and against rapidocr.

    .venv/bin/python -m bench.ocr_accuracy [--per-lang 150] [--precision f32|bf16]
        [--no-reference] [--int8] [--uncapped] [--numerics]

The images are the held-out evaluation set of ``workers/ocr/evalset.py`` (built, or reused from
its cache folder). "ours" is ``LocalOcr``: the serving pipeline in-process, the same lines as the
Triton models ``ocr_det`` / ``ocr_rec``. "rapidocr" is ``rapidocr_onnxruntime.RapidOCR`` run
without its angle classifier (``use_cls=False``), as ours runs.

Figures (every rate pools characters or lines over the images, not a mean of per-image rates):

- CER (a), "spaced": edits / truth characters after ``metrics.normalize`` as it is: NFKC, zh
  spaces next to CJK dropped, spaces between Latin words kept, a line break is a character.
- CER (b), "no whitespace": as (a), then every whitespace character (spaces, line breaks)
  deleted on both sides: PaddleOCR's own convention; PP-OCRv4 often drops the space between
  English words.
- line exact: lines identical after normalising ((b): and without spaces), paired in reading
  order by a longest common subsequence, over the longer line count (``metrics.line_agreement``).
- agreement: the same line pairing, our lines against rapidocr's.
- time: one ``read`` of a decoded RGB image; the readers take turns image by image (so the load
  of a shared machine falls on each alike), each warmed up once first.

``--uncapped`` adds ours with the reference's detector geometry (no 1600 px cap on the detector
input's longer side), which separates the cap's effect on agreement from numerics.
``--numerics`` adds rapidocr's own pipeline with OpenVINO (f32) running its networks: its
agreement with rapidocr is OpenVINO's against onnxruntime's, nothing else.
``--int8`` measures NNCF post-training INT8 of the detector and recogniser, made exactly as the
install makes it (``workers.ocr.quantize.quantize_int8``: OpenVINO backend, default CNN preset,
calibrated on a set of another seed, ``SEED + 1``, 50 images a language; the recogniser on the
crops our FP32 detector finds there): rec INT8 alone, and both. What is served, the install's
own gate decides on a third set (docs/ocr.md). Everything lands in ``bench/out/ocr_accuracy.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt
from PIL import Image
from rapidfuzz.distance import LCSseq, Levenshtein

from workers.modeling.cache import package_versions
from workers.ocr import evalset
from workers.ocr.metrics import CerCounter, line_agreement, normalize
from workers.ocr.quantize import MAX_DELTA, quantize_int8

OUT = Path(__file__).resolve().parent / "out"
TARGET_CER = {"zh": 0.03, "en": 0.02}
TARGET_AGREEMENT = 0.99
UNCAPPED = 10**9
PACKAGES = ("rapidocr-onnxruntime", "onnxruntime", "openvino", "nncf", "onnx", "numpy", "pillow",
            "opencv-python-headless", "rapidfuzz")  # fmt: skip
OURS, REF, REF_OV = "ours", "rapidocr", "rapidocr/openvino"
WAYS = ("a", "b")  # (a) spaced, (b) no whitespace
Rgb = npt.NDArray[np.uint8]
Reader = Callable[[Rgb], list[str]]
Samples = Sequence[evalset.Sample]

# --- scoring (pure) ---------------------------------------------------------------------------


def squash(text: str) -> str:
    """``text`` without any whitespace."""
    return "".join(text.split())


def norm_lines(lines: Iterable[str], lang: str, spaced: bool) -> list[str]:
    """Non-empty normalised lines; without any whitespace unless ``spaced``."""
    out = (normalize(line, lang) for line in lines)
    return [x for x in (x if spaced else squash(x) for x in out) if x]


@dataclass(frozen=True)
class Tally:
    """Edits over truth characters, and lines that agree over line slots, of some images."""

    edits: int = 0
    chars: int = 0
    same: int = 0
    slots: int = 0
    images: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def cer(self) -> float:
        return self.edits / self.chars if self.chars else 0.0

    @property
    def line_exact(self) -> float:
        return self.same / self.slots if self.slots else 1.0


Scores = list[dict[str, Tally]]  # per image: way -> its tally


def score_image(truth: Sequence[str], hyp: Sequence[str], lang: str, *, spaced: bool) -> Tally:
    """One image: ``spaced`` (a) is ``CerCounter.add``'s comparison; (b) drops all whitespace
    from the texts (line breaks too) and the spaces from the lines it pairs."""
    ref, out = norm_lines(truth, lang, spaced), norm_lines(hyp, lang, spaced)
    a, b = ("\n" if spaced else "").join(ref), ("\n" if spaced else "").join(out)
    same = int(LCSseq.similarity(ref, out))
    return Tally(Levenshtein.distance(a, b), len(a), same, max(len(ref), len(out)), 1)


def both_ways(truth: Sequence[str], hyp: Sequence[str], lang: str) -> dict[str, Tally]:
    return {w: score_image(truth, hyp, lang, spaced=w == "a") for w in WAYS}


def sum_up(scores: Scores, pick: Iterable[int] | None = None) -> dict[str, Tally]:
    rows = scores if pick is None else [scores[i] for i in pick]
    return {w: sum((r[w] for r in rows), Tally()) for w in WAYS}


def _show(ch: str) -> str:
    return {"": "∅", " ": "␠", "\n": "⏎"}.get(ch, ch)


def edit_ops(ref: str, hyp: str) -> Counter[str]:
    """``truth→read`` for each edit of an optimal alignment (``∅`` nothing, ``␠`` a space)."""
    out: Counter[str] = Counter()
    for op in Levenshtein.editops(ref, hyp):
        a = "" if op.tag == "insert" else ref[op.src_pos]
        b = "" if op.tag == "delete" else hyp[op.dest_pos]
        out[f"{_show(a)}→{_show(b)}"] += 1
    return out


def timing(seconds: Sequence[float]) -> dict[str, float]:
    s = sorted(seconds)
    p90 = s[min(len(s) - 1, int(0.9 * len(s)))]
    return {"mean": statistics.fmean(s), "p50": statistics.median(s), "p90": p90}


def size_bucket(size: int) -> str:
    return "18-24 px" if size <= 24 else "25-32 px" if size <= 32 else "33-40 px"


# --- running ----------------------------------------------------------------------------------


@dataclass
class Run:
    lines: list[list[str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def load_rgb(path: Path) -> Rgb:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def ours_reader(precision: str, max_side: int | None = None) -> Reader:
    from workers.ocr.local import LocalOcr
    from workers.ocr.processing import DetConfig

    cfg = DetConfig() if max_side is None else DetConfig(max_side=max_side)
    ocr = LocalOcr(precision="bf16" if precision == "bf16" else "f32", det_cfg=cfg)
    return lambda rgb: [line.text for line in ocr.read(rgb)]


def reference_reader() -> Reader:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(rgb: Rgb) -> list[str]:
        result, _ = engine(np.ascontiguousarray(rgb[..., ::-1]), use_cls=False)  # it takes BGR
        return [str(r[1]) for r in result or []]

    return read


def reference_on_openvino_reader() -> Reader:
    """rapidocr's own pipeline with its two networks run by OpenVINO (f32, as ours) instead of
    onnxruntime: its agreement with ``rapidocr`` is the runtime's alone (the same pre- and
    post-processing on both sides), which ours-vs-rapidocr mixes with the pipelines' own
    differences (detector geometry, recogniser batching)."""
    from rapidocr_onnxruntime import RapidOCR

    from workers.ocr import processing as P
    from workers.ocr.local import _compile

    engine, models = RapidOCR(), P.rapidocr_models_dir()

    def net(file: str) -> Callable[[Any], list[Any]]:
        compiled = _compile(models / file, "f32")
        return lambda x: [np.asarray(compiled(x)[compiled.output(0)])]

    engine.text_det.infer = net(P.DET_MODEL)
    engine.text_rec.session = net(P.REC_MODEL)

    def read(rgb: Rgb) -> list[str]:
        result, _ = engine(np.ascontiguousarray(rgb[..., ::-1]), use_cls=False)
        return [str(r[1]) for r in result or []]

    return read


def int8_reader(det_xml: Path | None, rec_xml: Path) -> Reader:
    """``LocalOcr`` (same pre/post-processing) with the quantized networks (the FP32 detector
    where ``det_xml`` is None); the charset comes from the ONNX file, an IR carries none."""
    from workers.ocr.local import LocalOcr

    ocr = LocalOcr(det_xml, rec_xml, precision="f32")
    return lambda rgb: [line.text for line in ocr.read(rgb)]


def run_all(readers: dict[str, Reader], images: Sequence[Rgb]) -> dict[str, Run]:
    runs = {name: Run() for name in readers}
    for read in readers.values():
        read(images[0])
    for i, rgb in enumerate(images):
        for name, read in readers.items():
            start = time.perf_counter()
            lines = read(rgb)
            runs[name].seconds.append(time.perf_counter() - start)
            runs[name].lines.append(lines)
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{len(images)} images", file=sys.stderr, flush=True)
    return runs


# --- reporting --------------------------------------------------------------------------------


def score_run(samples: Samples, lines: Sequence[Sequence[str]]) -> Scores:
    """Both ways per image; (a) is checked against ``CerCounter``, the metrics module's CER."""
    counter, out = CerCounter(), []
    for s, hyp in zip(samples, lines, strict=True):
        truth = [line.text for line in s.lines]
        counter.add(truth, hyp, s.lang)
        out.append(both_ways(truth, hyp, s.lang))
    assert abs(counter.cer() - sum_up(out)["a"].cer) < 1e-12
    return out


def groups(samples: Samples, key: Callable[[evalset.Sample], str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        out.setdefault(key(s), []).append(i)
    return out


def by_lang(samples: Samples) -> dict[str, list[int]]:
    return {**groups(samples, lambda s: s.lang), "all": list(range(len(samples)))}


def table(samples: Samples, scores: Scores) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, pick in by_lang(samples).items():
        t = sum_up(scores, pick)
        out[key] = {"images": t["a"].images, "chars_a": t["a"].chars, "chars_b": t["b"].chars}
        out[key] |= {f"{f}_{w}": getattr(t[w], f) for f in ("cer", "line_exact") for w in WAYS}
    return out


def agreement(samples: Samples, ours: Run, ref: Run) -> dict[str, dict[str, float]]:
    """Our lines against the reference's: pooled over lines ((a), and (b) modulo spaces), the
    mean of ``metrics.line_agreement`` per image, and the share of images that agree fully."""
    triples = list(zip(samples, ours.lines, ref.lines, strict=True))
    scores = [both_ways(r, o, s.lang) for s, o, r in triples]
    per = [line_agreement(o, r, s.lang) for s, o, r in triples]
    out = {}
    for key, pick in by_lang(samples).items():
        t = sum_up(scores, pick)
        out[key] = {"lines_a": t["a"].line_exact, "lines_b": t["b"].line_exact,
                    "image_mean": statistics.fmean(per[i] for i in pick),
                    "images_identical": statistics.fmean(per[i] == 1.0 for i in pick)}  # fmt: skip
    return out


PROPERTIES: dict[str, Callable[[evalset.Sample], str]] = {
    "font": lambda s: f"{s.lang} {s.font}", "size": lambda s: f"{s.lang} {size_bucket(s.size)}",
    "format": lambda s: f"{s.lang} {'png' if s.jpeg_quality is None else 'jpeg'}",
    "blur": lambda s: f"{s.lang} {'blurred' if s.blur else 'sharp'}",
    "lines": lambda s: f"{s.lang} {len(s.lines)}",
}  # fmt: skip


def breakdown(samples: Samples, scores: Scores) -> dict[str, dict[str, dict[str, float]]]:
    """CER (a) and (b) by font, glyph size, image format, blur and line count."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, key in PROPERTIES.items():
        for k, pick in sorted(groups(samples, key).items()):
            t = sum_up(scores, pick)
            cell = {"images": t["a"].images, "cer_a": t["a"].cer, "cer_b": t["b"].cer}
            out.setdefault(name, {})[k] = cell
    return out


def worst(samples: Samples, runs: dict[str, Run], scores: Scores, way: str) -> list[Any]:
    """The 10 images of highest CER ``way`` (ties: the other way), with ours and rapidocr."""
    other = "b" if way == "a" else "a"
    order = sorted(range(len(samples)), key=lambda i: (-scores[i][way].cer, -scores[i][other].cer))
    rows = []
    for i in order[:10]:
        row = {k: v for k, v in asdict(samples[i]).items() if k != "lines"}
        row |= {"cer_a": scores[i]["a"].cer, "cer_b": scores[i]["b"].cer}
        row |= {"truth": [line.text for line in samples[i].lines]}
        rows.append(row | {n: runs[n].lines[i] for n in (OURS, REF) if n in runs})
    return rows


def versions() -> dict[str, str]:
    return {"python": platform.python_version()} | package_versions(PACKAGES)


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def print_tables(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    print("CER (a): metrics.normalize as is (spaces between Latin words count; a line break is a")
    print("character). CER (b): all whitespace ignored (PaddleOCR's convention). line exact (a)")
    print("and (b) alike. Rates pool characters / lines over the images.\n")
    head = ("system", "lang", "images", "CER (a)", "CER (b)", "line (a)", "line (b)")
    print(f"{head[0]:<16}{head[1]:<5}" + "".join(f"{h:>10}" for h in head[2:]))
    for name, rows in tables.items():
        for key, r in rows.items():
            cells = [pct(r[f"{f}_{w}"]) for f in ("cer", "line_exact") for w in WAYS]
            print(f"{name:<16}{key:<5}{int(r['images']):>10}" + "".join(f"{c:>10}" for c in cells))
    for lang, limit in TARGET_CER.items():
        got = [(w, tables[OURS][lang][f"cer_{w}"]) for w in WAYS]
        verdicts = [f"({w}) {pct(c)} {'PASS' if c <= limit else 'FAIL'}" for w, c in got]
        print(f"target: ours CER {lang} <= {limit:.0%}: " + "; ".join(verdicts))


def print_agreement(name: str, other: str, agree: dict[str, dict[str, float]]) -> None:
    print(f"\nagreement, {name} lines vs {other} lines (target >= {TARGET_AGREEMENT:.0%}):")
    for key, r in agree.items():
        print(f"  {key:<4} lines (a) {pct(r['lines_a'])}, modulo spaces (b) {pct(r['lines_b'])};"
              f" mean per image {pct(r['image_mean'])}; images identical "
              f"{pct(r['images_identical'])}")  # fmt: skip


def int8_summary(samples: Samples, runs: dict[str, Run], tables: Any, times: Any) -> Any:
    out = {}
    for name in (n for n in runs if n.startswith("int8")):
        delta = {f"{w} {k}": tables[name][k][f"cer_{w}"] - tables[OURS][k][f"cer_{w}"]
                 for w in WAYS for k in tables[OURS]}  # fmt: skip
        within = all(abs(v) <= MAX_DELTA for k, v in delta.items() if k.startswith("a "))
        speed = times[OURS]["mean"] / times[name]["mean"]
        out[name] = {"delta_cer": delta, "within_1_point_a": within, "speedup_mean": speed,
                     "agreement_with_f32": agreement(samples, runs[name], runs[OURS])}  # fmt: skip
        print(f"\n{name}: CER delta vs ours f32, points: "
              + ", ".join(f"({k.replace(' ', ') ')} {100 * v:+.2f}" for k, v in delta.items())
              + f"; (a) within 1 point: {within}; mean read {speed:.2f}x as fast")  # fmt: skip
        print_agreement(name, "ours f32", out[name]["agreement_with_f32"])
    return out


def print_failures(samples: Samples, runs: dict[str, Run], scores: Scores) -> dict[str, Any]:
    by = breakdown(samples, scores)
    print("\nours, CER (a) / (b) % by image property (images):")
    for name, rows in by.items():
        cells = [f"{k} ({int(g['images'])}) {100 * g['cer_a']:.2f}/{100 * g['cer_b']:.2f}"
                 for k, g in rows.items()]  # fmt: skip
        print(f"  {name}: " + "; ".join(cells))
    ops: Counter[str] = Counter()
    for s, hyp in zip(samples, runs[OURS].lines, strict=True):
        ops += edit_ops(normalize(s.text, s.lang), normalize("\n".join(hyp), s.lang))
    print("\nours, most frequent edits on the (a) texts (truth→read; ∅ none, ␠ space, ⏎ break): "
          + ", ".join(f"{k} {n}" for k, n in ops.most_common(25)))  # fmt: skip
    out: dict[str, Any] = {"breakdown_ours": by, "edits_ours": dict(ops.most_common(60))}
    for way in WAYS:
        out[f"worst_{way}"] = worst(samples, runs, scores, way)
        print(f"\nworst 10 images by our CER ({way}):")
        for w in out[f"worst_{way}"]:
            fmt = "png" if w["jpeg_quality"] is None else f"jpeg q{w['jpeg_quality']}"
            print(f"- {w['file']} CER (a) {pct(w['cer_a'])}, (b) {pct(w['cer_b'])}; {w['font']}"
                  f" {w['size']} px, rot {w['rotation']:+.1f}°, {fmt}, noise {w['noise']}, "
                  f"blur {w['blur']}")  # fmt: skip
            for label in ("truth", OURS, REF):
                if label in w:
                    print(f"    {label:<9}{' | '.join(w[label])}")
    return out


@click.command(help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True})
@click.option("--per-lang", type=int, default=150, help="evaluation images per language")
@click.option("--precision", type=click.Choice(["f32", "bf16"]), default="f32", help="ours")
@click.option("--no-reference", is_flag=True, help="skip rapidocr (no agreement figures)")
@click.option("--int8", is_flag=True, help="also quantize (NNCF) and evaluate INT8 networks")
@click.option("--uncapped", is_flag=True, help="also run ours without the 1600 px detector cap")
@click.option("--numerics", is_flag=True, help="also rapidocr's pipeline on OpenVINO (agreement)")
def main(
    per_lang: int, precision: str, no_reference: bool, int8: bool, uncapped: bool, numerics: bool
) -> None:
    started = time.perf_counter()
    manifest = evalset.build_evalset(evalset.default_dir(per_lang=per_lang), per_lang=per_lang)
    samples, packages = manifest.samples, versions()
    readers: dict[str, Reader] = {OURS: ours_reader(precision)}
    readers |= {f"{OURS} uncapped": ours_reader(precision, UNCAPPED)} if uncapped else {}
    readers |= {} if no_reference else {REF: reference_reader()}
    readers |= {REF_OV: reference_on_openvino_reader()} if numerics and not no_reference else {}
    quantized = quantize_int8(OUT / "ocr_int8") if int8 else {}
    if int8:
        det, rec = (Path(quantized[n]["xml"]) for n in ("det", "rec"))
        readers |= {"int8 rec": int8_reader(None, rec), "int8 det+rec": int8_reader(det, rec)}
    runs = run_all(readers, [load_rgb(manifest.path(s)) for s in samples])
    scores = {name: score_run(samples, run.lines) for name, run in runs.items()}
    tables = {name: table(samples, sc) for name, sc in scores.items()}
    print(f"\nOCR accuracy: {len(samples)} images, evaluation set {manifest.key}; ours = LocalOcr "
          f"{precision} (OpenVINO {packages['openvino']}); rapidocr = rapidocr_onnxruntime "
          f"{packages['rapidocr-onnxruntime']}, use_cls=False\n")  # fmt: skip
    print_tables(tables)
    ours_runs = [n for n in runs if n.startswith(OURS) or n == REF_OV] if REF in runs else []
    agree = {n: agreement(samples, runs[n], runs[REF]) for n in ours_runs}
    for name, a in agree.items():
        print_agreement(name, REF, a)
    times = {name: timing(run.seconds) for name, run in runs.items()}
    print(f"\nper-image read time, s (decoded RGB; readers interleaved image by image; a shared "
          f"{os.cpu_count()}-CPU machine, so noisy):")  # fmt: skip
    for name, t in times.items():
        print(f"  {name:<16} mean {t['mean']:.3f}  p50 {t['p50']:.3f}  p90 {t['p90']:.3f}")
    int8_out = {"quantization": quantized, **int8_summary(samples, runs, tables, times)}
    if int8:
        print(f"\nquantization: {json.dumps(quantized)}")
    failures = print_failures(samples, runs, scores[OURS])
    elapsed = time.perf_counter() - started
    print(f"\nwall time {elapsed:.0f} s")
    params = {"evalset_key": manifest.key, "evalset_dir": str(manifest.root),
              "evalset": manifest.params, "per_lang": per_lang, "precision": precision,
              "reference": not no_reference, "uncapped": uncapped, "int8": int8,
              "numerics": numerics,
              "packages": packages, "cpus": os.cpu_count()}  # fmt: skip
    per_image = {n: [{w: t.cer for w, t in row.items()} for row in sc] for n, sc in scores.items()}
    doc = {"params": params, "targets": {"cer": TARGET_CER, "agreement": TARGET_AGREEMENT},
           "results": tables, "agreement": agree, "timing": times, "int8": int8_out, **failures,
           "files": [s.file for s in samples], "lines": {n: r.lines for n, r in runs.items()},
           "per_image_cer": per_image, "wall_s": elapsed}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ocr_accuracy.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    print(f"wrote {OUT / 'ocr_accuracy.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
