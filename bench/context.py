"""Context selection cost per turn: bounded by the turn cap, not by the dialogue's length.

    .venv/bin/python bench/context.py [--seed 7] [--reps 2000] [--turn-cap 64] [--dim 384]

For dialogue lengths 1, 100 and 1,000 turns, builds the conversation's state (the turn cap binds
for the longer ones), then times one new turn as the worker handles it: ``ContextSelector.select``
on the state (whose embedding matrix is stale, as after the previous turn's append) followed by
``DialogueState.append``. Also shows the serialised record (what a changelogged table writes per
turn) and, for contrast, the same work with the cap lifted to the dialogue's length.
Median and p99 over ``--reps`` repetitions, each on a fresh copy of the state (same buffer layout,
so whether that append compacts the buffer, which it does every n/2 appends, is as in the base;
the three states are measured round-robin so machine noise hits them alike). Exits 1 if the
1000-turn cost exceeds 1.5x the 100-turn cost (it should be ~1x: same capped state size).
"""

from __future__ import annotations

import gc
import statistics
import time

import click
import numpy as np

from workers.context import ContextSelector, DialogueState, Turn

LENGTHS = (1, 100, 1000)


def build(
    rng: np.random.Generator, length: int, turn_cap: int, token_cap: int, dim: int
) -> DialogueState:
    state = DialogueState(turn_cap=turn_cap, token_cap=token_cap)
    for i in range(length):
        emb = rng.normal(size=dim).astype(np.float32)
        state.append(Turn(f"t{i}", "x" * 80, int(rng.integers(5, 60)), emb, float(i)), now=i)
    return state


def per_turn(
    bases: list[DialogueState], selector: ContextSelector, rng: np.random.Generator, reps: int
) -> list[tuple[float, float, int]]:
    """Per state: median and p99 microseconds of select + append, and context turns selected.
    The states are measured round-robin so that machine noise hits them alike."""
    dim = bases[0].dim
    queries = rng.normal(size=(reps, dim)).astype(np.float32)
    times: list[list[float]] = [[] for _ in bases]
    chosen = [0 for _ in bases]
    gc.disable()
    try:
        for r in range(reps):
            for k, base in enumerate(bases):
                state = base.copy()  # untimed; same buffer layout as the base
                turn = Turn(f"new{r}", "x" * 80, 24, queries[r], 1e6)
                start = time.perf_counter_ns()
                sel = selector.select(state, queries[r], turn.tokens)
                state.append(turn, now=1e6)
                times[k].append((time.perf_counter_ns() - start) / 1000)
                chosen[k] += len(sel.turn_ids)
            if r % 100 == 0:
                gc.collect()
    finally:
        gc.enable()
    out = []
    for k in range(len(bases)):
        ts = sorted(times[k])
        out.append((statistics.median(ts), ts[int(0.99 * (len(ts) - 1))], chosen[k] // reps))
    return out


def record_cost(state: DialogueState, reps: int) -> tuple[int, int, float]:
    """Bytes of the serialised state (float16 and int8 embeddings) and us per to_bytes."""
    start = time.perf_counter()
    for _ in range(reps):
        data = state.to_bytes()
    return len(data), len(state.to_bytes("int8")), (time.perf_counter() - start) / reps * 1e6


def table(title: str, rows: list[tuple[int, int, float, float, int, int, int, float]]) -> None:
    print(f"\n{title}")
    print(
        f"  {'turns':>6} {'stored':>7} {'median us':>10} {'p99 us':>8} {'ctx turns':>10}"
        f" {'record B f16':>13} {'B int8':>10} {'to_bytes us':>12}"
    )
    for length, stored, med, p99, ctx, size, size8, ser in rows:
        print(
            f"  {length:>6} {stored:>7} {med:>10.1f} {p99:>8.1f} {ctx:>10}"
            f" {size:>13,} {size8:>10,} {ser:>12.1f}"
        )


@click.command(
    "context", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--seed", type=int, default=7)
@click.option("--reps", type=int, default=2000, help="repetitions per dialogue length")
@click.option("--turn-cap", type=int, default=64)
@click.option("--token-cap", type=int, default=8192)
@click.option("--budget", type=int, default=256, help="context budget (tokens)")
@click.option("--gate", type=float, default=0.7)
@click.option("--dim", type=int, default=384, help="embedding dimension")
def main(
    seed: int, reps: int, turn_cap: int, token_cap: int, budget: int, gate: float, dim: int
) -> None:
    selector = ContextSelector(budget, gate, recency_half_life_turns=4.0)
    print(
        f"context bench  seed={seed} reps={reps} turn_cap={turn_cap} "
        f"token_cap={token_cap} budget={budget} gate={gate} dim={dim}"
    )
    results: dict[str, dict[int, float]] = {}
    for label, capped in (("capped", True), ("uncapped", False)):
        rng = np.random.default_rng(seed)
        bases = []
        for length in LENGTHS:
            cap = turn_cap if capped else length + 1
            tokens = token_cap if capped else 60 * (length + 1)
            bases.append(build(rng, length, cap, tokens, dim))
        rows = []
        for length, base, (med, p99, ctx) in zip(
            LENGTHS, bases, per_turn(bases, selector, rng, reps), strict=True
        ):
            size, size8, ser = record_cost(base, max(1, reps // 10))
            rows.append((length, len(base), med, p99, ctx, size, size8, ser))
            results.setdefault(label, {})[length] = med
        title = (
            f"with turn_cap={turn_cap} (the setting)"
            if capped
            else "for contrast: cap lifted to the dialogue length"
        )
        table(title, rows)
    capped_ = results["capped"]
    r1000_1 = capped_[1000] / capped_[1]
    r1000_100 = capped_[1000] / capped_[100]
    print(f"\n  ratio per-turn latency 1000 / 1 turns:   {r1000_1:.2f}x (capped)")
    print(f"  ratio per-turn latency 1000 / 100 turns: {r1000_100:.2f}x (capped; target <= 1.5)")
    uncapped = results["uncapped"][1000] / results["uncapped"][1]
    print(f"  uncapped 1000 / 1 turns, for contrast:   {uncapped:.2f}x")
    ok = r1000_100 <= 1.5
    print("\nresult:", "bounded (target met)" if ok else "MISSED: cost grows with dialogue length")
    if not ok:
        raise click.ClickException(f"1000-turn cost is {r1000_100:.2f}x the 100-turn cost (> 1.5)")


if __name__ == "__main__":
    main()
