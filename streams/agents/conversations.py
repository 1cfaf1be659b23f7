"""conversations.in -> dedupe, permission check -> micro-batched classification -> dialogue
context -> filter, mark, sign -> conversations.out (+ moderation, analytics, dead letters).

``ConversationHandler`` is a ``streams.engine.Handler``: ``prepare`` runs as soon as a record is
fetched (decode, dedupe lookup, policy, and a place in the next cross-conversation batch);
``finish`` runs in offset order per conversation (a turn whose images are still in OCR does not
hold back other conversations' turns: ``overtakes``) and writes everything through the
partition's transaction: the outputs, the conversation's new context row and the event id's
dedupe row.
The turn's work itself (dialogue-state cache, context, one-by-one retry of a rejected batch,
governed release, result assembly) is ``workers.conversation.ConversationController``'s.
Nothing is dropped silently: an invalid event becomes a dead letter, a denied or blocked one a
result with its status and an audit record; a re-delivered event id is counted and skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from streams.agents.deadletters import DeadLetters
from streams.agents.outcomes import (
    CONTEXT,
    DEDUPE,
    Classified,
    Denied,
    Duplicate,
    Invalid,
    Item,
    Outcome,
    done,
    state_tables,
)
from streams.agents.outputs import ConversationOutputs
from streams.engine import Sink
from streams.records import (
    ConversationEvent,
    SourceRecord,
    decode_conversation,
    peek_event_id,
)
from streams.settings import Settings
from workers.batching import MicroBatcher
from workers.context import ContextSelector, Selection
from workers.conversation import ConversationController, DialogueCache, Rejected
from workers.cost import CostModel
from workers.errors import InvalidEvent
from workers.experiments.config import ExperimentStore, Variant
from workers.experiments.serving import PRIMARY, SHADOW, DutyCycle, ExperimentRunner, Routed
from workers.governance import Governor
from workers.guard.policy import Access
from workers.inference.classifier import Prediction, TurnClassifier
from workers.ocr.reader import ImageReader
from workers.ocr.turn import TurnText, compose
from workers.telemetry.metrics import Metrics
from workers.telemetry.tracing import (
    ATTR_BACKEND,
    ATTR_MODEL_NAME,
    ATTR_MODEL_VERSION,
    NOT_TRACED,
    EventSpan,
    KafkaTracing,
)

log = logging.getLogger(__name__)
_CACHE_KEY, _INFLIGHT_KEY = "context_cache", "inflight_ids"


class ConversationHandler:
    def __init__(
        self,
        settings: Settings,
        classifier: TurnClassifier,
        governor: Governor,
        *,
        worker_id: str,
        metrics: Metrics | None = None,
        costs: CostModel | None = None,
        tracing: KafkaTracing | None = None,
        clock: Callable[[], float] = time.time,
        experiments: ExperimentStore | None = None,
        variant_classifier: Callable[[Variant, str], TurnClassifier] | None = None,
        publish: Callable[[str, bytes, bytes], Awaitable[None]] | None = None,
        reader: ImageReader | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing or KafkaTracing(consumer_group=settings.app_id)
        self.classifier = classifier
        self.governor = governor
        self.worker_id = worker_id
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.costs = costs or CostModel(gpu_usd_per_hour=0.0, cpu_usd_per_hour=0.0)
        self.clock = clock
        self.reader = reader
        self.dead_letters = DeadLetters(settings, self.metrics, worker_id, clock)
        self.outputs = ConversationOutputs(
            settings, self.metrics, self.tracing, self.costs, worker_id, clock
        )
        self.topics = (settings.topic_in,)
        self.tables = state_tables(settings)
        self.controller = ConversationController(
            classifier,
            governor,
            ContextSelector(
                settings.context_budget_tokens,
                settings.context_gate,
                settings.context_half_life_turns,
            ),
            turn_cap=settings.context_turn_cap,
            token_cap=settings.context_token_cap,
            clock=clock,
            on_batch_rejected=lambda exc: self.metrics.triton_error("rejected"),
        )
        self.batcher: MicroBatcher[Item, Prediction] = MicroBatcher(
            self._infer,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_inflight=settings.max_inflight,
        )
        self.runner: ExperimentRunner[Item] | None = None
        self._default = Variant(settings.model_name)  # the configured model: self.classifier
        self._variant_classifier = variant_classifier
        self._classifiers: dict[tuple[Variant, str], TurnClassifier] = {}
        if experiments is not None and variant_classifier is not None and publish is not None:
            self.runner = self._runner(experiments, publish)

    # --- experiments: the model version a turn goes to ------------------------------------
    def _runner(
        self, store: ExperimentStore, publish: Callable[[str, bytes, bytes], Awaitable[None]]
    ) -> ExperimentRunner[Item]:
        settings = self.settings
        runner: ExperimentRunner[Item] = ExperimentRunner(
            store,
            self._variant_batcher,
            publish_event=functools.partial(publish, settings.topic_experiment_events),
            publish_experiment=functools.partial(publish, settings.topic_experiments),
            metrics=self.metrics,
            worker=self.worker_id,
            shadow_max_pending=settings.shadow_max_pending,
            pressure=lambda: runner.serving_backlog() > 0,
            clock=self.clock,
        )
        runner.batchers[(self._default, PRIMARY)] = self.batcher
        return runner

    def _variant_batcher(self, variant: Variant, role: str) -> MicroBatcher[Item, Prediction]:
        settings = self.settings
        infer = functools.partial(
            self._infer, classifier=self._classifier(variant, role), role=role
        )
        if role != SHADOW:
            return MicroBatcher(
                infer,
                max_batch=settings.max_batch,
                max_wait_s=settings.max_wait_ms / 1000.0,
                max_inflight=settings.max_inflight,
            )
        pace = DutyCycle(settings.shadow_max_duty)

        async def shadow(items: list[Item]) -> list[Prediction]:
            return await pace.run(lambda: infer(items))

        return MicroBatcher(
            shadow,
            max_batch=settings.shadow_max_batch,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_inflight=settings.shadow_max_inflight,
        )

    def _classifier(self, variant: Variant, role: str) -> TurnClassifier:
        if variant == self._default and role == PRIMARY:
            return self.classifier
        clf = self._classifiers.get((variant, role))
        if clf is None:
            assert self._variant_classifier is not None
            clf = self._classifiers[(variant, role)] = self._variant_classifier(variant, role)
        return clf

    # --- prepare: at fetch time ------------------------------------------------------------
    def prepare(self, rec: SourceRecord, part: Sink) -> Awaitable[Outcome]:
        self.metrics.event_in(rec.topic)
        tracing = self.tracing
        span = tracing.consume_span(
            rec.topic, rec.partition, rec.offset, rec.key, parent_ctx=tracing.extract(rec.headers)
        )
        try:
            with tracing.stage("decode", span):
                event = decode_conversation(
                    rec.value,
                    max_text_bytes=self.settings.max_text_bytes,
                    max_event_bytes=self.settings.max_event_bytes,
                    attachments=None if self.reader is None else self.reader.limits,
                    max_inline_bytes=self.settings.attachment_max_inline_bytes,
                )
        except InvalidEvent as exc:
            return done(Invalid(exc.code, exc.detail, peek_event_id(rec.value), span))
        inflight: set[str] = part.local.setdefault(_INFLIGHT_KEY, set())
        if event.event_id in inflight or part.get(DEDUPE, event.event_id.encode()) is not None:
            return done(Duplicate(event, span))
        inflight.add(event.event_id)
        with tracing.stage("policy", span):
            access = self.governor.admit(event.tenant, event.metadata)
        if not access.allowed:
            return done(Denied(event, access, span))
        fetched_at = self.clock()
        if event.attachments:
            return asyncio.ensure_future(self._read_images(event, access, fetched_at, span))
        return self._submit(event, access, fetched_at, span)

    def _submit(
        self,
        event: ConversationEvent,
        access: Access,
        fetched_at: float,
        span: EventSpan,
        read: TurnText | None = None,
    ) -> asyncio.Future[Outcome]:
        item = Item(event.text, span, time.time_ns())
        runner = self.runner
        assignment = None if runner is None else runner.assign(event.tenant, event.conversation_id)
        if runner is None or assignment is None:
            future = self.batcher.submit(event.conversation_id, item)
            return asyncio.ensure_future(
                self._classified(event, access, future, fetched_at, span, read)
            )
        shadow_item = Item(event.text, NOT_TRACED, item.submitted_ns)
        routed = runner.submit(assignment, event.conversation_id, item, shadow_item)
        return asyncio.ensure_future(
            self._experimented(runner, event, access, routed, item, fetched_at, span, read)
        )

    async def _read_images(
        self, event: ConversationEvent, access: Access, fetched_at: float, span: EventSpan
    ) -> Outcome:
        """An image turn: OCR first, then the turn goes on with the recognised text (typed text
        first) like any other; an attachment that cannot be read dead-letters the turn."""
        assert self.reader is not None
        try:
            with self.tracing.stage("ocr", span):
                images = await self.reader.read(event.attachments)
        except InvalidEvent as exc:
            return Invalid(exc.code, exc.detail, event.event_id, span)
        read = compose(event.text, images)
        if not read.text.strip():
            detail = f"{len(images)} image(s), no line read and no typed text"
            return Invalid("ocr_no_text", detail, event.event_id, span)
        size = len(read.text.encode("utf-8", "surrogatepass"))
        if size > self.settings.max_text_bytes:
            detail = f"typed and recognised text {size} bytes > {self.settings.max_text_bytes}"
            return Invalid("text_too_long", detail, event.event_id, span)
        turn = dataclasses.replace(event, text=read.text)
        return await self._submit(turn, access, fetched_at, span, read)

    async def _infer(
        self, items: list[Item], *, classifier: TurnClassifier | None = None, role: str = PRIMARY
    ) -> list[Prediction]:
        """One batch: its events' batch_wait spans end here, one inference span covers it.
        A shadow batch is counted per model version only: no span, no serving metric."""
        texts = [i.text for i in items]
        started = time.perf_counter()
        if role == SHADOW:
            predictions = await (classifier or self.classifier).classify(texts)
        else:
            predictions = await self._infer_served(items, texts, classifier or self.classifier)
        first = predictions[0]
        seconds = time.perf_counter() - started
        self.metrics.model_batch(first.model_name, first.model_version, role, len(items), seconds)
        return predictions

    async def _infer_served(
        self, items: list[Item], texts: list[str], classifier: TurnClassifier
    ) -> list[Prediction]:
        tracing, now = self.tracing, time.time_ns()
        for item in items:
            tracing.record("batch_wait", item.span, item.submitted_ns, now)
        with (
            self.metrics.inflight(),
            self.metrics.time_stage("inference"),
            tracing.batch_span("inference", [i.span for i in items]) as span,
        ):
            predictions = await classifier.classify(texts)
            first = predictions[0]
            span.set(ATTR_BACKEND, first.backend)
            span.set(ATTR_MODEL_NAME, first.model_name)
            span.set(ATTR_MODEL_VERSION, first.model_version)
        self.metrics.observe_batch(len(items))
        self.metrics.route(first.backend, len(items))
        return predictions

    async def _experimented(
        self,
        runner: ExperimentRunner[Item],
        event: ConversationEvent,
        access: Access,
        routed: Routed,
        item: Item,
        fetched_at: float,
        span: EventSpan,
        read: TurnText | None = None,
    ) -> Outcome:
        """A turn under an experiment: its arm's answer (a failed candidate's turn is answered
        by the primary), its comparison record on its way, its result stamped."""

        async def predict(
            batched: Awaitable[Prediction], variant: Variant, role: str
        ) -> Prediction | Rejected:
            return await self.controller.predict(batched, event, self._classifier(variant, role))

        result, served = await runner.answer(routed, event.conversation_id, item, predict)
        runner.record(
            routed,
            served,
            event_id=event.event_id,
            conversation_id=event.conversation_id,
            tenant=event.tenant,
        )
        if isinstance(result, Rejected):
            return Invalid(result.reason, result.detail, event.event_id, span)
        stamp = routed.assignment.stamp() | {"fallback": served.error is not None}
        return Classified(event, access, result, fetched_at, span, stamp, read)

    async def _classified(
        self,
        event: ConversationEvent,
        access: Access,
        future: asyncio.Future[Prediction],
        fetched_at: float,
        span: EventSpan,
        read: TurnText | None = None,
    ) -> Outcome:
        prediction = await self.controller.predict(future, event)  # a rejected batch: alone
        if isinstance(prediction, Rejected):
            return Invalid(prediction.reason, prediction.detail, event.event_id, span)
        return Classified(event, access, prediction, fetched_at, span, read=read)

    def overtakes(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` may be finished ahead of older turns of other conversations
        (``streams.finishing.Finisher``): one that leaves a dedupe row (so its replay after a
        crash is skipped), or a duplicate. A dead letter keeps its place: it leaves no row."""
        return isinstance(outcome, Classified | Denied | Duplicate)

    # --- finish: in offset order per conversation, inside the partition's transaction ----------
    async def finish(self, rec: SourceRecord, outcome: Outcome, part: Sink) -> None:
        if isinstance(outcome, BaseException):  # prepare failed unexpectedly
            await self.fail(rec, outcome, part)
            return
        span = outcome.span or NOT_TRACED
        try:
            await self._finish(rec, outcome, part, span)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()

    async def _finish(
        self, rec: SourceRecord, outcome: Outcome, part: Sink, span: EventSpan
    ) -> None:
        match outcome:
            case Invalid(code, detail, event_id):
                sent_id = await self.dead_letters.send(part, rec, code, detail, event_id)
                part.local.get(_INFLIGHT_KEY, set()).discard(sent_id)
            case Duplicate(event):
                self.metrics.duplicate(rec.topic)
                log.info(
                    "duplicate event %s at %s[%d]@%d skipped",
                    event.event_id,
                    rec.topic,
                    rec.partition,
                    rec.offset,
                )
            case Denied(event, access):
                self.metrics.policy_denial(access.reason)
                released = await self.controller.deny(
                    event, access, trace_id=self.tracing.trace_id(span.ctx)
                )
                await self.outputs.send(part, rec, event, released, None, None, span=span)
                await self._remember(part, event)
            case Classified(event, access, prediction, fetched_at):
                with self.tracing.stage("context", span):
                    selection = await self._context(part, event, prediction)
                with self.metrics.time_stage("governance"):
                    released = self.controller.release(
                        event,
                        access,
                        prediction,
                        trace_id=self.tracing.trace_id(span.ctx),
                        stage=lambda name: self.tracing.stage(name, span),
                    )
                if released.decision is not None:
                    self.metrics.filter_decision(released.decision.action)
                await self.outputs.send(
                    part, rec, event, released, prediction, selection, fetched_at, span=span,
                    experiment=outcome.experiment, read=outcome.read,
                )  # fmt: skip
                await self._remember(part, event)

    async def fail(self, rec: SourceRecord, exc: BaseException, part: Sink) -> None:
        event_id = await self.dead_letters.failed(part, rec, exc)
        part.local.get(_INFLIGHT_KEY, set()).discard(event_id)

    async def _remember(self, part: Sink, event: ConversationEvent) -> None:
        """The event id's dedupe row, in the same transaction as its outputs."""
        await part.put(DEDUPE, event.event_id.encode(), b"1", self.clock())
        part.local.get(_INFLIGHT_KEY, set()).discard(event.event_id)

    async def _context(
        self, part: Sink, event: ConversationEvent, prediction: Prediction
    ) -> Selection:
        """Select earlier turns for this one; the conversation's new row, in the transaction."""
        key = event.conversation_id.encode()
        with self.metrics.time_stage("context"):
            update = self.controller.context(
                self._cache(part), event, prediction, lambda: part.get(CONTEXT, key)
            )
        await part.put(CONTEXT, key, update.row, update.last_seen)
        return update.selection

    def _cache(self, part: Sink) -> DialogueCache:
        cache: DialogueCache | None = part.local.get(_CACHE_KEY)
        if cache is None:
            cache = part.local[_CACHE_KEY] = self.controller.new_cache()
        return cache

    async def sweep(self, part: Sink, now: float) -> None:
        """Drop idle conversations and event ids past the dedupe window (tombstones)."""
        cache = self._cache(part)
        for key in part.expired(CONTEXT, now - self.settings.context_idle_s):
            cache.drop(key.decode())
            await part.put(CONTEXT, key, None, now)
        self.metrics.set_table_size(CONTEXT, part.size(CONTEXT))
        for key in part.expired(DEDUPE, now - self.settings.dedupe_window_s):
            await part.put(DEDUPE, key, None, now)
