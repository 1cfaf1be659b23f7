"""Scale-out throughput: 1 vs 2 workers on 1 broker, and 1 vs 3 brokers with 1 worker, one Triton.

Each layout gets fresh topics (6 partitions; on 3 brokers replication 3 and min.insync.replicas
2), its workers are started and warmed up (a few events through every stage), then a flat-out
burst of ``--events`` turns (conversations spanning the burst) is produced with each event's
``ts`` set as it is handed to the producer. A ``read_committed`` collector notes when each result
becomes visible on the output topic: end-to-end latency = that arrival - the event's ts (same
host, same clock), throughput = events / (last arrival - first send). The CPU seconds every
component spent during the burst (workers, Triton with its python-backend stubs, the brokers,
this process) come from /proc, so the table also says what one event costs each of them; the
JSON also has each partition's first and last result (a partition that starts late waited for
the worker's other partitions) and the transactions per result (markers on the output topic).

    .venv/bin/python -m bench.scaling [--events 3000] [--repeat 1] [--triton HOST:PORT]
                                      [--only 1,3] [--set INFERSTREAM_MAX_BATCH=64]

On a 2-core host every component shares the same two cores: Kafka, Triton and the workers
compete, so these figures are a floor, not a per-component capacity; see docs/scaling.md.
Writes bench/out/scaling.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import local
from streams.admin import ensure_topics, topic_partitions
from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings

RUN_DIR = REPO_ROOT / ".run" / "scaling"
OUT = REPO_ROOT / "bench" / "out" / "scaling.json"
# Ports (the 52000-52999 block): Triton 52000-52002, one broker 52092 (+ controller 52093),
# three brokers 52192/52194/52196 (controllers +1 each), worker web ports 52300+.
TRITON_HTTP, KAFKA_1, KAFKA_3, WEB = 52000, 52092, 52192, 52300
TENANT = "bench"
ASSIGNED = "[INFO] assigned "  # the engine's log line once its partitions are open
IDLE_S = 5.0
QUIET = 0.15  # cores our idle services may use before a burst starts
TEXTS = (
    "my card was charged twice for order {n}",
    "the refund for order {n} has not arrived",
    "I cannot log in since the update {n}",
    "the app crashes when I open settings {n}",
    "where is my parcel {n}, tracking is stuck",
)


@dataclass(frozen=True)
class Layout:
    name: str
    brokers: int
    workers: int


LAYOUTS = (
    Layout("1 broker, 1 worker", 1, 1),
    Layout("1 broker, 2 workers", 1, 2),
    Layout("3 brokers, 1 worker", 3, 1),
)


# --- CPU accounting from /proc -------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


def tree(root: int) -> list[int]:
    """`root` and its descendants (Triton's python-backend stubs are its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (threads included)."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class Components:
    """Root pids per component; CPU is summed over each root's process tree, except for this
    process ("bench"), whose children are the workers, counted as such."""

    roots: dict[str, list[int]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        out = {name: cpu_seconds([p for r in roots for p in tree(r)])
               for name, roots in self.roots.items()}  # fmt: skip
        out["bench"] = cpu_seconds([os.getpid()])
        out["machine"] = machine_busy()[0]
        return out


def quiesce(comps: Components, limit_s: float = 90.0) -> dict[str, float]:
    """Wait (up to limit_s) until our services idle below QUIET cores, e.g. fresh brokers'
    JIT compilation is over; returns the last idle window's CPU shares (cores)."""
    deadline = time.monotonic() + limit_s
    while True:
        start = comps.snapshot()
        time.sleep(IDLE_S)
        end = comps.snapshot()
        idle = {k: round((end[k] - start[k]) / IDLE_S, 2) for k in end}
        ours = idle["workers"] + idle["triton"] + idle["kafka"]
        if ours < QUIET or time.monotonic() > deadline:
            return idle


# --- services ----------------------------------------------------------------------------------
def base_settings(kafka_port: int) -> Settings:
    return Settings(
        kafka_port=kafka_port,
        triton_http_port=TRITON_HTTP,
        triton_grpc_port=TRITON_HTTP + 1,
        triton_metrics_port=TRITON_HTTP + 2,
        run_dir=RUN_DIR,
    )


def kafka_sh(settings: Settings, *args: str) -> None:
    env = local.service_env(settings, INFERSTREAM_KAFKA_START_TIMEOUT="240")
    subprocess.run(["bash", str(local.KAFKA_SCRIPT), *args], env=env, check=True)


def kafka_pids(port: int, brokers: int) -> list[int]:
    found = (pid_file(RUN_DIR / f"kafka-{port + 2 * i}" / "kafka.pid") for i in range(brokers))
    return [p for p in found if p is not None]


@contextmanager
def kafka(brokers: int, keep: bool) -> Iterator[tuple[str, list[int]]]:
    port = KAFKA_1 if brokers == 1 else KAFKA_3
    settings = base_settings(port)
    kafka_sh(settings, "start", "--brokers", str(brokers), "--clean")
    try:
        bootstrap = ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(brokers))
        yield bootstrap, kafka_pids(port, brokers)
    finally:
        if not keep:
            kafka_sh(settings, "stop")


@contextmanager
def triton(url: str | None, keep: bool) -> Iterator[tuple[str, list[int]]]:
    """Our own Triton on TRITON_HTTP (its pids are measured), or the one at `url` (not)."""
    if url is not None:
        yield url, []
        return
    settings = base_settings(KAFKA_1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workers.modeling.build import build_models

    build_models(settings.model_repo, settings.cache_dir)  # a cache hit once built
    local.triton(settings, "start")
    try:
        pid = pid_file(RUN_DIR / f"triton-{TRITON_HTTP + 1}" / "triton.pid")
        yield settings.triton_endpoint, [pid] if pid else []
    finally:
        if not keep:
            local.triton(settings, "stop")


def key_dir() -> Path:
    from workers.provenance.keys import generate_key_file

    keys = RUN_DIR / "keys"
    if not list(keys.glob("*.pem")):
        generate_key_file(keys, "bench-scaling")
    return keys


# --- one layout ----------------------------------------------------------------------------------
def worker_env(layout: Layout, bootstrap: str, triton_url: str, partitions: int) -> dict[str, str]:
    uid = f"scale-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERSTREAM_")}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "INFERSTREAM_APP_ID": uid,
        "INFERSTREAM_BROKER_URL": bootstrap,
        "INFERSTREAM_TRITON_URL": triton_url,
        "INFERSTREAM_TOPIC_PARTITIONS": str(partitions),
        "INFERSTREAM_REPLICATION_FACTOR": str(min(layout.brokers, 3)),
        "INFERSTREAM_RUN_DIR": str(RUN_DIR),
        "INFERSTREAM_WATERMARK_KEY_DIR": str(key_dir()),
    }
    if layout.brokers >= 3:
        env["INFERSTREAM_MIN_INSYNC_REPLICAS"] = "2"
    for name, spec in Settings.model_fields.items():  # a fresh name for every topic
        if name.startswith("topic_") and spec.annotation is str:
            env[f"INFERSTREAM_{name.upper()}"] = f"{uid}.{name.removeprefix('topic_')}"
    return env


