"""Generated intent turns: held-out items share no template and no filler word with training."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache

import pytest

from workers.modeling import gen_intent
from workers.modeling.examples import INTENTS, TextExample

LANGS = ("zh", "en")
SIZES = {"train": 1500, "held": 600}
_SLOT = re.compile(r"\{[A-Z_]+\}")
_PUNCT = re.compile(r"[.,!?;:'\"]")


@cache
def generated(split: str, lang: str) -> tuple[TextExample, ...]:
    return tuple(gen_intent.generate_intents(split, SIZES[split], 13, lang))


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub("", text.lower()).split())


def leaks(values: Iterable[str], texts: Iterable[str], lang: str) -> dict[str, str]:
    """The ``values`` (3+ characters in English, 2+ in Chinese) found in ``texts``, with one text.

    English compares whole words, ignoring case and punctuation; Chinese plain substrings.
    Slots of raw templates are blanked, so ``{THANKS}`` is not the word "thanks".
    """
    lines = [_SLOT.sub("|", t) for t in texts]
    found = {}
    if lang == "en":
        joined = "\n".join(_norm(t) for t in lines)
        for v in (v for v in values if len(v) >= 3):
            m = re.search(rf"(?<!\w){re.escape(_norm(v))}(?!\w)", joined)
            if m:
                found[v] = joined[joined.rfind("\n", 0, m.start()) + 1 :].split("\n", 1)[0]
        return found
    for v in (v for v in values if len(v) >= 2):
        hit = next((t for t in lines if v.lower() in t.lower()), None)
        if hit is not None:
            found[v] = hit
    return found


def _values(pools: dict[str, tuple[str, ...]]) -> set[str]:
    return {v for vs in pools.values() for v in vs}


def _template_texts(lang: str, split: str) -> list[str]:
    return [t for label in INTENTS for _, t in gen_intent.templates(lang, label, split)]


@pytest.mark.parametrize("lang", LANGS)
def test_every_label_has_enough_templates(lang: str) -> None:
    for label in INTENTS:
        assert len(gen_intent.templates(lang, label, "train")) >= 16, label
        assert len(gen_intent.templates(lang, label, "held")) >= 6, label


@pytest.mark.parametrize("lang", LANGS)
def test_held_groups_are_never_train_groups(lang: str) -> None:
    train_ids = gen_intent.template_ids(lang, "train")
    held_ids = gen_intent.template_ids(lang, "held")
    assert train_ids and held_ids and not train_ids & held_ids
    # every template is used, and no item comes from the other side
    assert {x.group for x in generated("train", lang)} == train_ids
    assert {x.group for x in generated("held", lang)} == held_ids


@pytest.mark.parametrize("lang", LANGS)
def test_filler_vocabularies_are_disjoint(lang: str) -> None:
    train = gen_intent.filler_pools(lang, "train")
    held = gen_intent.filler_pools(lang, "held")
    assert train.keys() == held.keys() and all(train.values()) and all(held.values())
    assert not _values(train) & _values(held)
    assert not _values(gen_intent.number_formats(lang, "train")) & _values(
        gen_intent.number_formats(lang, "held")
    )


@pytest.mark.parametrize("lang", LANGS)
def test_templates_use_only_known_slots(lang: str) -> None:
    for split in ("train", "held"):
        known = (
            gen_intent.filler_pools(lang, split).keys()
            | gen_intent.number_formats(lang, split).keys()
        )
        for text in _template_texts(lang, split):
            assert set(re.findall(r"\{([A-Z_]+)\}", text)) <= known, text


@pytest.mark.parametrize("lang", LANGS)
def test_no_filler_word_crosses_the_split(lang: str) -> None:
    train_vals = _values(gen_intent.filler_pools(lang, "train"))
    held_vals = _values(gen_intent.filler_pools(lang, "held"))
    train_texts = [x.text for x in generated("train", lang)] + _template_texts(lang, "train")
    held_texts = [x.text for x in generated("held", lang)] + _template_texts(lang, "held")
    assert leaks(held_vals, train_texts, lang) == {}
    assert leaks(train_vals, held_texts, lang) == {}


@pytest.mark.parametrize("lang", LANGS)
def test_no_text_is_on_both_sides(lang: str) -> None:
    train = {x.text for x in generated("train", lang)}
    assert not train & {x.text for x in generated("held", lang)}


@pytest.mark.parametrize("lang", LANGS)
def test_labels_are_balanced_and_fields_filled(lang: str) -> None:
    items = generated("held", lang)
    assert Counter(x.label for x in items) == {label: 40 for label in INTENTS}
    odd = Counter(x.label for x in gen_intent.generate_intents("train", 37, 1, lang))
    assert set(odd) == set(INTENTS) and max(odd.values()) - min(odd.values()) <= 1
    for x in items:
        assert x.lang == lang and x.source == "generated-intent" and x.text.strip()
        assert x.group.startswith(f"{lang}:{x.label}:") and "{" not in x.text


def test_generation_is_seeded() -> None:
    a = gen_intent.generate_intents("train", 60, 5, "en")
    assert a == gen_intent.generate_intents("train", 60, 5, "en")
    assert a != gen_intent.generate_intents("train", 60, 6, "en")
    assert a != gen_intent.generate_intents("train", 60, 5, "zh")


def test_surface_noise_lowercases_drops_punctuation_and_misspells() -> None:
    rng = random.Random(3)
    text = "Please cancel the order, I'm sure."
    seen = {gen_intent.surface_noise(text, "en", rng) for _ in range(300)}
    assert text in seen
    assert text.lower() in seen
    assert "Please cancel the order Im sure" in seen
    assert any(w in t.split() for t in seen for w in ("pls", "plz", "cancle", "teh", "oder"))
    zh = {gen_intent.surface_noise("你好，在吗？", "zh", rng) for _ in range(100)}
    assert {"你好，在吗？", "你好，在吗", "你好,在吗?"} <= zh


def test_bad_split_or_language_is_refused() -> None:
    with pytest.raises(ValueError):
        gen_intent.generate_intents("test", 10, 1, "en")
    with pytest.raises(ValueError):
        gen_intent.template_ids("fr", "train")


def test_the_leak_check_finds_a_planted_leak() -> None:
    assert leaks({"Dr. Patel", "UPS"}, ["see dr patel soon", "groups of ten"], "en") == {
        "Dr. Patel": "see dr patel soon"
    }
    assert leaks({"头疼", "喂"}, ["我头疼", "喂你好"], "zh") == {"头疼": "我头疼"}
    assert leaks({"thanks"}, ["{THANKS}, all good"], "en") == {}
