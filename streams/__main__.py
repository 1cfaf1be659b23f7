"""The `inferstream` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from streams import console, local
from streams.experiments import experiment
from streams.samples import sample_events
from streams.settings import Settings


@click.group()
def cli() -> None:
    """inferstream: streaming inference on Kafka + Triton with Faust."""


@cli.command()
def config() -> None:
    """Print the effective settings (secrets masked)."""
    for name, value in Settings().describe().items():
        click.echo(f"{name}={value}")


@cli.command("build-models")
@click.option("--force", is_flag=True, help="Rebuild even if the cache has this build.")
@click.option(
    "--int8-tolerance", type=float, default=None, help="INT8 gate in points [default: 1.0]."
)
@click.option(
    "--fp32",
    is_flag=True,
    help="Also install inferstream_cpu_fp32/1, the unquantized twin (for experiments).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "int8", "fp32"]),
    default=None,
    help="What inferstream_cpu/1 serves [default: the setting model_precision, auto].",
)
def build_models_cmd(
    force: bool, int8_tolerance: float | None, fp32: bool, precision: str | None
) -> None:
    """Build the model artifacts into model_repo/ (cached by a hash of code and weights)."""
    settings = Settings()
    if precision is not None:
        settings = settings.model_copy(update={"model_precision": precision})
    _build_models(settings, force, int8_tolerance, fp32=fp32)


def _build_models(
    settings: Settings,
    force: bool = False,
    int8_tolerance: float | None = None,
    *,
    fp32: bool = False,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console

    from workers.modeling.build import build_models
    from workers.modeling.mt_install import install_fp32
    from workers.modeling.steps import BuildError
    from workers.ocr.install import install_ocr

    try:  # a cache hit (same code, config and weights) takes well under a second
        build_models(
            settings.model_repo,
            settings.cache_dir,
            force=force,
            int8_tolerance=int8_tolerance,
            precision=settings.model_precision,
        )
        install_ocr(  # PP-OCRv4: INT8 where the CPU makes it pay and the gate passes, else FP32
            settings.model_repo,
            Console(stderr=True, markup=False).print,  # "[ocr] ..." is not markup
            int8=settings.ocr_int8,
            cache_root=settings.cache_dir,
        )
        if fp32:
            install_fp32(settings.model_repo, settings.cache_dir, Console(stderr=True).log)
    except BuildError as exc:
        raise click.ClickException(f"model build failed: {exc}") from exc


@cli.command("build-tensorrt")
def build_tensorrt_cmd() -> None:
    """Build the TensorRT FP16 engine (inferstream_gpu/1) on a GPU host; exit 2 where none."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workers.modeling.steps import BuildError
    from workers.modeling.tensorrt_build import NoGpuError, build_gpu_model

    settings = Settings()
    try:
        plan = build_gpu_model(settings.model_repo, settings.cache_dir)
    except NoGpuError as exc:
        click.echo(f"build-tensorrt: refusing: {exc}", err=True)
        sys.exit(2)
    except BuildError as exc:
        raise click.ClickException(f"model build failed: {exc}") from exc
    click.echo(f"build-tensorrt: wrote {plan}")


@cli.command()
@click.option("--worker/--no-worker", default=True, help="Also start a worker in the background.")
def up(worker: bool) -> None:
    """Start the local Kafka, Triton (building models if missing) and a worker.

    A broker or Triton named by INFERSTREAM_BROKER_URL / INFERSTREAM_TRITON_URL is used as it is.
    """
    settings = Settings()
    if settings.embedded_kafka:
        local.kafka(settings, "start")
    else:
        click.echo(f"using external Kafka at {settings.bootstrap_servers}")
    if settings.embedded_triton:
        _build_models(settings)  # rebuilds only if code, config or weights changed
        local.triton(settings, "start")
    else:
        click.echo(f"using external Triton at {settings.triton_endpoint}")
    if worker:
        env = dict(os.environ)
        if settings.watermark_keys is None and settings.watermark_key_dir is None:
            env["INFERSTREAM_WATERMARK_KEY_DIR"] = str(local.dev_keys(settings))
        proc = local.WorkerProcess(settings, env)
        if proc.pid() is not None:
            click.echo(f"worker already running (pid {proc.pid()})")
            return
        pid = proc.start()
        proc.wait_ready()
        click.echo(f"worker ready (pid {pid}, log {proc.log_path})")


@cli.command()
def down() -> None:
    """Stop the worker and the local Triton and Kafka; leaves no process or port behind."""
    settings = Settings()
    local.WorkerProcess(settings, {}).stop()
    if settings.embedded_triton:
        local.triton(settings, "stop")
    if settings.embedded_kafka:
        local.kafka(settings, "stop")
    ports = [settings.web_port]
    if settings.embedded_kafka:
        ports.append(settings.kafka_port)
    if settings.embedded_triton:
        ports += [
            settings.triton_http_port,
            settings.triton_grpc_port,
            settings.triton_metrics_port,
        ]
    left = [p for p in ports if local.port_open(p)]
    if left:
        raise click.ClickException(f"ports still listening after down: {left}")
    click.echo("down: no inferstream process or port left")


@cli.command()
def worker() -> None:
    """Run a Faust worker in the foreground."""
    import faust
    from aiokafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError

    from streams.admin import ensure_topics
    from streams.app import create_app

    settings = Settings()
    try:
        asyncio.run(ensure_topics(settings))
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
        # Least-privilege credentials may not create (or even see) topics: an admin does that
        # (deploy/k8s KafkaTopic). Start anyway: a missing grant shows in the log and in
        # /health/ready, and processing retries with back-off instead of a crash loop.
        logging.getLogger("inferstream").error(
            "cannot check or create topics with user %r (%s): they must exist and be granted",
            settings.kafka_sasl_username, exc,
        )  # fmt: skip
    app = create_app(settings)
    faust.Worker(app, loglevel=settings.log_level).execute_from_commandline()


