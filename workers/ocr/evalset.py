"""The offline OCR evaluation set (issue 19): held-out zh/en text rendered into degraded images.

Text per language, by image (clinical, support, clinical, support, intent: 40/40/20): sentences
of notes from :mod:`workers.modeling.gen_clinical`, turns from :mod:`workers.modeling.gen_intent`,
and this module's support messages, each with a phone number (``138 1234 5678``, ``+86-...``,
``(415) 555-0134``), an order, tracking or case number (``SO-2026-104233``, ``#A7X-22913``; random
letters skip ``I`` and ``O``), an amount or a date. *Held out*: both generators give their
``held`` split (templates and names the build never trains on) at seeds derived from
:data:`SEED`, not the build's ``taskdata.SEED``; then every sentence the build generates (train
and held notes and turns at its seed and sizes; ~4 s to regenerate) is dropped, and so is one a
font of its language cannot draw. Lines hold at most 28 wide characters (zh; ASCII counts half,
and an ASCII run such as a number is not split) or 60 characters (en, at word breaks).

Images: 1-4 lines, a font of the language (WenQuanYi Zen/Micro Hei, AR PL UMing; DejaVu,
Liberation) at 18-40 px, dark ink on a light background, margins, a rotation uniform in +-5 deg
(the canvas grows; a line's ``quad`` is its rotated corners, ``box`` their bounds), sometimes a
slight blur, Gaussian noise, then JPEG at quality 40-95 or (one in five) PNG. Pillow's basic
layout (no libraqm) makes a seed give the same bytes wherever Pillow is the same version.
``build_evalset`` writes images, ``manifest.jsonl`` and ``params.json`` (parameters and key).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FORMAT = 1
SEED = 1919  # the build's generators run at taskdata.SEED (13)
LANGS = ("zh", "en")
PATTERN = ("clinical", "support", "clinical", "support", "intent")  # source of image i
FONTS = {
    "zh": ("wqy-zenhei.ttc", "wqy-microhei.ttc", "uming.ttc"),
    "en": ("DejaVuSans.ttf", "DejaVuSerif.ttf", "LiberationSans-Regular.ttf",
           "LiberationSerif-Regular.ttf", "LiberationMono-Regular.ttf"),
}  # fmt: skip
LINE_LIMIT = {"zh": 28.0, "en": 60.0}
SIZE_RANGE = (18, 40)
MAX_ROTATION = 5.0
JPEG_RANGE = (40, 95)
MANIFEST, PARAMS = "manifest.jsonl", "params.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
_MODELING = REPO_ROOT / "workers" / "modeling"
_KEY_SOURCES = (Path(__file__), *(_MODELING / f"{n}.py" for n in (
    "gen_clinical", "clinical_templates", "clinical_formats", "gen_intent")),
    *(_MODELING / "data" / f"intent_{k}_{g}.json" for k in ("templates", "fillers") for g in LANGS),
)  # fmt: skip
Box = tuple[int, int, int, int]
Drawn = tuple[Image.Image, dict[str, Any]]
Rendered = tuple["Sample", Image.Image]
Quad = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    box: Box  # x0, y0, x1, y1 in image pixels (bounds of ``quad``, clipped to the image)
    quad: Quad  # the line's corners after rotation: top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True, slots=True)
class Sample:
    file: str
    lang: str
    source: str
    font: str
    size: int
    rotation: float  # degrees, counter-clockwise
    jpeg_quality: int | None  # None: PNG
    noise: float  # standard deviation of the Gaussian noise, in grey levels
    blur: float  # Gaussian blur radius; 0 for none
    lines: tuple[Line, ...]

    @property
    def text(self) -> str:
        """The ground truth: the lines in reading order, joined with newlines."""
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class Manifest:
    root: Path
    key: str
    params: dict[str, Any]
    samples: tuple[Sample, ...]

    def path(self, sample: Sample) -> Path:
        return self.root / sample.file

    def by_lang(self, lang: str) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.lang == lang)


_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_SLOT = re.compile(r"\{([A-Z]+)\}")
_SUPPORT = {
    "zh": (
        "您好，我的订单号是{ORDER}，到现在还没有发货。", "我的手机号是{PHONE}，麻烦尽快回电。",
        "订单号 {ORDER}，金额{AMOUNT}，{DATE}下单。", "快递单号{TRACK}，预计{DATE}送达。",
        "如有疑问请拨打客服电话{PHONE}，工作时间9:00-18:00。", "订单{ORDER}已退款{AMOUNT}。",
        "退款{AMOUNT}已于{DATE}原路退回，请注意查收。", "收件人电话改成{PHONE}，订单{ORDER}。",
        "验证码{CODE}，5分钟内有效，请勿泄露给他人。", "工单{CASE}已受理，回访电话{PHONE}。",
        "尾号{LAST}的银行卡于{DATE} {TIME}支付{AMOUNT}。",
        "订单{ORDER}的电子发票将在{N}个工作日内发送。",
        "您预约的{DATE} {TIME}门诊已确认，改期请致电{PHONE}。",
    ),
    "en": (
        "Hi, my order {ORDER} still hasn't shipped.", "Can you call me back on {PHONE}?",
        "Order {ORDER} was charged {AMOUNT} on {DATE}.", "Your verification code is {CODE}.",
        "Please call us at {PHONE} between 9am and 5pm.", "I was billed {AMOUNT} twice on {DATE}.",
        "Your refund of {AMOUNT} for order {ORDER} was issued on {DATE}.",
        "Tracking number {TRACK}, estimated delivery {DATE}.",
        "Card ending in {LAST} was declined for {AMOUNT} at {TIME}.",
        "Case {CASE}: order {ORDER}, callback number {PHONE}.",
        "Appointment confirmed for {DATE} at {TIME}. To reschedule call {PHONE}.",
        "Please update the phone on my account to {PHONE}.",
    ),
}  # fmt: skip
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
# ``9`` a digit, ``N`` a digit but 0, ``A`` a letter but I or O
_FORMATS: dict[str, dict[str, tuple[str, ...]]] = {
    "zh": {
        "PHONE": ("13N 9999 9999", "15N99999999", "+86 18N 9999 9999", "+86-13N-9999-9999",
                  "17N-9999-9999", "010-N999 9999", "400-N99-9999"),
        "ORDER": ("SO-2026-999999", "DD2025999999999", "AA9-99999", "N9999999999999",
                  "TB-N9999-99"),
        "TRACK": ("SFN999999999999", "YTN999999999999", "JTN999999999999"),
        "CASE": ("CS-N99999", "AN999999", "#N9999"),
    },
    "en": {
        "PHONE": ("(N99) N99-9999", "N99-N99-9999", "+1 N99 N99 9999", "+1 (N99) N99-9999",
                  "N99.N99.9999", "(N99) 555-9999"),
        "ORDER": ("#AA9-99999", "SO-2026-999999", "ORD-N9999999", "WN99999999", "#N999-9999-99"),
        "TRACK": ("1ZAAA9999999999999", "9400 9999 9999 9999 9999 99", "TBAN99999999999"),
        "CASE": ("CS-N99999", "AN999999", "#N9999"),
    },
}  # fmt: skip


def _pattern(fmt: str, rng: random.Random) -> str:
    pick = {"9": "0123456789", "N": "123456789", "A": _LETTERS}
    return "".join(rng.choice(pick[c]) if c in pick else c for c in fmt)


def _slot(name: str, lang: str, r: random.Random) -> str:
    """A value for ``{name}`` of a support template."""
    if name in _FORMATS[lang]:
        return _pattern(r.choice(_FORMATS[lang][name]), r)
    x, y = round(r.uniform(3, 5000), 2), r.randint(2024, 2027)
    m, d = r.randint(1, 12), r.randint(1, 28)
    zh, month = lang == "zh", _MONTHS[m - 1]
    choices = {
        "AMOUNT": (f"¥{x:.2f}", f"{x:.2f}元", f"RMB {x:,.2f}", f"{int(x)}元") if zh else
                  (f"${x:,.2f}", f"USD {x:,.2f}", f"€{x:.2f}", f"£{x:.2f}", f"${int(x)}"),
        "DATE": (f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d}", f"{m}月{d}日", f"{y}/{m}/{d}")
                if zh else (f"{month} {d}, {y}", f"{m:02d}/{d:02d}/{y}", f"{month[:3]} {d}"),
        "TIME": (f"{r.randint(8, 21):02d}:{r.choice((0, 15, 30, 45)):02d}",) if zh else
                (f"{r.randint(1, 12)}:{r.randint(0, 59):02d} {r.choice(('AM', 'PM'))}",),
        "CODE": (_pattern("999999", r),), "LAST": (_pattern("9999", r),),
        "N": (str(r.randint(2, 7)),),
    }  # fmt: skip
    return r.choice(choices[name])


def split_sentences(text: str, lang: str) -> list[str]:
    """``text`` cut after sentence-final punctuation (the unit the held-out check compares)."""
    pieces = re.split(r"(?<=[。！？；])" if lang == "zh" else r"(?<=[.!?;])\s+(?=[A-Z])", text)
    return [p.strip() for p in pieces if p.strip()]


@cache
def build_sentences(lang: str) -> frozenset[str]:
    """Every sentence the model build generates for ``lang`` (train and held, its seed)."""
    from workers.modeling import gen_clinical, gen_intent, taskdata

    seed, sizes = taskdata.SEED, taskdata.SIZES
    out: set[str] = set()
    for split in ("train", "held"):
        for note in gen_clinical.generate_notes(split, sizes[f"notes_{split}"], seed, lang):
            out.update(split_sentences(note.text, lang))
        for turn in gen_intent.generate_intents(split, sizes[f"intent_{split}"], seed, lang):
            out.add(turn.text.strip())
    return frozenset(out)


def _raw(lang: str, source: str, seed: int) -> Iterator[list[str]]:
    """Batches of sentences from one source; a batch stays together (one note's sentences)."""
    from workers.modeling import gen_clinical, gen_intent

    rng = random.Random(f"ocr-eval/support/{lang}/{seed}")
    deck: list[str] = []
    for batch in range(1_000_000):
        sub_seed = seed * 1000 + batch
        if source == "clinical":
            for note in gen_clinical.generate_notes("held", 20, sub_seed, lang):
                yield split_sentences(note.text, lang)
        elif source == "intent":
            yield [t.text.strip() for t in gen_intent.generate_intents("held", 30, sub_seed, lang)]
        else:  # every template once, in a new order each round
            deck = deck or rng.sample(_SUPPORT[lang], len(_SUPPORT[lang]))
            yield [_SLOT.sub(lambda m: _slot(m.group(1), lang, rng), deck.pop())]


def sentences(lang: str, source: str, seed: int, fonts: Path) -> Iterator[list[str]]:
    """Held-out sentence groups of ``source``: none the build makes, all drawable by each font."""
    seen, drawable = build_sentences(lang), _drawable(fonts, lang)
    for group in _raw(lang, source, seed):
        kept = [s for s in group if s not in seen and drawable(s)]
        if kept:
            yield kept


_NO_START = frozenset("，。；：、！？）》”,.;:!?)")  # never the first character of a line


def _width(ch: str) -> float:
    return 0.5 if ord(ch) < 0x2E80 else 1.0


def wrap(sentence: str, lang: str) -> list[str]:
    """``sentence`` as lines: at word breaks (en); at characters, not inside an ASCII run (zh),
    a closing punctuation mark hanging past the limit rather than opening a line."""
    limit = LINE_LIMIT[lang]
    if lang == "en":
        return textwrap.wrap(sentence, width=int(limit), break_on_hyphens=False)
    runs = re.findall(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?|.", sentence)
    lines, cur, n = [], "", int(limit * 2)
    for tok in (run[i : i + n] for run in runs for i in range(0, len(run), n)):
        if cur and sum(map(_width, cur + tok)) > limit and tok not in _NO_START:
            cut = max((i + 1 for i, c in enumerate(cur) if c in "，。；：、,;"), default=0)
            cut = cut if cut >= 0.6 * len(cur) else len(cur)
            lines.append(cur[:cut])
            cur = cur[cut:].lstrip()
        cur += tok
    return [s.strip() for s in [*lines, cur] if s.strip()]


def font_dir() -> Path:
    """The font cache of ``deploy/fonts/fetch.sh`` (it fetches once; INFERSTREAM_FONTS wins)."""
    cmd = ["bash", str(REPO_ROOT / "deploy" / "fonts" / "fetch.sh"), "--path"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return Path(str(out.stdout).strip().splitlines()[-1])


@cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@cache
def _glyph(path: Path, ch: str) -> bytes:
    im = Image.new("L", (64, 64))
    ImageDraw.Draw(im).text((12, 12), ch, font=_font(path, 32), fill=255)
    return im.tobytes()


def _drawable(fonts: Path, lang: str) -> Callable[[str], bool]:
    paths = [fonts / name for name in FONTS[lang]]  # a missing glyph draws as U+10FFFD would
    missing = {p: _glyph(p, "\U0010fffd") for p in paths}
    return lambda text: all(c.isspace() or _glyph(p, c) != missing[p] for p in paths for c in text)


def _rotate(
    img: Image.Image, corners: NDArray[np.float64], angle: float, bg: tuple[int, ...]
) -> tuple[Image.Image, NDArray[np.float64]]:
    """``img`` turned ``angle`` degrees counter-clockwise about its centre on a canvas grown to
    hold it, and the points ``corners`` (``[..., 2]``, pixels) carried along."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    w, h = img.size
    nw, nh = int(np.ceil(w * abs(c) + h * abs(s))), int(np.ceil(w * abs(s) + h * abs(c)))
    cx, cy, ncx, ncy = w / 2, h / 2, nw / 2, nh / 2
    inverse = tuple(float(v) for v in (c, -s, cx - c * ncx + s * ncy, s, c, cy - s * ncx - c * ncy))
    out = img.transform((nw, nh), Image.Transform.AFFINE, inverse, Image.Resampling.BICUBIC,
                        fillcolor=bg)  # fmt: skip
    return out, (corners - (cx, cy)) @ np.array([[c, -s], [s, c]]) + (ncx, ncy)


def render(lines: Sequence[str], font_path: Path, rng: random.Random) -> Drawn:
    """One degraded image of ``lines`` and what was drawn (size, rotation, noise, blur, lines)."""
    size = rng.randint(*SIZE_RANGE)
    font = _font(font_path, size)
    step, margin = round(size * rng.uniform(1.3, 1.7)), [rng.randint(8, 40) for _ in range(4)]
    indents = [rng.randint(0, size) if rng.random() < 0.3 else 0 for _ in lines]
    ends = [font.getbbox(t)[2:] for t in lines]  # right and bottom of each line's ink
    w = int(np.ceil(max(r + i for (r, _), i in zip(ends, indents, strict=True)))) + margin[0]
    h = int(np.ceil(max(b for _, b in ends))) + step * (len(lines) - 1) + margin[1]
    paper, grey = rng.randint(215, 255), rng.randint(0, 70)
    bg = tuple(min(255, paper + rng.randint(-6, 6)) for _ in range(3))
    img = Image.new("RGB", (w + margin[2], h + margin[3]), bg)
    draw, corners = ImageDraw.Draw(img), []
    for i, (text, indent) in enumerate(zip(lines, indents, strict=True)):
        xy = (margin[0] + indent, margin[1] + i * step)
        draw.text(xy, text, font=font, fill=tuple(max(0, grey + rng.randint(-9, 9)) for _ in bg))
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
        corners.append([(x0 - 2, y0 - 2), (x1 + 2, y0 - 2), (x1 + 2, y1 + 2), (x0 - 2, y1 + 2)])
    blur = round(rng.uniform(0.3, 0.8), 2) if rng.random() < 0.3 else 0.0
    img = img.filter(ImageFilter.GaussianBlur(blur)) if blur else img
    angle = round(rng.uniform(-MAX_ROTATION, MAX_ROTATION), 3)
    img, quads = _rotate(img, np.array(corners, dtype=np.float64), angle, bg)
    noise = round(rng.uniform(0.0, 7.0), 2)
    pixels = np.asarray(img, dtype=np.float32)
    grain = np.random.default_rng(rng.getrandbits(64)).normal(0.0, noise, pixels.shape[:2])
    img = Image.fromarray(np.clip(pixels + grain[..., None], 0, 255).round().astype(np.uint8))
    records = []
    for text, quad in zip(lines, quads.round(2), strict=True):
        lo, hi = np.floor(quad.min(0)).clip(0), np.minimum(np.ceil(quad.max(0)), img.size)
        box = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        records.append(Line(text, box, tuple((float(x), float(y)) for x, y in quad)))
    return img, {"size": size, "rotation": angle, "noise": noise, "blur": blur, "lines": records}


def params(per_lang: int, seed: int, fonts: Path) -> dict[str, Any]:
    """What the set depends on; its key names the cache folder."""
    digest = hashlib.sha256()
    for path in _KEY_SOURCES:
        digest.update(path.read_bytes())
    out: dict[str, Any] = {
        "format": FORMAT, "per_lang": per_lang, "seed": seed, "pillow": metadata.version("pillow"),
        "numpy": metadata.version("numpy"), "sources": digest.hexdigest()[:16],
        "fonts": {n: (fonts / n).stat().st_size for lang in LANGS for n in FONTS[lang]},
    }  # fmt: skip
    blob = json.dumps(out, sort_keys=True).encode()
    return {"key": hashlib.sha256(blob).hexdigest()[:12], **out}


def default_dir(*, per_lang: int = 150, seed: int = SEED, cache_root: Path | None = None) -> Path:
    """``<cache_root or ~/.cache/inferstream>/ocr-eval/<key>``."""
    root = cache_root or Path.home() / ".cache" / "inferstream"
    return root / "ocr-eval" / str(params(per_lang, seed, font_dir())["key"])


def load_manifest(dest: Path) -> Manifest:
    """The manifest a :func:`build_evalset` wrote into ``dest``."""
    info = json.loads((dest / PARAMS).read_text(encoding="utf-8"))
    samples = []
    for row in (dest / MANIFEST).read_text(encoding="utf-8").splitlines():
        d = json.loads(row)
        rows = [(x["text"], tuple(x["box"]), tuple(map(tuple, x["quad"]))) for x in d["lines"]]
        samples.append(Sample(**{**d, "lines": tuple(Line(*r) for r in rows)}))
    return Manifest(dest, info["key"], info, tuple(samples))


def current(dest: Path, key: str) -> bool:
    """Whether ``dest`` holds a complete set of key ``key``."""
    try:
        found = load_manifest(dest)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return found.key == key and all(found.path(s).is_file() for s in found.samples)


def _images(lang: str, per_lang: int, seed: int, fonts: Path) -> Iterator[Rendered]:
    streams = {src: sentences(lang, src, seed, fonts) for src in set(PATTERN)}
    for i in range(per_lang):
        rng = random.Random(f"ocr-eval/image/{lang}/{seed}/{i}")
        source, want = PATTERN[i % len(PATTERN)], rng.randint(1, 4)
        lines: list[str] = []
        while len(lines) < want:
            lines += [line for s in next(streams[source]) for line in wrap(s, lang)]
        start, font = rng.randrange(len(lines) - want + 1), rng.choice(FONTS[lang])
        img, meta = render(lines[start : start + want], fonts / font, rng)
        quality = None if rng.random() < 0.2 else rng.randint(*JPEG_RANGE)
        name = f"{lang}_{i:04d}.{'png' if quality is None else 'jpg'}"
        yield Sample(name, lang, source, font, jpeg_quality=quality, **meta), img


def _clear(dest: Path) -> None:
    """Remove an older set (params first: a half-built set never matches a key)."""
    for path in (dest / PARAMS, dest / MANIFEST, *dest.glob("[ze][hn]_[0-9]*.[jp][pn]g")):
        path.unlink(missing_ok=True)


def build_evalset(
    dest: Path, *, per_lang: int = 150, seed: int = SEED, fonts: Path | None = None
) -> Manifest:
    """Render ``per_lang`` images a language into ``dest``, or reuse what is there for this key."""
    fonts = fonts or font_dir()
    info = params(per_lang, seed, fonts)
    if current(dest, info["key"]):
        return load_manifest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _clear(dest)
    rows = []
    for lang in LANGS:
        for sample, img in _images(lang, per_lang, seed, fonts):
            if sample.jpeg_quality is None:
                img.save(dest / sample.file, "PNG")
            else:
                img.save(dest / sample.file, "JPEG", quality=sample.jpeg_quality)
            rows.append(json.dumps(asdict(sample), ensure_ascii=False))
    (dest / MANIFEST).write_text("\n".join(rows) + "\n", encoding="utf-8")
    (dest / PARAMS).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return load_manifest(dest)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.ocr.evalset", description=__doc__)
    parser.add_argument("--dest", type=Path, help="folder (default: the cache folder of the key)")
    parser.add_argument("--per-lang", type=int, default=150, help="images per language")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    fonts = font_dir()
    dest = args.dest or default_dir(per_lang=args.per_lang, seed=args.seed)
    reused = current(dest, params(args.per_lang, args.seed, fonts)["key"])
    manifest = build_evalset(dest, per_lang=args.per_lang, seed=args.seed, fonts=fonts)
    counts = ", ".join(f"{lang} {len(manifest.by_lang(lang))}" for lang in LANGS)
    print(f"{'reused' if reused else 'wrote'} {dest} (key {manifest.key}): {counts} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
