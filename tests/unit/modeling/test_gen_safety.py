"""Generated safety turns: half unsafe; held-out items share no template and no filler word."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import pytest

from tests.unit.modeling.test_gen_intent import leaks
from workers.modeling import gen_safety
from workers.modeling.examples import SAFETY, TextExample

LANGS = ("zh", "en")
SIZES = {"train": 800, "held": 300}


@cache
def generated(split: str, lang: str) -> tuple[TextExample, ...]:
    return tuple(gen_safety.generate_safety(split, SIZES[split], 13, lang))


def _values(lang: str, split: str) -> set[str]:
    return {v for vs in gen_safety.filler_pools(lang, split).values() for v in vs}


def _template_texts(lang: str, split: str) -> list[str]:
    return [t for label in SAFETY for _, t in gen_safety.templates(lang, label, split)]


@pytest.mark.parametrize("lang", LANGS)
def test_every_class_has_enough_templates(lang: str) -> None:
    for label in SAFETY:
        assert len(gen_safety.templates(lang, label, "train")) >= 10, label
        assert len(gen_safety.templates(lang, label, "held")) >= 4, label


@pytest.mark.parametrize("lang", LANGS)
def test_held_groups_are_never_train_groups(lang: str) -> None:
    train_ids = gen_safety.template_ids(lang, "train")
    held_ids = gen_safety.template_ids(lang, "held")
    assert train_ids and held_ids and not train_ids & held_ids
    assert {x.group for x in generated("train", lang)} == train_ids
    assert {x.group for x in generated("held", lang)} == held_ids


@pytest.mark.parametrize("lang", LANGS)
def test_no_filler_word_crosses_the_split(lang: str) -> None:
    train, held = gen_safety.filler_pools(lang, "train"), gen_safety.filler_pools(lang, "held")
    assert train.keys() == held.keys() and not _values(lang, "train") & _values(lang, "held")
    for split in ("train", "held"):
        slots = {s for t in _template_texts(lang, split) for s in re.findall(r"\{([A-Z_]+)\}", t)}
        assert slots <= train.keys()
    train_texts = [x.text for x in generated("train", lang)] + _template_texts(lang, "train")
    held_texts = [x.text for x in generated("held", lang)] + _template_texts(lang, "held")
    assert leaks(_values(lang, "held"), train_texts, lang) == {}
    assert leaks(_values(lang, "train"), held_texts, lang) == {}
    assert not {x.text for x in generated("train", lang)} & set(held_texts)


@pytest.mark.parametrize("lang", LANGS)
def test_half_unsafe_and_fields_filled(lang: str) -> None:
    items = generated("held", lang)
    assert Counter(x.label for x in items) == {"safe": 150, "unsafe": 150}
    for x in items:
        assert x.lang == lang and x.source == "generated-safety" and x.text.strip()
        assert x.group.startswith(f"{lang}:{x.label}:") and "{" not in x.text


def test_generation_is_seeded() -> None:
    a = gen_safety.generate_safety("train", 40, 5, "zh")
    assert a == gen_safety.generate_safety("train", 40, 5, "zh")
    assert a != gen_safety.generate_safety("train", 40, 6, "zh")


def test_safe_side_has_hard_negatives() -> None:
    safe = " ".join(x.text.lower() for x in generated("train", "en") if x.label == "safe")
    for word in ("kill", "killing", "overdose", "pain", "furious"):
        assert re.search(rf"\b{word}\b", safe), word
    safe_zh = "".join(x.text for x in generated("held", "zh") if x.label == "safe")
    assert "杀掉" in safe_zh and "过量" in safe_zh and "气炸" in safe_zh


def test_bad_split_or_language_is_refused() -> None:
    with pytest.raises(ValueError):
        gen_safety.generate_safety("dev", 10, 1, "zh")
    with pytest.raises(ValueError):
        gen_safety.filler_pools("de", "held")
