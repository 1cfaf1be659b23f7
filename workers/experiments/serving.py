"""Serving under experiments: which model version answers a turn, the shadow copies, the
comparison record, and the guard that rolls a failing candidate back.

``ExperimentRunner`` keeps one micro-batcher per (model version, role): a model version's
turns batch together, and shadow copies never share a batch, nor an in-flight slot, with
turns a user waits for (their batchers have their own ``max_inflight``, usually 1). The role
also picks the retries: a primary retries a retriable failure until it succeeds (as the
default model does), candidates and shadows give up after a few tries. A shadow
copy is shed (counted, listed in the comparison record) when its batcher already holds
``shadow_max_pending`` copies or when the served path is under pressure (``pressure()``): under
load, shadows go first. ``DutyCycle`` paces a shadow version's calls (the wiring wraps each
shadow batch in it).

A candidate that fails a turn (any error, after its bounded retries) does not lose it: the
primary answers, and the failure counts against the candidate in the guard and the record.
The comparison record is published once the shadows answered (or failed, or timed out); the
served result never waits for it. Records go out at least once (a turn processed again after a
crash is compared again): readers keep the last record per event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from workers.batching import MicroBatcher
from workers.experiments.compare import Outcome, event_record
from workers.experiments.config import Assignment, Experiment, ExperimentStore, Variant
from workers.experiments.guard import GuardWindow
from workers.inference.classifier import Prediction
from workers.telemetry.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

PRIMARY, CANDIDATE, SHADOW = "primary", "candidate", "shadow"  # roles: one batcher per version each
Publish = Callable[[bytes, bytes], Awaitable[None]]  # (key, value) -> sent and acknowledged
Predict = Callable[[Awaitable[Prediction], Variant, str], Awaitable[R]]  # (batched, version, role)


@dataclass(slots=True)
class Routed:
    """One turn's place under an experiment: its served future and its shadow copies."""

    assignment: Assignment
    served: asyncio.Future[Prediction]
    shadows: list[tuple[Variant, asyncio.Future[Prediction]]] = field(default_factory=list)
    shed: list[Variant] = field(default_factory=list)


