"""`inferstream top` against a small aiohttp server standing in for a worker's /metrics."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CollectorRegistry
from rich.console import Console

from streams.exposition import Scrape, parse_exposition
from streams.top import render, run_top
from workers.telemetry.metrics import Metrics

IN_TOTAL = r"(?m)^in\s+│\s+[\d,.-]+\s+│\s+([\d,]+)"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def busy_worker() -> Callable[[], bytes]:
    """Each scrape sees 50 more events in, 48 out, 2 dead letters, and a moving latency."""
    m = Metrics(CollectorRegistry())
    m.set_route_available("gpu", True)
    m.set_route_available("cpu", True)
    m.set_table_size("policies", 3)

    def scrape() -> bytes:
        m.event_in("conversations.in", 50)
        m.event_out("conversations.out", 48)
        m.dead_letter("conversations.in", "bad_json")
        m.dead_letter("conversations.in", "empty_text")
        for i in range(48):
            m.observe_e2e(0.02 + i * 0.002)
            m.observe_stage("inference", 0.004)
            m.observe_stage("decode", 0.0002)
        m.observe_batch(16)
        m.observe_batch(32)
        m.route("tensorrt-fp16", 36)
        m.route("openvino-fp32", 12)
        m.set_lag("conversations.in", 0, 7)
        m.set_lag("conversations.in", 1, 0)
        m.filter_decision("mask")
        m.policy_denial("unknown_tenant")
        m.observe_cost("acme", "tensorrt-fp16", 4e-5)
        return m.exposition()

    return scrape


@asynccontextmanager
async def serve_worker() -> AsyncIterator[str]:
    """A stand-in worker on a free port, on the test's own event loop."""
    scrape = busy_worker()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=scrape(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/metrics"
    await runner.cleanup()


async def test_top_shows_the_worker() -> None:
    async with serve_worker() as worker_url:
        await _shows_the_worker(worker_url)


async def _shows_the_worker(worker_url: str) -> None:
    console = Console(record=True, width=150, force_terminal=False)
    await run_top(worker_url, refresh_s=0.05, iterations=2, console=console)
    screen = console.export_text()
    for heading in ("throughput", "e2e latency", "batches", "stages", "routes", "consumer lag"):
        assert heading in screen
    assert re.search(r"in\s+│\s+[1-9][\d,.]*\s+│\s+100\b", screen)  # a rate, and 2 scrapes' total
    assert re.search(r"dead\s+│\s+[1-9][\d,.]*\s+│\s+4\b", screen)
    assert re.search(r"tensorrt-fp16\s+│\s+[\d,.]+\s+│\s+75%", screen)
    assert re.search(r"conversations.in\s+│\s+0\s+│\s+7", screen)
    assert re.search(r"mean\s+│\s+24\.0", screen)  # batch size
    assert "unknown_tenant" in screen and "gpu route" in screen


async def test_top_waits_for_an_unreachable_worker() -> None:
    console = Console(record=True, width=120)
    await run_top("127.0.0.1:9", refresh_s=0.01, iterations=1, console=console)
    assert "waiting for worker" in console.export_text()


def test_render_rates_between_two_scrapes() -> None:
    m = Metrics(CollectorRegistry())
    m.event_in("conversations.in", 100)
    before = Scrape(parse_exposition(m.exposition().decode()), 10.0)
    m.event_in("conversations.in", 300)
    for _ in range(10):
        m.observe_e2e(0.3)
    now = Scrape(parse_exposition(m.exposition().decode()), 12.0)
    console = Console(record=True, width=150)
    console.print(render("http://w/metrics", now, before))
    screen = console.export_text()
    assert "last 2.0s" in screen
    assert re.search(r"in\s+│\s+150\.0\s+│\s+400", screen)
    assert re.search(r"p50\s+│\s+2\d\d\.\d", screen)  # within the (0.2, 0.3] bucket


async def test_top_in_a_pseudo_terminal_shows_moving_figures() -> None:
    async with serve_worker() as worker_url:
        screen = await _top_in_a_terminal(worker_url)
    totals = [int(t.replace(",", "")) for t in re.findall(IN_TOTAL, screen)]
    assert totals[:1] == [50] and totals[-1] == 200  # the figures moved, screen by screen
    assert re.findall(r"(?m)^in\s+│\s+([1-9][\d,.]*)\s+│", screen)  # events/s from the 2nd scrape


async def _top_in_a_terminal(worker_url: str) -> str:
    master, slave = pty.openpty()
    code = (
        "import asyncio, sys; from streams.top import run_top; "
        "asyncio.run(run_top(sys.argv[1], refresh_s=0.2, iterations=4))"
    )
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "50"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, worker_url, stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = asyncio.get_running_loop().run_in_executor(None, drain)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    await asyncio.wait_for(reader, 10)
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode(errors="replace"))
