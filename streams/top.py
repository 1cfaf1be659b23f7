"""``inferstream top``: a live terminal view of a worker, read from its ``/metrics`` endpoint.

For a machine with no Grafana: throughput (events/s in, out, dead-lettered), end-to-end latency
percentiles and per-stage latencies, batch sizes, consumer lag per partition, routes (GPU/CPU),
filter decisions, denials, Triton errors and cost per event. Rates, percentiles and means cover
the interval between two polls; until a second poll (or while idle) they cover the whole run.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from streams.exposition import (
    Scrape,
    mean,
    parse_exposition,
    quantile,
    rate,
    rates_by,
    window,
)

P = "inferstream"
LEFT = ("what", "topic", "backend", "stage")
STAGE_ORDER = (
    "decode",
    "context",
    "policy",
    "batch_wait",
    "inference",
    "filter",
    "watermark",
    "produce",
)


async def run_top(
    metrics_url: str,
    *,
    refresh_s: float = 1.0,
    iterations: int | None = None,
    console: Console | None = None,
) -> None:
    """Poll ``metrics_url`` every ``refresh_s`` and redraw; stop after ``iterations`` polls."""
    from rich.live import Live

    url = _metrics_url(metrics_url)
    console = console or Console()
    timeout = aiohttp.ClientTimeout(total=max(2.0, refresh_s))
    before: Scrape | None = None
    polls = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with Live(waiting(url, None), console=console, auto_refresh=False) as live:
            while iterations is None or polls < iterations:
                try:
                    text = await _fetch(session, url)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    view, before = waiting(url, f"{type(exc).__name__}: {exc}"), None
                else:
                    now = Scrape(parse_exposition(text), time.monotonic())
                    view, before = render(url, now, before), now
                live.update(view, refresh=True)
                polls += 1
                if iterations is None or polls < iterations:
                    await asyncio.sleep(refresh_s)


def _metrics_url(url: str) -> str:
    if "://" not in url:
        url = f"http://{url}"
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"


async def _fetch(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


def waiting(url: str, error: str | None) -> RenderableType:
    lines = Text.assemble(
        ("inferstream top", "bold"), f"  {url}\n", ("waiting for worker", "yellow")
    )
    if error:
        lines.append(f"  ({error})", style="dim")
    return lines


def render(url: str, now: Scrape, before: Scrape | None) -> RenderableType:
    """The whole screen for one scrape (and the previous one, for rates)."""
    span = "since start" if before is None else f"last {now.at - before.at:.1f}s"
    head = Text.assemble(("inferstream top", "bold"), f"  {url}  ", (span, "dim"))
    return Group(
        head,
        _grid(_throughput(now, before), _latency(now, before), _batches(now, before)),
        _grid(_stages(now, before), _routes(now, before), _lag(now)),
        _grid(_decisions(now, before)),
    )


def _grid(*tables: Table) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_row(*tables)
    return grid


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 or col in LEFT else "right")
    return table


def _throughput(now: Scrape, before: Scrape | None) -> Table:
    t = _table("throughput", "", "per s", "total")
    for label, name in (
        ("in", f"{P}_events_in_total"),
        ("out", f"{P}_events_out_total"),
        ("dead", f"{P}_dead_letters_total"),
    ):
        t.add_row(label, _num(rate(now, before, name)), _num(now.total(name), 0))
    t.add_row("batches in flight", "", _num(now.total(f"{P}_inflight_batches"), 0))
    return t


def _latency(now: Scrape, before: Scrape | None) -> Table:
    t = _table("e2e latency", "", "ms")
    name = f"{P}_e2e_latency_seconds"
    buckets = _window(now, before, name)
    for q in (0.5, 0.95, 0.99):
        t.add_row(f"p{round(q * 100)}", _ms(quantile(q, buckets)))
    t.add_row("mean", _ms(mean(now, before, name)))
    return t


def _batches(now: Scrape, before: Scrape | None) -> Table:
    t = _table("batches", "", "size")
    name = f"{P}_batch_size"
    t.add_row("mean", _num(mean(now, before, name)))
    t.add_row("p99", _num(quantile(0.99, _window(now, before, name)), 0))
    t.add_row("cost/event $", _usd(mean(now, before, f"{P}_event_cost_usd")))
    return t


def _stages(now: Scrape, before: Scrape | None) -> Table:
    t = _table("stages", "stage", "p50 ms", "p99 ms")
    name = f"{P}_stage_latency_seconds"
    seen = now.by(f"{name}_count", "stage")
    for stage in sorted(seen, key=_stage_order):
        buckets = _window(now, before, name, stage=stage)
        t.add_row(stage, _ms(quantile(0.5, buckets)), _ms(quantile(0.99, buckets)))
    return t


def _routes(now: Scrape, before: Scrape | None) -> Table:
    t = _table("routes", "backend", "per s", "share")
    name = f"{P}_routed_events_total"
    totals = now.by(name, "backend")
    per_s = rates_by(now, before, name, "backend")
    basis = per_s if sum(per_s.values()) > 0 else totals
    whole = sum(basis.values())
    for backend in sorted(totals):
        share = f"{100.0 * basis.get(backend, 0.0) / whole:.0f}%" if whole else "-"
        t.add_row(backend, _num(per_s.get(backend)), share)
    for device, up in sorted(now.by(f"{P}_route_available", "device").items()):
        t.add_row(f"{device} route", "", "up" if up else Text("DOWN", style="bold red"))
    return t


def _lag(now: Scrape) -> Table:
    t = _table("consumer lag", "topic", "partition", "lag")
    lags: dict[tuple[str, str], float] = {}
    for (n, labels), v in now.samples.items():
        if n == f"{P}_consumer_lag":
            d = dict(labels)
            lags[(d.get("topic", ""), d.get("partition", ""))] = v
    for (topic, part), v in sorted(lags.items(), key=lambda kv: (kv[0][0], _int(kv[0][1]))):
        t.add_row(topic, part, _num(v, 0))
    return t


def _decisions(now: Scrape, before: Scrape | None) -> Table:
    t = _table("decisions", "", "what", "per s", "total")
    for group, name, label in (
        ("filter", f"{P}_filter_decisions_total", "action"),
        ("denied", f"{P}_policy_denials_total", "reason"),
        ("triton error", f"{P}_triton_errors_total", "kind"),
        ("dead letter", f"{P}_dead_letters_total", "reason"),
    ):
        per_s = rates_by(now, before, name, label)
        for what, total in sorted(now.by(name, label).items()):
            t.add_row(group, what, _num(per_s.get(what)), _num(total, 0))
    return t


def _window(
    now: Scrape, before: Scrape | None, name: str, **match: str
) -> list[tuple[float, float]]:
    current = now.buckets(name, **match)
    recent = window(current, before.buckets(name, **match) if before else None)
    return recent if recent and recent[-1][1] > 0 else current


def _stage_order(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000.0:,.1f}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1
