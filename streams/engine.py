"""Consume -> process -> produce with Kafka transactions: exactly-once, one transaction per worker.

Faust's agents run at-least-once here. Its ``exactly_once`` guarantee picks each send's
transaction by the *destination* partition (``{app}-{group}-{partition}``), which only works for
outputs co-subscribed in one topic group, and faust-streaming has open duplicate-on-rebalance bugs
(#323, #517). So the worker's Faust app hosts the web server, timers and this service, and the
processing loop is Kafka Streams' ``exactly_once_v2`` model (KIP-447) on librdkafka
(confluent-kafka):

* one consumer in group ``app_id`` (read_committed, no auto-commit, eager rebalancing) over the
  handlers' topics, and one transactional producer whose id is ``{app_id}-{instance_id}``
  (``streams.clients.transactional_id``): a restarted worker fences its previous run;
* per assigned input partition a ``Partition``: its table partitions, a FIFO of work and a
  finisher task;
* a fetched record is *prepared* at once (decode, policy, dedupe, submit to the micro-batcher:
  batches form across all partitions), then *finished* in offset order per partition (or per
  key, where the handler lets an outcome overtake: ``streams.finishing.Finisher``): its outputs
  and its table changes (changelog records) go into the worker's open transaction;
* the ``Committer`` ends that transaction with every partition's finished input offset (the
  oldest record not finished), sent
  with the consumer group's metadata (the broker refuses offsets from a fenced generation):
  every ``commit_interval_ms`` while busy, and as soon as the worker runs out of work (one
  such commit per ``commit_idle_gap_ms`` on average, up to ``commit_idle_burst`` in a row after
  a quiet spell), so a result at a low rate waits for no timer;
* backpressure: at ``max_pending`` unfinished records the consumer pauses fetching;
* a rebalance's revoke stops the finishers at a record boundary and commits what they finished
  before the partitions go; any Kafka error tears the whole session down and rebuilds it from
  committed state (new consumer and producer, restored tables).

``processing_guarantee="at_least_once"`` keeps the same flow with an idempotent producer and
plain offset commits after the outputs are acknowledged.

This module holds the session (``Engine``: consumer, assignment, restore, reset); the
partition in ``streams.partition``, the transaction in ``streams.transaction``, the finishers
and the committer in ``streams.finishing``, fetching in ``streams.fetching``, the Kafka clients
in ``streams.clients``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import Consumer

from streams.clients import ClientKwargs, KafkaClients
from streams.fetching import Fetcher, StallWatch
from streams.finishing import Committer, CommitTiming, Finisher
from streams.partition import Clock, Handler, Partition, PartitionClosed, Sink
from streams.settings import Settings
from streams.tables import TablePartition
from streams.transaction import Transaction, TransactionError
from workers.retry import Backoff

__all__ = [
    "Engine",
    "EngineReset",
    "Handler",
    "Partition",
    "PartitionClosed",
    "Sink",
    "TransactionError",
]

log = logging.getLogger(__name__)


class EngineReset(RuntimeError):
    """The session hit a Kafka error and is rebuilt from committed state."""


class Engine:
    """Runs processing sessions until cancelled. ``clients`` makes the Kafka clients;
    ``backoff`` spaces session restarts (``sleep`` waits them out); ``clock`` (monotonic) times
    commits, sweeps and sessions, ``wall_clock`` is the ``now`` sweeps see."""

    def __init__(
        self,
        settings: Settings,
        handlers: Sequence[Handler],
        *,
        client_kwargs: ClientKwargs | None = None,
        sweep_interval_s: float = 30.0,
        on_reset: Callable[[], None] = lambda: None,
        on_commit: Callable[[float], None] = lambda seconds: None,
        clients: KafkaClients | None = None,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.on_reset = on_reset
        self.on_commit = on_commit  # seconds each commit held finishing up
        self.settings = settings
        self.handlers = {t: h for h in handlers for t in h.topics}
        self.clients = clients or KafkaClients(settings, client_kwargs)
        # capped low: a broker that is back should see the worker within seconds
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=5.0)
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.timing = CommitTiming.of(settings, sweep_interval_s)
        self.group_id = settings.app_id
        self.transactional = settings.processing_guarantee == "exactly_once"
        self.parts: dict[TopicPartition, Partition] = {}
        self.ready = asyncio.Event()  # set while partitions are assigned and restored
        self.fetcher = Fetcher(settings.max_pending, lambda: self.parts, self.handlers, self.ready)
        self._failed: asyncio.Future[None] | None = None
        self._consumer: Consumer | None = None
        self._txn: Transaction | None = None
        self._committer: Committer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Records fetched and not finished yet, over the partitions held now (backpressure
        at ``max_pending``); an ended partition's records stop counting with it."""
        return self.fetcher.pending

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Process until cancelled; a Kafka error resets the session after a back-off (the
        attempts count again from the first after a session that lasted over a minute)."""
        attempt = 0
        try:
            while True:
                started = self.clock()
                try:
                    await self._session()
                except asyncio.CancelledError:
                    if _stopping():
                        raise  # the worker stops
                    self._reset("a stray cancellation in the session's cleanup")
                except Exception as exc:  # Kafka errors, EngineReset, anything: rebuild
                    if _stopping():  # its cancellation was swallowed (3.11's wait_for can)
                        raise asyncio.CancelledError from exc
                    self._reset(f"{type(exc).__name__}: {exc}")
                if self.clock() - started > 60:
                    attempt = 0
                await self.sleep(self.backoff.delay(attempt))
                attempt += 1  # Backoff.delay is bounded for any attempt
        finally:
            self.clients.shutdown()

    def _reset(self, why: str) -> None:
        self.on_reset()
        log.error("processing session reset after %s", why)

    def _fail(self, exc: BaseException) -> None:
        """End the session: its fetch loop raises ``exc``. Its transaction closes at once, so
        no commit (one waiting at the gate included) can take the half-done outputs of the
        record that failed."""
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)
        if self._txn is not None:
            self._txn.close()

    async def _session(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._failed = self._loop.create_future()
        txn = self._txn = Transaction(
            self.clients.producer(self.transactional),
            self.clients,
            transactional=self.transactional,
            commit_timeout_s=self.settings.commit_timeout_s,
            clock=self.clock,
            on_commit=self.on_commit,
        )
        consumer: Consumer | None = None
        committing: asyncio.Task[None] | None = None
        stopping = False
        try:
            await txn.start()  # fences this worker's previous run before anything is read
            watch = StallWatch(self.settings.fetch_stall_s)
            consumer = self._consumer = self.clients.consumer(
                self.group_id,
                list(self.handlers),
                functools.partial(self._on_assign, txn, watch),
                functools.partial(self._on_revoke, txn, watch),
                on_stats=watch.stats,
                stats_every_s=min(5.0, self.settings.fetch_stall_s / 3),
            )
            committer = self._committer = Committer(
                txn, lambda: self.parts, consumer, self.timing, clock=self.clock
            )
            committing = self._loop.create_task(self._run_committer(committer))
            await self.fetcher.run(consumer, self.clients.submit, self._failed, watch)
        except asyncio.CancelledError:  # the worker stops: commit what is finished, then leave
            stopping = True
            raise
        finally:
            self.ready.clear()
            if committing is not None:
                committing.cancel()
                await asyncio.wait([committing])
            if stopping:
                try:
                    await asyncio.wait_for(self._close_all(), 15.0)
                except Exception as exc:  # EngineReset too: the session must still end below
                    log.warning("closing partitions: %s (the open transaction aborts)", exc)
            # a session that failed commits nothing more: each partition ends at once (no
            # await, nothing left half-closed), the open transaction aborts in the background
            self._abandon_all()
            txn.close()
            if consumer is not None:  # its revoke (of partitions already ended) runs here
                await self.fetcher.stopped()
                await self.clients.stop(consumer.close, "consumer")
            self._consumer = None
            self._committer = None

    async def _run_committer(self, committer: Committer) -> None:
        try:
            await committer.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("commit failed: %s", exc)
            self._fail(EngineReset(f"commit failed: {type(exc).__name__}: {exc}"))

    # --- rebalances (librdkafka calls these in its consume, in a client thread) ----------------
    # Each session's callbacks carry its transaction: a callback of a session that has ended
    # (its consumer still polling out a rebalance) must not open partitions in the next one.
    def _on_assign(
        self, txn: Transaction, watch: StallWatch, consumer: Consumer, partitions: list[Any]
    ) -> None:
        assigned = {TopicPartition(p.topic, p.partition) for p in partitions}
        txn.group_metadata = consumer.consumer_group_metadata()  # what offsets are fenced by
        self._in_loop(txn, self.assign(assigned, txn), "assignment")
        watch.progress()  # a restore's minutes are not a stall; the new partitions' time starts

    def _on_revoke(
        self, txn: Transaction, watch: StallWatch, consumer: Consumer, partitions: list[Any]
    ) -> None:
        revoked = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._in_loop(txn, self.revoke(revoked, txn), "revoke")
        watch.progress()

    def _in_loop(self, txn: Transaction, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run a rebalance step on the event loop and wait for it (the consumer's thread may
        block: librdkafka waits for its callback). A failure ends the session."""
        loop = self._loop
        assert loop is not None
        try:
            # bounded for a loop that is gone; an assignment restores tables (minutes at most)
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=900.0)
        except (Exception, concurrent.futures.CancelledError) as exc:
            log.error("%s failed: %r", what, exc)
            err = EngineReset(f"{what} failed: {exc!r}")
            loop.call_soon_threadsafe(self._fail_session, txn, err)

    def _fail_session(self, txn: Transaction, exc: BaseException) -> None:
        if txn is self._txn:
            self._fail(exc)

    def _current(self, txn: Transaction | None) -> bool:
        """Whether a rebalance step belongs to the session running now (``None``: a caller
        outside the consumer's callbacks)."""
        return txn is None or (txn is self._txn and not txn.closed)

    async def assign(self, assigned: set[TopicPartition], txn: Transaction | None = None) -> None:
        if not self._current(txn):
            log.info("assignment of an ended session ignored")
            return
        for tp in sorted(assigned - set(self.parts)):
            await self._open(tp)
        self.ready.set()
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)))

    async def revoke(self, revoked: set[TopicPartition], txn: Transaction | None = None) -> None:
        """Stop the revoked partitions' finishers at a record boundary and commit what every
        partition finished (one transaction), then end the revoked ones."""
        if not self._current(txn):
            return  # its partitions ended with its session
        self.ready.clear()
        # they stay in ``parts`` until closed: a commit the committer makes meanwhile carries
        # their offsets with their outputs
        parts = [self.parts[tp] for tp in sorted(revoked) if tp in self.parts]
        try:
            if parts:
                await self._close(parts)
        finally:
            for part in parts:
                self.parts.pop(part.tp, None)

    async def _open(self, tp: TopicPartition) -> None:
        handler = self.handlers[tp.topic]
        tables: dict[str, TablePartition] = {}
        assert self._txn is not None
        try:
            if handler.tables:
                await self._restore(tp, handler, tables)
        except BaseException:
            for table in tables.values():
                table.close()
            raise
        part = Partition(
            tp, self._txn, tables=tables, max_output_bytes=self.settings.max_output_bytes
        )
        part.task = asyncio.get_running_loop().create_task(self._finisher(part, handler))
        self.parts[tp] = part

    async def _restore(
        self, tp: TopicPartition, handler: Handler, tables: dict[str, TablePartition]
    ) -> None:
        restorer = self.clients.restorer()
        try:
            await asyncio.wait_for(restorer.start(), 60.0)
            for table in handler.tables:
                tables[table.name] = await table.open(tp.partition, restorer)
        finally:
            try:
                await asyncio.wait_for(restorer.stop(), 10.0)
            except (TimeoutError, KafkaError) as exc:
                log.warning("stopping the restore consumer: %r", exc)

    async def _close(self, parts: list[Partition]) -> None:
        """Stop ``parts``' finishers at a record boundary, commit what every partition
        finished, and end ``parts`` (a revoke, the worker stopping)."""
        committed = False
        try:
            for part in parts:
                await self._stop_finisher(part)
            if self._txn is not None and self._consumer is not None:
                every = {p.tp: p for p in [*self.parts.values(), *parts]}
                await self._txn.commit(every.values(), self._consumer)
            committed = True
        except KafkaError as exc:
            log.warning("commit at close failed: %s", exc)
            self._fail(EngineReset(f"commit at close failed: {exc}"))
        finally:  # whatever happened above (a cancellation included), the partitions end here
            for part in parts:
                self._end(part, clean=committed)

    async def _stop_finisher(self, part: Partition) -> None:
        if part.task is not None:
            part.task.cancel()
            await asyncio.wait([part.task])  # its end, not its error; our own cancel propagates
        if part.finishing is not None:  # a record that ended inside the gate as it stopped
            finishing, part.finishing = part.finishing, None
            if finishing.done() and not finishing.cancelled() and finishing.exception() is None:
                part.finished_offset = part.finishing_offset
            else:  # its sends failed: the commit drops them (the session resets)
                log.warning("record at %s[%d] failed while closing", part.tp.topic, part.partition)
                raise EngineReset("a record failed while its partition closed")

    def _end(self, part: Partition, *, clean: bool = False) -> None:
        part.abandon(clean=clean)
        self.fetcher.room.set()

    def _abandon_all(self) -> None:
        parts, self.parts = list(self.parts.values()), {}
        for part in parts:
            self._end(part)

    async def _close_all(self) -> None:
        parts, self.parts = list(self.parts.values()), {}
        await self._close(parts)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each assigned partition, as the fetch loop last measured
        it (every 2 s, from the consumer's cached watermarks)."""
        poller = self.fetcher.poller
        return {} if poller is None or self._consumer is None else dict(poller.lag)

    def connected(self) -> bool:
        return self._consumer is not None and bool(self.parts or self.ready.is_set())

    # --- finishing ---------------------------------------------------------------------------
    def _finished(self) -> None:
        self.fetcher.room.set()
        if self._committer is not None:
            self._committer.wake.set()

    async def _finisher(self, part: Partition, handler: Handler) -> None:
        finisher = Finisher(
            part,
            handler,
            timing=self.timing,
            on_finished=self._finished,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        try:
            await finisher.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("finisher of %s[%d] failed", part.tp.topic, part.partition)
            self._fail(EngineReset(f"{type(exc).__name__}: {exc}"))


def _stopping() -> bool:
    """Whether this task was asked to stop (cancelled), whatever a cleanup step made of it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
