"""Tracing on versus off, end to end on live workers: throughput of flat-out bursts through the
real Kafka broker, the real worker and the real Triton, with tracing off, on for every event
(OTLP/gRPC to a collector), and on with 10% and 1% sampling.

One worker per mode (each on its own topics) is started and warmed up once; then rounds of
bursts go to each mode's worker in turn (in a random order each round), while the others idle.
This machine's speed drifts by tens of percent from minute to minute (a shared VM), so many short
rounds are compared: the median of each mode, the median over rounds of each burst's throughput
ratio to the "off" burst of its own round ("paired": drift cancels), and, at the end, the paired
geometric mean over rounds with its standard error. An A/A control ("off (control)", a second
untraced worker) shows what the bench reads when nothing differs.

    .venv/bin/python -m bench.tracing_e2e [--events 1500] [--repeat 12] [--port-base 60000]
                                          [--modes "off,on (every event)"] [--rate 220]
                                          [--side-by-side]

Flat out, each burst's batches (events per Triton call) settle wherever the worker's loop and
Triton meet, and bursts of the same mode vary by ±20% in throughput with them. ``--rate N``
offers N events/s instead (open loop, below capacity): every mode then sees the same arrivals
and batch sizes, and the figure to compare is the CPU per event.

``--side-by-side`` sends every mode's burst at once instead (``side_by_side``): each worker's
throughput is its outputs per second while all were busy, and its CPU per event is read over the
same seconds, so machine drift cancels within a round. With several workers the shared Triton
becomes the bottleneck (full batches), so there the figure that answers for tracing is the
worker's extra CPU per event. The diagnostic modes "on (record only)" and "on (no send)" split
it (``bench/probe``: spans recorded but never encoded; encoded but never sent).

Besides throughput it reports the CPU each part spent per event (from /proc: the worker, Triton,
Kafka, the collector) and the mean batch size (the worker's ``inferstream_batch_size``): on this
2-core machine everything is CPU-bound, so the worker's extra CPU per event is what tracing costs
inferstream, and the collector's is what the spans cost whoever receives them (a separate machine
or sidecar in production, the same 2 cores here).

The collector is an OTLP/gRPC TraceService (and OTLP/HTTP on the next port) in its own process
(``--collector PORT``) that acknowledges each export without decoding it and counts its bytes;
spans are counted by the workers themselves (``inferstream_spans_exported_total``: spans the
receiver acknowledged). Prints a table and writes bench/out/tracing_e2e.json (with ``--rate``:
tracing_e2e_rate.json). The issue's target: tracing on costs under 5% of throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cpu import CpuMeter, Sample, pid_file
from bench.stack import settings_from_env
from streams import local
from streams.admin import ensure_topics, topic_partitions
from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings
from workers.provenance.keys import generate_key_file
from workers.telemetry.exposition import Scrape, mean, parse_exposition
from workers.telemetry.otlp_export import GRPC_METHOD

OUT = REPO_ROOT / "bench" / "out"
PROBE = REPO_ROOT / "bench" / "probe"  # sitecustomize of the diagnostic modes
SPANS = "inferstream_spans_exported_total"
TEXTS = [
    "My card was charged twice for order {n}.",
    "I can't log in since the update, ticket {n}.",
    "Where is my parcel {n}? Tracking is stuck.",
    "The app crashes when I open settings ({n}).",
]
MODES = {
    "off": {"INFERSTREAM_TRACING_EXPORTER": "none"},
    # an A/A control: a second worker with tracing off measures the bench's own bias and noise
    "off (control)": {"INFERSTREAM_TRACING_EXPORTER": "none"},
    "on (every event)": {"INFERSTREAM_TRACING_EXPORTER": "otlp-grpc"},
    "on (10% sampled)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0.1",
    },
    "on (1% sampled)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0.01",
    },
    # diagnostics (not in the default set): OTLP/HTTP instead of gRPC; tracing on with no trace
    # sampled, with and without the OTLP/gRPC channel (what being on costs before any span)
    "on (every event) http": {"INFERSTREAM_TRACING_EXPORTER": "otlp-http"},
    "on (0% sampled)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0",
    },
    "on (0% sampled) console": {
        "INFERSTREAM_TRACING_EXPORTER": "console",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0",
    },
    # where tracing's cost goes (bench/probe): every event's spans recorded but neither encoded
    # nor sent; recorded and encoded but not sent
    "on (record only)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_BENCH_PROBE": "record-only",
        "PYTHONPATH": str(PROBE),
    },
    "on (no send)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_BENCH_PROBE": "no-send",
        "PYTHONPATH": str(PROBE),
    },
}
DEFAULT_MODES = ("off", "off (control)", "on (every event)", "on (10% sampled)", "on (1% sampled)")


async def _outputs_from_end(settings: Settings) -> AIOKafkaConsumer:
    """A read_committed consumer of ``settings``' output topic, at its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    parts = await topic_partitions(consumer, settings.topic_out)
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:  # resolve the end positions now, before anything is produced
        await consumer.position(tp)
    return consumer


