"""The OCR evaluation set: held-out text, geometry of the rendered lines, manifest and cache."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workers.ocr import evalset as ev

PER_LANG = 5  # PATTERN puts two support images among five
CJK = re.compile(r"[\u4e00-\u9fff]")
ZH_PHONE = re.compile(r"(\+86[ -])?1[3-9]\d[ -]?\d{4}[ -]?\d{4}|0\d{2}-\d{4} \d{4}|400-\d{3}-\d{4}")
EN_PHONE = re.compile(r"(\+1 )?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}")
ORDER = re.compile(r"SO-2026-\d{6}|#[A-Z]{2}\d-\d{5}|ORD-\d{8}|DD2025\d{9}|TB-\d{5}-\d{2}|W\d{9}")


@pytest.fixture(scope="module")
def fonts() -> Path:
    try:
        return ev.font_dir()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("fonts not fetched (bash deploy/fonts/fetch.sh)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, fonts: Path) -> ev.Manifest:
    return ev.build_evalset(tmp_path_factory.mktemp("ocr-eval"), per_lang=PER_LANG, fonts=fonts)


def test_both_languages_and_all_sources(built: ev.Manifest) -> None:
    assert [len(built.by_lang(lang)) for lang in ev.LANGS] == [PER_LANG, PER_LANG]
    assert {s.source for s in built.samples} == set(ev.PATTERN)
    assert all(CJK.search(s.text) for s in built.by_lang("zh"))
    assert not any(CJK.search(s.text) for s in built.by_lang("en"))
    for s in built.samples:
        assert s.font in ev.FONTS[s.lang] and 1 <= len(s.lines) <= 4
        assert ev.SIZE_RANGE[0] <= s.size <= ev.SIZE_RANGE[1]
        assert s.text == "\n".join(line.text for line in s.lines) and all(s.lines)


def test_support_truths_carry_phone_and_order_numbers(built: ev.Manifest, fonts: Path) -> None:
    support = [s for s in built.samples if s.source == "support"]
    assert support and all(re.search(r"\d{4}", s.text) for s in support)
    for lang, phone in (("zh", ZH_PHONE), ("en", EN_PHONE)):
        groups = itertools.islice(ev.sentences(lang, "support", ev.SEED, fonts), 40)
        texts = [t for g in groups for t in g]
        assert sum(bool(phone.search(t)) for t in texts) >= 8, lang
        assert sum(bool(ORDER.search(t)) for t in texts) >= 5, lang


def test_truths_are_held_out_from_the_build(built: ev.Manifest) -> None:
    from workers.modeling import gen_clinical, taskdata

    note = gen_clinical.generate_notes("train", 1, taskdata.SEED, "zh")[0]
    assert set(ev.split_sentences(note.text, "zh")) <= ev.build_sentences("zh")
    for s in built.samples:
        seen = ev.build_sentences(s.lang)
        assert not any(line.text in seen for line in s.lines if len(line.text) > 12)


def test_deterministic_for_a_seed(built: ev.Manifest, tmp_path: Path, fonts: Path) -> None:
    again = ev.build_evalset(tmp_path, per_lang=PER_LANG, fonts=fonts)
    assert again.samples == built.samples and again.key == built.key
    for a, b in zip(built.samples, again.samples, strict=True):
        assert built.path(a).read_bytes() == again.path(b).read_bytes()
    other = ev.build_evalset(tmp_path / "other", per_lang=2, seed=ev.SEED + 1, fonts=fonts)
    assert other.key != built.key and other.samples[0].text != built.samples[0].text


def test_rotation_within_bounds(built: ev.Manifest) -> None:
    angles = [s.rotation for s in built.samples]
    assert all(abs(a) <= ev.MAX_ROTATION for a in angles)
    assert len(set(angles)) > 1


def test_degradations_recorded(built: ev.Manifest) -> None:
    for s in built.samples:
        assert 0.0 <= s.noise <= 7.0 and 0.0 <= s.blur <= 0.8
        if s.jpeg_quality is None:
            assert s.file.endswith(".png")
        else:
            assert ev.JPEG_RANGE[0] <= s.jpeg_quality <= ev.JPEG_RANGE[1]
            assert s.file.endswith(".jpg")
        with Image.open(built.path(s)) as img:
            assert img.format == ("PNG" if s.jpeg_quality is None else "JPEG")


def test_boxes_inside_the_image_and_cover_the_ink(built: ev.Manifest) -> None:
    for s in built.samples:
        with Image.open(built.path(s)) as img:
            gray = img.convert("L")
        w, h = gray.size
        mask = Image.new("L", gray.size)
        for line in s.lines:
            x0, y0, x1, y1 = line.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert all(-1 <= x <= w + 1 and -1 <= y <= h + 1 for x, y in line.quad)
            ImageDraw.Draw(mask).polygon(list(line.quad), fill=255)
        ink = np.asarray(gray) < 120
        inside = ink & (np.asarray(mask) > 0)
        assert ink.any() and inside.sum() / ink.sum() > 0.98, s.file


def test_manifest_round_trip_and_cache_reuse(
    built: ev.Manifest, fonts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ev.load_manifest(built.root) == built
    assert ev.current(built.root, built.key)
    stamps = {s.file: built.path(s).stat().st_mtime_ns for s in built.samples}

    def no_render(*args: object) -> None:
        raise AssertionError("rebuilt although the key matched")

    monkeypatch.setattr(ev, "_images", no_render)
    assert ev.build_evalset(built.root, per_lang=PER_LANG, fonts=fonts) == built
    assert {s.file: built.path(s).stat().st_mtime_ns for s in built.samples} == stamps


def test_a_new_key_replaces_the_old_set(tmp_path: Path, fonts: Path) -> None:
    first = ev.build_evalset(tmp_path, per_lang=3, fonts=fonts)
    second = ev.build_evalset(tmp_path, per_lang=2, fonts=fonts)
    assert second.key != first.key and not ev.current(tmp_path, first.key)
    images = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".jpg", ".png"))
    assert images == sorted(s.file for s in second.samples)
    assert ev.default_dir(per_lang=2, cache_root=tmp_path).name == second.key


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("zh", "现病史：缘于3个月前劳累后出现头痛，部位在颞部，同时有恶心呕吐，"
               "联系电话+86 138 1234 5678，订单号SO-2026-104233，已退款。"),
        ("zh", "现病史：2天前曾在长葛市第一人民医院完善视网膜动脉压测定，"
               "给予复方黄体酮注射液治疗。"),
        ("zh", "邮箱" + "a" * 70 + "@example.com，请回复。"),
        ("en", "Your refund of $1,249.99 for order #A7X-22913 was issued on March 15, 2026; "
               "please call (415) 555-0134 if it has not arrived within five business days."),
    ],
)  # fmt: skip
def test_wrap_fits_lines_and_keeps_numbers_whole(lang: str, text: str) -> None:
    lines = ev.wrap(text, lang)
    assert len(lines) > 1
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    for line in lines:
        width = sum(0.5 if ord(c) < 0x2E80 else 1.0 for c in line) if lang == "zh" else len(line)
        hangs = lang == "zh" and line[-1] in "，。、,"  # hanging punctuation: one past the limit
        assert width <= ev.LINE_LIMIT[lang] + hangs
        assert line[0] not in "，。、,.;" and line == line.strip()
    for number in ("+86 138 1234 5678", "SO-2026-104233", "#A7X-22913", "(415) 555-0134"):
        assert number not in text or any(number in line for line in lines)
