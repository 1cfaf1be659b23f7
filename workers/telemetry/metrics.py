"""The worker's Prometheus metrics, on a registry the caller owns (served at the web port's
``/metrics``).

| metric | type | labels | what |
|---|---|---|---|
| ``inferstream_events_in_total`` | counter | topic | records consumed |
| ``inferstream_events_out_total`` | counter | topic | results, audit, analytics records |
| ``inferstream_dead_letters_total`` | counter | topic, reason | dead letters, by source topic |
| ``inferstream_e2e_latency_seconds`` | histogram | | event timestamp → result produced |
| ``inferstream_stage_latency_seconds`` | histogram | stage | one stage of one event or batch |
| ``inferstream_batch_size`` | histogram | | events per inference batch |
| ``inferstream_inflight_batches`` | gauge | | batches being processed now |
| ``inferstream_consumer_lag`` | gauge | topic, partition | log end offset − committed/position |
| ``inferstream_routed_events_total`` | counter | backend, device | events sent to each backend |
| ``inferstream_route_available`` | gauge | device | 1 while a route (gpu, cpu) is usable |
| ``inferstream_filter_decisions_total`` | counter | action | content filter: pass, mask, block |
| ``inferstream_policy_denials_total`` | counter | reason | permission checks denied |
| ``inferstream_triton_errors_total`` | counter | kind | failed Triton calls by error kind |
| ``inferstream_table_entries`` | gauge | table | keys held by each table |
| ``inferstream_event_cost_usd`` | histogram | tenant, backend | compute cost of one event |
| ``inferstream_spans_exported_total`` | counter | | trace spans handed to the exporter's receiver |
| ``inferstream_spans_dropped_total`` | counter | | trace spans lost (queue full, export failed) |
| ``inferstream_model_events_total`` | counter | model, version, role | events a version answered |
| ``inferstream_model_inference_seconds`` | histogram | model, version, role | one batch's call |
| ``inferstream_model_errors_total`` | counter | model, version, role | events a version failed |
| ``inferstream_shadow_shed_total`` | counter | model, version, reason | shadow copies dropped |
| ``inferstream_experiment_events_total`` | counter | experiment, arm | events per arm |
| ``inferstream_experiment_rollbacks_total`` | counter | experiment | automatic rollbacks |

``role`` is primary, candidate or shadow (docs/experiments.md); ``version`` is the version that
answered, or the one named (``default`` when none was) where the call failed or was shed.

Label values should come from small, fixed sets (topics, stage names, reason codes, tenants);
never event ids or free text.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractContextManager, suppress
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from workers.cost import BUDGET_USD_PER_EVENT, device_of

PREFIX = "inferstream"
CONTENT_TYPE = CONTENT_TYPE_LATEST
E2E_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 30.0,
)  # fmt: skip
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COST_BUCKETS = (
    1e-7, 1e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, BUDGET_USD_PER_EVENT, 5e-3, 1e-2, 1e-1,
)  # fmt: skip

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    """Every metric of the worker, registered on ``registry``; one instance per worker."""

    def __init__(self, registry: CollectorRegistry, *, prefix: str = PREFIX) -> None:
        self.registry = registry
        r, p = registry, prefix
        self.events_in = Counter(f"{p}_events_in", "Records consumed.", ["topic"], registry=r)
        self.events_out = Counter(f"{p}_events_out", "Records produced.", ["topic"], registry=r)
        self.dead_letters = Counter(
            f"{p}_dead_letters", "Records dead-lettered, by source topic.", ["topic", "reason"],
            registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            f"{p}_duplicates", "Re-delivered event ids skipped (dedupe table).", ["topic"],
            registry=r,
        )  # fmt: skip
        self.resets = Counter(
            f"{p}_processing_resets", "Processing sessions rebuilt after a Kafka error.",
            registry=r,
        )  # fmt: skip
        self.e2e = Histogram(
            f"{p}_e2e_latency_seconds", "Event timestamp to result produced.",
            buckets=E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            f"{p}_stage_latency_seconds", "Time spent in one stage.", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            f"{p}_batch_size", "Events per inference batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.inflight_batches = Gauge(
            f"{p}_inflight_batches", "Batches being processed.", registry=r
        )
        self.lag = Gauge(
            f"{p}_consumer_lag", "Records behind the log end.", ["topic", "partition"], registry=r
        )
        self.routes = Counter(
            f"{p}_routed_events", "Events sent to each backend.", ["backend", "device"], registry=r
        )
        self.route_up = Gauge(
            f"{p}_route_available", "1 while a route is usable.", ["device"], registry=r
        )
        self.filter = Counter(
            f"{p}_filter_decisions", "Content filter decisions.", ["action"], registry=r
        )
        self.denials = Counter(
            f"{p}_policy_denials", "Permission checks denied.", ["reason"], registry=r
        )
        self.triton = Counter(f"{p}_triton_errors", "Failed Triton calls.", ["kind"], registry=r)
        self.tables = Gauge(f"{p}_table_entries", "Keys held by a table.", ["table"], registry=r)
        self.cost = Histogram(
            f"{p}_event_cost_usd", "Compute cost of one event (USD).", ["tenant", "backend"],
            buckets=COST_BUCKETS, registry=r,
        )  # fmt: skip
        self.spans_sent = Counter(
            f"{p}_spans_exported", "Trace spans exported (accepted by the receiver).", registry=r
        )
        self.spans_lost = Counter(
            f"{p}_spans_dropped", "Trace spans lost: export queue full or export failed.",
            registry=r,
        )  # fmt: skip
        self.model_events = Counter(
            f"{p}_model_events", "Events answered by a model version.",
            ["model", "version", "role"], registry=r,
        )  # fmt: skip
        self.model_seconds = Histogram(
            f"{p}_model_inference_seconds", "One batch's call of a model version.",
            ["model", "version", "role"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_errors = Counter(
            f"{p}_model_errors", "Events a model version failed.", ["model", "version", "role"],
            registry=r,
        )  # fmt: skip
        self.shadow_shed = Counter(
            f"{p}_shadow_shed", "Shadow copies dropped under load.",
            ["model", "version", "reason"], registry=r,
        )  # fmt: skip
        self.experiment_events = Counter(
            f"{p}_experiment_events", "Events served under an experiment.",
            ["experiment", "arm"], registry=r,
        )  # fmt: skip
        self.experiment_rollbacks = Counter(
            f"{p}_experiment_rollbacks", "Automatic rollbacks published.", ["experiment"],
            registry=r,
        )  # fmt: skip
        self.ocr_images = Counter(
            f"{p}_ocr_images", "Image attachments: read, or refused (reason).", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.ocr_lines = Counter(f"{p}_ocr_lines", "Text lines read from images.", registry=r)
        self.ocr_seconds = Histogram(
            f"{p}_ocr_seconds", "One image's OCR steps (decode, detect, recognize, total).",
            ["step"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.ocr_inflight = Gauge(
            f"{p}_ocr_inflight", "Images in OCR now (the router's view of OCR load).", registry=r
        )
        self.ocr_waiting = Gauge(f"{p}_ocr_waiting", "Images waiting for an OCR slot.", registry=r)
        self._children: dict[tuple[int, Hashable], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- model versions and experiments --------------------------------------------------------
    def model_batch(self, model: str, version: str, role: str, n: int, seconds: float) -> None:
        self._child(self.model_events, model, version, role).inc(n)
        self._child(self.model_seconds, model, version, role).observe(seconds)

    def model_error(self, model: str, version: str, role: str, n: int = 1) -> None:
        self._child(self.model_errors, model, version, role).inc(n)

    def shed(self, model: str, version: str, reason: str) -> None:
        self._child(self.shadow_shed, model, version, reason).inc()

    def experiment_event(self, experiment: str, arm: str) -> None:
        self._child(self.experiment_events, experiment, arm).inc()

    def experiment_rollback(self, experiment: str) -> None:
        self._child(self.experiment_rollbacks, experiment).inc()

    # --- OCR -----------------------------------------------------------------------------------
    def ocr_image(self, outcome: str) -> None:
        self._child(self.ocr_images, outcome).inc()

    def ocr_step(self, step: str, seconds: float) -> None:
        self._child(self.ocr_seconds, step).observe(seconds)

    # --- events --------------------------------------------------------------------------------
    def event_in(self, topic: str, n: int = 1) -> None:
        self._child(self.events_in, topic).inc(n)

    def event_out(self, topic: str, n: int = 1) -> None:
        self._child(self.events_out, topic).inc(n)

    def dead_letter(self, topic: str, reason: str) -> None:
        self._child(self.dead_letters, topic, reason).inc()

    def duplicate(self, topic: str) -> None:
        self._child(self.duplicates, topic).inc()

    # --- latencies and batches -----------------------------------------------------------------
    def observe_e2e(self, seconds: float) -> None:
        self.e2e.observe(max(0.0, seconds))

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._child(self.stage, stage).observe(max(0.0, seconds))

    def time_stage(self, stage: str) -> AbstractContextManager[Any]:
        """``with metrics.time_stage("decode"): ...`` observes the block's duration."""
        return self._child(self.stage, stage).time()  # type: ignore[no-any-return]

    def observe_batch(self, size: int) -> None:
        self.batch.observe(size)

    def inflight(self) -> AbstractContextManager[Any]:
        """``with metrics.inflight(): ...`` counts one batch in flight for the block."""
        return self.inflight_batches.track_inprogress()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._child(self.lag, topic, str(partition)).set(max(0, lag))

    def clear_lag(self, topic: str, partition: int) -> None:
        """Forget a partition's lag (revoked in a rebalance): no stale series stays behind."""
        self._children.pop((id(self.lag), (topic, str(partition))), None)
        with suppress(KeyError):
            self.lag.remove(topic, str(partition))

    # --- routes and decisions ------------------------------------------------------------------
    def route(self, backend: str, n: int = 1) -> None:
        self._child(self.routes, backend, device_of(backend)).inc(n)

    def set_route_available(self, device: str, up: bool) -> None:
        self._child(self.route_up, device).set(1 if up else 0)

    def filter_decision(self, action: str) -> None:
        self._child(self.filter, action).inc()

    def policy_denial(self, reason: str) -> None:
        self._child(self.denials, reason).inc()

    def triton_error(self, kind: str) -> None:
        self._child(self.triton, kind).inc()

    def set_table_size(self, table: str, n: int) -> None:
        self._child(self.tables, table).set(n)

    def observe_cost(self, tenant: str, backend: str, usd: float) -> None:
        self._child(self.cost, tenant, backend).observe(usd)

    def spans_exported(self, n: int) -> None:
        """Called by the tracing's batch processor after each successful export of ``n`` spans."""
        self.spans_sent.inc(n)

    def spans_dropped(self, n: int) -> None:
        """Called by the tracing's batch processor (from any thread) when it loses ``n`` spans."""
        self.spans_lost.inc(n)

    # --- exposition ----------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def sample_names(self) -> set[str]:
        """Every sample name this registry can expose (``*_total``, ``*_bucket``, ...)."""
        names: set[str] = set()
        for family in self.registry.collect():
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
            }.get(family.type, ("",))
            names.update(family.name + s for s in suffixes)
        return names
