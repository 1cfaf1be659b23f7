"""Tracing on versus off inside the same worker processes: a crossover on live workers.

``bench.tracing_e2e --side-by-side`` gives each mode a worker process of its own for the whole
run, so whatever makes one process dearer than another (its hash seed, where its memory lies, its
place in the scheduler's queue) is read as its mode's effect, and the rounds' standard error
cannot see it: the A/A control, two identical untraced workers, read +0.06 ± 0.04 ms of CPU per
event in one run and -0.03 ± 0.03 in another, a third of what tracing costs.

Here every worker starts with the same tracing settings (``--mode``), and tracing is switched
off and on inside each running worker between rounds (``bench/probe``: real-time signals; off,
the worker's ``KafkaTracing`` has no pipeline, the very path of a worker started with tracing
off). Each round, half the workers trace, by a balanced schedule (every way to choose half of
them, in a shuffled order: each worker traces in half the rounds), and every worker gets its
burst at once (``tracing_e2e.side_by_side``). What one event costs, by worker and round, is fitted
by least squares with a term per round (the machine's drift), a term per worker (the process)
and the tracing term; its standard error comes from the residuals. ``--aa`` keeps every worker
off while following the same schedule: the tracing term must then read zero within its error.

    .venv/bin/python -m bench.tracing_crossover [--workers 4] [--repeat 12] [--events 3000]
                                                [--mode "on (every event)"] [--aa]

Figures: the worker's CPU per event (from /proc, over the seconds of the round), the tracing
term and its share of the untraced worker's CPU (what tracing costs where the worker's own core
limits throughput) and of the whole pipeline's CPU per event (worker, Triton, Kafka: where the
host's CPU does), and the workers' outputs per second while all were busy (with several workers
the shared Triton is the bottleneck, so throughput moves little). Writes
bench/out/tracing_crossover.json (``--aa``: tracing_crossover_aa.json).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import signal
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.tracing_e2e import MODES, OUT, PROBE, Stack, burst, measure_side_by_side, start_worker
from streams import local
from streams.settings import Settings

SWITCH_ON, SWITCH_OFF = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2  # as bench/probe's


def schedule(workers: int, rounds: int, seed: int) -> list[tuple[bool, ...]]:
    """Which workers trace in each round: every way to choose half of them, each cycle of them
    in a new random order. Over whole cycles each worker traces in half the rounds and every
    pair of workers is split as often as not."""
    if workers < 2 or workers % 2:
        raise ValueError(f"--workers {workers}: need an even number, at least 2")
    patterns = [
        tuple(w in chosen for w in range(workers))
        for chosen in itertools.combinations(range(workers), workers // 2)
    ]
    rng = random.Random(seed)
    out: list[tuple[bool, ...]] = []
    while len(out) < rounds:
        out += rng.sample(patterns, len(patterns))
    return out[:rounds]


@dataclass(frozen=True)
class Fit:
    """The tracing term of ``value = round + worker + effect * on``: estimate, standard error,
    residual degrees of freedom, and the mean of the cells with tracing off."""

    effect: float
    se: float
    dof: int
    off_mean: float


def fit(cells: Sequence[tuple[int, int, bool, float]]) -> Fit:
    """Least squares over (round, worker, on, value) cells: a term per round, per worker (the
    first worker's is zero) and for tracing on; the tracing term's standard error from the
    residuals."""
    rounds = sorted({c[0] for c in cells})
    workers = sorted({c[1] for c in cells})
    x = np.zeros((len(cells), len(rounds) + len(workers)))
    y = np.array([c[3] for c in cells], dtype=float)
    for i, (r, w, on, _) in enumerate(cells):
        x[i, rounds.index(r)] = 1.0
        if workers.index(w):
            x[i, len(rounds) + workers.index(w) - 1] = 1.0
        x[i, -1] = 1.0 if on else 0.0
    dof = len(cells) - x.shape[1]
    if dof < 1 or np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError("too few rounds to separate tracing from rounds and workers (--repeat)")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ beta
    sigma2 = float(residual @ residual) / dof
    cov = sigma2 * np.linalg.inv(x.T @ x)
    off = [c[3] for c in cells if not c[2]]
    return Fit(float(beta[-1]), math.sqrt(max(0.0, cov[-1, -1])), dof, statistics.mean(off))


def _switch(workers: Sequence[local.WorkerProcess], pattern: Sequence[bool]) -> None:
    for worker, on in zip(workers, pattern, strict=True):
        pid = worker.pid()
        if pid is None:
            raise RuntimeError(f"{worker.name} is not running (see {worker.log_path})")
        os.kill(pid, SWITCH_ON if on else SWITCH_OFF)
    time.sleep(0.5)  # idle workers: the handlers have run long before


def _round(
    r: int,
    pattern: Sequence[bool],
    workers: list[tuple[local.WorkerProcess, Settings]],
    others: dict[str, Any],
    count_file: Path,
    n: int,
) -> list[dict[str, Any]]:
    """Every worker's burst at once, tracing where ``pattern`` says; one cell per worker."""
    _switch([w for w, _ in workers], pattern)
    named = {f"w{i}": worker for i, worker in enumerate(workers)}
    m = measure_side_by_side(named, others, count_file, n)
    used = {k: m.cpu1.seconds[k] - m.cpu0.seconds[k] for k in m.cpu1.seconds if k in m.cpu0.seconds}
    shared_ms = 1000 * sum(v for k, v in used.items() if k in others) / (n * len(workers))
    cells = []
    for i, (name, on) in enumerate(zip(named, pattern, strict=True)):
        spans = m.spans(name) / n
        if (spans > 0) != on:  # the switch is checked, not assumed
            raise RuntimeError(f"round {r + 1}: {name} should trace {on}, exported {spans} spans")
        rate, lat = m.result[name]
        cell = {
            "round": r, "worker": i, "on": on, "events_per_s": rate,
            "worker_cpu_ms": 1000 * used[name] / n, "shared_cpu_ms": shared_ms,
            "spans_per_event": spans, "p50_ms": statistics.median(lat),
        }  # fmt: skip
        cells.append(cell)
        print(
            f"round {r + 1:2d} {name} {'on ' if on else 'off'} {rate:6.1f} ev/s  worker "
            f"{cell['worker_cpu_ms']:.3f} ms/ev  shared {shared_ms:.3f} ms/ev  spans/ev "
            f"{spans:.2f}  p50 {cell['p50_ms']:.0f} ms"
        )
    if m.sent and not any(pattern):
        raise RuntimeError(f"round {r + 1}: {m.sent} OTLP bytes with every worker off")
    return cells


def summarize(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The tracing term for worker CPU per event and for log throughput, and the shares."""
    key = [(c["round"], c["worker"], c["on"]) for c in cells]
    cpu = fit([(*k, c["worker_cpu_ms"]) for k, c in zip(key, cells, strict=True)])
    tput = fit([(*k, math.log(c["events_per_s"])) for k, c in zip(key, cells, strict=True)])
    shared = statistics.mean(c["shared_cpu_ms"] for c in cells)
    return {
        "worker_cpu_ms": asdict(cpu),
        "worker_cpu_pct": 100 * cpu.effect / cpu.off_mean,
        "worker_cpu_pct_se": 100 * cpu.se / cpu.off_mean,
        # where the worker's own core is the limit, throughput falls as its CPU per event rises
        "worker_bound_throughput_cost_pct": 100 * cpu.effect / (cpu.off_mean + cpu.effect),
        "pipeline_cpu_pct": 100 * cpu.effect / (cpu.off_mean + shared),
        "pipeline_cpu_pct_se": 100 * cpu.se / (cpu.off_mean + shared),
        "shared_cpu_ms": shared,
        "throughput_pct": 100 * (math.exp(tput.effect) - 1),
        "throughput_pct_se": 100 * tput.se,
        "spans_per_event_on": statistics.mean(c["spans_per_event"] for c in cells if c["on"])
        if any(c["on"] for c in cells)
        else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4, help="an even number")
    ap.add_argument("--repeat", type=int, default=12, help="rounds")
    ap.add_argument("--events", type=int, default=3000, help="per worker and round")
    ap.add_argument("--mode", default="on (every event)", help="tracing settings (MODES)")
    ap.add_argument("--aa", action="store_true", help="every worker stays off (A/A check)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--port-base", type=int, default=60000)
    args = ap.parse_args()
    if MODES.get(args.mode, {}).get("INFERSTREAM_TRACING_EXPORTER", "none") == "none":
        raise SystemExit(f"--mode {args.mode!r}: a mode with tracing on ({', '.join(MODES)})")
    plan = schedule(args.workers, args.repeat, args.seed)
    stack = Stack.start(args.port_base)
    probe = {"PYTHONPATH": str(PROBE), "INFERSTREAM_BENCH_SWITCH": "1"}
    workers: list[tuple[local.WorkerProcess, Settings]] = []
    cells: list[dict[str, Any]] = []
    try:
        for i in range(args.workers):
            workers.append(
                start_worker(args.mode, stack.ports, stack.keys, stack.otlp_port, slot=i,
                             extra=probe)
            )  # fmt: skip
        for _, settings in workers:  # warm-up, tracing on: model, caches, the broker's JIT
            asyncio.run(burst(settings, 300))
        time.sleep(3)  # the warm-up's spans exported before counting
        for r, pattern in enumerate(plan):
            cells += _round(r, (False,) * len(pattern) if args.aa else pattern, workers,
                            stack.others, stack.count_file, args.events)  # fmt: skip
    finally:
        for worker, _ in workers:
            worker.stop()
        stack.stop()
    if args.aa:  # the labels of the schedule, on workers that all stayed off
        for c in cells:
            c["on"] = plan[c["round"]][c["worker"]]
    result = summarize(cells)
    cpu = result["worker_cpu_ms"]
    bound = result["worker_bound_throughput_cost_pct"]
    print(
        f"\n{args.mode}{' (A/A: every worker off)' if args.aa else ''}, {args.workers} workers, "
        f"{args.repeat} rounds of {args.events} events each; least squares with round and "
        f"worker terms ({cpu['dof']} residual degrees of freedom):\n"
        f"  worker CPU per event, off:    {cpu['off_mean']:.3f} ms\n"
        f"  tracing:                      {cpu['effect']:+.3f} ± {cpu['se']:.3f} ms "
        f"({result['worker_cpu_pct']:+.1f} % ± {result['worker_cpu_pct_se']:.1f} of the worker's "
        f"CPU; a worker-bound throughput cost of {bound:.1f} %)"
        f"\n  of the pipeline's CPU:        {result['pipeline_cpu_pct']:+.1f} % ± "
        f"{result['pipeline_cpu_pct_se']:.1f} (Triton, Kafka, collector: "
        f"{result['shared_cpu_ms']:.3f} ms an event)\n"
        f"  throughput, all busy:         {result['throughput_pct']:+.1f} % ± "
        f"{result['throughput_pct_se']:.1f}\n"
        f"  spans per traced event:       {result['spans_per_event_on']:.2f}"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"tracing_crossover{'_aa' if args.aa else ''}.json"
    path.write_text(json.dumps({
        "mode": args.mode, "aa": args.aa, "workers": args.workers, "repeat": args.repeat,
        "events": args.events, "summary": result, "cells": cells,
    }, indent=2))  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
