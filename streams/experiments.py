"""``inferstream experiment ...``: the commands, and what they do to the compacted
``experiments`` topic (read, change, report; docs/experiments.md). Workers apply each change
within a poll interval; nothing here talks to a worker."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import click
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


# --- the commands ------------------------------------------------------------------------
@click.group()
def experiment() -> None:
    """Model experiments: canary, A/B and shadow versions, switched live (docs/experiments.md)."""


def _experiment_call(coro: Any) -> Any:

    try:
        return asyncio.run(coro)
    except (ExperimentError, InvalidEvent) as exc:
        raise click.ClickException(str(exc)) from exc


@experiment.command("set")
@click.argument("name")
@click.option("--primary", required=True, help="MODEL[:VERSION] that answers by default.")
@click.option(
    "--candidate", "candidates", multiple=True, help="MODEL[:VERSION]=SHARE, e.g. m:2=0.1."
)
@click.option(
    "--shadow", "shadows", multiple=True, help="MODEL[:VERSION][=SHARE] (default share 1)."
)
@click.option("--tenant", default="*", show_default=True, help="A tenant, or * for all.")
@click.option("--guard-window", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--guard-min-events", type=int, default=100, show_default=True)
@click.option("--max-error-rate-delta", type=float, default=0.02, show_default=True)
@click.option("--max-p99-ratio", type=float, default=1.5, show_default=True)
@click.option("--no-guard", is_flag=True, help="No automatic rollback.")
@click.option("--load", is_flag=True, help="Ask Triton to load models it does not serve yet.")
@click.option("--no-check", is_flag=True, help="Do not check that Triton serves each version.")
def experiment_set(
    name: str,
    primary: str,
    candidates: tuple[str, ...],
    shadows: tuple[str, ...],
    tenant: str,
    guard_window: float,
    guard_min_events: int,
    max_error_rate_delta: float,
    max_p99_ratio: float,
    no_guard: bool,
    load: bool,
    no_check: bool,
) -> None:
    """Start (or change) experiment NAME; every worker applies it within seconds."""

    settings = Settings()

    async def go() -> None:
        store = await current(settings)
        exp = new_experiment(
            name,
            tenant=tenant,
            primary=primary,
            candidates=candidates,
            shadows=shadows,
            guard=GuardRails(
                not no_guard, guard_window, guard_min_events, max_error_rate_delta, max_p99_ratio
            ),
            previous=store.exact(tenant),
            by=f"cli@{socket.gethostname()}",
        )
        if not no_check:
            for model in await check_served(settings, exp.variants(), load=load):
                click.echo(f"Triton loaded {model}")
        await publish(settings, tenant, exp.to_json())
        click.echo(f"experiment {name} v{exp.version} for tenant {tenant}: {_arms(exp)}")

    _experiment_call(go())


def _arms(exp: Any) -> str:
    parts = [f"primary {exp.primary.label}"]
    parts += [f"candidate {c.variant.label} {c.share:.0%}" for c in exp.candidates]
    parts += [f"shadow {s.variant.label} {s.share:.0%}" for s in exp.shadows]
    return ", ".join(parts)


@experiment.command("show")
def experiment_show() -> None:
    """Print the experiments in force (JSON lines)."""
    import orjson

    store = _experiment_call(current(Settings()))
    for row in describe(store):
        click.echo(orjson.dumps(row).decode())
    if not len(store):
        click.echo("no experiment in force: every turn goes to the configured model", err=True)


def _change_experiment(name: str, change: Callable[[Any, str], Any | None]) -> None:
    """Publish ``change(experiment in force, who)`` (None: a tombstone) for experiment NAME."""

    settings = Settings()

    async def go() -> None:
        exp = find(await current(settings), name)
        new = change(exp, f"cli@{socket.gethostname()}")
        await publish(settings, exp.tenant, None if new is None else new.to_json())
        said = f"ended for tenant {exp.tenant}" if new is None else f"v{new.version}: {new.reason}"
        click.echo(f"experiment {name} {said}")

    _experiment_call(go())


@experiment.command("promote")
@click.argument("name")
@click.option("--candidate", default=None, help="MODEL[:VERSION] (needed with several).")
def experiment_promote(name: str, candidate: str | None) -> None:
    """Make NAME's candidate the primary: all its conversations move to it."""

    chosen = Variant.parse(candidate) if candidate else None
    _change_experiment(name, lambda exp, by: exp.promoted(chosen, at=time.time(), by=by))


@experiment.command("rollback")
@click.argument("name")
@click.option("--reason", default="rolled back by hand", show_default=True)
def experiment_rollback(name: str, reason: str) -> None:
    """Send every conversation of NAME back to its primary (shadows go on)."""
    _change_experiment(name, lambda exp, by: exp.rolled_back(reason, at=time.time(), by=by))


@experiment.command("end")
@click.argument("name")
def experiment_end(name: str) -> None:
    """End NAME (a tombstone): its tenant's turns go to the configured model again."""
    _change_experiment(name, lambda exp, by: None)


@experiment.command("report")
@click.argument("name")
def experiment_report(name: str) -> None:
    """Agreement, latency and error rates per version, with 95 % intervals."""

    got = _experiment_call(report(Settings(), name))
    if not got.events:
        raise click.ClickException(f"no {Settings().topic_experiment_events} record of {name}")
    for line in got.lines():
        click.echo(line)
