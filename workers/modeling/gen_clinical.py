"""Generated clinical notes (Chinese and English) with exact entity offsets and an honest split.

The held-out split is *entity-disjoint* and *template-disjoint* from training:

- Every name vocabulary (drugs, symptoms, diagnoses, tests, body parts, person names, places,
  streets, hospitals) is split into a ``train`` (~80%) and a ``held`` (~20%) pool by a stable
  hash of the entry's *family*: its base form (dosage form, salt, acuity, side stripped; an
  English brand maps to its generic) reduced to the shortest other base it contains, so
  ``阿司匹林`` and ``阿司匹林肠溶片``, or ``cough`` and ``dry cough``, always fall together.
  Before that, duplicates across sources collapse (one entry per string), a string claimed by
  two types keeps the first of DRUG, TEST, BODY_PART, DIAGNOSIS, SYMPTOM, and entries written
  literally in template or filler text are dropped (they would appear unlabelled). After it,
  a held entry whose term or base contains, or is contained in, a training term or base of its
  type is dropped.
- Section templates carry a split tag; a held-out note uses held templates only.

``generate_notes(split, count, seed, lang)`` is deterministic for its arguments; every example
passes :func:`check_spans`, and its ``group`` names the templates used.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from functools import cache

from workers.modeling import clinical_formats as fmt
from workers.modeling import clinical_vocab_en as en
from workers.modeling import clinical_vocab_zh as zh
from workers.modeling.clinical_templates import SECTIONS, Section
from workers.modeling.examples import ENTITY_TYPES, EntityExample, Span, check_spans

SOURCE = "generated-clinical"
SPLITS = ("train", "held")
LANGS = ("zh", "en")
HELD_PERMILLE = 200
MAX_CHARS = {"zh": 220, "en": 400}
CLINICAL = ("DRUG", "TEST", "BODY_PART", "DIAGNOSIS", "SYMPTOM")  # priority order
_SOURCES: dict[str, dict[str, Callable[[], dict[str, str]]]] = {
    "zh": {
        "DRUG": zh.drugs, "TEST": zh.tests, "BODY_PART": zh.body_parts,
        "DIAGNOSIS": zh.diagnoses, "SYMPTOM": zh.symptoms, "PERSON": zh.persons,
        "CITY": zh.cities, "DISTRICT": zh.districts, "ROAD": zh.road_names,
        "HOSPITAL": zh.hospitals,
    },
    "en": {
        "DRUG": en.drugs, "TEST": en.tests, "BODY_PART": en.body_parts,
        "DIAGNOSIS": en.diagnoses, "SYMPTOM": en.symptoms, "GIVEN_NAME": en.given_names,
        "SURNAME": en.surnames, "STREET": en.street_names, "CITY": en.cities,
    },
}  # fmt: skip
_SLOT = re.compile(r"\{([A-Za-z_]+)(?::([a-z]+))?\}")
Split = dict[str, dict[str, tuple[str, ...]]]  # split -> kind -> terms


def units(base: str, lang: str) -> Iterator[str]:
    """Contiguous pieces of a base: character substrings (zh, two or more) or word n-grams."""
    parts: list[str] = list(base) if lang == "zh" else base.split()
    joiner = "" if lang == "zh" else " "
    lo = 2 if lang == "zh" else 1
    for i in range(len(parts)):
        for j in range(i + lo, len(parts) + 1):
            yield joiner.join(parts[i:j])


def _held(kind: str, family: str) -> bool:
    digest = hashlib.blake2b(f"{kind}\x1f{family}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1000 < HELD_PERMILLE


def _literal_text(lang: str) -> str:
    """Template and filler text outside the slots, pieces joined by a separator."""
    texts = [_SLOT.sub("\x00", t) for s in SECTIONS[lang] for _, t in s.templates]
    return "\x00".join((*texts, *fmt.filler_values(lang))).lower()


def _in_literal(term: str, literal: str, lang: str) -> bool:
    if lang == "zh":
        return term in literal
    return re.search(rf"(?<![a-z]){re.escape(term.lower())}(?![a-z])", literal) is not None


def _partition(terms: dict[str, str], kind: str, lang: str) -> tuple[Split, int]:
    """Split ``{term: base}`` into train/held pools; also count held terms dropped for clashes."""
    bases = set(terms.values())
    family = {b: min((u for u in units(b, lang) if u in bases), key=lambda u: (len(u), u))
              for b in bases}  # fmt: skip
    held = {t: b for t, b in terms.items() if _held(kind, family[b])}
    train = {t: b for t, b in terms.items() if t not in held}
    train_keys = {k for t, b in train.items() for k in (t.lower(), b)}
    inside_train = {u for k in train_keys for u in units(k, lang)}
    kept = {
        t
        for t, b in held.items()
        if not any(k in inside_train or any(u in train_keys for u in units(k, lang))
                   for k in (t.lower(), b))
    }  # fmt: skip
    out: Split = {"train": {kind: tuple(sorted(train))}, "held": {kind: tuple(sorted(kept))}}
    return out, len(held) - len(kept)


def _vocabulary(lang: str) -> dict[str, dict[str, str]]:
    """Every kind's ``{term: base}``, one type per string, none written in the templates."""
    literal, seen = _literal_text(lang), set[str]()
    vocab: dict[str, dict[str, str]] = {}
    for kind, source in _SOURCES[lang].items():
        terms = {t: b.lower() for t, b in source().items()}
        if kind in CLINICAL:
            terms = {t: b for t, b in terms.items() if t.lower() not in seen}
            seen |= {t.lower() for t in terms}
        vocab[kind] = {t: b for t, b in terms.items() if not _in_literal(t, literal, lang)}
    return vocab


