"""Long-dialogue context: bounded per-conversation turn history and dynamic context selection.

``DialogueState`` keeps a conversation's recent turns, bounded by a turn cap and a token cap
(oldest evicted first), serialisable to small orjson bytes for a changelogged table. Each turn
carries the embedding the model produced when it was classified: no turn is ever re-embedded.

``ContextSelector`` implements the "dynamic attention" of the design: every stored turn is scored
against the new turn by ``gate * relevance + (1 - gate) * recency`` where

* ``relevance`` = cosine similarity of the embeddings, clipped to [0, 1] (a turn pointing away
  from the query is as useless as an orthogonal one), 0 for a turn without a usable embedding;
* ``recency`` = ``0.5 ** (age / half_life)``, ``age`` = 0 for the newest stored turn, 1 for the
  one before, ...

Turns are then taken greedily by score (ties: the more recent first); a turn that does not fit the
remaining budget is skipped and smaller lower-scored turns may still fill the gap. The chosen turns
come back in their original (dialogue) order.

Budget rule: the query turn's own tokens count against ``budget_tokens``; context turns get
``max(0, budget_tokens - query_tokens)``. ``Selection.tokens_used`` = query + context tokens, so
it never exceeds the budget unless the query alone does (then no context is selected).

Cost per call is O(turn_cap * D) in numpy plus an O(turn_cap log turn_cap) sort: independent of how
long the dialogue has been running, since the state never holds more than ``turn_cap`` turns.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

FORMAT_VERSION = 1
Precision = Literal["float16", "float32", "int8"]
_INT8_SCALE = 127.0  # unit vectors: every component is in [-1, 1]
Vector = npt.NDArray[np.float32]
Embedding = Sequence[float] | npt.NDArray[Any]


def _as_vector(values: Embedding) -> Vector:
    # a copy: a view would keep the model's whole output batch alive and could change under us
    arr = np.array(values, dtype=np.float32, copy=True).reshape(-1)
    arr.setflags(write=False)
    return arr


@dataclass(slots=True, eq=False)
class Turn:
    """One dialogue turn. ``embedding``: the model's embedding of the turn, kept as a read-only
    float32 copy (any sequence of floats is accepted); ``tokens``: its length as the model sees
    it. A state stores the embedding L2-normalised (only its direction is used)."""

    turn_id: str
    text: str
    tokens: int
    embedding: Vector
    ts: float

    def __post_init__(self) -> None:
        self.embedding = _as_vector(self.embedding)
        if self.tokens < 0:
            raise ValueError(f"turn {self.turn_id!r}: tokens must be >= 0, got {self.tokens}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Turn):
            return NotImplemented
        same = (self.turn_id, self.text, self.tokens, self.ts)
        same_other = (other.turn_id, other.text, other.tokens, other.ts)
        return same == same_other and bool(np.array_equal(self.embedding, other.embedding))


def _unit(vector: Vector, dim: int) -> Vector:
    norm = float(np.linalg.norm(vector)) if vector.shape == (dim,) else 0.0
    out: Vector = vector / norm if norm > 0 else np.zeros(dim, dtype=np.float32)
    return out


class DialogueState:
    """A conversation's recent turns, oldest first, stored column-wise: ids, texts, timestamps
    in lists; token counts and unit embeddings in numpy buffers with some spare rows, so an
    append is O(D) amortised and selection works on a contiguous [n, D] view (no rebuild).

    Invariants after every ``append``: ``len(state) <= turn_cap`` and ``tokens <= token_cap``;
    the oldest turns go first. A single turn longer than ``token_cap`` is not stored (it could
    never fit) and older turns stay. All stored embeddings share one dimension: a turn of another
    dimension (the model changed) zeroes the older turns' rows, which then compete on recency.

    The caps are settings, not data: they are not serialised, and ``from_bytes`` applies the
    current caps (so lowering a cap shrinks old states on their next load)."""

    def __init__(
        self, turn_cap: int, token_cap: int, turns: Sequence[Turn] = (), last_seen: float = 0.0
    ) -> None:
        if turn_cap < 1 or token_cap < 1:
            raise ValueError("turn_cap and token_cap must be >= 1")
        self.turn_cap = turn_cap
        self.token_cap = token_cap
        self.last_seen = last_seen
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._ts: list[float] = []
        self._dim = 0
        self._emb: Vector = np.zeros((0, 0), dtype=np.float32)
        self._tok: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._start = 0
        self._tokens = 0
        for turn in turns:
            self._push(turn)
        self._evict()

    # --- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def tokens(self) -> int:
        return self._tokens

    @property
    def dim(self) -> int:
        return self._dim

    def token_counts(self) -> npt.NDArray[np.int64]:
        return self._tok[self._start : self._start + len(self)]

    def unit_embeddings(self) -> Vector:
        """[n, dim] L2-normalised embeddings, oldest first (zero rows: no usable embedding)."""
        return self._emb[self._start : self._start + len(self)]

    @property
    def turn_ids(self) -> Sequence[str]:
        return self._ids

    @property
    def texts(self) -> Sequence[str]:
        return self._texts

    def turn(self, i: int) -> Turn:
        row = self._start + i
        return Turn(self._ids[i], self._texts[i], int(self._tok[row]), self._emb[row], self._ts[i])

    @property
    def turns(self) -> list[Turn]:
        return [self.turn(i) for i in range(len(self))]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DialogueState):
            return NotImplemented
        return (
            (self._ids, self._texts, self._ts, self.last_seen, self._dim)
            == (other._ids, other._texts, other._ts, other.last_seen, other._dim)
            and bool(np.array_equal(self.token_counts(), other.token_counts()))
            and bool(np.array_equal(self.unit_embeddings(), other.unit_embeddings()))
        )

    def __repr__(self) -> str:
        return f"DialogueState(turns={len(self)}, tokens={self._tokens}, dim={self._dim})"

    # --- writing ---------------------------------------------------------------------------
    def append(self, turn: Turn, *, now: float) -> list[str]:
        """Add the newest turn and note activity at ``now``; returns the ids of the turns evicted
        (the new turn's own when it alone exceeds ``token_cap``)."""
        self.last_seen = max(self.last_seen, now)
        if turn.tokens > self.token_cap:
            return [turn.turn_id]
        self._push(turn)
        return self._evict()

    def expired(self, now: float, idle_s: float) -> bool:
        """True once nothing happened for more than ``idle_s`` seconds."""
        return now - self.last_seen > idle_s

    def copy(self) -> DialogueState:
        out = DialogueState(self.turn_cap, self.token_cap, (), self.last_seen)
        out._ids, out._texts, out._ts = list(self._ids), list(self._texts), list(self._ts)
        out._dim, out._tokens = self._dim, self._tokens
        out._emb, out._tok, out._start = self._emb.copy(), self._tok.copy(), self._start
        return out

    def _push(self, turn: Turn) -> None:
        n = len(self)
        dim = turn.embedding.size or self._dim
        if dim != self._dim:  # first embedding, or the model changed: older rows cannot compare
            self._dim = dim
            self._emb = np.zeros((self._emb.shape[0], dim), dtype=np.float32)
        end = self._start + n
        if end == len(self._tok):  # no spare row at the back: compact into a new buffer
            capacity = n + max(8, n // 2)
            emb = np.zeros((capacity, self._dim), dtype=np.float32)
            tok = np.zeros(capacity, dtype=np.int64)
            emb[:n], tok[:n] = self.unit_embeddings(), self.token_counts()
            self._emb, self._tok, self._start, end = emb, tok, 0, n
        self._emb[end] = _unit(turn.embedding, self._dim)
        self._tok[end] = turn.tokens
        self._ids.append(turn.turn_id)
        self._texts.append(turn.text)
        self._ts.append(turn.ts)
        self._tokens += turn.tokens

    def _evict(self) -> list[str]:
        counts = self.token_counts()
        drop, tokens = 0, self._tokens
        while len(self) - drop > self.turn_cap or tokens > self.token_cap:
            tokens -= int(counts[drop])
            drop += 1
        if not drop:
            return []
        evicted = self._ids[:drop]
        del self._ids[:drop], self._texts[:drop], self._ts[:drop]
        self._start += drop
        self._tokens = tokens
        return evicted

    # --- serialisation (one small record per conversation, for a changelogged table) ---------
    def to_bytes(self, precision: Precision = "float16") -> bytes:
        unit = self.unit_embeddings()
        if precision == "int8":
            emb = np.round(unit * _INT8_SCALE).astype(np.int8)
        else:
            emb = unit.astype(precision)
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "p": precision,
                "dim": self._dim,
                "seen": self.last_seen,
                "ids": self._ids,
                "texts": self._texts,
                "tok": self.token_counts().tolist(),
                "ts": self._ts,
                "emb": base64.b64encode(emb.tobytes()).decode("ascii"),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, turn_cap: int, token_cap: int) -> DialogueState:
        try:
            obj = orjson.loads(data)
            if obj.get("v") != FORMAT_VERSION:
                raise ValueError(f"unknown dialogue state version {obj.get('v')!r}")
            precision = obj["p"]
            if precision not in ("float16", "float32", "int8"):
                raise ValueError(f"unknown precision {precision!r}")
            n, dim = len(obj["ids"]), int(obj["dim"])
            raw = np.frombuffer(base64.b64decode(obj["emb"]), dtype=precision).reshape(n, dim)
            emb = raw.astype(np.float32)
            if precision == "int8":
                emb /= _INT8_SCALE
            if not len(obj["texts"]) == len(obj["tok"]) == len(obj["ts"]) == n:
                raise ValueError("column lengths differ")
            state = cls(turn_cap, token_cap, (), float(obj["seen"]))
            state._ids, state._texts, state._ts = obj["ids"], obj["texts"], obj["ts"]
            state._tok = np.asarray(obj["tok"], dtype=np.int64)
            state._emb, state._dim = emb, dim
            state._tokens = int(state._tok.sum())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a dialogue state record: {exc}") from exc
        state._evict()
        return state


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen context turns in dialogue order (ids, texts, scores); ``tokens_used`` includes
    the query's own tokens."""

    turn_ids: tuple[str, ...]
    texts: tuple[str, ...]
    scores: tuple[float, ...]
    tokens_used: int
    query_tokens: int

    @property
    def context_tokens(self) -> int:
        return self.tokens_used - self.query_tokens


class ContextSelector:
    """Scores a conversation's stored turns against a new turn and fills a token budget."""

    def __init__(
        self, budget_tokens: int, gate: float, recency_half_life_turns: float = 4.0
    ) -> None:
        if budget_tokens < 0:
            raise ValueError("budget_tokens must be >= 0")
        if not 0.0 <= gate <= 1.0:
            raise ValueError("gate must be in [0, 1]")
        if recency_half_life_turns <= 0:
            raise ValueError("recency_half_life_turns must be > 0")
        self.budget_tokens = budget_tokens
        self.gate = gate
        self.half_life = recency_half_life_turns

    def scores(self, state: DialogueState, query_embedding: Embedding) -> Vector:
        """Blended score of every stored turn (oldest first), shape [n]."""
        query = _as_vector(query_embedding)
        n = len(state)
        ages = np.arange(n - 1, -1, -1, dtype=np.float32)
        recency = np.exp2(-ages / np.float32(self.half_life))
        relevance = np.zeros(n, dtype=np.float32)
        if n and query.size == state.dim:
            unit = _unit(query, state.dim)
            relevance = np.clip(state.unit_embeddings() @ unit, 0.0, 1.0)
        out: Vector = (self.gate * relevance + (1.0 - self.gate) * recency).astype(np.float32)
        return out

    def select(
        self, state: DialogueState, query_embedding: Embedding, query_tokens: int
    ) -> Selection:
        available = max(0, self.budget_tokens - query_tokens)
        n = len(state)
        if not n or available == 0:
            return Selection((), (), (), query_tokens, query_tokens)
        scores = self.scores(state, query_embedding)
        # stable sort on -score over newest-first positions: ties go to the more recent turn
        newest_first = np.arange(n - 1, -1, -1)
        order = newest_first[np.argsort(-scores[newest_first], kind="stable")]
        tokens = state.token_counts()
        chosen: list[int] = []
        left = available
        for i in order.tolist():
            need = int(tokens[i])
            if need <= left:
                chosen.append(i)
                left -= need
                if left == 0:
                    break
        chosen.sort()
        return Selection(
            turn_ids=tuple(state.turn_ids[i] for i in chosen),
            texts=tuple(state.texts[i] for i in chosen),
            scores=tuple(float(scores[i]) for i in chosen),
            tokens_used=query_tokens + available - left,
            query_tokens=query_tokens,
        )