async def _produce(settings: Settings, n: int, rate: float | None = None) -> float:
    """Send ``n`` turns flat out (or ``rate`` a second) on new conversations; return the time
    the first was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    # new conversations every burst: dialogues stay short (n / 200 turns), as in one run; a
    # dialogue that grows over many bursts makes each turn dearer (its context row grows)
    tag = uuid.uuid4().hex[:6]
    start = time.time()
    try:
        for i in range(n):
            if rate and i % 10 == 0:  # open loop: on schedule, whatever the outputs do
                await asyncio.sleep(max(0.0, start + i / rate - time.time()))
            ev = ConversationEvent(
                f"b-{uuid.uuid4().hex[:12]}", f"conv-{tag}-{i % 200}", "bench", "u",
                TEXTS[i % len(TEXTS)].format(n=i), time.time(),
            )  # fmt: skip
            await producer.send(settings.topic_in, ev.to_json(), key=ev.conversation_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return start


async def _collect(consumer: AIOKafkaConsumer, n: int) -> list[tuple[float, float]]:
    """The next ``n`` outputs' (record timestamp in s, end-to-end latency in ms)."""
    out: list[tuple[float, float]] = []
    try:
        while len(out) < n:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 300)
            for records in batch.values():
                for rec in records:
                    out.append(
                        (rec.timestamp / 1000.0, json.loads(rec.value)["latency_ms"]["end_to_end"])
                    )
    finally:
        await consumer.stop()
    return out


async def burst(settings: Settings, n: int, rate: float | None = None) -> tuple[float, list[float]]:
    """Produce ``n`` turns flat out (or ``rate`` a second); return the seconds until the last
    output and the end-to-end latencies (event ts to output record timestamp)."""
    consumer = await _outputs_from_end(settings)
    start = await _produce(settings, n, rate)
    outputs = await _collect(consumer, n)
    return max([start, *(ts for ts, _ in outputs)]) - start, [lat for _, lat in outputs]


async def side_by_side(
    targets: dict[str, Settings], n: int
) -> dict[str, tuple[float, list[float]]]:
    """``n`` turns to every mode's worker at once; (events/s while all were busy, latencies) per
    mode (``busy_rates``). Machine drift hits every mode alike in the same seconds, so the
    ratios are far tighter than sequential bursts'."""
    consumers = {m: await _outputs_from_end(s) for m, s in targets.items()}
    collecting = {m: asyncio.ensure_future(_collect(c, n)) for m, c in consumers.items()}
    await asyncio.gather(*(_produce(s, n) for s in targets.values()))
    outputs = {m: await task for m, task in collecting.items()}
    rates = busy_rates({m: [ts for ts, _ in out] for m, out in outputs.items()})
    return {m: (rates[m], [lat for _, lat in out]) for m, out in outputs.items()}


def busy_rates(
    times: dict[str, list[float]], settle_s: float = 1.0, min_window_s: float = 2.0
) -> dict[str, float]:
    """Each mode's outputs per second within the window in which every mode was busy: from
    ``settle_s`` after the last mode's first output to the first mode's last output. A worker
    that finished early leaves the machine to the others, so its tail is not compared."""
    start = max(min(ts) for ts in times.values()) + settle_s
    end = min(max(ts) for ts in times.values())
    if end - start < min_window_s:
        raise ValueError(f"a window of {end - start:.1f} s: send more events (--events)")
    return {m: sum(start <= t <= end for t in ts) / (end - start) for m, ts in times.items()}


