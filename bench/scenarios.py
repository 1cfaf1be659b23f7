"""Streaming scenarios: a process under test (an inferstream worker or the naive peer) on fresh
topics, then phases of load against it: warm-up, flat out, offered rates (the knee), sequence
lengths, dialogue lengths. Each phase waits until its events are answered (or gives up) before
the next starts, so phases do not share a backlog.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.cpu import CpuMeter, pid_file
from bench.load import Collector, Conversations, Load, Phase
from bench.plan import Plan
from bench.stack import TENANT, NaivePeer, Ports, ProcessFailed, Worker
from bench.texts import TextPool
from streams.settings import Settings

Log = Callable[[str], None]


class Target(Protocol):
    settings: Settings
    ports: Ports

    @property
    def log_path(self) -> Path: ...

    def pid(self) -> int | None: ...

    def start(self, timeout_s: float = ...) -> float: ...
    def stop(self, grace_s: float = ...) -> None: ...
    def alive(self) -> bool: ...
    def tail(self, lines: int = ...) -> str: ...


@dataclass
class Session:
    """Load and a collector against one running target."""

    target: Target
    plan: Plan
    pool: TextPool
    log: Log
    cpu: CpuMeter | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    phases: list[dict[str, Any]] = field(default_factory=list)
    load: Load = field(init=False)
    collector: Collector = field(init=False)

    def __post_init__(self) -> None:
        s = self.target.settings
        self.load = Load(s.bootstrap_servers, s.topic_in, TENANT, self.run_id)
        self.collector = Collector(
            s.bootstrap_servers,
            s.topic_out,
            s.topic_deadletter,
            getattr(s, "topic_analytics", None),
        )

    async def __aenter__(self) -> Session:
        await self.collector.start()
        await self.load.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.load.stop()
        await self.collector.stop()

    async def phase(
        self,
        tag: str,
        *,
        length: int = 64,
        rate: float | None = None,
        flat: bool = False,
        count: int | None = None,
        conversations: Conversations | None = None,
        record: bool = True,
        drain_s: float | None = None,
        stall_s: float = 20.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """One phase: ``rate``/s for plan.rate_s; or ``flat`` out (``window()`` events
        unanswered at most) for plan.flat_s; or ``count`` events at once (with ``flat``: through
        the window). Then wait for the answers and summarise. Raises ProcessFailed when the
        target died."""
        backlog = await self._settle()
        before = self.cpu.sample() if self.cpu else None
        convs = conversations or Conversations(f"{self.run_id}-{tag}")
        prefix = f"{self.run_id}.{tag}"
        window = self.window() if flat else None
        sent = await self.load.send(
            tag,
            self.pool.texts(length),
            convs,
            rate=rate,
            duration_s=self.plan.rate_s if rate else (self.plan.flat_s if count is None else None),
            count=count,
            window=window,
            answered=lambda: self.collector.done_by_tag[prefix],
            progress=self.collector.progress,
        )
        # a backlog drains as fast as the target goes: wait up to drain_max_s, but give up
        # after stall_s without a single answer (a stuck target)
        drained = await self.collector.wait(
            prefix, len(sent), drain_s or self.plan.drain_max_s, self.target.alive, stall_s
        )
        if not self.target.alive():
            raise ProcessFailed(f"died during phase {tag}:\n{self.target.tail()}")
        if self.cpu and before:
            extra["cpu"] = self.cpu.usage(before, self.cpu.sample(), len(sent))
        warm = self.plan.rate_warmup_s if rate is not None or (flat and count is None) else 0.0
        ph = Phase(
            tag=tag,
            offered=rate,
            sent=sent,
            results=self.collector.results,
            dead=self.collector.dead,
            drained=drained,
            batch_size=self.collector.batch_size,
            warmup_s=warm,
            window=window if count is None else None,
        )
        summary = ph.summary() | extra
        summary |= {
            "length": length,
            "backlog_at_start": backlog,
            "duplicates": self.collector.duplicates[prefix],
        }
        if record:
            self.phases.append(summary)
        self.log(_line(summary))
        return summary

    def window(self) -> int:
        """Flat out keeps this many events unanswered: what the worker may hold
        (``max_pending``) plus two full batches waiting in Kafka, so it never runs dry, and no
        deeper (a deeper queue only adds latency and drain time)."""
        s = self.target.settings
        return max(self.plan.flat_window, s.max_pending + 2 * s.max_batch)

    async def _settle(self) -> int:
        """Before a phase: wait (up to drain_max_s) until every earlier event is answered, so
        that phases do not share a backlog; returns how many were still unanswered."""
        deadline = time.monotonic() + self.plan.drain_max_s
        while (left := self.unanswered()) and time.monotonic() < deadline:
            if not self.target.alive():
                break
            await asyncio.sleep(0.1)
        if left:
            self.log(f"    ({left} earlier events still unanswered: the next phase shares them)")
        return left

    def unanswered(self) -> int:
        done = self.collector.results.keys() | self.collector.dead.keys()
        return sum(1 for s in self.load.sent_log if s.event_id not in done)

    def first_answer_s(self, tag: str) -> float | None:
        """Seconds from the first send of a phase to its first answer."""
        prefix = f"{self.run_id}.{tag}."
        sent = [s.ts for s in self.load.sent_log if s.event_id.startswith(prefix)]
        got = [g.arrival for k, g in self.collector.results.items() if k.startswith(prefix)]
        return round(min(got) - min(sent), 2) if sent and got else None


def _line(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    offered = "flat out" if s["offered_per_s"] is None else f"{s['offered_per_s']:.0f}/s"
    warn = "" if s["drained"] and s["answered"] == s["sent"] else "  (NOT all answered)"
    odd = {k: v for k, v in s["statuses"].items() if k != "ok"}
    if odd or s["dead_letters"] or s.get("duplicates"):
        warn += f"  (not ok: {odd}, dead letters {s['dead_letters']}, dup {s.get('duplicates')})"
    return (
        f"    {s['tag']:<22} L={s['length']:<3} offered {offered:>9}: "
        f"{s['answered']}/{s['sent']} answered, {s['throughput_per_s']:.0f}/s, "
        f"p50 {lat.get('p50', math.nan):.0f} ms, p99 {lat.get('p99', math.nan):.0f} ms{warn}"
    )


Body = Callable[[Session], Awaitable[dict[str, Any]]]


def run_target(target: Target, plan: Plan, pool: TextPool, log: Log, body: Body) -> dict[str, Any]:
    """Start the target, run ``body`` in a session, stop it; failures become an ``error``."""
    out: dict[str, Any] = {"phases": [], "log": str(target.log_path)}
    began = time.monotonic()
    try:
        out["ready_s"] = round(target.start(), 1)
    except Exception as exc:  # e.g. topics that cannot be made: reported, the rest still runs
        log(f"    FAILED to start: {type(exc).__name__}: {exc}")
        target.stop()
        return out | {"error": f"{type(exc).__name__}: {exc}", "log_tail": target.tail(40)}
    roots = {
        "target": target.pid,
        "triton": pid_file(target.ports.triton_pid_file),
        "kafka": pid_file(target.ports.kafka_pid_file),
        "load": os.getpid,
    }
    session = Session(target, plan, pool, log, CpuMeter(roots))
    try:

        async def go() -> dict[str, Any]:
            async with session:
                # The 'Ready' line comes before the group join and the table restores: the
                # first answers can take a while, so the warm-up waits longer.
                warm = await session.phase(
                    "warmup", count=plan.warmup_n, record=False, drain_s=240.0, stall_s=180.0
                )
                if not warm["drained"]:
                    raise ProcessFailed("no answers to the warm-up events within 240 s")
                first = session.first_answer_s("warmup")
                await warm_jvm(session)
                return {"first_answer_s": first} | await body(session)

        out |= asyncio.run(go())
    except Exception as exc:  # a failed scenario is reported; the others still run
        log(f"    FAILED: {type(exc).__name__}: {exc}")
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=6)
        out["log_tail"] = target.tail(40)
    finally:
        out["phases"] = session.phases
        stopping = time.monotonic()
        target.stop()
        out["stop_s"] = round(time.monotonic() - stopping, 1)
        out["scenario_s"] = round(time.monotonic() - began, 1)
    return out


JIT_SETTLED = 0.10  # the broker's JIT threads under this share of its CPU in a warm-up round


async def warm_jvm(session: Session) -> None:
    """More warm-up rounds (flat out, not recorded) until Kafka's JIT compiler threads use
    under ``JIT_SETTLED`` of the broker's CPU, for at most ``plan.jvm_warm_s``: the phases that
    follow measure a broker that runs its compiled code, as one that has run for days does (the
    JIT's share is still reported per phase, as ``kafka_jit``)."""
    deadline = time.monotonic() + session.plan.jvm_warm_s
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = await session.phase(f"jvmwarm{n}", count=session.plan.warmup_n, flat=True, record=False)
        per = (r.get("cpu") or {}).get("cpu_ms_per_event") or {}
        kafka, jit = per.get("kafka"), per.get("kafka_jit")
        if not kafka or jit is None:
            return  # no /proc figures: nothing to wait for
        share = jit / kafka
        session.log(f"    (Kafka JIT {share:.0%} of the broker's CPU)")
        if share < JIT_SETTLED:
            return


def rate_at(fraction: float, capacity: Any) -> float | None:
    """``fraction`` of a measured throughput, rounded to 5/s (at least 5); None when there is
    no usable measure (nan, zero: the flat-out phase failed)."""
    if not isinstance(capacity, int | float) or not math.isfinite(capacity) or capacity <= 0:
        return None
    return max(5.0, round(fraction * capacity / 5) * 5)


def offered_rates(plan: Plan, capacity: float, explicit: list[float] | None) -> list[float]:
    if explicit:
        return sorted(explicit)
    if rate_at(1.0, capacity) is None:
        return []
    rates = {max(5.0, round(f * capacity / 5) * 5) for f in plan.load_fractions}
    if plan.target_rate <= 1.2 * capacity:
        rates.add(plan.target_rate)
    if plan.low_rate < 0.5 * capacity:
        rates.add(plan.low_rate)
    return sorted(rates)


def knee(points: list[dict[str, Any]]) -> dict[str, Any]:
    """``sustained``: highest offered rate fully answered at >= 95 % of the offered rate.
    ``knee``: highest sustained rate whose p99 is at most twice the lightest load's p99 (past
    it, latency climbs with load)."""
    ok = [
        p
        for p in points
        if p["drained"]
        and p["answered"] == p["sent"]
        and p["throughput_per_s"] >= 0.95 * p["offered_per_s"]
    ]
    base = points[0]["latency_ms"].get("p99", math.inf) if points else math.inf
    calm = [p for p in ok if p["latency_ms"].get("p99", math.inf) <= 2 * base]
    return {
        "sustained_per_s": max((p["offered_per_s"] for p in ok), default=None),
        "knee_per_s": max((p["offered_per_s"] for p in calm), default=None),
    }


async def load_curve(
    session: Session, capacity: float, explicit: list[float] | None
) -> list[dict[str, Any]]:
    """Offered rates in ascending order; stops after the first one the target cannot sustain."""
    points = []
    for rate in offered_rates(session.plan, capacity, explicit):
        point = await session.phase(f"rate{rate:.0f}", rate=rate)
        points.append(point)
        if not (point["drained"] and point["throughput_per_s"] >= 0.9 * rate):
            session.log("    (saturated: no higher rates)")
            break
    return points


def e2e_main(
    ports: Ports, plan: Plan, pool: TextPool, log: Log, rates: list[float] | None
) -> dict[str, Any]:
    """The default worker: flat out, the load curve at L=64, then the other sequence lengths."""

    async def body(s: Session) -> dict[str, Any]:
        flat = await s.phase("flat64", flat=True)
        curve = await load_curve(s, flat["throughput_per_s"], rates)
        lengths: dict[str, dict[str, Any]] = {"64": {"flat": flat}}
        for length in plan.lengths:
            if length == 64:
                continue
            f = await s.phase(f"flat{length}", length=length, flat=True)
            r = rate_at(0.5, f["throughput_per_s"])
            if r is None:
                s.log(f"    (no flat-out figure at L={length}: its offered-rate phase skipped)")
                lengths[str(length)] = {"flat": f}
                continue
            lengths[str(length)] = {
                "flat": f,
                "rate": await s.phase(f"len{length}", length=length, rate=r),
            }
        half = at_rate(curve, rate_at(0.5, flat["throughput_per_s"]))
        if half is not None:
            lengths["64"]["rate"] = half
        low = at_rate(curve, plan.low_rate)
        return {
            "flat": flat,
            "curve": curve,
            "knee": knee(curve),
            "lengths": lengths,
            "half": half,
            "low": low,
        }

    log("e2e: inferstream worker, default settings")
    worker = Worker(ports, plan.worker_env, name="bench-e2e")
    return run_target(worker, plan, pool, log, body)


def at_rate(curve: list[dict[str, Any]], rate: float | None) -> dict[str, Any] | None:
    """The load curve's point offered at ``rate``."""
    return next((p for p in curve if p["offered_per_s"] == rate), None)


def e2e_at_least_once(ports: Ports, plan: Plan, pool: TextPool, log: Log) -> dict[str, Any]:
    """The same worker with ``processing_guarantee=at_least_once``: flat out, then at half its
    flat-out rate and at the low rate (the price of exactly-once, side by side)."""
    knobs = plan.worker_env | {"INFERSTREAM_PROCESSING_GUARANTEE": "at_least_once"}

    async def body(s: Session) -> dict[str, Any]:
        flat = await s.phase("flat64", flat=True)
        out: dict[str, Any] = {"flat": flat}
        half = rate_at(0.5, flat["throughput_per_s"])
        if half is not None:
            out["half"] = await s.phase(f"rate{half:.0f}", rate=half)
            out["low"] = await s.phase(f"rate{plan.low_rate:.0f}", rate=plan.low_rate)
        return out

    log("e2e: inferstream worker, at_least_once")
    worker = Worker(ports, knobs, name="bench-alo")
    return run_target(worker, plan, pool, log, body)


def e2e_sweep_point(
    ports: Ports, plan: Plan, pool: TextPool, log: Log, batch: int, wait_ms: float, rate: float
) -> dict[str, Any]:
    knobs = plan.worker_env | {
        "INFERSTREAM_MAX_BATCH": str(batch),
        "INFERSTREAM_MAX_WAIT_MS": str(wait_ms),
    }

    async def body(s: Session) -> dict[str, Any]:
        flat = await s.phase("flat64", flat=True)
        return {"flat": flat, "rate": await s.phase(f"rate{rate:.0f}", rate=rate)}

    log(f"sweep: max_batch={batch} max_wait_ms={wait_ms:g}")
    worker = Worker(ports, knobs, name=f"bench-sweep-b{batch}-w{wait_ms:g}")
    out = run_target(worker, plan, pool, log, body)
    return out | {"max_batch": batch, "max_wait_ms": wait_ms}


def e2e_dialogues(
    ports: Ports, plan: Plan, pool: TextPool, log: Log, rate: float
) -> dict[str, Any]:
    """Dialogue length end to end: 8 conversations are first given K-1 turns (flat out, not
    measured), then turns K, K+1, ... are offered at ``rate``."""

    async def body(s: Session) -> dict[str, Any]:
        points = []
        for turns in plan.dialogue_turns:
            if turns == 1:
                convs = Conversations(f"{s.run_id}-d1", per_conversation=1)
            else:
                convs = Conversations(f"{s.run_id}-d{turns}", active=8)
                await s.phase(
                    f"prefill{turns}",
                    count=8 * (turns - 1),
                    flat=True,
                    conversations=convs,
                    record=False,
                    drain_s=600.0,
                )
            points.append(
                await s.phase(f"dialog{turns}", rate=rate, conversations=convs, turns=turns)
            )
        return {"points": points}

    log(f"dialogue length end to end at {rate:.0f}/s")
    worker = Worker(ports, plan.worker_env, name="bench-dialogue")
    return run_target(worker, plan, pool, log, body)


def naive_peer(ports: Ports, plan: Plan, pool: TextPool, log: Log) -> dict[str, Any]:
    async def body(s: Session) -> dict[str, Any]:
        flat = await s.phase("flat64", flat=True)
        rate = rate_at(0.5, flat["throughput_per_s"])
        if rate is None:
            return {"flat": flat}
        return {"flat": flat, "rate": await s.phase(f"rate{rate:.0f}", rate=rate)}

    log("naive peer: one message at a time, one Triton call each")
    return run_target(NaivePeer(ports), plan, pool, log, body)


def quiet_kafka_logs() -> None:
    """aiokafka warns on every retried produce right after topic creation: harmless here."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def flat_rate(result: dict[str, Any] | None) -> float:
    """The flat-out throughput a scenario measured (nan when it did not)."""
    value = ((result or {}).get("flat") or {}).get("throughput_per_s")
    return float(value) if isinstance(value, int | float) else math.nan


def default_sweep_point(e2e: dict[str, Any], rate: float) -> dict[str, Any]:
    """The main run's worker (default max_batch / max_wait_ms) as the sweep's own point."""
    fields = Settings.model_fields
    point = next((p for p in e2e.get("curve", []) if p["offered_per_s"] == rate), None)
    return {
        "max_batch": fields["max_batch"].default,
        "max_wait_ms": fields["max_wait_ms"].default,
        "default": True,
        "flat": e2e.get("flat"),
        "rate": point,
        **({"error": e2e["error"]} if e2e.get("error") else {}),
    }
