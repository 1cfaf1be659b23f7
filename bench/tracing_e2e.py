"""Tracing on versus off, end to end on a live worker: throughput of a flat-out burst through the
real Kafka broker, the real worker and the real Triton, with tracing off, on for every event
(OTLP/gRPC to a collector), and on with 10% sampling. Runs are interleaved (off, on, sampled,
off, ...) so drift on a shared machine hits every mode alike; the median of each is reported.

    .venv/bin/python -m bench.tracing_e2e [--events 3000] [--repeat 3] [--port-base 60000]

The collector is an OTLP/gRPC TraceService in this process that counts spans and drops them
(what a Collector's receiver does before its pipeline). Prints a table and writes
bench/out/tracing_e2e.json. The issue's target: tracing on costs under 5% of throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench.stack import settings_from_env
from streams import local
from streams.admin import ensure_topics, topic_partitions
from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings
from workers.provenance.keys import generate_key_file

OUT = REPO_ROOT / "bench" / "out"
TEXTS = [
    "My card was charged twice for order {n}.",
    "I can't log in since the update, ticket {n}.",
    "Where is my parcel {n}? Tracking is stuck.",
    "The app crashes when I open settings ({n}).",
]
MODES = {
    "off": {"INFERSTREAM_TRACING_EXPORTER": "none"},
    "on (every event)": {"INFERSTREAM_TRACING_EXPORTER": "otlp-grpc"},
    "on (10% sampled)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0.1",
    },
    "on (1% sampled)": {
        "INFERSTREAM_TRACING_EXPORTER": "otlp-grpc",
        "INFERSTREAM_TRACING_SAMPLE_RATIO": "0.01",
    },
}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self.lock:
            self.spans += n
        return trace_service_pb2.ExportTraceServiceResponse()


async def burst(settings: Settings, n: int) -> tuple[float, list[float]]:
    """Produce ``n`` turns flat out; return the seconds until the last output and the
    end-to-end latencies (event ts to output record timestamp)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    parts = await topic_partitions(consumer, settings.topic_out)
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    start = time.time()
    for i in range(n):
        ev = ConversationEvent(
            f"b-{uuid.uuid4().hex[:12]}", f"conv-{i % 200}", "bench", "u",
            TEXTS[i % len(TEXTS)].format(n=i), time.time(),
        )  # fmt: skip
        await producer.send(settings.topic_in, ev.to_json(), key=ev.conversation_id.encode())
    await producer.flush()
    await producer.stop()
    latencies: list[float] = []
    last = start
    try:
        while len(latencies) < n:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 300)
            for records in batch.values():
                for rec in records:
                    ts = json.loads(rec.value)["latency_ms"]["end_to_end"]
                    latencies.append(ts)
                    last = max(last, rec.timestamp / 1000.0)
    finally:
        await consumer.stop()
    return last - start, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port-base", type=int, default=60000)
    args = ap.parse_args()
    base = args.port_base
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
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collector = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    local.kafka(services, "start", "--clean")
    local.triton(services, "start")
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    try:
        for r in range(args.repeat):
            for mode, extra in MODES.items():
                uid = uuid.uuid4().hex[:8]
                env = dict(os.environ) | ports | extra | {
                    "INFERSTREAM_APP_ID": f"tr-{uid}",
                    "INFERSTREAM_TOPIC_IN": f"tr-{uid}.in",
                    "INFERSTREAM_TOPIC_OUT": f"tr-{uid}.out",
                    "INFERSTREAM_TOPIC_POLICIES": f"tr-{uid}.policies",
                    "INFERSTREAM_WATERMARK_KEY_DIR": str(keys),
                    "INFERSTREAM_TRACING_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
                    "HF_HUB_OFFLINE": "1",
                }  # fmt: skip
                settings = settings_from_env(env)
                asyncio.run(ensure_topics(settings))
                asyncio.run(publish_policy(settings, "bench", allow_all_policy("bench", 1)))
                worker = local.WorkerProcess(settings, env, name=f"tracing-{uid}")
                worker.start()
                try:
                    worker.wait_ready()
                    worker.wait_log(local.ASSIGNED)
                    asyncio.run(burst(settings, 200))  # warm-up: model, tokenizer, caches
                    before = collector.spans
                    seconds, lat = asyncio.run(burst(settings, args.events))
                    time.sleep(6)  # the batch span processor exports every 5 s
                    spans = collector.spans - before
                finally:
                    worker.stop()
                lat.sort()
                row = {
                    "events_per_s": args.events / seconds,
                    "p50_ms": lat[len(lat) // 2],
                    "p99_ms": lat[int(len(lat) * 0.99) - 1],
                    "spans_per_event": spans / args.events,
                }
                rows[mode].append(row)
                print(
                    f"run {r + 1} {mode:18s} {row['events_per_s']:7.1f} ev/s  "
                    f"p50 {row['p50_ms']:7.1f} ms  spans/event {row['spans_per_event']:.2f}"
                )
    finally:
        local.triton(services, "stop")
        local.kafka(services, "stop")
        server.stop(0)
    summary = {}
    off = statistics.median(r["events_per_s"] for r in rows["off"])
    print(f"\n{'mode':20s} {'events/s':>9s} {'vs off':>8s} {'p50 ms':>8s} {'p99 ms':>8s} spans/ev")
    for mode, runs in rows.items():
        tput = statistics.median(r["events_per_s"] for r in runs)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        summary[mode] = med | {"cost_vs_off": 1.0 - tput / off, "runs": runs}
        print(f"{mode:20s} {tput:9.1f} {(tput / off - 1) * 100:+7.1f}% {med['p50_ms']:8.1f} "
              f"{med['p99_ms']:8.1f} {med['spans_per_event']:6.2f}")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(OUT / "tracing_e2e.json")
    path.write_text(json.dumps({"events": args.events, "repeat": args.repeat, "modes": summary},
                               indent=2))  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
