"""Generated clinical notes: exact spans, and a held-out split disjoint in names and templates."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from io import BytesIO

import pytest

from workers.modeling import gen_clinical as gc
from workers.modeling.examples import EntityExample, check_spans
from workers.modeling.vocab import SafeUnpickler

NAMED = ("DRUG", "SYMPTOM", "DIAGNOSIS", "TEST")
EMITTED = (
    "SYMPTOM", "DIAGNOSIS", "DRUG", "DOSE", "BODY_PART", "TEST",
    "PERSON", "PHONE", "EMAIL", "ID", "ADDRESS", "ORG",
)  # fmt: skip
COUNT = {"train": 500, "held": 200}
Notes = dict[tuple[str, str], list[EntityExample]]


@pytest.fixture(scope="module")
def notes() -> Notes:
    return {
        (lang, split): gc.generate_notes(split, COUNT[split], 11, lang)
        for lang in gc.LANGS
        for split in gc.SPLITS
    }


def _strings(examples: list[EntityExample], kind: str) -> set[str]:
    return {ex.text[s:e].lower() for ex in examples for s, e, k in ex.spans if k == kind}


def test_spans_slice_exactly(notes: Notes) -> None:
    for (lang, _), examples in notes.items():
        for ex in examples:
            check_spans(ex)
            assert ex.lang == lang and ex.source == gc.SOURCE
            assert len(ex.text) <= gc.MAX_CHARS[lang]
            assert all(ex.text[s:e] for s, e, _ in ex.spans)


@pytest.mark.parametrize("lang", gc.LANGS)
def test_held_entities_never_seen_in_training(notes: Notes, lang: str) -> None:
    train_pool = gc.pools(lang, "train")
    held_pool = gc.pools(lang, "held")
    for kind in NAMED:
        held = _strings(notes[lang, "held"], kind)
        assert held, kind
        assert not held & _strings(notes[lang, "train"], kind), kind
        assert not held & {t.lower() for t in train_pool[kind]}, kind
        assert held <= {t.lower() for t in held_pool[kind]}, kind


@pytest.mark.parametrize("lang", gc.LANGS)
def test_pools_are_disjoint_and_no_held_name_contains_a_train_name(lang: str) -> None:
    train, held = gc.pools(lang, "train"), gc.pools(lang, "held")
    assert train.keys() == held.keys()
    for kind in train:
        seen = {t.lower() for t in train[kind]}
        assert held[kind] and not seen & {t.lower() for t in held[kind]}, kind
        for term in held[kind]:
            assert not seen & set(gc.units(term.lower(), lang)), (kind, term)


def test_no_held_name_is_a_train_name_in_the_other_language() -> None:
    for kind in NAMED:
        zh_held = {t.lower() for t in gc.pools("zh", "held")[kind]}
        en_held = {t.lower() for t in gc.pools("en", "held")[kind]}
        assert not zh_held & {t.lower() for t in gc.pools("en", "train")[kind]}
        assert not en_held & {t.lower() for t in gc.pools("zh", "train")[kind]}


@pytest.mark.parametrize("lang", gc.LANGS)
def test_templates_are_disjoint(notes: Notes, lang: str) -> None:
    train_ids, held_ids = set(gc.template_ids(lang, "train")), set(gc.template_ids(lang, "held"))
    assert not train_ids & held_ids
    for split, allowed in (("train", train_ids), ("held", held_ids)):
        used = {tid for ex in notes[lang, split] for tid in ex.group.split("+")}
        assert used <= allowed and len(used) >= len(allowed) // 2, split


@pytest.mark.parametrize("lang", gc.LANGS)
@pytest.mark.parametrize("split", gc.SPLITS)
def test_every_entity_type_is_produced(notes: Notes, lang: str, split: str) -> None:
    kinds = {k for ex in notes[lang, split] for _, _, k in ex.spans}
    assert set(EMITTED) <= kinds


def test_generation_is_deterministic() -> None:
    for lang in gc.LANGS:
        first = gc.generate_notes("held", 30, 5, lang)
        assert first == gc.generate_notes("held", 30, 5, lang)
        assert first != gc.generate_notes("held", 30, 6, lang)


def test_describe_matches_the_pools() -> None:
    sizes = gc.describe()
    for lang in gc.LANGS:
        for split in gc.SPLITS:
            for kind, terms in gc.pools(lang, split).items():
                assert sizes[lang][kind][split] == len(terms) > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        gc.generate_notes("test", 1, 0, "zh")
    with pytest.raises(ValueError):
        gc.pools("fr", "train")


def test_the_unpickler_resolves_no_class() -> None:
    assert SafeUnpickler(BytesIO(pickle.dumps({"a": ["b"]}))).load() == {"a": ["b"]}
    with pytest.raises(pickle.UnpicklingError):
        SafeUnpickler(BytesIO(pickle.dumps(OrderedDict(a=1)))).load()
