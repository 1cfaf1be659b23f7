"""What a shadow costs the primary path: one worker at half its flat-out rate without an
experiment, then with a shadow receiving a copy of 100 % of the turns, then flat out with it.

    python -m bench.experiments [--quick] [--shadow inferstream_cpu_fp32:1]

The default shadow is the FP32 twin of the served INT8 model (``build-models --fp32``; this
installs and loads it): each copy costs Triton 2-3x a primary call, the hard case on a shared
2-core host. Prints each phase's throughput and latency, the CPU per event of each process
(worker, Triton, Kafka, load generator), how many shadow copies were answered or shed, and the
ratios issue #20 asks for; writes bench/out/experiments.json.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import click
from prometheus_client.parser import text_string_to_metric_families

from bench.plan import Plan
from bench.scenarios import Session, quiet_kafka_logs, rate_at, run_target
from bench.stack import TENANT, Ports, Services, Worker, clean_environ
from bench.texts import TextPool
from streams.settings import REPO_ROOT
from workers.experiments.config import Arm, Experiment, GuardRails, Variant

OUT = REPO_ROOT / "bench" / "out" / "experiments.json"
PRIMARY = Variant("inferstream_cpu", "1")


def log(line: str) -> None:
    print(line, flush=True)


def shadow_counts(web_port: int) -> dict[str, float]:
    """The worker's shadow figures: copies answered, failed and shed so far."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5).read()
    out = {"answered": 0.0, "failed": 0.0, "shed": 0.0}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "inferstream_model_events_total":
                if sample.labels.get("role") == "shadow":
                    out["answered"] += sample.value
            elif sample.name == "inferstream_model_errors_total":
                if sample.labels.get("role") == "shadow":
                    out["failed"] += sample.value
            elif sample.name == "inferstream_shadow_shed_total":
                out["shed"] += sample.value
    return out


def prepare_shadow(services: Services, shadow: Variant) -> Path | None:
    """Install the FP32 twin if it is the shadow (returns its folder when this installed it),
    and have Triton load the shadow's model."""
    import tritonclient.grpc.aio as grpcclient
    from rich.console import Console

    settings = services.settings
    installed = None
    if shadow.model == "inferstream_cpu_fp32":
        from workers.modeling.mt_install import install_fp32

        folder = settings.model_repo / shadow.model / "1"
        existed = folder.is_dir()
        install_fp32(settings.model_repo, settings.cache_dir, Console(stderr=True).log)
        installed = None if existed else folder

    async def load() -> None:
        client = grpcclient.InferenceServerClient(url=settings.triton_endpoint)
        try:
            if not await client.is_model_ready(shadow.model, shadow.version):
                await client.load_model(shadow.model, client_timeout=300)
        finally:
            await client.close()

    asyncio.run(load())
    return installed


def _row(tag: str, phase: dict[str, Any], shadows: dict[str, float] | None) -> str:
    lat = phase["latency_ms"]
    cpu = (phase.get("cpu") or {}).get("cpu_ms_per_event") or {}
    per = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "kafka_jit" and v is not None)
    sh = ""
    if shadows is not None:
        total = shadows["answered"] + shadows["shed"]
        sh = f" | {shadows['answered']:.0f} answered, {shadows['shed']:.0f} shed of {total:.0f}"
    offered = "flat out" if phase["offered_per_s"] is None else f"{phase['offered_per_s']:.0f}/s"
    return (
        f"| {tag} | {offered} | {phase['throughput_per_s']:.1f}/s | {lat.get('p50', math.nan):.0f}"
        f" / {lat.get('p99', math.nan):.0f} ms | {per}{sh} |"
    )


