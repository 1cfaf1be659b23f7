import json
import textwrap
import unicodedata
from collections.abc import Callable

import orjson
import pytest

from tests.unit.provenance.conftest import LONG_TEXT
from workers.provenance import textmark
from workers.provenance.keys import KeyRing, ProvenanceKeyError

PID = "0123456789abcdef"


def reflow(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=37).replace(" ", "  ")


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "none": lambda t: t,
    "reflow": reflow,
    "nfc": lambda t: unicodedata.normalize("NFC", t),
    "nfd": lambda t: unicodedata.normalize("NFD", t),
    "nfkc": lambda t: unicodedata.normalize("NFKC", t),
    "orjson": lambda t: orjson.loads(orjson.dumps({"t": t}))["t"],
    "json_ascii": lambda t: json.loads(json.dumps(t, ensure_ascii=True)),
    "json_utf8": lambda t: json.loads(json.dumps(t, ensure_ascii=False)),
    "utf16": lambda t: t.encode("utf-16").decode("utf-16"),
    "upper": str.upper,
}


def hits(text: str, ring: KeyRing) -> set[tuple[str, str]]:
    return {(h.provenance_id, h.kid) for h in textmark.extract(text, ring)}


def test_selectors_are_one_byte_each_and_nfc_stable() -> None:
    chars = [textmark.to_selector(b) for b in range(256)]
    assert len(set(chars)) == 256
    assert [textmark.from_selector(c) for c in chars] == list(range(256))
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert all(unicodedata.normalize(form, "a" + c) == "a" + c for c in chars)
    assert textmark.from_selector("a") is None


