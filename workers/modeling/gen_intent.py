"""Generated support-chat turns for the intent head, Chinese and English (no offline corpus).

Each label has ``train`` and ``held`` templates with ``{SLOT}`` fillers; the filler values are
split too, so a held-out turn uses only held-out templates *and* only held-out words (products,
apps, couriers, dates, drugs, symptoms, doctors, chit-chat topics, ...), and the held-out score
measures new phrasings with new words. Order numbers and amounts are random in both splits, in
different formats. English turns get light surface noise (lower case, dropped punctuation, a
common typo), Chinese ones dropped or half-width punctuation, in both splits.

What each label means (a chat backend routes on it; templates keep to these lines):

- ``account_access``: getting into or controlling the account: log-in, password reset,
  verification codes, two-step verification, a locked, suspended or hacked account, changing the
  log-in e-mail or phone. Log-in errors belong here, not in ``tech_issue``.
- ``billing_refund``: money that has already left the customer: asking for money back, refund
  status, returns for a refund, double, unknown or too-high charges on a statement, charges after
  cancelling, invoices and receipts.
- ``payment_issue``: a payment the customer is making does not go through: card declined,
  payment failed or stuck pending, money taken but the order still unpaid (they want the payment
  to complete, not their money back), a payment method not accepted or not addable, questions
  about how to pay.
- ``delivery_status``: shipping and delivery of an order: where is it, tracking, delays,
  delivered-but-not-received, courier problems, delivery address or pick-up changes, delivery
  times to a place.
- ``cancel``: stopping an order, subscription, membership, auto-renewal, free trial or contract,
  or closing / deleting the account. Cancelling a *medical appointment* is ``appointment``.
- ``complaint``: the point of the turn is dissatisfaction: bad service, rude staff, poor quality,
  wanting to escalate or file a complaint; no refund, tracking or cancel request in it.
- ``tech_issue``: an app, website or device malfunctions: crashes, errors, won't load, bugs,
  sync, pairing, battery drain (log-in is ``account_access``, paying is ``payment_issue``).
- ``product_question``: about a product or plan itself: features, specs, compatibility, sizes,
  colours, price, stock, warranty, how to use it.
- ``greeting`` / ``thanks`` / ``goodbye``: the turn is only that social act.
- ``symptom_report``: the user describes symptoms (theirs or a relative's) or asks whether they
  are serious; no medicine is named and no visit is asked for.
- ``appointment``: booking, rescheduling, cancelling or confirming a visit, test or
  consultation; asking for free slots.
- ``prescription``: medication: refills and renewals, dose and how or when to take it,
  interactions, side effects of a named drug, pharmacy pick-up.
- ``other``: everything else: small talk, questions about the bot, weather, jokes, trivia,
  opinions, science, history, politics, sports, food, films (chatterbot-like chit-chat).

A template's group is ``f"{lang}:{label}:{index}"`` with ``index`` its position in the label's
``train + held`` templates, so a test can check that no group is on both sides.

The templates and fillers are data: ``data/intent_templates_<lang>.json`` (``{label: [train,
held]}``) and ``data/intent_fillers_<lang>.json`` (``fillers`` and ``number_formats``, ``{SLOT:
[train, held]}``); ``data/README.md`` says how their two sides were kept apart.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from workers.modeling.examples import INTENTS, TextExample

SOURCE = "generated-intent"
SPLITS = ("train", "held")
LANGS = ("zh", "en")
Split = tuple[tuple[str, ...], tuple[str, ...]]
_SLOT = re.compile(r"\{([A-Z_]+)\}")
DATA_DIR = Path(__file__).parent / "data"


def _splits(table: Mapping[str, list[list[str]]]) -> dict[str, Split]:
    return {key: (tuple(train), tuple(held)) for key, (train, held) in table.items()}


def _load(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


_TEMPLATES = {lang: _splits(_load(f"intent_templates_{lang}.json")) for lang in LANGS}
_POOLS = {lang: _load(f"intent_fillers_{lang}.json") for lang in LANGS}
_FILLERS = {lang: _splits(_POOLS[lang]["fillers"]) for lang in LANGS}
_NUMBERS = {lang: _splits(_POOLS[lang]["number_formats"]) for lang in LANGS}
# Common English misspellings and chat shorthand; one may replace a whole word of a turn.
_TYPOS: dict[str, tuple[str, ...]] = {
    "please": ("pls", "plz"), "you": ("u",), "your": ("ur",), "the": ("teh",),
    "received": ("recieved",), "because": ("becuase", "cuz"), "account": ("acount", "accnt"),
    "password": ("pasword", "passwrod"), "order": ("oder", "ordr"), "tomorrow": ("tommorow",),
    "appointment": ("appointmnet", "apointment"), "prescription": ("perscription",),
    "cancel": ("cancle",), "delivery": ("delivry",), "know": ("kno",), "what": ("wat",),
    "really": ("rly",), "refund": ("refnd",), "payment": ("paymnet",), "with": ("wiht",),
    "doesn't": ("doesnt",), "can't": ("cant",), "I'm": ("im",), "about": ("abt",),
}  # fmt: skip
_TYPO_WORDS = re.compile(r"(?<![\w'])(" + "|".join(map(re.escape, _TYPOS)) + r")(?![\w'])", re.I)
_EN_PUNCT = re.compile(r"[.,!?;:]+(?=\s|$)|'")
_ZH_END = re.compile(r"[。！？!?~，,]+$")
_ZH_HALF = str.maketrans({"，": ",", "？": "?", "！": "!", "：": ":"})


def _check(split: str, lang: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")


def _side(pair: Split, split: str) -> tuple[str, ...]:
    return pair[SPLITS.index(split)]


def templates(lang: str, label: str, split: str) -> list[tuple[int, str]]:
    """``(index, template)`` of one label's ``split`` templates; ``index`` counts train first."""
    _check(split, lang)
    train, held = _TEMPLATES[lang][label]
    offset = 0 if split == "train" else len(train)
    return list(enumerate(_side((train, held), split), start=offset))


