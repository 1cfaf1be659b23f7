"""What tracing costs the worker per event, at 0 %, 1 %, 10 % and 100 % sampling.

    .venv/bin/python -m bench.tracing [--events 1000] [--repeat 15] [--exporter otlp-grpc]

Each event goes through the tracing calls the worker makes (``streams.agents.conversations``):
extract the input's headers, the ``process`` span, decode and policy stages, ``batch_wait``, one
``inference`` batch span per 32 events (linked, with each event's copy), context, filter and
watermark stages, the ``publish`` span whose context goes into the output's headers, and the
event's trace id. New traces (no ``traceparent``), so the sampler keeps the given share. Spans go
through the worker's own ``TracerProvider`` (``workers.telemetry.provider``: the SDK's batch
processor and OTLP exporter) to an OTLP receiver in a child process, which parses every request
and counts the spans. The figure is this process's CPU (every thread: the event loop's calls, the
batch processor's encoding and sends) per event, flushed each round; "added" is the median over
rounds of the difference from the same round's run with tracing off, and "of the worker" relates
it to the live worker's CPU per event (docs/benchmarks.md, "Why the targets are out of reach":
3.15 ms). The target: at most 2 % of the worker's CPU at 10 % sampling.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any

import click
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider

from workers.telemetry.provider import Exporter, build_tracer_provider
from workers.telemetry.tracing import (
    ATTR_BACKEND,
    ATTR_MODEL_NAME,
    ATTR_MODEL_VERSION,
    EventSpan,
    KafkaTracing,
)

TOPIC_IN, TOPIC_OUT, BATCH = "conversations.in", "conversations.out", 32
WORKER_CPU_MS = 3.15  # the live worker's CPU per event, docs/benchmarks.md
GRPC_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def serve(kind: str, pipe: Connection) -> None:
    """The receiver (in a child process): sends its endpoint, then on any message the number of
    spans received, and stops."""
    spans = 0

    def take(body: bytes) -> bytes:
        nonlocal spans
        request = ExportTraceServiceRequest.FromString(body)
        spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        return ExportTraceServiceResponse().SerializeToString()  # type: ignore[no-any-return]

    if kind == "otlp-grpc":
        import grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_unary_rpc_method_handler(lambda body, ctx: take(body))
        generic = grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Export": handler})
        server.add_generic_rpc_handlers((generic,))
        pipe.send(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        pipe.recv()
        server.stop(None)
    else:

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                reply = take(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        pipe.send(f"http://127.0.0.1:{http.server_address[1]}")
        futures.ThreadPoolExecutor(1).submit(http.serve_forever)
        pipe.recv()
        http.shutdown()
    pipe.send(spans)


def events(t: KafkaTracing, n: int) -> int:
    """``n`` events through the worker's tracing calls, in batches of ``BATCH``; how many
    outputs carry a ``traceparent``."""
    key, other, carried = b"conv-1", ("content-type", b"application/json"), 0
    for first in range(0, n, BATCH):
        batch: list[tuple[EventSpan, int]] = []
        for offset in range(first, min(n, first + BATCH)):
            ev = t.consume_span(TOPIC_IN, 0, offset, key, parent_ctx=t.extract([other]))
            with t.stage("decode", ev):
                pass
            with t.stage("policy", ev):
                pass
            batch.append((ev, time.time_ns()))
        now = time.time_ns()
        for ev, submitted in batch:
            t.record("batch_wait", ev, submitted, now)
        with t.batch_span("inference", [ev for ev, _ in batch]) as span:
            span.set(ATTR_BACKEND, "openvino-int8")
            span.set(ATTR_MODEL_NAME, "minilm_cpu")
            span.set(ATTR_MODEL_VERSION, "1")
        for ev, _ in batch:
            with t.stage("context", ev):
                pass
            t.trace_id(ev.ctx)
            with t.stage("filter", ev), t.stage("watermark", ev):
                pass
            with t.produce_span(TOPIC_OUT, ev, key=key) as produced:
                headers = {"inferstream-event-id": b"ev"} | produced.headers
            carried += "traceparent" in headers
            ev.end()
    return carried


def cpu_per_event(run: Callable[[], Any], n: int) -> float:
    """CPU µs per event of ``run()`` (every thread of this process)."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / n * 1e6


