"""inferstream end to end against its ceilings and a naive peer, on one command:

    .venv/bin/python -m bench.run [--quick] [--docs]
        [--only ceiling,e2e,naive,guarantee,sweep,dialogue]

1. ceiling: the built OpenVINO INT8 IR in-process (best batch) and the served model through Triton
   with the real perf_analyzer binary, L = 64 tokens (full mode: 128 and 256 too);
2. e2e: an inferstream worker (filter, policy, signature and text mark on; an allow-all policy is
   published first) fed by an aiokafka producer at offered rates and flat out; latency = event
   ts (set at send) -> result seen by a read_committed consumer; the knee of the load curve (half
   the flat-out rate and a 20 events/s trickle always among its points); the sequence lengths
   64/128/256;
3. naive: bench/naive.py, one Triton call per message, same broker, model and tokenizer;
   guarantee: the same worker with processing_guarantee=at_least_once (flat out, half rate, 20/s);
4. sweep: max_batch x max_wait_ms; dialogue length 1/100/1,000 turns (bench/context.py's
   in-process measure; full mode: end to end too).

Starts its own Kafka and Triton on its own ports (default Kafka 45092, Triton 44000-44002, worker
web 44066, run dir .run/bench) and stops them at the end. Writes bench/out/e2e.json, e2e.md,
e2e.png; ``--docs`` also puts the tables into docs/benchmarks.md and the figure into
bench/figures/e2e.png. ``--quick``: short phases, fewer points (about 5 minutes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` works too
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import ceiling, report, scenarios  # noqa: E402
from bench.cpu import CpuMeter, pid_file  # noqa: E402
from bench.plan import Plan  # noqa: E402
from bench.stack import Ports, Services, settings_from_env  # noqa: E402
from bench.texts import TextPool  # noqa: E402

OUT = REPO / "bench" / "out"
DOC = REPO / "docs" / "benchmarks.md"
FIGURE = REPO / "bench" / "figures" / "e2e.png"
PARTS = ("ceiling", "e2e", "naive", "guarantee", "sweep", "dialogue")
KNOBS = ("max_batch", "max_wait_ms", "max_inflight", "max_pending", "max_seq_len",
         "processing_guarantee", "commit_interval_ms", "topic_partitions")  # fmt: skip
MARK_START, MARK_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def log(line: str) -> None:
    print(line, flush=True)


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def meta(plan: Plan, ports: Ports) -> dict[str, Any]:
    settings = settings_from_env(ports.env)
    return {
        "mode": plan.mode,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "worker_defaults": {k: getattr(settings, k) for k in KNOBS if hasattr(settings, k)},
        "ports": ports.env,
        "plan": dataclasses.asdict(plan),
    }


def inprocess_ceiling(plan: Plan) -> list[dict[str, Any]]:
    """In a subprocess: OpenVINO's threads must not linger into the streaming runs."""
    cmd = [
        sys.executable, "-m", "bench.ceiling", "--inprocess",
        "--lengths", ",".join(map(str, plan.lengths)),
        "--batches", ",".join(map(str, plan.inprocess_batches)),
        "--seconds", str(plan.inprocess_s),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process ceiling failed: {proc.stderr[-800:]}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return rows


def triton_ceiling(plan: Plan, ports: Ports, res: dict[str, Any]) -> None:
    settings = settings_from_env(ports.env)
    url, model = settings.triton_endpoint, settings.model_name
    rows = []
    configs = [(1, c) for c in plan.pa_concurrency] + list(plan.pa_batched)
    meter = CpuMeter(
        {"triton": pid_file(ports.triton_pid_file), "perf_analyzer": os.getpid}, self_only=()
    )
    for batch, conc in configs:
        before = meter.sample()
        row = ceiling.perf_analyzer(
            url, model, 64, batch, conc, plan.pa_interval_ms, plan.pa_trials
        )
        row["cpu"] = meter.usage(before, meter.sample(), 0)
        rows.append(row)
        got = row.get("error") or f"{row['seq_per_s']} seq/s, p99 {row.get('p99_ms')} ms"
        log(f"    perf_analyzer L=64 b={batch} c={conc}: {got}")
    ok = [r for r in rows if "seq_per_s" in r]
    best = max(ok, key=lambda r: r["seq_per_s"]) if ok else None
    res["ceiling"] |= {"triton": rows, "triton_best": best}
    lengths = [] if best is None else [best]
    if best is not None and plan.mode == "full":
        for length in plan.lengths:
            if length != 64:
                row = ceiling.perf_analyzer(
                    url, model, length, best["batch"], best["concurrency"],
                    plan.pa_interval_ms, plan.pa_trials,
                )  # fmt: skip
                lengths.append(row)
                log(f"    perf_analyzer L={length}: {row.get('error') or row['seq_per_s']}")
    res["ceiling"]["triton_lengths"] = [r for r in lengths if "seq_per_s" in r]


def dialogue_inprocess(plan: Plan, ports: Ports) -> list[dict[str, Any]]:
    """bench/context.py's measure with the worker's context settings: one new turn (select +
    append) on a dialogue of 1, 100, 1,000 turns."""
    import numpy as np

    from bench.context import build, per_turn
    from workers.context import ContextSelector

    s = settings_from_env(ports.env)
    selector = ContextSelector(
        s.context_budget_tokens, s.context_gate, recency_half_life_turns=s.context_half_life_turns
    )
    rng = np.random.default_rng(7)
    bases = [
        build(rng, n, s.context_turn_cap, s.context_token_cap, 384) for n in plan.dialogue_turns
    ]
    rows = per_turn(bases, selector, rng, plan.context_reps)
    return [
        {"turns": n, "stored_turns": len(b), "median_us": round(med, 1), "p99_us": round(p99, 1),
         "context_turns": ctx}
        for n, b, (med, p99, ctx) in zip(plan.dialogue_turns, bases, rows, strict=True)
    ]  # fmt: skip


def streaming(
    plan: Plan, ports: Ports, parts: set[str], rates: list[float] | None
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    pool = TextPool()
    for length in plan.lengths:
        pool.texts(length)
    if "e2e" in parts or "sweep" in parts or "dialogue" in parts:
        res["e2e"] = scenarios.e2e_main(ports, plan, pool, log, rates)
    capacity = scenarios.flat_rate(res.get("e2e"))
    if "naive" in parts:
        res["naive"] = scenarios.naive_peer(ports, plan, pool, log)
    if "guarantee" in parts:
        res["at_least_once"] = scenarios.e2e_at_least_once(ports, plan, pool, log)
    if "sweep" in parts and capacity > 0 and "e2e" in res:
        rate = scenarios.rate_at(plan.sweep_rate_fraction, capacity) or 5.0
        default = scenarios.default_sweep_point(res["e2e"], rate)
        res["sweep"] = [default] + [
            scenarios.e2e_sweep_point(ports, plan, pool, log, b, w, rate) for b, w in plan.sweep
        ]
        res["sweep"].sort(key=lambda p: (p["max_batch"], p["max_wait_ms"]))
    if "dialogue" in parts and plan.dialogue_e2e and capacity > 0:
        rate = scenarios.rate_at(0.5, capacity) or 5.0
        res.setdefault("dialogue", {})["e2e"] = scenarios.e2e_dialogues(
            ports, plan, pool, log, rate
        )
    return res


def _finite(value: Any) -> Any:
    """NaN (a figure that could not be measured) as null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write(res: dict[str, Any], docs: bool) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "e2e.json").write_text(json.dumps(_finite(res), indent=1, default=str))
    text = report.markdown(res)
    (OUT / "e2e.md").write_text(text + "\n")
    report.plot(res, OUT / "e2e.png")
    if docs:
        doc = DOC.read_text()
        if MARK_START not in doc or MARK_END not in doc:
            raise SystemExit(f"{DOC} lacks the {MARK_START} / {MARK_END} markers")
        head, rest = doc.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        figure = "![inferstream benchmark](../bench/figures/e2e.png)\n"
        DOC.write_text(f"{head}{MARK_START}\n{text}\n{figure}{MARK_END}{tail}")
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(OUT / "e2e.png", FIGURE)
    return text


@click.command(
    "run", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--quick", is_flag=True, help="short runs, fewer points (~5 min)")
@click.option("--only", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
@click.option(
    "--rates",
    default=None,
    help="offered rates of the load curve, e.g. 100,200,280 (default: fractions of the "
    "measured flat-out rate)",
)
@click.option("--kafka-port", type=int, default=Ports.kafka)
@click.option("--triton-port", type=int, default=Ports.triton_http,
              help="Triton HTTP port; gRPC and metrics take the next two")  # fmt: skip
@click.option("--web-port", type=int, default=Ports.web)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Ports.run_dir)
@click.option(
    "--worker-env",
    multiple=True,
    metavar="KEY=VALUE",
    help="an INFERSTREAM_* setting for every worker (repeatable), e.g. "
    "INFERSTREAM_COMMIT_INTERVAL_MS=20; the sweep still sets max_batch/max_wait_ms",
)
@click.option(
    "--dialogue-e2e",
    is_flag=True,
    help="dialogue length end to end in quick mode too (full mode always runs it)",
)
@click.option("--keep-services", is_flag=True, help="leave Kafka/Triton up")
@click.option("--docs", is_flag=True, help="update docs/benchmarks.md + figure")
def main(
    quick: bool,
    only: str,
    rates: str | None,
    kafka_port: int,
    triton_port: int,
    web_port: int,
    run_dir: Path,
    worker_env: tuple[str, ...],
    dialogue_e2e: bool,
    keep_services: bool,
    docs: bool,
) -> None:
    parts = {p.strip() for p in only.split(",") if p.strip()}
    if parts - set(PARTS):
        raise click.BadParameter(
            f"unknown parts {parts - set(PARTS)}; choose from {PARTS}", param_hint="--only"
        )
    if any("=" not in kv or not kv.startswith("INFERSTREAM_") for kv in worker_env):
        raise click.BadParameter("takes INFERSTREAM_*=VALUE", param_hint="--worker-env")
    plan = Plan.quick() if quick else Plan.full()
    plan = dataclasses.replace(
        plan,
        worker_env=dict(kv.split("=", 1) for kv in worker_env),
        dialogue_e2e=plan.dialogue_e2e or dialogue_e2e,
    )
    ports = Ports(kafka_port, triton_port, web_port, run_dir.resolve())
    offered = [float(x) for x in rates.split(",")] if rates else None
    scenarios.quiet_kafka_logs()
    dropped = sorted(k for k in os.environ if k.startswith("INFERSTREAM_"))
    for key in dropped:  # every setting of the processes under test is set explicitly
        del os.environ[key]
    if dropped:
        log(f"ignoring {', '.join(dropped)} from the environment (the bench sets its own)")
    began = time.monotonic()
    res: dict[str, Any] = {"meta": meta(plan, ports), "ceiling": {}}
    log(f"inferstream bench, {plan.mode} mode, parts: {', '.join(sorted(parts))}")
    if "ceiling" in parts:
        log("ceiling: OpenVINO INT8 in-process (served compile properties)")
        rows = inprocess_ceiling(plan)
        res["ceiling"]["inprocess"] = rows
        res["ceiling"]["inprocess_best"] = {
            str(n): ceiling.best(rows, n) for n in plan.lengths if ceiling.best(rows, n)
        }
        for n, row in res["ceiling"]["inprocess_best"].items():
            log(f"    L={n}: best batch {row['batch']}: {row['seq_per_s']} seq/s")
    if "dialogue" in parts:
        log("dialogue length, in-process (bench/context.py's measure)")
        res["dialogue"] = {"inprocess": dialogue_inprocess(plan, ports)}
        for d in res["dialogue"]["inprocess"]:
            log(f"    {d['turns']} turns: median {d['median_us']} us, p99 {d['p99_us']} us")
    services = Services(ports)
    try:
        if parts & {"ceiling", "e2e", "naive", "guarantee", "sweep"} or plan.dialogue_e2e:
            services.start(log)
        if "ceiling" in parts:
            log("ceiling: Triton with perf_analyzer")
            triton_ceiling(plan, ports, res)
        streamed = streaming(plan, ports, parts, offered)
        res.update({k: v for k, v in streamed.items() if k != "dialogue"})
        if "dialogue" in streamed:
            res.setdefault("dialogue", {}).update(streamed["dialogue"])
    finally:
        if not keep_services:
            services.stop()
        res["meta"]["loadavg_end"] = round(os.getloadavg()[0], 2)
        res["meta"]["minutes"] = round((time.monotonic() - began) / 60, 1)
        res["ratios"] = report.ratios(res)
        text = write(res, docs)
    log("")
    log(text)
    log(f"wrote {OUT / 'e2e.json'}, {OUT / 'e2e.md'}, {OUT / 'e2e.png'}"
        + (f", {DOC}, {FIGURE}" if docs else "")
        + f" in {res['meta']['minutes']} min")  # fmt: skip
    failed = [k for k, v in res.items() if isinstance(v, dict) and v.get("error")]
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
