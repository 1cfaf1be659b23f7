"""The train / held-out sets of every task, assembled from the corpus and the generators.

| task | train | held-out |
|---|---|---|
| topic | chatterbot turns of train conversations | turns of held-out conversations |
| reply | (turn, its answer) pairs, same split | held-out turns ranked against the full bank|
| safety | train templates + train chatterbot turns | held-out templates + held-out turns (safe) |
| entities | notes from train templates | notes from held-out templates |
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from workers.modeling.corpus import DialogueData, Turn, load_dialogues
from workers.modeling.synthetic import (
    BIO_TAGS,
    Note,
    SafetyItem,
    generate_notes,
    generate_safety,
)

SEED = 13
SIZES = {"notes_train": 700, "notes_held": 300, "safety_train": 700, "safety_held": 300}
SAFE_TURNS = {"train": 300, "held": 100}


@dataclass(frozen=True)
class Split:
    turns: tuple[Turn, ...]
    safety: tuple[SafetyItem, ...]
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class TaskData:
    labels: tuple[str, ...]
    tags: tuple[str, ...]
    replies: tuple[str, ...]
    train: Split
    held_out: Split


def _safe_turns(turns: tuple[Turn, ...], count: int, seed: int) -> list[SafetyItem]:
    picked = random.Random(seed).sample(list(turns), min(count, len(turns)))
    return [SafetyItem(t.text, 0, "chatterbot") for t in picked]


def load_task_data(seed: int = SEED) -> TaskData:
    """Everything the build trains and evaluates on, deterministic for ``seed``."""
    dialogues: DialogueData = load_dialogues(seed=seed)
    train = Split(
        dialogues.train,
        tuple(
            generate_safety("train", SIZES["safety_train"], seed)
            + _safe_turns(dialogues.train, SAFE_TURNS["train"], seed)
        ),
        tuple(generate_notes("train", SIZES["notes_train"], seed)),
    )
    held = Split(
        dialogues.held_out,
        tuple(
            generate_safety("held", SIZES["safety_held"], seed)
            + _safe_turns(dialogues.held_out, SAFE_TURNS["held"], seed)
        ),
        tuple(generate_notes("held", SIZES["notes_held"], seed)),
    )
    return TaskData(dialogues.labels, BIO_TAGS, dialogues.replies, train, held)


def describe(data: TaskData) -> dict[str, object]:
    """Sizes and provenance of each split (written to build.json and the model card)."""
    return {
        "topics": len(data.labels),
        "replies": len(data.replies),
        "train": {
            "turns": len(data.train.turns),
            "safety": len(data.train.safety),
            "notes": len(data.train.notes),
        },
        "held_out": {
            "turns": len(data.held_out.turns),
            "safety": len(data.held_out.safety),
            "notes": len(data.held_out.notes),
        },
        "seed": SEED,
    }