@cache
def _split_pools(lang: str) -> tuple[Split, dict[str, int]]:
    pools: Split = {"train": {}, "held": {}}
    dropped: dict[str, int] = {}
    for kind, terms in _vocabulary(lang).items():
        part, dropped[kind] = _partition(terms, kind, lang)
        for split in SPLITS:
            pools[split].update(part[split])
    return pools, dropped


def _check(split: str, lang: str) -> None:
    if split not in SPLITS or lang not in LANGS:
        raise ValueError(f"split must be one of {SPLITS} and lang one of {LANGS}")


def pools(lang: str, split: str) -> dict[str, tuple[str, ...]]:
    """The name pools of ``lang`` and ``split``: kind -> sorted terms."""
    _check(split, lang)
    return dict(_split_pools(lang)[0][split])


def describe() -> dict[str, dict[str, dict[str, int]]]:
    """Pool sizes: lang -> kind -> {"train", "held", "dropped"} (held entries lost to clashes)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for lang in LANGS:
        split, dropped = _split_pools(lang)
        out[lang] = {
            kind: {"train": len(split["train"][kind]), "held": len(split["held"][kind]),
                   "dropped": dropped[kind]}
            for kind in split["train"]
        }  # fmt: skip
    return out


def template_ids(lang: str, split: str) -> tuple[str, ...]:
    """Ids (``lang.section.index``) of the templates a split may use."""
    _check(split, lang)
    return tuple(
        f"{lang}.{s.name}.{i}"
        for s in SECTIONS[lang]
        for i, (tag, _) in enumerate(s.templates)
        if tag == split
    )


def _entity(kind: str, variant: str, rng: random.Random, lang: str, split: str) -> str:
    p = _split_pools(lang)[0][split]
    if kind in CLINICAL:
        return rng.choice(p[kind])
    makers: dict[str, Callable[[], str]] = {
        "DOSE": lambda: fmt.dose(rng, split, lang),
        "PHONE": lambda: fmt.phone(rng, split, lang),
        "EMAIL": lambda: fmt.email(rng, split, lang, p),
        "ID": lambda: fmt.ident(rng, split, lang, variant),
        "ADDRESS": lambda: fmt.address(rng, split, lang, p),
        "ORG": lambda: fmt.org(rng, lang, p),
        "PERSON": lambda: fmt.person(rng, lang, p),
    }
    return makers[kind]()


def _fill(template: str, rng: random.Random, lang: str, split: str) -> tuple[str, list[Span]]:
    text, spans, pos = "", list[Span](), 0
    for m in _SLOT.finditer(template):
        text += template[pos : m.start()]
        name, variant = m.group(1), m.group(2) or ""
        if name in ENTITY_TYPES:
            value = _entity(name, variant, rng, lang, split)
            spans.append((len(text), len(text) + len(value), name))
        else:
            value = fmt.filler(rng, lang, name)
        text += value
        pos = m.end()
    return text + template[pos:], spans


def _sections(rng: random.Random, lang: str, split: str) -> list[tuple[str, str, list[Span]]]:
    """Filled sections (id, text, spans) in record order, trimmed to the length budget."""
    out: list[tuple[str, str, list[Span]]] = []
    for section in SECTIONS[lang]:
        if rng.random() < section.probability:
            out.append(_section(section, rng, lang, split))
    sep = 0 if lang == "zh" else 1
    while sum(len(t) + sep for _, t, _ in out) - sep > MAX_CHARS[lang] and len(out) > 2:
        del out[rng.randrange(2, len(out))]  # the first two (intro, complaint) stay
    return out


def _section(
    section: Section, rng: random.Random, lang: str, split: str
) -> tuple[str, str, list[Span]]:
    options = [i for i, (tag, _) in enumerate(section.templates) if tag == split]
    index = rng.choice(options)
    text, spans = _fill(section.templates[index][1], rng, lang, split)
    return f"{lang}.{section.name}.{index}", text, spans


def _note(rng: random.Random, lang: str, split: str) -> EntityExample:
    sep = "" if lang == "zh" else " "
    text, spans, ids = "", list[Span](), []
    for tid, part, part_spans in _sections(rng, lang, split):
        text += sep if text else ""
        spans.extend((s + len(text), e + len(text), k) for s, e, k in part_spans)
        text += part
        ids.append(tid)
    example = EntityExample(text, tuple(spans), lang, SOURCE, "+".join(ids))
    check_spans(example)
    return example


def generate_notes(split: str, count: int, seed: int, lang: str) -> list[EntityExample]:
    """``count`` notes in ``lang`` from the ``split`` templates and name pools."""
    _check(split, lang)
    rng = random.Random(f"{SOURCE}/{lang}/{split}/{seed}")
    return [_note(rng, lang, split) for _ in range(count)]
