"""Metrics, health and `inferstream top` against a live worker on the real broker and Triton."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest

from streams.console import allow_all_policy, publish_policy
from streams.exposition import parse_exposition
from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io, served

pytestmark = pytest.mark.integration


def scrape(settings: Settings) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return parse_exposition(resp.read().decode())


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, frozenset(labels.items())), 0.0)


def events(n: int, tenant: str, prefix: str) -> list[tuple[bytes | None, bytes]]:
    return [
        (
            b"c",
            ConversationEvent(
                f"{prefix}-{i}", f"c{i % 7}", tenant, "u", f"hello number {i}", time.time()
            ).to_json(),
        )
        for i in range(n)
    ]


def test_metrics_count_what_was_sent_dead_lettered_and_produced(
    start_worker: WorkerFactory,
) -> None:
    _, settings = start_worker()
    asyncio.run(publish_policy(settings, "acme", allow_all_policy("acme", 1)))
    records = events(430, "acme", "ok") + events(20, "nobody", "deny")
    records += [(b"bad", b"{not json %d" % i) for i in range(50)]
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records)
    kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: (
            len(r[settings.topic_out]) >= 450 and len(r[settings.topic_deadletter]) >= 50
        ),
        timeout_s=180,
        settle_s=0.5,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the counters move right after the produce acks
        m = scrape(settings)
        if value(m, "inferstream_events_out_total", topic=settings.topic_out) >= 450:
            break
        time.sleep(0.2)
    assert value(m, "inferstream_events_in_total", topic=settings.topic_in) == 500
    assert value(m, "inferstream_events_out_total", topic=settings.topic_out) == 450
    assert value(m, "inferstream_events_out_total", topic=settings.topic_deadletter) == 50
    assert (
        value(m, "inferstream_dead_letters_total", topic=settings.topic_in, reason="bad_json") == 50
    )
    assert value(m, "inferstream_policy_denials_total", reason="unknown_tenant") == 20
    backend = served.cpu_backend(settings.model_repo)
    assert value(m, "inferstream_routed_events_total", backend=backend, device="cpu") == 430
    assert value(m, "inferstream_e2e_latency_seconds_count") == 450
    assert value(m, "inferstream_batch_size_sum") == 430

    analytics = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_analytics],
        until=lambda r: len(r[settings.topic_analytics]) >= 450,
        timeout_s=60,
        settle_s=0.5,
    )[settings.topic_analytics]
    assert len(analytics) == 450 and len({a["event_id"] for a in analytics}) == 450
    answered = [a for a in analytics if a["status"] == "ok"]
    assert len(answered) == 430 and {a["backend"] for a in answered} == {backend}
    assert all(0 < a["cost_usd"] < 0.003 for a in answered)  # priced CPU time, under budget
    denied = [a for a in analytics if a["status"] == "denied"]
    assert len(denied) == 20 and all(a["cost_usd"] == 0 for a in denied)
    assert value(m, "inferstream_events_out_total", topic=settings.topic_analytics) == 450

    with urllib.request.urlopen(
        f"http://127.0.0.1:{settings.web_port}/health/ready", timeout=10
    ) as resp:
        body = orjson.loads(resp.read())
    assert resp.status == 200 and body["status"] == "ok", body
    assert {n for n, c in body["checks"].items() if c["ok"]} == {"kafka", "triton", "tables"}


def test_top_shows_moving_figures_of_a_live_worker(start_worker: WorkerFactory) -> None:
    _, settings = start_worker()
    asyncio.run(publish_policy(settings, "acme", allow_all_policy("acme", 1)))
    main, child = pty.openpty()
    env = dict(os.environ, COLUMNS="140", LINES="50", TERM="xterm-256color")
    top = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams",
            "top",
            "--url",
            f"http://127.0.0.1:{settings.web_port}/metrics",
            "--refresh",
            "0.5",
            "--iterations",
            "16",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    screen = b""
    try:
        for round_ in range(4):  # traffic while top is watching
            kafka_io.produce(
                settings.bootstrap_servers, settings.topic_in, events(60, "acme", f"top{round_}")
            )
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                if select.select([main], [], [], 0.1)[0]:
                    try:
                        screen += os.read(main, 65536)
                    except OSError:
                        break
        end = time.monotonic() + 30
        while top.poll() is None and time.monotonic() < end:  # keep draining: a full pty blocks
            if select.select([main], [], [], 0.1)[0]:
                try:
                    screen += os.read(main, 65536)
                except OSError:
                    break
        top.wait(timeout=5)
    finally:
        top.kill()
        os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
    assert top.returncode == 0, text[-2000:]
    totals = {int(t.replace(",", "")) for t in re.findall(r"\bin\s+│\s+\S+\s+│\s+([\d,]+)", text)}
    print(text[-1500:])
    assert len(totals) >= 2 and max(totals) > 0, f"the totals on screen never moved: {totals}"
