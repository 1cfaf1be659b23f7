"""Helpers of the reliability tests: tenant policies, an RSS sampler, polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from streams.settings import Settings
from tests.integration import kafka_io


def allow_tenants(settings: Settings, tenants: Iterable[str]) -> None:
    for tenant in sorted(set(tenants)):
        asyncio.run(publish_policy(settings, tenant, allow_all_policy(tenant, 1)))


@dataclass
class RssSampler:
    """Samples VmRSS of a process every `every_s` in a thread; `peak_kib` is the largest sample,
    `hwm_kib` the kernel's own high-water mark (VmHWM) at the last sample."""

    pid: int
    every_s: float = 0.25
    peak_kib: int = 0
    hwm_kib: int = 0
    samples: int = 0
    first_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _read(self) -> dict[str, int]:
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0])
        return fields

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status = self._read()
            except (FileNotFoundError, ProcessLookupError):
                return
            self.samples += 1
            self.first_kib = self.first_kib or status["VmRSS"]
            self.peak_kib = max(self.peak_kib, status["VmRSS"])
            self.hwm_kib = status["VmHWM"]
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def describe(self) -> str:
        mib = 1024.0
        return (
            f"worker RSS: start {self.first_kib / mib:.0f} MiB, peak sampled "
            f"{self.peak_kib / mib:.0f} MiB, VmHWM {self.hwm_kib / mib:.0f} MiB "
            f"({self.samples} samples)"
        )


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> float:
    """Poll `predicate()` until it is true; returns the seconds it took (TimeoutError if never)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"not true after {timeout_s:.0f}s: {predicate}")
        time.sleep(every_s)
    return time.monotonic() - start


TEXTS = [
    "Hi there, good morning!",
    "My card was charged twice for the same order.",
    "I can't log in, my password reset link never arrives.",
    "The app crashes whenever I open the settings page.",
    "Where is my parcel? Tracking hasn't moved in a week.",
    "Love the new dark mode, great job!",
]


def valid_turns(
    prefix: str, n: int, tenants: Sequence[str], conversations: int = 31
) -> list[ConversationEvent]:
    """`n` valid turns with ids `<prefix>-00000`...; over `conversations` conversations."""
    return [
        ConversationEvent(
            event_id=f"{prefix}-{i:05d}",
            conversation_id=f"{prefix}-conv-{i % conversations}",
            tenant=tenants[i % len(tenants)],
            user_id=f"user-{i % 7}",
            text=f"{TEXTS[i % len(TEXTS)]} (ref {prefix} {i})",
            ts=time.time(),
        )
        for i in range(n)
    ]


def as_records(events: Iterable[ConversationEvent]) -> list[tuple[bytes | None, bytes]]:
    return [(e.conversation_id.encode(), e.to_json()) for e in events]


def result_ids(
    bootstrap: str, topic: str, want: set[str], timeout_s: float, settle_s: float = 2.0
) -> list[str]:
    """Every event id on the output topic (read_committed) once `want` are all there (or at the
    timeout): duplicates stay in the list."""
    out = kafka_io.consume(
        bootstrap,
        [topic],
        until=lambda r: want <= {x["event_id"] for x in r[topic]},
        timeout_s=timeout_s,
        settle_s=settle_s,
    )
    return [x["event_id"] for x in out[topic]]


@dataclass
class Outputs:
    """What the worker produced for a run: the results (decoded) and the dead letters."""

    results: list[dict[str, Any]]
    dead: list[dict[str, Any]]

    def ids(self) -> Counter[str]:
        return Counter(r["event_id"] for r in self.results)

    def produced_between(self, start: float, end: float) -> int:
        """Results whose produced_at (the worker's wall clock) lies in [start, end)."""
        return sum(1 for r in self.results if start <= r["produced_at"] < end)

    def first_produced_after(self, start: float) -> float | None:
        later = [r["produced_at"] for r in self.results if r["produced_at"] >= start]
        return min(later) - start if later else None

    def last_produced(self) -> float:
        return max((r["produced_at"] for r in self.results), default=float("nan"))


def collect(settings: Settings, want: set[str], timeout_s: float, settle_s: float = 3.0) -> Outputs:
    """Results and dead letters (read_committed) once every id in `want` has a result, or at
    the timeout; `settle_s` more seconds are read so that duplicates would show."""
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: want <= {x["event_id"] for x in r[settings.topic_out]},
        timeout_s=timeout_s,
        settle_s=settle_s,
    )
    return Outputs(out[settings.topic_out], out[settings.topic_deadletter])


def output_records(settings: Settings) -> int:
    """End offsets of the output topic: results plus transaction markers (a progress probe)."""
    return kafka_io.topic_size(settings.bootstrap_servers, settings.topic_out)