def settings_of(env: dict[str, str]) -> Settings:
    values: dict[str, Any] = {
        k.removeprefix("INFERSTREAM_").lower(): v
        for k, v in env.items()
        if k.startswith("INFERSTREAM_")
    }
    return Settings(**values)


def start_workers(layout: Layout, env: dict[str, str]) -> list[local.WorkerProcess]:
    procs: list[local.WorkerProcess] = []
    for i in range(layout.workers):
        wenv = env | {
            "INFERSTREAM_WEB_PORT": str(WEB + i),
            "INFERSTREAM_STATE_DIR": str(RUN_DIR / "state" / f"{env['INFERSTREAM_APP_ID']}-{i}"),
        }
        proc = local.WorkerProcess(settings_of(wenv), wenv, name=f"{env['INFERSTREAM_APP_ID']}-{i}")
        proc.start()
        procs.append(proc)
        proc.wait_ready(240)
        proc.wait_log(ASSIGNED, 240)
    for i, proc in enumerate(procs):  # every earlier worker saw the rebalance onto the later ones
        proc.wait_log(ASSIGNED, 240, count=len(procs) - i)
    return procs


def turns(n: int, conversations: int) -> Iterator[tuple[int, int]]:
    """(conversation, turn) of the n turns, round-robin: every conversation spans the burst."""
    for i in range(n):
        yield i % conversations, i // conversations