def test_embed_strip_extract_round_trip(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    assert marked != LONG_TEXT and textmark.strip(marked) == LONG_TEXT
    found = textmark.extract(marked, ring)
    assert [(h.provenance_id, h.kid) for h in found] == [(PID, "k-2025")]
    assert found[0].count >= textmark.capacity(LONG_TEXT) // textmark.FRAME_LEN
    assert textmark.embed(marked, PID, "k-2025", ring) == marked  # re-marking is idempotent


def test_embed_replaces_an_earlier_mark(ring: KeyRing) -> None:
    first = textmark.embed(LONG_TEXT, PID, "k-2024", ring)
    second = textmark.embed(first, "fedcba9876543210", "k-2025", ring)
    assert hits(second, ring) == {("fedcba9876543210", "k-2025")}


def test_every_40_char_fragment_is_traced(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    # cut on visible-character positions so a fragment has 40 visible characters
    visible = [i for i, c in enumerate(marked) if textmark.from_selector(c) is None]
    for start in range(len(visible) - 40):
        fragment = marked[visible[start] : visible[start + 40]]
        assert len(textmark.strip(fragment)) == 40
        assert hits(fragment, ring) == {(PID, "k-2025")}, fragment


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_fragments_survive_transform(ring: KeyRing, name: str) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    for start in range(0, len(marked) - 120, 17):
        fragment = TRANSFORMS[name](marked[start : start + 120])
        assert hits(fragment, ring) == {(PID, "k-2025")}


def test_all_transforms_combined(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT + " Café déjà vu, naïve façade.", PID, "k-2025", ring)
    text = marked[30:130]
    for name in ("reflow", "nfc", "json_ascii", "orjson", "nfd", "nfkc"):
        text = TRANSFORMS[name](text)
    assert hits(text, ring) == {(PID, "k-2025")}


def test_decomposed_accents_are_not_split(ring: KeyRing) -> None:
    text = unicodedata.normalize("NFD", "Café crème brûlée, résumé naïveté élan ") * 2
    marked = textmark.embed(text, PID, "k-2025", ring)
    assert unicodedata.normalize("NFC", textmark.strip(unicodedata.normalize("NFC", marked))) == (
        unicodedata.normalize("NFC", text)
    )
    assert "e\u0301" in marked  # no selector between a letter and its accent...
    after = marked.split("e\u0301", 1)[1][0]
    assert textmark.from_selector(after) is not None  # ...but right after it
    assert hits(unicodedata.normalize("NFC", marked), ring) == {(PID, "k-2025")}


def test_emoji_cjk_and_digits_keep_their_own_selectors(ring: KeyRing) -> None:
    text = "Great job ❤️ and 👍🏽 on 1️⃣ plus 葛󠄀城 and #︎ 0︀ — ℹ️ see the notes above, friend."
    marked = textmark.embed(text, PID, "k-2025", ring)
    assert textmark.strip(marked) == text
    assert textmark.strip(text) == text
    assert not textmark.has_mark_symbols(text)
    assert textmark.extract(text, ring) == []
    assert hits(marked, ring) == {(PID, "k-2025")}


def test_mixed_sources_are_each_traced(ring: KeyRing) -> None:
    a = textmark.embed(LONG_TEXT, PID, "k-2024", ring)
    b = textmark.embed(LONG_TEXT, "fedcba9876543210", "k-2025", ring)
    quoted = f"User wrote: {a[:90]} ... and later {b[100:200]} end."
    assert hits(quoted, ring) == {(PID, "k-2024"), ("fedcba9876543210", "k-2025")}


def test_foreign_or_public_ring_finds_nothing(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    assert textmark.extract(marked, KeyRing.generate(["k-2025", "zz"])) == []
    with pytest.raises(ProvenanceKeyError):
        textmark.extract(marked, ring.public_only())


def test_tampered_symbol_breaks_only_its_copy(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    selectors = [i for i, c in enumerate(marked) if textmark.from_selector(c) is not None]
    where = selectors[3]
    value = textmark.from_selector(marked[where])
    assert value is not None
    broken = marked[:where] + textmark.to_selector(value ^ 1) + marked[where + 1 :]
    before = textmark.extract(marked, ring)[0].count
    after = textmark.extract(broken, ring)
    assert after and after[0].provenance_id == PID and after[0].count == before - 1
    one_copy = selectors[textmark.FRAME_LEN - 1] + 1
    assert hits(marked[:one_copy], ring) == {(PID, "k-2025")}
    assert textmark.extract(broken[:one_copy], ring) == []


def test_short_text_gets_a_partial_mark(ring: KeyRing) -> None:
    short = "Yes, sure."
    assert textmark.capacity(short) < textmark.MIN_TRACE_CARRIERS
    marked = textmark.embed(short, PID, "k-2025", ring)
    assert textmark.strip(marked) == short and textmark.extract(marked, ring) == []
    assert textmark.embed("", PID, "k-2025", ring) == ""


def test_bad_provenance_id(ring: KeyRing) -> None:
    for bad in ("xyz", "0123", "0123456789abcdef00"):
        with pytest.raises(ValueError):
            textmark.embed(LONG_TEXT, bad, "k-2025", ring)


CODE = "for i in range(1, 101):\n    if i % 15 == 0:\n        print('FizzBuzz')\n" * 3


def test_code_fragments_are_traced_through_punctuation(ring: KeyRing) -> None:
    marked = textmark.embed(CODE, PID, "k-2025", ring)
    visible = [i for i, c in enumerate(marked) if textmark.from_selector(c) is None]
    for start in range(0, len(visible) - 40, 3):
        fragment = marked[visible[start] : visible[start + 40]]
        assert hits(fragment, ring) == {(PID, "k-2025")}, textmark.strip(fragment)


def test_hard_wrap_between_letter_and_symbol(ring: KeyRing) -> None:
    marked = textmark.embed(LONG_TEXT, PID, "k-2025", ring)
    wrapped = "\n".join(marked[i : i + 7] for i in range(0, 160, 7))  # splits clusters
    assert hits(wrapped, ring) == {(PID, "k-2025")}
    assert (
        "".join(textmark.strip(wrapped).split("\n")) == LONG_TEXT[: len(LONG_TEXT_ASCII(wrapped))]
    )


def LONG_TEXT_ASCII(wrapped: str) -> str:
    return "".join(c for c in wrapped if c != "\n" and textmark.from_selector(c) is None)


def test_keycaps_and_digits_keep_their_meaning(ring: KeyRing) -> None:
    text = "Press #️⃣ then *️⃣ then 5️⃣ and 0︀ or 1︎ - call 555-0100 now, please do it today."
    for pid in (PID, "0e0f000e0f000e0f", "ffffffffffffffff"):
        marked = textmark.embed(text, pid, "k-2025", ring)
        assert textmark.strip(marked) == text
        for keycap in ("#️⃣", "*️⃣", "5️⃣", "0︀", "1︎"):
            assert keycap in marked
        for i, c in enumerate(marked[1:]):  # no digit gets VS1, VS15 or VS16 from the mark
            if marked[i].isdigit() and c in "\ufe00\ufe0e\ufe0f":
                assert marked[i : i + 2] in ("0︀", "1︎", "5️")


def test_digits_carry_symbols(ring: KeyRing) -> None:
    numbers = "Order 4471-2291 of 2024-03-15 at 10:45 cost 1,299.00 (ref 88-17-3301) " * 2
    marked = textmark.embed(numbers, PID, "k-2025", ring)
    assert hits(marked[: len(marked) // 2], ring) == {(PID, "k-2025")}


@pytest.mark.parametrize(
    ("text", "traceable"),
    [
        ("Bonjour, je voudrais réserver une table pour deux personnes ce soir.", True),
        ("Привет, как дела? Я хотел бы узнать больше о вашей компании.", True),
        ("안녕하세요, 오늘 날씨가 정말 좋네요. 산책하러 가실래요? 저는 좋아요.", True),
        ("こんにちは、今日はとても良い天気ですね。散歩に行きませんか、ぜひ。", True),
        ("नमस्ते, आप कैसे हैं? मैं आपकी कंपनी के बारे में और जानना चाहता हूँ।", True),
        ("你好，今天天气很好。我们一起去公园散步吧，好吗？我很高兴认识你。", False),
    ],
)
def test_scripts(ring: KeyRing, text: str, traceable: bool) -> None:
    marked = textmark.embed(text, PID, "k-2025", ring)
    assert textmark.strip(marked) == text
    assert unicodedata.normalize("NFC", textmark.strip(marked)) == unicodedata.normalize(
        "NFC", text
    )
    assert (hits(marked, ring) == {(PID, "k-2025")}) is traceable
    assert (textmark.capacity(text) >= textmark.MIN_TRACE_CARRIERS) is traceable


def test_cluster_that_composes_into_a_non_carrier_is_skipped(ring: KeyRing) -> None:
    text = "a <\u0338 b =\u0338 c " + LONG_TEXT
    marked = textmark.embed(text, PID, "k-2025", ring)
    assert "<\u0338 " in marked and "=\u0338 " in marked
    assert textmark.strip(unicodedata.normalize("NFC", marked)) == unicodedata.normalize(
        "NFC", text
    )


def test_filter_placeholders_stay_unmarked(ring: KeyRing) -> None:
    text = "Call me on [PHONE] about the refund, the card was [CARD] and it was charged twice."
    marked = textmark.embed(text, "00000000000000aa", "k-2025", ring)
    assert "[PHONE]" in marked and "[CARD]" in marked
    assert textmark.strip(marked) == text
    assert [h.provenance_id for h in textmark.extract(marked, ring)] == ["00000000000000aa"]
