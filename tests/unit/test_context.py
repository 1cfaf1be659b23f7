"""Dynamic context selection and the bounded per-conversation dialogue state."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.context import ContextSelector, DialogueState, Turn

DIM = 8


def axis(i: int, noise: float = 0.0) -> np.ndarray:
    """A unit-ish embedding along axis i: turns about the same topic share an axis."""
    v = np.full(DIM, noise, dtype=np.float32)
    v[i] = 1.0
    return v


def dialogue(*turns: tuple[str, int, int], turn_cap: int = 50, token_cap: int = 10_000):
    """Hand-built dialogue from (turn_id, topic axis, tokens), oldest first, one second apart."""
    state = DialogueState(turn_cap=turn_cap, token_cap=token_cap)
    for ts, (tid, topic, tokens) in enumerate(turns):
        state.append(Turn(tid, f"text of {tid}", tokens, axis(topic), float(ts)), now=float(ts))
    return state


def test_relevant_old_turn_beats_irrelevant_recent_one() -> None:
    # t0 is about billing (axis 0); t1..t5 are small talk (axis 1); the new turn is billing again
    state = dialogue(("t0", 0, 40), *((f"t{i}", 1, 40) for i in range(1, 6)))
    selector = ContextSelector(budget_tokens=100, gate=0.7, recency_half_life_turns=2.0)
    sel = selector.select(state, axis(0), query_tokens=20)
    # budget 100 - 20 query tokens = 80 = two 40-token turns: the old billing turn + the newest
    assert sel.turn_ids == ("t0", "t5")  # in dialogue order, not score order
    assert sel.texts == ("text of t0", "text of t5")
    assert sel.tokens_used == 100 and sel.context_tokens == 80
    assert sel.scores[0] > sel.scores[1]
    # without relevance the old turn loses to the recent small talk
    recency = ContextSelector(budget_tokens=100, gate=0.0, recency_half_life_turns=2.0)
    assert recency.select(state, axis(0), query_tokens=20).turn_ids == ("t4", "t5")


def test_gate_zero_is_pure_recency_whatever_the_embeddings() -> None:
    rng = np.random.default_rng(1)
    state = DialogueState(turn_cap=50, token_cap=10_000)
    for i in range(20):
        state.append(Turn(f"t{i}", "x", 10, rng.normal(size=DIM), float(i)), now=float(i))
    selector = ContextSelector(budget_tokens=75, gate=0.0, recency_half_life_turns=3.0)
    for _ in range(5):
        sel = selector.select(state, rng.normal(size=DIM), query_tokens=5)
        assert sel.turn_ids == tuple(f"t{i}" for i in range(13, 20))  # 7 newest x 10 tokens
        assert list(sel.scores) == sorted(sel.scores)  # older = lower


def test_gate_one_is_pure_relevance() -> None:
    state = dialogue(("a", 0, 10), ("b", 2, 10), ("c", 1, 10), ("d", 2, 10))
    sel = ContextSelector(budget_tokens=20, gate=1.0).select(state, axis(2), query_tokens=0)
    assert sel.turn_ids == ("b", "d")


def test_big_turn_is_skipped_and_smaller_ones_fill_the_budget() -> None:
    state = dialogue(("small_old", 0, 10), ("big", 0, 90), ("small_new", 0, 10))
    sel = ContextSelector(budget_tokens=50, gate=0.5).select(state, axis(0), query_tokens=10)
    assert sel.turn_ids == ("small_old", "small_new")
    assert sel.tokens_used == 30


def test_query_larger_than_budget_selects_nothing() -> None:
    state = dialogue(("a", 0, 1))
    sel = ContextSelector(budget_tokens=16, gate=0.5).select(state, axis(0), query_tokens=40)
    assert sel.turn_ids == () and sel.tokens_used == 40


def test_empty_state_and_unusable_embeddings() -> None:
    selector = ContextSelector(budget_tokens=64, gate=0.7)
    empty = DialogueState(turn_cap=4, token_cap=100)
    assert selector.select(empty, axis(0), 3).turn_ids == ()
    state = DialogueState(turn_cap=4, token_cap=100)
    state.append(Turn("zero", "", 5, np.zeros(DIM), 0.0), now=0.0)
    state.append(Turn("other_dim", "", 5, np.ones(DIM + 3), 1.0), now=1.0)
    # zero vector / other model's dimension: relevance 0, only recency counts; no crash
    sel = selector.select(state, axis(0), 3)
    assert sel.turn_ids == ("zero", "other_dim")
    assert selector.select(state, np.zeros(DIM), 3).turn_ids == ("zero", "other_dim")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budget_tokens": -1, "gate": 0.5},
        {"budget_tokens": 8, "gate": 1.5},
        {"budget_tokens": 8, "gate": -0.1},
        {"budget_tokens": 8, "gate": 0.5, "recency_half_life_turns": 0},
    ],
)
def test_selector_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ContextSelector(**kwargs)  # type: ignore[arg-type]


TURNS = st.lists(
    st.tuples(
        st.integers(0, 120),
        st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=DIM, max_size=DIM),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    turns=TURNS,
    budget=st.integers(0, 300),
    query_tokens=st.integers(0, 300),
    gate=st.floats(0, 1),
    half_life=st.floats(0.1, 50),
    query=st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=DIM, max_size=DIM),
)
def test_budget_is_never_exceeded(
    turns: list[tuple[int, list[float]]],
    budget: int,
    query_tokens: int,
    gate: float,
    half_life: float,
    query: list[float],
) -> None:
    state = DialogueState(turn_cap=25, token_cap=1_000)
    for i, (tokens, emb) in enumerate(turns):
        state.append(Turn(f"t{i}", "", tokens, np.array(emb), float(i)), now=float(i))
    sel = ContextSelector(budget, gate, half_life).select(state, np.array(query), query_tokens)
    tokens_of = {t.turn_id: t.tokens for t in state.turns}
    context = sum(tokens_of[t] for t in sel.turn_ids)
    assert context <= max(0, budget - query_tokens)
    assert sel.tokens_used == query_tokens + context
    if query_tokens <= budget:
        assert sel.tokens_used <= budget
    ids = [t.turn_id for t in state.turns]
    positions = [ids.index(t) for t in sel.turn_ids]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # greedy fill: any unselected turn would not have fitted in what is left
    left = max(0, budget - query_tokens) - context
    unselected = [t for t in state.turns if t.turn_id not in sel.turn_ids]
    assert all(t.tokens > left for t in unselected) or left == 0


def test_turn_cap_evicts_oldest_first() -> None:
    state = dialogue(*((f"t{i}", 0, 1) for i in range(10)), turn_cap=4)
    assert [t.turn_id for t in state.turns] == ["t6", "t7", "t8", "t9"]
    assert state.tokens == 4


def test_token_cap_evicts_oldest_first_and_reports_evictions() -> None:
    state = DialogueState(turn_cap=10, token_cap=100)
    for i, tokens in enumerate([30, 30, 30]):
        assert state.append(Turn(f"t{i}", "", tokens, axis(0), 0.0), now=0.0) == []
    evicted = state.append(Turn("t3", "", 50, axis(0), 0.0), now=0.0)
    assert evicted == ["t0", "t1"]
    assert [t.turn_id for t in state.turns] == ["t2", "t3"] and state.tokens == 80


def test_turn_longer_than_token_cap_is_not_stored() -> None:
    state = dialogue(("a", 0, 10), ("b", 0, 10), token_cap=50)
    evicted = state.append(Turn("huge", "", 51, axis(0), 5.0), now=5.0)
    assert evicted == ["huge"]
    assert [t.turn_id for t in state.turns] == ["a", "b"]
    assert state.last_seen == 5.0  # still activity


@settings(max_examples=100, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 80), max_size=60),
    turn_cap=st.integers(1, 10),
    token_cap=st.integers(1, 200),
)
def test_caps_always_hold(tokens: list[int], turn_cap: int, token_cap: int) -> None:
    state = DialogueState(turn_cap=turn_cap, token_cap=token_cap)
    for i, n in enumerate(tokens):
        state.append(Turn(f"t{i}", "", n, axis(0), 0.0), now=0.0)
        assert len(state) <= turn_cap and state.tokens <= token_cap
        assert state.tokens == sum(t.tokens for t in state.turns)
        if n <= token_cap:
            assert state.turns[-1].turn_id == f"t{i}"  # the newest is always kept


def test_idle_expiry_uses_last_activity() -> None:
    state = dialogue(("a", 0, 1), ("b", 0, 1))  # last append at now=1.0
    assert not state.expired(now=61.0, idle_s=60.0)
    assert state.expired(now=61.5, idle_s=60.0)
    state.append(Turn("c", "", 1, axis(0), 2.0), now=100.0)
    assert not state.expired(now=150.0, idle_s=60.0)


def random_state(seed: int = 7) -> DialogueState:
    rng = np.random.default_rng(seed)
    state = DialogueState(turn_cap=8, token_cap=500)
    for i in range(5):
        emb = rng.normal(size=384).astype(np.float32)
        state.append(Turn(f"t{i}", f"héllo {i} 你好", 10 + i, emb, 1_700_000_000.5 + i), now=9.0)
    return state


def test_serialisation_round_trip_exact() -> None:
    state = random_state()
    exact = DialogueState.from_bytes(state.to_bytes("float32"), turn_cap=8, token_cap=500)
    assert exact == state and exact.last_seen == 9.0 and exact.tokens == state.tokens
    assert exact.turns == state.turns
    assert DialogueState.from_bytes(
        DialogueState(turn_cap=2, token_cap=9).to_bytes(), turn_cap=2, token_cap=9
    ) == DialogueState(turn_cap=2, token_cap=9)


@pytest.mark.parametrize(
    ("precision", "per_turn", "tol"), [("float16", 1024, 1e-3), ("int8", 512, 4e-3)]
)
def test_compact_serialisation(precision: str, per_turn: int, tol: float) -> None:
    state = random_state()
    data = state.to_bytes(precision)  # type: ignore[arg-type]
    assert len(data) < 5 * (per_turn + 60) + 100  # base64 of 384 values + ids, texts, ts
    compact = DialogueState.from_bytes(data, turn_cap=8, token_cap=500)
    assert compact.turn_ids == state.turn_ids and compact.texts == state.texts
    assert np.array_equal(compact.token_counts(), state.token_counts())
    assert np.allclose(compact.unit_embeddings(), state.unit_embeddings(), atol=tol)
    q = np.random.default_rng(3).normal(size=384)
    selector = ContextSelector(budget_tokens=40, gate=0.7)
    assert selector.select(compact, q, 5).turn_ids == selector.select(state, q, 5).turn_ids
    compact.append(Turn("t5", "more", 3, q, 10.0), now=10.0)  # a loaded state keeps working
    assert compact.turn_ids[-1] == "t5" and len(compact) == 6


def test_loading_with_smaller_caps_shrinks_the_state() -> None:
    state = dialogue(*((f"t{i}", 0, 10) for i in range(6)))
    smaller = DialogueState.from_bytes(state.to_bytes(), turn_cap=3, token_cap=1000)
    assert [t.turn_id for t in smaller.turns] == ["t3", "t4", "t5"]


@pytest.mark.parametrize(
    "data",
    [b'{"v": 99}', b"[]", b"not json", b'{"v": 1, "p": "float64"}', b'{"v": 1}'],
)
def test_unknown_or_broken_record_is_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        DialogueState.from_bytes(data, turn_cap=3, token_cap=10)


def test_truncated_record_is_rejected() -> None:
    data = random_state().to_bytes()
    broken = data.replace(b'"dim":384', b'"dim":383')
    with pytest.raises(ValueError):
        DialogueState.from_bytes(broken, turn_cap=8, token_cap=500)


def test_a_model_with_another_dimension_resets_older_embeddings() -> None:
    state = dialogue(("a", 0, 5), ("b", 1, 5))
    state.append(Turn("c", "", 5, np.ones(16), 2.0), now=2.0)
    assert state.dim == 16
    assert not state.unit_embeddings()[:2].any() and state.unit_embeddings()[2].any()
    sel = ContextSelector(budget_tokens=100, gate=1.0).select(state, np.ones(16), 0)
    assert sel.turn_ids == ("a", "b", "c") and sel.scores[-1] == pytest.approx(1.0)


def test_turn_copies_its_embedding() -> None:
    batch = np.ones((4, DIM), dtype=np.float32)
    turn = Turn("a", "", 1, batch[0], 0.0)
    batch[0, 0] = 5.0
    assert turn.embedding[0] == 1.0 and not np.shares_memory(turn.embedding, batch)
