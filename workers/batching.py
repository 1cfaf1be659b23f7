"""Micro-batching across conversations, with an in-flight limit.

Many producers (one per partition, or one per event) ``submit(key, item)`` and await the result.
Items queue up; a batch is cut when ``max_batch`` items wait, or when the oldest waiting item has
waited ``max_wait_s`` (timer on the injected ``clock``/``sleep``), and only while fewer than
``max_inflight`` batches are in flight. Under load (Triton slow, retrying, or down) no batch is cut
until a slot frees, so the queue turns into full batches rather than many small ones. The batcher
does not bound its queue: backpressure is the caller's (``streams.engine`` pauses fetching at
``max_pending`` unfinished records).

Each batch is one call of ``process(items) -> results`` (one result per item, same order). Results
fan back to their submitters; the results of one key resolve in submit order even when a later
batch finishes first; a batch's exception is set on exactly that batch's items.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workers.errors import InferstreamError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class BatchResultMismatch(InferstreamError):
    """``process`` returned a different number of results than it was given items."""

    retriable = False
    reason = "batch_result_mismatch"


@dataclass(slots=True, eq=False)
class _Waiting(Generic[T, R]):
    key: str
    item: T
    at: float
    out: asyncio.Future[R]
    after: asyncio.Future[R] | None  # the previous unresolved item of the same key


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_inflight: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_batch < 1 or max_inflight < 1 or max_wait_s < 0:
            raise ValueError("need max_batch >= 1, max_inflight >= 1, max_wait_s >= 0")
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_inflight = max_inflight
        self.clock = clock
        self.sleep = sleep
        self.batches = 0  # batches started, for metrics and tests
        self._queue: deque[_Waiting[T, R]] = deque()
        self._inflight = 0
        self._pending = 0
        self._last: dict[str, asyncio.Future[R]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._draining = 0

    # --- producers -------------------------------------------------------------------------
    def submit(self, key: str, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the returned future resolves with its result (or its batch's error)
        after every earlier item of the same ``key`` resolved. Never blocks."""
        out: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        after = self._last.get(key)
        self._last[key] = out
        self._pending += 1
        out.add_done_callback(lambda fut: self._resolved(key, fut))
        self._queue.append(_Waiting(key, item, self.clock(), out, after))
        self._pump()
        return out

    def pending(self) -> int:
        """Items submitted and not yet resolved (queued, in flight, or ordered behind their key)."""
        return self._pending

    def inflight(self) -> int:
        return self._inflight

    def backlog(self) -> int:
        """Items queued while every in-flight slot is taken: they wait for the model, not for
        their batch to fill (0 while a slot is free)."""
        return len(self._queue) if self._inflight >= self.max_inflight else 0

    async def drain(self) -> None:
        """Flush what is queued without waiting for ``max_wait_s`` and wait until everything
        submitted so far has resolved (results or errors; errors are not raised here)."""
        self._draining += 1
        try:
            self._pump()
            while self._pending:
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                await waiter
        finally:
            self._draining -= 1

    # --- batching --------------------------------------------------------------------------
    def _due(self) -> bool:
        if len(self._queue) >= self.max_batch or self._draining:
            return True
        return self.clock() - self._queue[0].at >= self.max_wait_s

    def _pump(self) -> None:
        while self._queue and self._inflight < self.max_inflight and self._due():
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            batch = [w for w in batch if not w.out.done()]  # cancelled by its submitter
            if batch:
                self._launch(batch)
        if self._queue and self._inflight < self.max_inflight and self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._wait_oldest())

    async def _wait_oldest(self) -> None:
        try:
            while self._queue and self._inflight < self.max_inflight:
                delay = self._queue[0].at + self.max_wait_s - self.clock()
                if delay <= 0:
                    break
                await self.sleep(delay)
        finally:
            self._timer = None
        self._pump()

    def _launch(self, batch: list[_Waiting[T, R]]) -> None:
        self._inflight += 1
        self.batches += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            results = await self.process([w.item for w in batch])
            if len(results) != len(batch):
                raise BatchResultMismatch(f"{len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for w in batch:
                w.out.cancel()
            raise
        except Exception as exc:  # the batch's error goes to exactly its items
            for w in batch:
                self._deliver(w, None, exc)
        else:
            for w, result in zip(batch, results, strict=True):
                self._deliver(w, result, None)
        finally:
            self._inflight -= 1
            self._pump()

    # --- fan-out ---------------------------------------------------------------------------
    def _deliver(self, w: _Waiting[T, R], result: Any, error: BaseException | None) -> None:
        if w.out.done():
            return
        if w.after is not None and not w.after.done():
            w.after.add_done_callback(lambda _f: self._deliver(w, result, error))
            return
        w.after = None
        if error is not None:
            w.out.set_exception(error)
        else:
            w.out.set_result(result)

    def _resolved(self, key: str, fut: asyncio.Future[R]) -> None:
        self._pending -= 1
        if self._last.get(key) is fut:
            del self._last[key]
        if not self._pending:
            self._wake(self._idle_waiters)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        woken = list(waiters)
        waiters.clear()
        for waiter in woken:
            if not waiter.done():
                waiter.set_result(None)
