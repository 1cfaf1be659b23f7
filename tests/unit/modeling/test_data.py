"""The data splits: held-out items never share a template (or a conversation) with training."""

from __future__ import annotations

from workers.modeling import synthetic
from workers.modeling.corpus import load_dialogues
from workers.modeling.taskdata import load_task_data


def test_note_splits_share_no_template() -> None:
    train = {n.template for n in synthetic.generate_notes("train", 400, 13)}
    held = {n.template for n in synthetic.generate_notes("held", 200, 13)}
    assert train and held and not train & held
    assert train == set(synthetic.template_ids(synthetic.NOTE_TEMPLATES, "train"))


def test_safety_splits_share_no_template_and_are_balanced() -> None:
    train = synthetic.generate_safety("train", 400, 13)
    held = synthetic.generate_safety("held", 200, 13)
    assert not {s.template for s in train} & {s.template for s in held}
    assert sum(s.unsafe for s in held) == 100


def test_spans_point_at_the_slot_values() -> None:
    for note in synthetic.generate_notes("held", 50, 1):
        for start, end, kind in note.spans:
            value = note.text[start:end]
            assert value and value == value.strip() and kind in synthetic.ENTITY_TYPES


def test_generation_is_seeded() -> None:
    assert synthetic.generate_notes("train", 20, 5) == synthetic.generate_notes("train", 20, 5)
    assert synthetic.generate_notes("train", 20, 5) != synthetic.generate_notes("train", 20, 6)


def test_dialogue_split_is_by_conversation_and_the_bank_is_shared() -> None:
    data = load_dialogues()
    assert len(data.labels) >= 10 and len(data.held_out) >= 150
    assert {t.topic for t in data.held_out} <= set(data.labels)
    assert all(0 <= t.reply < len(data.replies) for t in (*data.train, *data.held_out))
    # Split by conversation; the corpus repeats a few lines across conversations (1 today).
    shared = {t.text for t in data.train} & {t.text for t in data.held_out}
    assert len(shared) <= 0.01 * len(data.held_out)


def test_task_data_is_deterministic() -> None:
    a, b = load_task_data(), load_task_data()
    assert a.labels == b.labels and a.held_out == b.held_out and a.tags[0] == "O"