class DutyCycle:
    """Paces one shadow version's model calls: after a call that took ``t`` seconds, the next
    starts no sooner than ``t * (1 / duty - 1)`` later, so the shadow's calls are in flight at
    most ``duty`` of the time (with one in flight at a time). On a host where the shadow shares
    CPU with the primary, this bounds what it can take; the copies that wait meanwhile fill the
    shadow's queue, and the rest are shed."""

    def __init__(
        self,
        duty: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        self.duty, self.clock, self.sleep = duty, clock, sleep
        self._next = 0.0

    async def run(self, call: Callable[[], Awaitable[R]]) -> R:
        wait = self._next - self.clock()
        if wait > 0:
            await self.sleep(wait)
        began = self.clock()
        try:
            return await call()
        finally:
            took = self.clock() - began
            self._next = self.clock() + took * (1.0 / self.duty - 1.0)


def _retrieve(fut: asyncio.Future[Prediction]) -> None:
    if not fut.cancelled():
        fut.exception()  # looked at: a failed shadow is reported, not logged as never retrieved


class ExperimentRunner(Generic[T]):
    def __init__(
        self,
        store: ExperimentStore,
        make_batcher: Callable[[Variant, str], MicroBatcher[T, Prediction]],
        *,
        publish_event: Publish,
        publish_experiment: Publish,
        metrics: Metrics,
        worker: str,
        shadow_max_pending: int,
        pressure: Callable[[], bool] = lambda: False,
        shadow_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.make_batcher = make_batcher
        self.publish_event = publish_event
        self.publish_experiment = publish_experiment
        self.metrics = metrics
        self.worker = worker
        self.shadow_max_pending = shadow_max_pending
        self.pressure = pressure
        self.shadow_timeout_s = shadow_timeout_s
        self.clock = clock
        self.monotonic = monotonic
        self.batchers: dict[tuple[Variant, str], MicroBatcher[T, Prediction]] = {}
        self._guards: dict[tuple[str, str, int], GuardWindow] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        self.rollbacks = 0

    def batcher(self, variant: Variant, role: str) -> MicroBatcher[T, Prediction]:
        key = (variant, role)
        batcher = self.batchers.get(key)
        if batcher is None:
            batcher = self.batchers[key] = self.make_batcher(variant, role)
        return batcher

    def serving_backlog(self) -> int:
        """Turns a user waits for that wait for a free model slot (see MicroBatcher.backlog)."""
        return sum(b.backlog() for (_, role), b in self.batchers.items() if role != SHADOW)

    # --- at fetch ------------------------------------------------------------------------------
    def assign(self, tenant: str, conversation_id: str) -> Assignment | None:
        exp = self.store.get(tenant)
        return None if exp is None else exp.assign(conversation_id)

    def submit(self, assignment: Assignment, key: str, item: T, shadow_item: T) -> Routed:
        served = self.batcher(assignment.served, assignment.arm).submit(key, item)
        routed = Routed(assignment, served)
        for variant in assignment.shadows:
            batcher = self.batcher(variant, SHADOW)
            reason = None
            if batcher.pending() >= self.shadow_max_pending:
                reason = "queue_full"
            elif self.pressure():
                reason = "serving_busy"
            if reason is not None:
                routed.shed.append(variant)
                self.metrics.shed(variant.model, variant.version or "default", reason)
                continue
            fut = batcher.submit(key, shadow_item)
            fut.add_done_callback(_retrieve)
            routed.shadows.append((variant, fut))
        return routed

    # --- when the served answer is known -------------------------------------------------------
    async def answer(
        self, routed: Routed, key: str, item: T, predict: Predict[R]
    ) -> tuple[R, Outcome]:
        """The turn's answer (``predict`` = the controller's rejected-batch handling) and the
        served arm's outcome; a failed candidate's turn is answered by the primary."""
        a = routed.assignment
        if a.arm != "candidate":
            result = await predict(routed.served, a.served, a.arm)
            outcome = (
                Outcome.of(a.served, result)
                if isinstance(result, Prediction)
                else Outcome.failed(a.served, str(getattr(result, "reason", "rejected")))
            )
            return result, outcome
        try:  # a rejected batch is retried one turn at a time, as on the primary
            answered = await predict(routed.served, a.served, CANDIDATE)
        except Exception as exc:  # any other failure of the candidate: the primary answers
            failed = Outcome.failed(a.served, exc)
        else:
            if isinstance(answered, Prediction):
                return answered, Outcome.of(a.served, answered)
            failed = Outcome.failed(a.served, str(getattr(answered, "reason", "rejected")))
        log.warning("candidate %s failed a turn (%s); the primary answers", a.served.label,
                    failed.error)  # fmt: skip
        self.metrics.model_error(a.served.model, a.served.version or "default", CANDIDATE)
        primary = a.experiment.primary
        fallback = self.batcher(primary, PRIMARY).submit(key, item)
        return await predict(fallback, primary, PRIMARY), failed

    def record(
        self, routed: Routed, served: Outcome, *, event_id: str, conversation_id: str, tenant: str
    ) -> None:
        """Feed the guard now; publish the comparison once the shadows answered."""
        a = routed.assignment
        exp = a.experiment
        self.metrics.experiment_event(exp.name, a.arm)
        if exp.candidates and exp.guard.enabled:
            guard = self._guard(exp)
            guard.observe(a.arm, error=served.error is not None, latency_ms=served.inference_ms)
            why = guard.verdict()
            if why is not None:
                self._spawn(self._roll_back(exp, why))
        self._spawn(self._publish(routed, served, event_id, conversation_id, tenant))

    def _guard(self, exp: Experiment) -> GuardWindow:
        key = (exp.tenant, exp.name, exp.version)
        guard = self._guards.get(key)
        if guard is None:
            for old in [k for k in self._guards if k[:2] == key[:2]]:
                del self._guards[old]
            guard = self._guards[key] = GuardWindow(exp.guard, self.monotonic)
        return guard

    async def _publish(
        self, routed: Routed, served: Outcome, event_id: str, conversation_id: str, tenant: str
    ) -> None:
        shadows = []
        for variant, fut in routed.shadows:
            try:
                prediction = await asyncio.wait_for(fut, self.shadow_timeout_s)
            except Exception as exc:  # failed, or no answer in time
                self.metrics.model_error(variant.model, variant.version or "default", SHADOW)
                shadows.append(Outcome.failed(variant, exc))
            else:
                shadows.append(Outcome.of(variant, prediction))
        value = event_record(
            routed.assignment,
            event_id=event_id,
            conversation_id=conversation_id,
            tenant=tenant,
            served=served,
            shadows=shadows,
            shed=routed.shed,
            ts=self.clock(),
            worker=self.worker,
        )
        try:
            await self.publish_event(conversation_id.encode(), value)
            self.published += 1
        except Exception as exc:
            log.warning("experiment record of %s not published: %s", event_id, exc)

    async def _roll_back(self, exp: Experiment, why: str) -> None:
        current = self.store.exact(exp.tenant)
        if current is None or (current.name, current.version) != (exp.name, exp.version):
            return  # changed meanwhile (promoted, rolled back, replaced): nothing to undo
        new = current.rolled_back(f"automatic: {why}", at=self.clock(), by=f"guard@{self.worker}")
        log.warning("experiment %s: rolling back its candidates: %s", exp.name, why)
        try:
            await self.publish_experiment(exp.tenant.encode(), new.to_json())
        except Exception as exc:
            log.error("experiment %s: rollback not published: %s", exp.name, exc)
            self._guards.pop((exp.tenant, exp.name, exp.version), None)  # try again later
            return
        self.rollbacks += 1
        self.metrics.experiment_rollback(exp.name)

    def _spawn(self, aw: Awaitable[None]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the comparison records and rollbacks under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
