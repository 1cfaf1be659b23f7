"""Load: an aiokafka producer sending turns at a fixed offered rate (open loop) or flat out, with
the event ``ts`` set at send time, and a ``read_committed`` collector that timestamps every result
as it arrives on the output topic. Latency = arrival - event ts (same host, same clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stats import dist, steady_rate
from streams.admin import topic_partitions


@dataclass(slots=True)
class Sent:
    event_id: str
    ts: float  # the event's ts: wall clock when it was handed to the producer
    behind_ms: float  # how late against the offered-rate schedule (0 when flat out)


@dataclass(slots=True)
class Got:
    arrival: float
    status: str
    backend: str
    latency_ms: dict[str, float]
    produced_at: float | None


class Conversations:
    """Which conversation each next turn belongs to: ``per_conversation`` turns each, spread
    round-robin over ``active`` conversations at a time (1 turn each: every event is new)."""

    def __init__(self, prefix: str, active: int = 64, per_conversation: int | None = None) -> None:
        self.prefix = prefix
        self.active = active
        self.per_conversation = per_conversation
        self._n = itertools.count()

    def next(self) -> tuple[str, int]:
        i = next(self._n)
        if self.per_conversation == 1:
            return f"{self.prefix}-{i}", 0
        return f"{self.prefix}-{i % self.active}", i // self.active


class Collector:
    """Every result (and dead letter) that becomes visible on the output topics, by event id."""

    def __init__(
        self,
        bootstrap: str,
        topic_out: str,
        topic_dead: str | None = None,
        topic_analytics: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = [t for t in (topic_out, topic_dead, topic_analytics) if t]
        self.topic_out = topic_out
        self.topic_analytics = topic_analytics
        self.results: dict[str, Got] = {}
        self.dead: dict[str, str] = {}
        self.batch_size: dict[str, int] = {}  # from the worker's analytics records
        self.duplicates: Counter[str] = Counter()  # by phase: a result seen twice
        self.done_by_tag: Counter[str] = Counter()
        self.progress = asyncio.Event()  # set whenever answers arrive
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            # a chat backend waiting on a turn reads its results with short fetch waits: the
            # broker may hold a read_committed fetch for this long after a commit
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        parts = [tp for t in self.topics for tp in await topic_partitions(consumer, t)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the positions now, before anything is produced
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for tp, records in batch.items():
                for rec in records:
                    self._record(tp.topic, rec.value, now)
            if batch:
                self.progress.set()

    def _record(self, topic: str, raw: bytes | None, now: float) -> None:
        try:
            value = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError:
            return
        if not isinstance(value, dict) or not isinstance(value.get("event_id"), str):
            return
        event_id = value["event_id"]
        if topic == self.topic_analytics:
            size = (value.get("batch") or {}).get("size")
            if isinstance(size, int):
                self.batch_size[event_id] = size
            return
        if event_id in self.results or event_id in self.dead:
            self.duplicates[event_id.rsplit(".", 1)[0]] += 1
            return
        if topic != self.topic_out:
            self.dead[event_id] = str(value.get("reason"))
        else:
            self.results[event_id] = Got(
                arrival=now,
                status=str(value.get("status", "ok")),
                backend=str(value.get("backend", "")),
                latency_ms={
                    k: float(v)
                    for k, v in (value.get("latency_ms") or {}).items()
                    if isinstance(v, int | float)
                },
                produced_at=value.get("produced_at"),
            )
        self.done_by_tag[event_id.rsplit(".", 1)[0]] += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait(
        self,
        tag: str,
        count: int,
        timeout_s: float,
        alive: Callable[[], bool] = lambda: True,
        stall_s: float = 30.0,
    ) -> bool:
        """Until ``count`` events of ``tag`` are answered; False on timeout, a stall of
        ``stall_s`` without progress, or when the process under test died."""
        if self._task is not None and self._task.done():
            self._task.result()  # the collector itself failed: raise its error
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while (done := self.done_by_tag[tag]) < count:
            now = time.monotonic()
            if done != last:
                last, last_change = done, now
            if now >= deadline or now - last_change > stall_s or not alive():
                return False
            await asyncio.sleep(0.05)
        return True


class Load:
    """Sends turns of the benchmark tenant to the input topic."""

    def __init__(self, bootstrap: str, topic: str, tenant: str, run_id: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.tenant = tenant
        self.run_id = run_id
        self._producer: AIOKafkaProducer | None = None
        self.sent_log: list[Sent] = []

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(
        self,
        tag: str,
        texts: Sequence[str],
        conversations: Conversations,
        *,
        rate: float | None = None,
        duration_s: float | None = None,
        count: int | None = None,
        window: int | None = None,
        answered: Callable[[], int] | None = None,
        progress: asyncio.Event | None = None,
    ) -> list[Sent]:
        """Open loop: ``rate`` events/s for ``duration_s`` (a late send is not skipped; its
        lateness is recorded). Closed loop (flat out): at most ``window`` events sent and not
        yet ``answered()``, for ``duration_s`` or until ``count`` are sent. Or ``count``
        events at once."""
        assert self._producer is not None, "start() first"
        producer = self._producer
        limit = int(rate * (duration_s or 0)) if rate is not None else count
        start = time.monotonic()
        end = start + duration_s if duration_s is not None and rate is None else math.inf
        sent: list[Sent] = []
        futures: list[asyncio.Future[Any]] = []
        i = 0
        while (limit is None or i < limit) and time.monotonic() < end:
            behind = 0.0
            if rate is not None:
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                behind = max(0.0, time.monotonic() - due) * 1000
            elif (
                window is not None
                and answered is not None
                and not await _room(i, window, answered, progress, end)
            ):
                break  # flat out for duration_s: the time ran out while the window was full
            cid, turn = conversations.next()
            event_id = f"{self.run_id}.{tag}.{i:07d}"
            ts = time.time()
            value = orjson.dumps(
                {
                    "schema": "inferstream.conversation/v1",
                    "event_id": event_id,
                    "conversation_id": cid,
                    "tenant": self.tenant,
                    "user_id": "bench-user",
                    "text": texts[i % len(texts)],
                    "ts": ts,
                    "metadata": {"turn": turn, "department": "support", "role": "agent"},
                }
            )
            futures.append(await producer.send(self.topic, value, key=cid.encode()))
            sent.append(Sent(event_id, ts, behind))
            i += 1
        errors = [r for r in await asyncio.gather(*futures, return_exceptions=True) if _err(r)]
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(sent)} sends failed: {errors[0]!r}")
        self.sent_log.extend(sent)
        return sent


async def _room(
    sent: int,
    window: int,
    answered: Callable[[], int],
    progress: asyncio.Event | None,
    end: float,
) -> bool:
    """Wait until fewer than ``window`` events are unanswered; False if ``end`` came first."""
    while sent - answered() >= window:
        if time.monotonic() >= end:
            return False
        if progress is None:
            await asyncio.sleep(0.005)
            continue
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), 0.1)
    return True


def _err(result: object) -> bool:
    return isinstance(result, BaseException)


@dataclass
class Phase:
    """What one phase measured; ``summary()`` is its JSON form."""

    tag: str
    offered: float | None  # events/s; None = flat out
    sent: list[Sent]
    results: dict[str, Got]
    dead: dict[str, str]
    drained: bool
    batch_size: dict[str, int]
    warmup_s: float = 0.0
    window: int | None = None  # flat out with at most this many unanswered events
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        got = [(s, self.results[s.event_id]) for s in self.sent if s.event_id in self.results]
        t0 = self.sent[0].ts if self.sent else 0.0
        measured = [(s, g) for s, g in got if s.ts >= t0 + self.warmup_s]
        e2e = [(g.arrival - s.ts) * 1000 for s, g in measured]
        stages: dict[str, list[float]] = defaultdict(list)
        for _, g in measured:
            for name, ms in g.latency_ms.items():
                stages[f"worker.{name}"].append(ms)
            if "end_to_end" in g.latency_ms and "inference" in g.latency_ms:
                stages["worker.end_to_end-inference"].append(
                    g.latency_ms["end_to_end"] - g.latency_ms["inference"]
                )
            if isinstance(g.produced_at, int | float):
                stages["result produced -> consumed"].append((g.arrival - g.produced_at) * 1000)
        arrivals = [g.arrival for _, g in got]
        if self.offered is None and self.window is None:  # a burst: its drain rate
            throughput = steady_rate(arrivals)
        else:  # completions per second while the load was being offered, past the warm-up
            lo = t0 + self.warmup_s
            hi = self.sent[-1].ts if self.sent else lo
            done = sum(1 for a in arrivals if lo <= a <= hi)
            throughput = done / (hi - lo) if hi > lo else float("nan")
        span = (max(arrivals) - t0) if arrivals else float("nan")
        return {
            "tag": self.tag,
            "offered_per_s": self.offered,
            "window": self.window,
            "sent": len(self.sent),
            "answered": len(got),
            "dead_letters": sum(1 for s in self.sent if s.event_id in self.dead),
            "dead_letter_reasons": dict(
                Counter(self.dead[s.event_id] for s in self.sent if s.event_id in self.dead)
            ),
            "drained": self.drained,
            "throughput_per_s": round(throughput, 1),
            "overall_per_s": round(len(got) / span, 1) if got and span > 0 else None,
            "statuses": dict(Counter(g.status for _, g in got)),
            "backends": dict(Counter(g.backend for _, g in got)),
            "latency_ms": dist(e2e),
            "stages_ms": {k: dist(v) for k, v in sorted(stages.items())},
            "producer_behind_ms": dist([s.behind_ms for s in self.sent]),
            "batch_size": dist(
                [
                    float(self.batch_size[s.event_id])
                    for s, _ in measured
                    if s.event_id in self.batch_size
                ]
            ),
            **self.extra,
        }
