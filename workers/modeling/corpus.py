"""Real dialogue data from the ``chatterbot-corpus`` package: the reply bank and its pairs.

Each YAML file (English and Chinese folders) is one category (its ``categories[0]``,
normalised, is the topic label). A conversation is ``[question, answer, ...]``; every even
turn is an input, the next turn its reply. Categories with fewer than
:data:`MIN_CONVERSATIONS` conversations are dropped and big ones capped at
:data:`MAX_PER_TOPIC` (picked by a seeded shuffle) so no class swamps the others.

Split: by *conversation*, not by turn: a stable hash of ``category + first turn`` puts a
conversation wholly in train or held-out (``HELD_OUT_PERCENT``), so a held-out question never
shares its conversation with a training one. The reply bank is every distinct answer of the
kept conversations (train and held-out): at serving time retrieval ranks the whole bank.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

MIN_CONVERSATIONS = 15
MAX_PER_TOPIC = 120
HELD_OUT_PERCENT = 25
MAX_REPLY_CHARS = 300


@dataclass(frozen=True)
class Turn:
    """One dialogue input with its topic and its reply (index into the reply bank)."""

    text: str
    topic: str
    reply: int


@dataclass(frozen=True)
class DialogueData:
    labels: tuple[str, ...]
    train: tuple[Turn, ...]
    held_out: tuple[Turn, ...]
    replies: tuple[str, ...]


LANGUAGES = ("english", "chinese")


def corpus_dir(language: str = "english") -> Path:
    """A language folder of the installed chatterbot-corpus package (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package chatterbot-corpus is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / language


def _label(category: str) -> str:
    return category.strip().lower().replace(" ", "_")


def _held_out(key: str) -> bool:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


def _clean(text: object) -> str:
    return " ".join(str(text).split())


def load_dialogues(folders: list[Path] | None = None, seed: int = 13) -> DialogueData:
    """Read the corpus (English and Chinese by default), pick the topics, split by
    conversation, build the reply bank."""
    import yaml

    folders = folders or [corpus_dir(lang) for lang in LANGUAGES]
    by_topic: dict[str, list[list[str]]] = {}
    for path in sorted(p for folder in folders for p in folder.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        convs = [[_clean(t) for t in c] for c in doc.get("conversations", []) if len(c) >= 2]
        by_topic.setdefault(_label(doc["categories"][0]), []).extend(convs)
    rng = random.Random(seed)
    labels = tuple(sorted(t for t, c in by_topic.items() if len(c) >= MIN_CONVERSATIONS))
    replies: dict[str, int] = {}
    train: list[Turn] = []
    held: list[Turn] = []
    for topic in labels:
        convs = by_topic[topic]
        rng.shuffle(convs)
        for conv in convs[:MAX_PER_TOPIC]:
            target = held if _held_out(f"{topic}\x00{conv[0]}") else train
            for q, a in zip(conv[0::2], conv[1::2], strict=False):
                if not q or not a or len(a) > MAX_REPLY_CHARS:
                    continue
                index = replies.setdefault(a, len(replies))
                target.append(Turn(q, topic, index))
    return DialogueData(labels, tuple(train), tuple(held), tuple(replies))