def run(plan: Plan, ports: Ports, shadow: Variant) -> dict[str, Any]:
    services = Services(ports)
    services.start(log)
    installed = None
    try:
        installed = prepare_shadow(services, shadow)
        worker = Worker(ports, plan.worker_env, name="bench-shadow")

        async def body(s: Session) -> dict[str, Any]:
            flat = await s.phase("flat64", flat=True)
            half = rate_at(0.5, flat["throughput_per_s"])
            if half is None:
                raise RuntimeError("no flat-out figure: nothing to halve")
            base = await s.phase(f"base{half:.0f}", rate=half)
            exp = Experiment(
                "bench-shadow",
                TENANT,
                1,
                PRIMARY,
                shadows=(Arm(shadow, 1.0),),
                guard=GuardRails(enabled=False),
                updated_at=time.time(),
                updated_by="bench",
            )
            from streams.experiments import publish

            await publish(s.target.settings, TENANT, exp.to_json())
            await asyncio.sleep(2.0)  # applied within a poll interval; then some margin
            # the shadow's first calls (its tokenizer, Triton's first inference) are a warm-up,
            # as the primary had one: not recorded
            await s.phase(f"shadowwarm{half:.0f}", rate=half, record=False)
            web = s.target.settings.web_port
            before = shadow_counts(web)
            shadowed = await s.phase(f"shadow{half:.0f}", rate=half)
            middle = shadow_counts(web)
            flat_shadowed = await s.phase("flat64shadow", flat=True)
            after = shadow_counts(web)
            return {
                "half_rate": half,
                "flat": flat,
                "base": base,
                "shadow": shadowed,
                "flat_shadow": flat_shadowed,
                "shadow_counts": {k: middle[k] - before[k] for k in before},
                "flat_shadow_counts": {k: after[k] - middle[k] for k in before},
            }

        return run_target(worker, plan, TextPool(), log, body)
    finally:
        services.stop()
        if installed is not None:  # leave the model repository as it was
            shutil.rmtree(installed, ignore_errors=True)


def report(res: dict[str, Any], shadow: Variant) -> list[str]:
    if res.get("error"):
        return [f"failed: {res['error']}", res.get("log_tail", "")]
    base, sh = res["base"], res["shadow"]
    lines = [
        f"shadow {shadow.label} on 100 % of the turns (primary {PRIMARY.label}), L=64:",
        "",
        "| phase | offered | throughput | p50 / p99 | CPU ms per event; shadow copies |",
        "|---|---|---|---|---|",
        _row("no experiment, flat out", res["flat"], None),
        _row("no experiment, half rate", base, None),
        _row("shadow 100 %, half rate", sh, res["shadow_counts"]),
        _row("shadow 100 %, flat out", res["flat_shadow"], res["flat_shadow_counts"]),
        "",
    ]
    ratio = sh["throughput_per_s"] / base["throughput_per_s"]
    flat_ratio = res["flat_shadow"]["throughput_per_s"] / res["flat"]["throughput_per_s"]
    lines.append(
        f"primary throughput at half rate with the shadow / without: {ratio:.3f} "
        f"(cost {max(0.0, 1 - ratio):.1%}; issue #20: <= 10 %); flat out: {flat_ratio:.3f}"
    )
    p50 = sh["latency_ms"]["p50"] / base["latency_ms"]["p50"]
    p99 = sh["latency_ms"]["p99"] / base["latency_ms"]["p99"]
    lines.append(f"latency with the shadow / without, half rate: p50 {p50:.2f}x, p99 {p99:.2f}x")
    return lines


@click.command()
@click.option("--quick", is_flag=True, help="Short phases (Plan.quick()).")
@click.option("--shadow", default="inferstream_cpu_fp32:1", show_default=True)
@click.option("--kafka-port", type=int, default=45092, show_default=True)
@click.option("--triton-port", type=int, default=44000, show_default=True)
@click.option("--web-port", type=int, default=44066, show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path), default=REPO_ROOT / ".run" / "bench")
def main(
    quick: bool, shadow: str, kafka_port: int, triton_port: int, web_port: int, run_dir: Path
) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("INFERSTREAM_")]:
        del os.environ[key]  # every setting of the processes under test is set explicitly
    os.environ.update(clean_environ())
    quiet_kafka_logs()
    plan = Plan.quick() if quick else Plan.full()
    variant = Variant.parse(shadow)
    began = time.monotonic()
    res = run(plan, Ports(kafka_port, triton_port, web_port, run_dir.resolve()), variant)
    res["minutes"] = round((time.monotonic() - began) / 60, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1, default=str))
    log("")
    for line in report(res, variant):
        log(line)
    log(f"wrote {OUT} in {res['minutes']} min")
    if res.get("error"):
        raise click.ClickException(res["error"])


if __name__ == "__main__":
    main()
