"""Fakes for unit tests: an inference client with scripted behaviour and a recording publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workers.inference.triton import InferenceOutput, ModelInfo

LABELS = ["greeting", "billing", "other"]


@dataclass
class FakeInferenceClient:
    """Scores text i by the position of its first token; `fail` can raise per call."""

    labels: list[str] = field(default_factory=lambda: list(LABELS))
    fail: Callable[[np.ndarray], Exception | None] = lambda ids: None
    calls: list[tuple[int, int]] = field(default_factory=list)

    async def info(self) -> ModelInfo:
        return ModelInfo("fake", "7", self.labels, "fake-backend", 256)

    async def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> InferenceOutput:
        self.calls.append(input_ids.shape)
        error = self.fail(input_ids)
        if error is not None:
            raise error
        n = input_ids.shape[0]
        logits = np.zeros((n, len(self.labels)), dtype=np.float32)
        # label = number of real tokens modulo the label count: deterministic, input-dependent
        for i in range(n):
            logits[i, int(attention_mask[i].sum()) % len(self.labels)] = 5.0
        return InferenceOutput(logits, np.ones((n, 4), np.float32), "7", 0.001)


@dataclass
class RecordingPublisher:
    sent: list[tuple[str, bytes | None, bytes, dict[str, bytes]]] = field(default_factory=list)
    flushed: int = 0

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]:
        self.sent.append((topic, key, value, dict(headers)))
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None:
        await asyncio.gather(*pending)
        self.flushed += len(pending)

    def on(self, topic: str) -> list[tuple[str, bytes | None, bytes, dict[str, bytes]]]:
        return [s for s in self.sent if s[0] == topic]


@dataclass
class FakeSink:
    """A ``streams.engine.Sink`` in memory: sends are recorded, table rows kept in dicts
    (``tables`` survives a "restart" when passed to a new sink; ``local`` does not)."""

    partition: int = 0
    tables: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    sent: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = field(
        default_factory=list
    )
    local: dict[str, object] = field(default_factory=dict)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        *,
        partition: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        self.sent.append((topic, key, value, dict(headers)))

    times: dict[tuple[str, bytes], float] = field(default_factory=dict)

    async def put(self, table: str, key: bytes, value: bytes | None, ts: float) -> None:
        rows = self.tables.setdefault(table, {})
        if value is None:
            rows.pop(key, None)
            self.times.pop((table, key), None)
        else:
            rows[key] = value
            self.times[(table, key)] = ts

    def expired(self, table: str, before: float) -> list[bytes]:
        return [k for (t, k), ts in self.times.items() if t == table and ts < before]

    def size(self, table: str) -> int:
        return len(self.tables.get(table, {}))

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.tables.get(table, {}).get(key)

    def on(self, topic: str) -> list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]]:
        return [s for s in self.sent if s[0] == topic]