@cli.command()
@click.option("--sample", "repeat", type=int, default=0, help="Send the sample dialogues N times.")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, path_type=Path),
    help="Send each line of a JSON-lines file as one event (bytes as they are).",
)
def produce(repeat: int, path: Path | None) -> None:
    """Send events to the input topic."""
    settings = Settings()
    if path is not None:
        records = list(console.file_records(path))
    else:
        records = list(console.events_as_records(sample_events(repeat=max(repeat, 1))))
    sent = asyncio.run(console.produce(settings, records))  # ensures the topics first
    click.echo(f"sent {sent} events to {settings.topic_in}")


@cli.command()
@click.argument("topic")
@click.option("--count", "-n", type=int, default=None, help="Stop after N records.")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True)
@click.option("--from-beginning", is_flag=True)
def tail(topic: str, count: int | None, timeout_s: float, from_beginning: bool) -> None:
    """Print records of TOPIC as they arrive."""
    seen = asyncio.run(console.tail(Settings(), topic, count, timeout_s, from_beginning))
    click.echo(f"{seen} records", err=True)


@cli.command()
@click.option("--repeat", type=int, default=1, show_default=True)
@click.option(
    "--burst",
    type=int,
    default=2000,
    show_default=True,
    help="Events in the timed burst after the samples.",
)
def demo(repeat: int, burst: int) -> None:
    """Send the sample conversations, print the model's results, then time a burst."""
    asyncio.run(console.demo(Settings(), repeat=repeat, burst=burst))


@cli.command()
@click.option(
    "--record",
    "record_file",
    type=click.File("rb"),
    default=None,
    help="A result record (JSON), '-' for stdin.",
)
@click.option("--text", default=None, help="A piece of text the service emitted (or a fragment).")
@click.option("--text-file", type=click.File("r", encoding="utf-8"), default=None)
def verify(record_file: Any, text: str | None, text_file: Any) -> None:
    """Say whether a result record or a text is authentic, and which record it came from."""
    import orjson

    from streams.app import ConfigError, load_keys
    from streams.verify import check_record, check_text

    settings = Settings()
    dev_dir = settings.run_dir / "keys"  # what `up` made, when no keys are configured
    if settings.watermark_keys is None and settings.watermark_key_dir is None and dev_dir.is_dir():
        settings = settings.model_copy(update={"watermark_key_dir": dev_dir})
    try:
        keys = load_keys(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if record_file is not None:
        authentic, line = check_record(orjson.loads(record_file.read()), keys)
    elif text is not None or text_file is not None:
        body = text if text is not None else text_file.read()
        authentic, line = asyncio.run(check_text(settings, body, keys))
    else:
        raise click.UsageError("give --record FILE or --text TEXT / --text-file FILE")
    click.echo(line)
    if not authentic:
        sys.exit(1)


@cli.command()
@click.option(
    "--dir",
    "key_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to write <kid>.pem into (mode 0600).",
)
@click.option("--kid", default=None, help="Key id (default: k<UTC date-time>).")
def keygen(key_dir: Path, kid: str | None) -> None:
    """Make a new Ed25519 watermark signing key; the newest kid in a folder signs."""
    from workers.provenance.keys import generate_key_file

    path = generate_key_file(key_dir, kid or local.new_kid())
    click.echo(f"wrote {path}")


@cli.group()
def policy() -> None:
    """Publish tenant policies to the compacted policies topic (applied live)."""


@policy.command("set")
@click.argument("tenant")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def policy_set(tenant: str, path: Path) -> None:
    """Publish the policy JSON in PATH for TENANT."""
    asyncio.run(console.publish_policy(Settings(), tenant, path.read_bytes()))
    click.echo(f"published policy for {tenant}")


@policy.command("allow-all")
@click.argument("tenants", nargs=-1, required=True)
@click.option("--version", type=int, default=1, show_default=True)
def policy_allow_all(tenants: tuple[str, ...], version: int) -> None:
    """Publish a permissive policy (every role, every capability; PII still masked)."""
    settings = Settings()
    for tenant in tenants:
        asyncio.run(
            console.publish_policy(settings, tenant, console.allow_all_policy(tenant, version))
        )
    click.echo(f"published allow-all v{version} for {', '.join(tenants)}")


@policy.command("delete")
@click.argument("tenant")
def policy_delete(tenant: str) -> None:
    """Remove TENANT's policy (a tombstone): its requests are denied from then on."""
    asyncio.run(console.publish_policy(Settings(), tenant, None))
    click.echo(f"deleted policy of {tenant}")


@cli.command()
@click.option("--url", default=None, help="Worker metrics URL (default: this worker's web port).")
@click.option("--refresh", "refresh_s", type=float, default=1.0, show_default=True)
@click.option("--iterations", type=int, default=None, help="Stop after N refreshes.")
def top(url: str | None, refresh_s: float, iterations: int | None) -> None:
    """A live terminal view of a worker: throughput, latency, lag, batches, routes."""
    from streams.top import run_top

    target = url or f"http://127.0.0.1:{Settings().web_port}/metrics"
    asyncio.run(run_top(target, refresh_s=refresh_s, iterations=iterations))


def main() -> None:
    cli(prog_name="inferstream")


cli.add_command(experiment)


if __name__ == "__main__":
    main()