@click.command()
@click.option("--events", "n", default=1000, show_default=True, help="Events per mode a round.")
@click.option("--repeat", default=15, show_default=True, help="Rounds (modes in a random order).")
@click.option("--ratios", default="0,0.01,0.1,1", show_default=True, help="Sampling ratios.")
@click.option(
    "--exporter",
    type=click.Choice(["otlp-grpc", "otlp-http"]),
    default="otlp-grpc",
    show_default=True,
    help="The SDK exporter the spans go through.",
)
@click.option(
    "--worker-cpu-ms",
    default=WORKER_CPU_MS,
    show_default=True,
    help="The live worker's CPU per event (docs/benchmarks.md), for the last column.",
)
def main(n: int, repeat: int, ratios: str, exporter: Exporter, worker_cpu_ms: float) -> None:
    """Tracing's CPU per event, by sampling ratio, against the worker's CPU per event."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    receiver = ctx.Process(target=serve, args=(exporter, there), daemon=True)
    receiver.start()
    endpoint = here.recv()
    counts = {"exported": 0, "dropped": 0}

    def count(what: str) -> Callable[[int], None]:
        return lambda k: counts.__setitem__(what, counts[what] + k)

    modes: dict[str, tuple[KafkaTracing, TracerProvider | None]] = {"off": (KafkaTracing(), None)}
    for ratio in (float(r) for r in ratios.split(",")):
        provider = build_tracer_provider(
            exporter, endpoint, "bench", sample_ratio=ratio, on_export=count("exported"),
            on_drop=count("dropped"),
        )  # fmt: skip
        modes[f"{ratio:.0%}"] = (KafkaTracing(provider, consumer_group="bench"), provider)

    def run(mode: str, k: int) -> None:
        t, provider = modes[mode]
        events(t, k)
        if provider is not None:
            provider.force_flush()  # what this round's events cost to export too

    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    spans: dict[str, int] = dict.fromkeys(modes, 0)
    for mode in modes:  # warm up: imports, channels, caches
        run(mode, BATCH)
    for _ in range(repeat):
        for mode in random.sample(list(modes), len(modes)):
            before = counts["exported"]
            cpu[mode].append(cpu_per_event(lambda: run(mode, n), n))  # noqa: B023
            spans[mode] += counts["exported"] - before
    for _, provider in modes.values():
        if provider is not None:
            provider.shutdown()  # type: ignore[no-untyped-call]
    here.send("stop")
    received = here.recv()
    receiver.join(10)
    off = cpu["off"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    click.echo(
        f"\n{time.strftime('%Y-%m-%d %H:%M')}: {n} events x {repeat} rounds per mode, {exporter} "
        f"to a receiver in a child process; load average {load}; worker CPU per event "
        f"{worker_cpu_ms} ms\n"
    )
    click.echo("| sampling | spans exported per event | CPU per event | added by tracing | "
               "of the worker's CPU |")  # fmt: skip
    click.echo("|---|---|---|---|---|")
    added: dict[str, float] = {}
    for mode, runs in cpu.items():
        added[mode] = statistics.median(c - o for c, o in zip(runs, off, strict=True))
        share = added[mode] / (worker_cpu_ms * 1000) * 100
        label = "off (no provider)" if mode == "off" else mode
        extra = "-" if mode == "off" else f"+{added[mode]:.1f} µs"
        click.echo(
            f"| {label} | {spans[mode] / (n * repeat):.2f} | {statistics.median(runs):.1f} µs "
            f"| {extra} | {'-' if mode == 'off' else f'{share:.2f} %'} |"
        )
    click.echo(
        f"\nspans exported {counts['exported']}, received {received}, dropped {counts['dropped']}"
    )
    if "10%" in added:
        share = added["10%"] / (worker_cpu_ms * 1000) * 100
        verdict = "met" if share <= 2.0 else "NOT met"
        click.echo(f"target (10 % sampling <= 2 % of the worker's CPU): {verdict} ({share:.2f} %)")


if __name__ == "__main__":
    main()