@dataclass
class Burst:
    first_send: float
    sent: dict[str, float]  # event id -> its ts
    got: dict[str, dict[str, Any]]  # event id -> its result, with "_arrival"
    out_offsets: int  # offsets the output topic grew by: results + transaction markers


async def burst(
    settings: Settings, tag: str, n: int, conversations: int, timeout_s: float
) -> Burst:
    """Produce n turns flat out and collect their results as they become visible."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    sent: dict[str, float] = {}
    got: dict[str, dict[str, Any]] = {}
    try:
        parts = await topic_partitions(consumer, settings.topic_out)
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        start = 0
        for tp in parts:  # resolve the end positions now, before anything is produced
            start += await consumer.position(tp)

        async def collect() -> None:
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batch.values():
                    for rec in records:
                        value = orjson.loads(rec.value)
                        if value["event_id"] in sent:
                            got[value["event_id"]] = value | {
                                "_arrival": now,
                                "_part": rec.partition,
                            }

        collector = asyncio.ensure_future(collect())
        first = time.time()
        futures = []
        for c, t in turns(n, conversations):
            ts = time.time()
            event = ConversationEvent(
                event_id=f"{tag}-{c:04d}-{t:03d}",
                conversation_id=f"{tag}-conv-{c:04d}",
                tenant=TENANT,
                user_id=f"user-{c}",
                text=TEXTS[(c + t) % len(TEXTS)].format(n=t),
                ts=ts,
            )
            sent[event.event_id] = ts
            futures.append(
                await producer.send(
                    settings.topic_in, event.to_json(), key=event.conversation_id.encode()
                )
            )
        await asyncio.gather(*futures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collector, timeout_s)
        end = sum((await consumer.end_offsets(parts)).values())
        return Burst(first, sent, got, end - start)
    finally:
        await producer.stop()
        await consumer.stop()


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def quantiles(values: Sequence[float], **qs: float) -> dict[str, float]:
    return {name: round(percentile(values, q), 1) for name, q in qs.items()}


def steady_rate(times: Sequence[float]) -> float:
    """Completions per second between the 10th and 90th percentile of arrival times."""
    ordered = sorted(times)
    if len(ordered) < 10:
        return math.nan
    a, b = int(0.1 * (len(ordered) - 1)), int(0.9 * (len(ordered) - 1))
    return (b - a) / (ordered[b] - ordered[a]) if ordered[b] > ordered[a] else math.nan


@dataclass(frozen=True)
class BurstOptions:
    """What every layout's run takes from the command line."""

    events: int
    conversations: int
    partitions: int
    warmup: int
    timeout: float
    overrides: tuple[str, ...]  # NAME=VALUE in every worker's environment