def serve_collector(port: int, count_file: Path) -> None:
    """The collector process: acknowledges each OTLP/gRPC export (on ``port``) and OTLP/HTTP
    export (on ``port + 1``) as it arrives, without decoding it (decoding and storing are the
    receiving side's cost, not the worker's: a separate machine or sidecar in production), and
    writes the running byte count to ``count_file``."""
    received = [0]
    lock = threading.Lock()

    def export(body: bytes, context: Any) -> bytes:
        with lock:
            received[0] += len(body)
        return b""  # an empty ExportTraceServiceResponse: every span accepted

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service, method = GRPC_METHOD.strip("/").rsplit("/", 1)
    handler = grpc.unary_unary_rpc_method_handler(export)  # bytes in, bytes out
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()

    class Http(http.server.BaseHTTPRequestHandler):  # OTLP/HTTP on port + 1, the same way
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                received[0] += len(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", port + 1), Http)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    while True:
        staging = count_file.with_suffix(".tmp")
        staging.write_text(str(received[0]))
        staging.replace(count_file)  # atomic: a reader never sees a half-written count
        time.sleep(0.2)


def start_collector(port: int, count_file: Path) -> subprocess.Popen[bytes]:
    """``serve_collector`` in a process of its own (OTLP/gRPC on ``port``, HTTP on the next)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.tracing_e2e", "--collector", str(port),
         "--count-file", str(count_file)],
        cwd=REPO_ROOT,
    )  # fmt: skip


def _received(count_file: Path) -> int:
    try:
        return int(count_file.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _scrape(settings: Settings) -> Scrape:
    """The worker's metrics: ``inferstream_spans_exported_total`` (spans its receiver
    acknowledged) and ``inferstream_batch_size`` (events per Triton call) are read here."""
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        samples = parse_exposition(reply.read().decode())
    return Scrape(samples, time.monotonic())


@dataclass
class Stack:
    """What every tracing bench runs on: Kafka (wiped), Triton and the OTLP collector, on ports
    from ``base``; ``ports`` is the environment workers need to reach them, ``others`` the CPU
    meter's roots for the shared parts."""

    ports: dict[str, str]
    services: Settings
    keys: Path
    otlp_port: int
    count_file: Path
    collector: subprocess.Popen[bytes]
    others: dict[str, Any]

    @classmethod
    def start(cls, base: int) -> Stack:
        run_dir = REPO_ROOT / ".run" / f"bench-tracing-{base}"
        ports = {
            "INFERSTREAM_KAFKA_PORT": str(base + 1092),
            "INFERSTREAM_TRITON_HTTP_PORT": str(base),
            "INFERSTREAM_TRITON_GRPC_PORT": str(base + 1),
            "INFERSTREAM_TRITON_METRICS_PORT": str(base + 2),
            "INFERSTREAM_RUN_DIR": str(run_dir),
            "INFERSTREAM_WEB_PORT": str(base + 66),
        }
        services = settings_from_env(ports)
        keys = run_dir / "keys"
        if not keys.exists():
            generate_key_file(keys, "bench-k1")
        otlp_port = base + 317
        run_dir.mkdir(parents=True, exist_ok=True)
        count_file = run_dir / "collector.spans"
        count_file.unlink(missing_ok=True)
        collector = start_collector(otlp_port, count_file)
        local.kafka(services, "start", "--clean")
        local.triton(services, "start")
        others = {
            "triton": pid_file(run_dir / f"triton-{base + 1}" / "triton.pid"),
            "kafka": pid_file(run_dir / f"kafka-{base + 1092}" / "kafka.pid"),
            "collector": lambda: collector.pid,
        }
        return cls(ports, services, keys, otlp_port, count_file, collector, others)

    def stop(self) -> None:
        local.triton(self.services, "stop")
        local.kafka(self.services, "stop")
        self.collector.terminate()
        self.collector.wait(10)


