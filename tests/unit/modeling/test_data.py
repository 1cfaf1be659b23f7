"""The assembled task data: held-out items never share a group (template, conversation,
paragraph) with training; every language and source is present; spans are exact."""

from __future__ import annotations

import pytest

from workers.modeling.corpus import load_dialogues
from workers.modeling.examples import check_spans
from workers.modeling.taskdata import TaskData, describe, load_task_data


@pytest.fixture(scope="module")
def data() -> TaskData:
    return load_task_data()


def test_dialogue_split_is_by_conversation_and_the_bank_is_shared() -> None:
    d = load_dialogues()
    assert len(d.held_out) >= 150
    assert all(0 <= t.reply < len(d.replies) for t in (*d.train, *d.held_out))
    # Split by conversation; the corpus repeats a few lines across conversations.
    shared = {t.text for t in d.train} & {t.text for t in d.held_out}
    assert len(shared) <= 0.03 * len(d.held_out)
    assert any("\u4e00" <= c <= "\u9fff" for t in d.train for c in t.text)  # Chinese too


@pytest.mark.parametrize("task", ["intent", "sentiment", "safety", "chitchat"])
def test_no_group_on_both_sides(data: TaskData, task: str) -> None:
    train = {x.group for x in getattr(data.train, task)}
    held = {x.group for x in getattr(data.held_out, task)}
    assert held and not train & held


def test_entity_sets_are_disjoint_by_group_and_exact(data: TaskData) -> None:
    assert set(data.train.entities) == set(data.held_out.entities)
    for name, held in data.held_out.entities.items():
        train_groups = {d.group for d in data.train.entities[name]}
        if not name.startswith("clinical"):  # notes: template sets (tested in test_gen_clinical)
            assert not train_groups & {d.group for d in held}, name
        for doc in (*held, *data.train.entities[name][:500]):
            check_spans(doc)


def test_both_languages_where_the_task_has_them(data: TaskData) -> None:
    for split in (data.train, data.held_out):
        assert {x.lang for x in split.intent} == {"zh", "en"}
        assert {x.lang for x in split.safety} == {"zh", "en"}
        assert {x.lang for x in split.chitchat} == {"zh", "en"}
        assert {x.label for x in split.intent} == set(data.intents)
    sizes = describe(data)
    assert sizes["held_out"]["entities_peoples_daily"] == 800  # type: ignore[index]


def test_task_data_is_deterministic(data: TaskData) -> None:
    again = load_task_data()
    assert again.held_out == data.held_out and data.tags[0] == "O"
