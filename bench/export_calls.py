"""What one span export call costs a process shaped like the worker: an asyncio loop making gRPC
calls (as the worker's Triton client does, ``grpc.aio``) while a second thread exports OTLP-sized
bodies with the worker's own transports (``workers.telemetry.otlp_export``: gRPC or HTTP).

    .venv/bin/python -m bench.export_calls [--seconds 6] [--rounds 3] [--port 59517]

Each case runs the same loop (``--seconds`` of gRPC calls at 100/s to a local OTLP receiver, the
one ``bench.tracing_e2e`` starts) with a different exporter beside it; the process CPU above the
loop-only case, divided by the exports made, is what one export costs. Cases alternate over
``--rounds`` and the median round counts (this machine drifts). The result sizes the span
pipeline's batches: few large exports, not many small ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from pathlib import Path

import grpc

from bench.tracing_e2e import start_collector
from workers.telemetry.otlp_export import GRPC_METHOD, GrpcTransport, HttpTransport, Transport

CASES: dict[str, tuple[str, int, float] | None] = {
    "loop only": None,
    "+ gRPC export, 85 KB, 5/s": ("grpc", 85_000, 5.0),
    "+ gRPC export, 430 KB, 1/s": ("grpc", 430_000, 1.0),
    "+ HTTP export, 85 KB, 5/s": ("http", 85_000, 5.0),
}


async def loop_calls(port: int, seconds: float, rate: float) -> int:
    """gRPC calls from the event loop, as the worker's Triton client makes them."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(GRPC_METHOD)
    body, n = b"x" * 2000, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await call(body)
        n += 1
        await asyncio.sleep(1 / rate)
    await channel.close()
    return n


def export_loop(
    transport: Transport, size: int, per_s: float, stop: threading.Event, made: list[int]
) -> None:
    """Export a ``size``-byte body ``per_s`` times a second until ``stop``; count in ``made``."""
    body = os.urandom(size)
    while not stop.is_set():
        transport.send(body, 10.0)
        made[0] += 1
        stop.wait(1 / per_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=59517)
    args = ap.parse_args()
    count = Path(f"/tmp/export-calls-{os.getpid()}.count")
    receiver = start_collector(args.port, count)
    try:
        time.sleep(2.0)  # the receiver's ports open
        transports: dict[str, Transport] = {
            "grpc": GrpcTransport(f"http://127.0.0.1:{args.port}"),
            "http": HttpTransport(f"http://127.0.0.1:{args.port + 1}"),
        }
        for t in transports.values():
            t.send(b"", 5.0)  # connected before anything is counted
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in CASES}
        for _ in range(args.rounds):
            for name, case in CASES.items():
                stop, made = threading.Event(), [0]
                thread = None
                if case is not None:
                    kind, size, per_s = case
                    thread = threading.Thread(
                        target=export_loop,
                        args=(transports[kind], size, per_s, stop, made),
                        daemon=True,
                    )
                cpu0 = time.process_time()
                if thread is not None:
                    thread.start()
                asyncio.run(loop_calls(args.port, args.seconds, 100.0))
                stop.set()
                if thread is not None:
                    thread.join()
                runs[name].append(((time.process_time() - cpu0) * 1000.0, made[0]))
        base = statistics.median(cpu for cpu, _ in runs["loop only"])
        print(f"{args.seconds:g} s of loop calls per case, median of {args.rounds} rounds:")
        for name, rows in runs.items():
            cpu = statistics.median(c for c, _ in rows)
            exports = statistics.median(n for _, n in rows)
            each = (cpu - base) / exports if exports else 0.0
            extra = f"  {each:+6.2f} ms of CPU per export" if exports else ""
            print(f"  {name:28s} process CPU {cpu:7.1f} ms  exports {exports:4.0f}{extra}")
    finally:
        receiver.terminate()
        receiver.wait(10)
        count.unlink(missing_ok=True)
        count.with_suffix(".tmp").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