def start_worker(
    mode: str,
    ports: dict[str, str],
    keys: Path,
    otlp_port: int,
    *,
    slot: int | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[local.WorkerProcess, Settings]:
    """A worker with ``mode``'s tracing settings (and ``extra`` environment) on topics of its
    own, ready and assigned; its web port is the base's plus ``slot`` (default: the mode's
    place in ``MODES``)."""
    uid = uuid.uuid4().hex[:8]
    http = MODES[mode]["INFERSTREAM_TRACING_EXPORTER"] == "otlp-http"
    slot = list(MODES).index(mode) if slot is None else slot
    env = dict(os.environ) | ports | MODES[mode] | (extra or {}) | {
        "INFERSTREAM_APP_ID": f"tr-{uid}",
        "INFERSTREAM_TOPIC_IN": f"tr-{uid}.in",
        "INFERSTREAM_TOPIC_OUT": f"tr-{uid}.out",
        "INFERSTREAM_TOPIC_POLICIES": f"tr-{uid}.policies",
        "INFERSTREAM_WATERMARK_KEY_DIR": str(keys),
        # the collector takes OTLP/gRPC on otlp_port and OTLP/HTTP on the next port
        "INFERSTREAM_TRACING_ENDPOINT": f"http://127.0.0.1:{otlp_port + http}",
        "INFERSTREAM_WEB_PORT": str(int(ports["INFERSTREAM_WEB_PORT"]) + slot),
        "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    settings = settings_from_env(env)
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish_policy(settings, "bench", allow_all_policy("bench", 1)))
    worker = local.WorkerProcess(settings, env, name=f"tracing-{uid}")
    worker.start()
    worker.wait_ready()
    worker.wait_log(local.ASSIGNED)
    return worker, settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--port-base", type=int, default=60000)
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated")
    ap.add_argument("--seed", type=int, default=8, help="of the random order of each round")
    ap.add_argument(
        "--rate", type=float, help="events/s offered (open loop) instead of flat out: compare "
        "CPU per event at the same load, where batching does not depend on the mode",
    )  # fmt: skip
    ap.add_argument(
        "--side-by-side", action="store_true", help="every mode's burst at once, each round; "
        "throughput is each worker's outputs per second while all are busy (drift cancels)",
    )  # fmt: skip
    ap.add_argument("--collector", type=int, help=argparse.SUPPRESS)  # the collector process
    ap.add_argument("--count-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.collector:
        serve_collector(args.collector, args.count_file)
        return
    stack = Stack.start(args.port_base)
    ports, keys, otlp_port = stack.ports, stack.keys, stack.otlp_port
    others, count_file = stack.others, stack.count_file
    names = ["off", *[m for m in args.modes.split(",") if m in MODES and m != "off"]]
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in names}
    workers: dict[str, tuple[local.WorkerProcess, Settings]] = {}
    try:
        for mode in names:
            workers[mode] = start_worker(mode, ports, keys, otlp_port)
        for mode in names:  # warm-up: model, tokenizer, caches, the broker's JIT; not counted
            asyncio.run(burst(workers[mode][1], 300))
        time.sleep(3)  # the warm-up's spans exported (every 1 s) before counting
        order = random.Random(args.seed)
        for r in range(args.repeat):
            if args.side_by_side:
                _side_by_side_round(r, workers, others, count_file, args.events, rows)
                continue
            # a fresh random order each round: no mode always follows the same one (the tail of
            # a burst, e.g. its spans' export, would always land on the same successor)
            for mode in order.sample(names, len(names)):
                worker, settings = workers[mode]
                meter = CpuMeter(others | {"worker": worker.pid}, self_only=())
                scrape0, bytes0, cpu0 = _scrape(settings), _received(count_file), meter.sample()
                seconds, lat = asyncio.run(burst(settings, args.events, args.rate))
                time.sleep(2)  # the span pipeline exports every 1 s
                cpu1 = meter.sample()
                scrape1, sent = _scrape(settings), _received(count_file) - bytes0
                used = CpuMeter.usage(cpu0, cpu1, args.events)
                row = _row(args.events / seconds, lat, scrape0, scrape1, args.events, sent, used)
                rows[mode].append(row)
                _print_row(r, mode, row)
    finally:
        for worker, _ in workers.values():
            worker.stop()
        stack.stop()
    summary: dict[str, dict[str, Any]] = {}
    off = statistics.median(r["events_per_s"] for r in rows["off"])
    off_cpu = {k: statistics.median(r.get(k, 0.0) for r in rows["off"]) for k in rows["off"][0]}
    off_total = sum(v for k, v in off_cpu.items() if k.startswith("cpu_ms"))
    print(
        f"\n{'mode':20s} {'events/s':>9s} {'vs off':>8s} {'paired':>7s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'spans/ev':>8s} {'batch':>6s} {'worker CPU ms/ev':>17s} "
        f"{'collector':>9s} {'all CPU vs off':>15s}"
    )
    for mode, runs in rows.items():
        tput = statistics.median(r["events_per_s"] for r in runs)
        med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
        total = sum(v for k, v in med.items() if k.startswith("cpu_ms"))
        worker_ms = med.get("cpu_ms_per_event.worker", 0.0)
        added = worker_ms - off_cpu.get("cpu_ms_per_event.worker", 0.0)
        # paired: each run against the "off" run of its own round (drift between rounds cancels)
        paired = statistics.median(
            r["events_per_s"] / o["events_per_s"] for r, o in zip(runs, rows["off"], strict=True)
        )
        summary[mode] = med | {
            "cost_vs_off": 1.0 - tput / off,
            "paired_cost_vs_off": 1.0 - paired,
            "worker_cpu_extra_ms": added,
            "worker_cpu_extra_of_all_cpu": added / off_total if off_total else None,
            "runs": runs,
        }
        print(f"{mode:20s} {tput:9.1f} {(tput / off - 1) * 100:+7.1f}% {(paired - 1) * 100:+6.1f}% "
              f"{med['p50_ms']:8.1f} "
              f"{med['p99_ms']:8.1f} {med['spans_per_event']:8.2f} {med['batch_mean']:6.1f} "
              f"{worker_ms:8.2f} ({added:+.2f}) {med.get('cpu_ms_per_event.collector', 0):9.2f} "
              f"{(total / off_total - 1) * 100 if off_total else 0:+14.1f}%")  # fmt: skip
    print(
        "\nworker CPU ms/ev: what one event costs the worker process; (+x): tracing's share, "
        "against the whole pipeline's CPU per event with tracing off: "
        + ", ".join(
            f"{m} {100 * v['worker_cpu_extra_of_all_cpu']:+.1f}%"
            for m, v in summary.items()
            if v["worker_cpu_extra_of_all_cpu"] is not None
        )
    )
    print("\npaired with the same round's off burst, mean over rounds ± standard error:")
    for mode, runs in rows.items():
        if mode == "off":
            continue
        pairs = list(zip(runs, rows["off"], strict=True))
        tput_pct = _geo_pct([r["events_per_s"] / o["events_per_s"] for r, o in pairs])
        cpu_pct = _geo_pct([_all_cpu(r) / _all_cpu(o) for r, o in pairs])
        extra = _mean_se(
            [r["cpu_ms_per_event.worker"] - o["cpu_ms_per_event.worker"] for r, o in pairs]
        )
        summary[mode] |= {"paired_throughput_pct": tput_pct, "paired_all_cpu_pct": cpu_pct,
                          "paired_worker_cpu_ms": extra}  # fmt: skip
        print(f"  {mode:24s} throughput {tput_pct[0]:+5.1f}% ± {tput_pct[1]:.1f}   "
              f"all CPU per event {cpu_pct[0]:+5.1f}% ± {cpu_pct[1]:.1f}   "
              f"worker CPU per event {extra[0]:+.3f} ± {extra[1]:.3f} ms")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    name = (
        "tracing_e2e"
        + ("_rate" if args.rate else "")
        + ("_side_by_side" if args.side_by_side else "")
    )
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"events": args.events, "repeat": args.repeat, "rate": args.rate,
                                "side_by_side": args.side_by_side,
                                "cpu_ms_per_event_off": off_cpu, "modes": summary},
                               indent=2))  # fmt: skip
    print(f"\nwrote {path}")


