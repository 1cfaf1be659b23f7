"""``inferstream experiment ...``: read, change and report the experiments on the compacted
``experiments`` topic (docs/experiments.md). Workers apply each change within a poll interval;
nothing here talks to a worker."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from streams.admin import ensure_topics
from streams.console import publish_one, scan
from streams.settings import Settings
from workers.errors import InvalidEvent
from workers.experiments.config import (
    ALL_TENANTS,
    Arm,
    Experiment,
    ExperimentStore,
    GuardRails,
    Variant,
    parse_experiment,
)
from workers.experiments.report import Report, build_report


class ExperimentError(RuntimeError):
    """A change that cannot be made (unknown experiment, model not served, bad arguments)."""


async def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` from the beginning to its end now, as (key, value)."""
    await ensure_topics(settings)
    return [(rec.key, rec.value) async for rec in scan(settings, topic)]


async def current(settings: Settings) -> ExperimentStore:
    store = ExperimentStore()
    for key, value in await read_topic(settings, settings.topic_experiments):
        if key is not None:
            try:
                store.apply(key.decode("utf-8", "replace"), value)
            except InvalidEvent:
                continue  # the workers dead-letter it; here it is simply not in force
    return store


def find(store: ExperimentStore, name: str) -> Experiment:
    named = [e for e in store.all() if e.name == name]
    if not named:
        known = ", ".join(sorted(e.name for e in store.all())) or "none"
        raise ExperimentError(f"no experiment {name!r} in force (in force: {known})")
    if len(named) > 1:
        raise ExperimentError(f"{name!r} runs for several tenants: end all but one first")
    return named[0]


async def publish(settings: Settings, tenant: str, value: bytes | None) -> None:
    """One record (None = tombstone: the tenant's experiment ends), acknowledged by all ISRs."""
    await publish_one(settings, settings.topic_experiments, tenant.encode(), value)


async def check_served(
    settings: Settings, variants: Iterable[Variant], *, load: bool, timeout_s: float = 300.0
) -> list[str]:
    """Each version is ready in Triton; with ``load``, models that are not are loaded first
    (Triton in explicit model-control mode, as ``inferstream up`` runs it). Returns what was
    loaded; raises ``ExperimentError`` naming what is not served."""
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url=settings.triton_endpoint)
    loaded: list[str] = []
    try:
        for v in variants:
            if await client.is_model_ready(v.model, v.version):
                continue
            if not load:
                raise ExperimentError(
                    f"Triton at {settings.triton_endpoint} does not serve {v.label} "
                    "(--load loads it; --no-check skips this check)"
                )
            try:
                await client.load_model(v.model, client_timeout=timeout_s)
            except InferenceServerException as exc:
                raise ExperimentError(f"Triton could not load {v.model}: {exc}") from exc
            if not await client.is_model_ready(v.model, v.version):
                raise ExperimentError(f"{v.model} loaded, but version {v.label} is not ready")
            loaded.append(v.model)
    finally:
        await client.close()
    return loaded


def new_experiment(
    name: str,
    *,
    tenant: str,
    primary: str,
    candidates: Iterable[str],
    shadows: Iterable[str],
    guard: GuardRails,
    previous: Experiment | None,
    by: str,
) -> Experiment:
    """From the command line's ``model[:version][=share]`` forms; the version number follows the
    tenant's experiment in force."""

    def arm(text: str, default: float | None) -> Arm:
        spec, _, share = text.partition("=")
        if not share and default is None:
            raise ExperimentError(f"a candidate needs its share: {text}=0.1")
        try:
            value = float(share) if share else default
        except ValueError as exc:
            raise ExperimentError(f"share of {text!r} is not a number") from exc
        assert value is not None
        return Arm(Variant.parse(spec), value)

    exp = Experiment(
        name=name,
        tenant=tenant,
        version=(previous.version + 1) if previous is not None else 1,
        primary=Variant.parse(primary),
        candidates=tuple(arm(c, None) for c in candidates),
        shadows=tuple(arm(s, 1.0) for s in shadows),
        guard=guard,
        updated_at=time.time(),
        updated_by=by,
    )
    return parse_experiment(tenant, exp.to_json())  # the workers' own validation


def describe(store: ExperimentStore) -> list[dict[str, Any]]:
    return [
        e.to_dict() for e in sorted(store.all(), key=lambda e: (e.tenant != ALL_TENANTS, e.tenant))
    ]


async def report(settings: Settings, name: str) -> Report:
    records = []
    for _, value in await read_topic(settings, settings.topic_experiment_events):
        if value is None:
            continue
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return build_report(name, records)