def template_ids(lang: str, split: str) -> set[str]:
    """The groups (``lang:label:index``) of every ``split`` template of ``lang``."""
    return {f"{lang}:{label}:{i}" for label in INTENTS for i, _ in templates(lang, label, split)}


def filler_pools(lang: str, split: str) -> dict[str, tuple[str, ...]]:
    """The ``split`` side of every vocabulary slot (generated numbers are formats, not listed)."""
    _check(split, lang)
    return {slot: _side(pair, split) for slot, pair in _FILLERS[lang].items()}


def number_formats(lang: str, split: str) -> dict[str, tuple[str, ...]]:
    """The ``split`` formats of the generated slots (``9`` is a random digit)."""
    _check(split, lang)
    return {slot: _side(pair, split) for slot, pair in _NUMBERS[lang].items()}


def _digits(fmt: str, rng: random.Random) -> str:
    out, first = [], True
    for ch in fmt:
        if ch == "9":
            out.append(str(rng.randint(1 if first else 0, 9)))
            first = False
        else:
            out.append(ch)
    return "".join(out)


def fill(template: str, pick: Callable[[str, set[str]], str]) -> str:
    """``template`` with each ``{SLOT}`` replaced by ``pick(slot, values used so far)``."""
    used: set[str] = set()

    def one(match: re.Match[str]) -> str:
        value = pick(match.group(1), used)
        used.add(value)
        return value

    return _SLOT.sub(one, template)


def picker(
    pools: Mapping[str, tuple[str, ...]], rng: random.Random, formats: Mapping[str, tuple[str, ...]]
) -> Callable[[str, set[str]], str]:
    """A slot filler: a value of ``pools`` (unused in this turn if it can) or a formatted number."""

    def pick(slot: str, used: set[str]) -> str:
        if slot in formats:
            return _digits(rng.choice(formats[slot]), rng)
        fresh = [v for v in pools[slot] if v not in used]
        return rng.choice(fresh or list(pools[slot]))

    return pick


def surface_noise(text: str, lang: str, rng: random.Random) -> str:
    """What people type: English lower case / no punctuation / a typo, Chinese loose punctuation."""
    if lang == "zh":
        if rng.random() < 0.3:
            text = _ZH_END.sub("", text)
        if rng.random() < 0.15:
            text = text.translate(_ZH_HALF)
        return text
    if rng.random() < 0.3:
        text = _typo(text, rng)
    if rng.random() < 0.35:
        text = text.lower()
    if rng.random() < 0.3:
        text = _EN_PUNCT.sub("", text).strip() or text
    return text


def _typo(text: str, rng: random.Random) -> str:
    words = list(_TYPO_WORDS.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    typo = rng.choice(next(v for k, v in _TYPOS.items() if k.lower() == m.group(1).lower()))
    return text[: m.start()] + typo + text[m.end() :]


def shuffled_cycle(items: list[tuple[int, str]], rng: random.Random) -> Iterator[tuple[int, str]]:
    """Every item once in a shuffled order, then again in a new order, for ever."""
    while True:
        deck = items[:]
        rng.shuffle(deck)
        yield from deck


def generate_intents(split: str, count: int, seed: int, lang: str) -> list[TextExample]:
    """``count`` turns from the ``split`` templates and fillers, labels taken in turn (balanced)."""
    _check(split, lang)
    rng = random.Random(f"intent/{lang}/{split}/{seed}")
    pick = picker(filler_pools(lang, split), rng, number_formats(lang, split))
    decks = {label: shuffled_cycle(templates(lang, label, split), rng) for label in INTENTS}
    out = []
    for n in range(count):
        label = INTENTS[n % len(INTENTS)]
        index, template = next(decks[label])
        text = surface_noise(fill(template, pick), lang, rng)
        out.append(TextExample(text, label, lang, SOURCE, f"{lang}:{label}:{index}"))
    return out