def _row(
    events_per_s: float,
    lat: list[float],
    scrape0: Scrape,
    scrape1: Scrape,
    events: int,
    otlp_bytes: float,
    used: dict[str, Any],
) -> dict[str, float]:
    """One mode's figures for one round."""
    lat = sorted(lat)
    return {
        "events_per_s": events_per_s,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
        "spans_per_event": (scrape1.total(SPANS) - scrape0.total(SPANS)) / events,
        "batch_mean": mean(scrape1, scrape0, "inferstream_batch_size") or 0.0,
        "otlp_bytes_per_event": otlp_bytes / events,
        "steal_pct": used.get("steal_pct") or 0.0,
    } | {f"cpu_ms_per_event.{k}": v for k, v in used["cpu_ms_per_event"].items()}


def _print_row(r: int, mode: str, row: dict[str, float]) -> None:
    cpu = "  ".join(f"{k.split('.')[1]} {v:.2f}" for k, v in row.items() if k.startswith("cpu_ms"))
    print(
        f"round {r + 1} {mode:18s} {row['events_per_s']:7.1f} ev/s  "
        f"p50 {row['p50_ms']:7.1f} ms  spans/event {row['spans_per_event']:.2f}  "
        f"batch {row['batch_mean']:4.1f}  {cpu} (CPU ms/event)  steal {row['steal_pct']:.1f}%"
    )