def run_layout(
    layout: Layout,
    bootstrap: str,
    kafka_roots: list[int],
    triton_url: str,
    triton_roots: list[int],
    opts: BurstOptions,
) -> dict[str, Any]:
    env = worker_env(layout, bootstrap, triton_url, opts.partitions)
    env |= dict(item.split("=", 1) for item in opts.overrides)
    settings = settings_of(env)
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish_policy(settings, TENANT, allow_all_policy(TENANT, 1)))
    procs = start_workers(layout, env)
    try:
        warm = min(opts.warmup, opts.events)  # every stage, partition and connection warm
        asyncio.run(burst(settings, "warm", warm, warm, 240))
        comps = Components(
            {
                "workers": [p for p in (w.pid() for w in procs) if p is not None],
                "triton": triton_roots,
                "kafka": kafka_roots,
            }
        )
        idle = quiesce(comps)
        load, before, t0 = os.getloadavg()[0], comps.snapshot(), time.time()
        b = asyncio.run(burst(settings, "b", opts.events, opts.conversations, opts.timeout))
        after = comps.snapshot()
        rss = [local_rss(w.pid()) for w in procs]
    finally:
        for w in procs:
            w.stop()
    first, sent, got = b.first_send, b.sent, b.got
    arrivals = [r["_arrival"] for r in got.values()]
    latency = [(r["_arrival"] - sent[i]) * 1000 for i, r in got.items()]
    in_worker = [r["latency_ms"]["end_to_end"] for r in got.values()]
    wall = (max(arrivals) - first) if arrivals else math.nan
    cpu = {k: round(after[k] - before[k], 2) for k in before}
    cpu["others"] = round(cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"), 2)
    done = len(got)
    return {
        "layout": layout.name,
        "brokers": layout.brokers,
        "workers": layout.workers,
        "partitions": opts.partitions,
        "events": opts.events,
        "results": done,
        "seconds": round(wall, 2),
        "events_per_s": round(done / wall, 1) if arrivals else None,
        "steady_events_per_s": round(steady_rate(arrivals), 1),
        "latency_ms": quantiles(latency, p50=50, p95=95, p99=99, max=100),
        "worker_e2e_ms": quantiles(in_worker, p50=50, p99=99),
        "cpu_s": cpu,
        "cpu_share": {k: round(v / wall, 2) for k, v in cpu.items()} if arrivals else {},
        "events_per_cpu_s": {
            k: round(done / v, 1) for k, v in cpu.items() if v > 0 and k in ("workers", "triton")
        },
        "transactions_per_result": round((b.out_offsets - done) / done, 3) if done else None,
        # per input partition (= output partition: same key, same partitioner): seconds from the
        # first send to its first and its last result; a partition starting late waited for others
        "partition_first_last_s": partition_spans(got, first),
        "idle_cpu_share": idle,
        "worker_rss_mib": rss,
        "load_1m_before": round(load, 2),
        "started_at": t0,
    }


def partition_spans(got: dict[str, dict[str, Any]], first: float) -> dict[int, list[float]]:
    spans: dict[int, list[float]] = {}
    for r in got.values():
        t = r["_arrival"] - first
        lo, hi = spans.get(r["_part"], [t, t])
        spans[r["_part"]] = [min(lo, t), max(hi, t)]
    return {p: [round(lo, 1), round(hi, 1)] for p, (lo, hi) in sorted(spans.items())}


def local_rss(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        pass
    return None


# --- report ------------------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per layout: its best run (the least disturbed by whatever else the host ran),
    with the median and every run's events/s beside it (all runs stay in the JSON)."""
    rows = []
    for layout in LAYOUTS:
        mine = [r for r in runs if r["layout"] == layout.name and r["events_per_s"]]
        if mine:
            rates = [r["events_per_s"] for r in mine]
            best = max(mine, key=lambda r: r["events_per_s"])
            rows.append(best | {"median_events_per_s": statistics.median(rates), "all": rates})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """One line per layout; cpu columns are cores busy during the burst (2.00 = both cores)."""
    cols: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [
        ("layout", 21, lambda r: r["layout"]),
        ("events/s", 9, lambda r: f"{r['events_per_s']:.0f}"),
        ("median", 7, lambda r: f"{r['median_events_per_s']:.0f}"),
        ("p50 ms", 8, lambda r: f"{r['latency_ms']['p50']:.0f}"),
        ("p99 ms", 8, lambda r: f"{r['latency_ms']['p99']:.0f}"),
        ("workers", 8, lambda r: f"{r['cpu_share'].get('workers', math.nan):.2f}"),
        ("triton", 7, lambda r: f"{r['cpu_share'].get('triton', math.nan):.2f}"),
        ("kafka", 6, lambda r: f"{r['cpu_share'].get('kafka', math.nan):.2f}"),
        ("bench", 6, lambda r: f"{r['cpu_share'].get('bench', math.nan):.2f}"),
        ("others", 7, lambda r: f"{r['cpu_share'].get('others', math.nan):.2f}"),
        ("ev/worker-cpu-s", 16, lambda r: f"{r['events_per_cpu_s'].get('workers', math.nan):.0f}"),
        ("ev/triton-cpu-s", 16, lambda r: f"{r['events_per_cpu_s'].get('triton', math.nan):.0f}"),
        ("txn/result", 11, lambda r: f"{r['transactions_per_result']:.3f}"),
        (
            "last p starts",
            14,
            lambda r: f"{max(v[0] for v in r['partition_first_last_s'].values()):.1f}s",
        ),
    ]
    head = "".join(
        f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w, _) in enumerate(cols)
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            "".join(
                f"{f(r):<{w}}" if i == 0 else f"{f(r):>{w}}" for i, (_, w, f) in enumerate(cols)
            )
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Throughput ratios of the comparisons, by best and by median run."""
    out = {}
    for key in ("events_per_s", "median_events_per_s"):
        by = {r["layout"]: r[key] for r in rows}
        one, two, three = (by.get(lay.name) for lay in LAYOUTS)
        which = "best" if key == "events_per_s" else "median"
        if one and two:
            out[f"2 workers / 1 worker, 1 broker ({which})"] = round(two / one, 2)
        if one and three:
            out[f"3 brokers / 1 broker, 1 worker ({which})"] = round(three / one, 2)
    return out


def layout_numbers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> set[int]:
    """``--only 1,3`` or ``--only 1 --only 3``: the layout numbers (1-3)."""
    try:
        numbers = {int(x) for v in values for x in v.split(",") if x.strip()}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not numbers <= set(range(1, len(LAYOUTS) + 1)):
        raise click.BadParameter(f"layouts are 1-{len(LAYOUTS)}")
    return numbers


def env_items(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--set NAME=VALUE`` items, checked for the ``=``."""
    if bad := [v for v in values if "=" not in v]:
        raise click.BadParameter(f"expected NAME=VALUE, got {', '.join(bad)}")
    return values


@click.command(
    "scaling", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--events", type=int, default=3000, help="turns per burst")
@click.option("--conversations", type=int, default=300, help="conversations per burst")
@click.option("--partitions", type=int, default=6)
@click.option("--warmup", type=int, default=300, help="turns through before timing")
@click.option("--repeat", type=int, default=1, help="bursts per layout (best shown)")
@click.option("--timeout", type=float, default=300.0, help="longest wait per burst (s)")
@click.option(
    "--triton",
    "reuse_triton",
    default=None,
    help="reuse the Triton gRPC endpoint HOST:PORT (not measured)",
)
@click.option(
    "--only",
    multiple=True,
    callback=layout_numbers,
    help="layout numbers (1-3) to run: --only 1,3 or --only 1 --only 3 (default: all)",
)
@click.option(
    "--set",
    "settings_set",
    multiple=True,
    callback=env_items,
    metavar="INFERSTREAM_X=V",
    help="a worker setting for every layout (repeatable), e.g. INFERSTREAM_MAX_BATCH=64",
)
@click.option("--keep-services", is_flag=True)
@click.option("--out", type=click.Path(path_type=Path), default=OUT)
def main(
    events: int,
    conversations: int,
    partitions: int,
    warmup: int,
    repeat: int,
    timeout: float,
    reuse_triton: str | None,
    only: set[int],
    settings_set: tuple[str, ...],
    keep_services: bool,
    out: Path,
) -> None:
    opts = BurstOptions(events, conversations, partitions, warmup, timeout, settings_set)
    chosen = [lay for i, lay in enumerate(LAYOUTS, 1) if not only or i in only]
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    with triton(reuse_triton, keep_services) as (triton_url, triton_roots):
        for brokers in sorted({lay.brokers for lay in chosen}):
            with kafka(brokers, keep_services) as (bootstrap, kafka_roots):
                for _ in range(repeat):  # interleaved: a load swing hits every layout
                    for lay in (x for x in chosen if x.brokers == brokers):
                        run = run_layout(
                            lay, bootstrap, kafka_roots, triton_url, triton_roots, opts
                        )
                        runs.append(run)
                        print(
                            f"{lay.name}: {run['results']}/{run['events']} results in "
                            f"{run['seconds']}s = {run['events_per_s']} events/s, p50 "
                            f"{run['latency_ms']['p50']} ms, p99 {run['latency_ms']['p99']} ms",
                            flush=True,
                        )
    rows = summarise(runs)
    print()
    print(table(rows))
    found = ratios(rows)
    for name, value in found.items():
        print(f"{name}: {value:.2f}x")
    report = {
        "benchmark": "bench/scaling.py",
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "note": "Kafka, Triton, the workers and this process share these CPUs",
        },
        "settings": {
            "max_batch": Settings.model_fields["max_batch"].default,
            "max_inflight": Settings.model_fields["max_inflight"].default,
            "commit_interval_ms": Settings.model_fields["commit_interval_ms"].default,
            "processing_guarantee": "exactly_once",
            "model": Settings.model_fields["model_name"].default,
            "overrides": list(settings_set),
        },
        "summary": rows,
        "ratios": found,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
