"""How long and how many: the quick and the full benchmark plans."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    """How long and how many: ``quick()`` or ``full()``."""

    mode: str
    warmup_n: int
    jvm_warm_s: float  # more warm-up rounds, at most this long, until Kafka's JIT has settled
    flat_s: float  # length of a flat-out phase
    flat_window: int  # the smallest flat-out window (see scenarios.Session.window)
    rate_s: float  # length of an offered-rate phase
    rate_warmup_s: float  # its first seconds are left out of the latency figures
    load_fractions: tuple[float, ...]  # offered rates, as fractions of the flat-out throughput
    target_rate: float  # always offered too, when within reach
    low_rate: float  # a trickle, always offered (latency at low load)
    lengths: tuple[int, ...]
    sweep: tuple[tuple[int, float], ...]  # (max_batch, max_wait_ms)
    sweep_rate_fraction: float
    dialogue_turns: tuple[int, ...]
    dialogue_e2e: bool
    inprocess_batches: tuple[int, ...]
    inprocess_s: float
    pa_concurrency: tuple[int, ...]
    pa_batched: tuple[tuple[int, int], ...]  # (batch, concurrency)
    pa_interval_ms: int
    pa_trials: int
    context_reps: int
    drain_max_s: float
    worker_env: dict[str, str] = field(default_factory=dict)  # INFERSTREAM_* for every worker

    @staticmethod
    def quick() -> Plan:
        return Plan(
            mode="quick",
            warmup_n=600,  # a fresh broker JVM spends its first minutes compiling
            jvm_warm_s=150.0,
            flat_s=6.0,
            flat_window=64,
            rate_s=6.0,
            rate_warmup_s=1.0,
            load_fractions=(0.5, 0.85, 1.0),
            target_rate=280.0,
            low_rate=20.0,
            lengths=(64, 128, 256),
            sweep=((1, 5.0), (32, 1.0), (32, 20.0)),
            sweep_rate_fraction=0.6,
            dialogue_turns=(1, 100, 1000),
            dialogue_e2e=False,
            inprocess_batches=(1, 8, 32),
            inprocess_s=1.5,
            pa_concurrency=(1, 32),
            pa_batched=((32, 2),),
            pa_interval_ms=2000,
            pa_trials=5,
            context_reps=300,
            drain_max_s=45.0,
        )

    @staticmethod
    def full() -> Plan:
        batches, waits = (1, 8, 32, 64), (1.0, 5.0, 20.0)
        return Plan(
            mode="full",
            warmup_n=1500,
            jvm_warm_s=300.0,
            flat_s=25.0,
            flat_window=64,
            rate_s=25.0,
            rate_warmup_s=3.0,
            load_fractions=(0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1),
            target_rate=280.0,
            low_rate=20.0,
            lengths=(64, 128, 256),
            sweep=tuple((b, w) for b in batches for w in waits if (b, w) != (32, 5.0)),
            sweep_rate_fraction=0.6,
            dialogue_turns=(1, 100, 1000),
            dialogue_e2e=True,
            inprocess_batches=(1, 8, 16, 32, 64),
            inprocess_s=4.0,
            pa_concurrency=(1, 4, 8, 16, 32, 64),
            pa_batched=((8, 2), (32, 2)),
            pa_interval_ms=5000,
            pa_trials=10,
            context_reps=2000,
            drain_max_s=120.0,
        )