def _side_by_side_round(
    r: int,
    workers: dict[str, tuple[local.WorkerProcess, Settings]],
    others: dict[str, Any],
    count_file: Path,
    n: int,
    rows: dict[str, list[dict[str, float]]],
) -> None:
    """One round of ``--side-by-side``: every mode's burst at once (``side_by_side``). Triton,
    Kafka and the collector serve all modes together: their CPU is split evenly per event, and
    the collector's bytes in proportion to each mode's spans."""
    m = measure_side_by_side(workers, others, count_file, n)
    spans = {mode: m.spans(mode) for mode in workers}
    all_spans = sum(spans.values())
    shared = CpuMeter.usage(m.cpu0, m.cpu1, n * len(workers))  # per event of every mode
    own = CpuMeter.usage(m.cpu0, m.cpu1, n)["cpu_ms_per_event"]  # per event of each worker's own
    pipeline = {k: v for k, v in shared["cpu_ms_per_event"].items() if k not in workers}
    for mode in sorted(workers, key=list(rows).index):
        used = shared | {"cpu_ms_per_event": pipeline | {"worker": own[mode]}}
        share = spans[mode] / all_spans if all_spans else 0.0
        events_per_s, lat = m.result[mode]
        row = _row(events_per_s, lat, m.scrape0[mode], m.scrape1[mode], n, m.sent * share, used)
        rows[mode].append(row)
        _print_row(r, mode, row)


@dataclass(frozen=True)
class SideBySide:
    """What one side-by-side burst measured: per worker, (events/s while all were busy,
    latencies) and its metrics before and after; the CPU samples around it; the OTLP bytes the
    collector received."""

    result: dict[str, tuple[float, list[float]]]
    scrape0: dict[str, Scrape]
    scrape1: dict[str, Scrape]
    cpu0: Sample
    cpu1: Sample
    sent: int

    def spans(self, name: str) -> float:
        """The spans the worker's receiver acknowledged over the burst."""
        return self.scrape1[name].total(SPANS) - self.scrape0[name].total(SPANS)


def measure_side_by_side(
    workers: dict[str, tuple[local.WorkerProcess, Settings]],
    others: dict[str, Any],
    count_file: Path,
    n: int,
) -> SideBySide:
    """``n`` turns to every worker at once (``side_by_side``), with their metrics, the CPU of
    each worker and of ``others`` (Triton, Kafka, the collector), and the collector's bytes
    around it (the span pipeline's last export included)."""
    meter = CpuMeter(others | {m: w.pid for m, (w, _) in workers.items()}, self_only=())
    scrape0 = {m: _scrape(s) for m, (_, s) in workers.items()}
    bytes0, cpu0 = _received(count_file), meter.sample()
    result = asyncio.run(side_by_side({m: s for m, (_, s) in workers.items()}, n))
    time.sleep(2)  # the span pipeline exports every 1 s
    cpu1 = meter.sample()
    scrape1 = {m: _scrape(s) for m, (_, s) in workers.items()}
    return SideBySide(result, scrape0, scrape1, cpu0, cpu1, _received(count_file) - bytes0)


def _all_cpu(row: dict[str, float]) -> float:
    return sum(v for k, v in row.items() if k.startswith("cpu_ms"))


def _mean_se(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else 0.0), 0.0
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def _geo_pct(ratios: list[float]) -> tuple[float, float]:
    """The geometric mean of ``ratios`` as a % change, and its standard error in %."""
    mean, se = _mean_se([math.log(r) for r in ratios])
    return 100.0 * (math.exp(mean) - 1.0), 100.0 * se


if __name__ == "__main__":
    main()
