"""Model experiments on the real broker and Triton, with two built versions of the CPU model:
``inferstream_cpu`` (INT8 or FP32, as the build chose) and ``inferstream_cpu_fp32`` (the same
training run, FP32), driven through the `inferstream experiment` commands as an operator would."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
import tritonclient.grpc.aio as grpcclient
from rich.console import Console

from streams.records import ConversationEvent
from streams.settings import REPO_ROOT, Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io, served
from workers.experiments.config import parse_experiment

pytestmark = pytest.mark.integration

INT8, FP32 = "inferstream_cpu", "inferstream_cpu_fp32"
TEXTS = (
    "My card was charged twice for the same order",
    "where is my package? it was due on Monday",
    "患者主诉胸痛三天，服用阿司匹林100mg",
    "I want to cancel my subscription",
    "the reset email never arrives",
    "请问我的退款什么时候到账？",
)


@pytest.fixture(scope="module")
def fp32_model(services: Settings) -> Iterator[None]:
    """``inferstream_cpu_fp32/1`` installed from the build cache and loaded into the running
    Triton (explicit model control), as `build-models --fp32` and `experiment set --load` do;
    removed again afterwards unless it was there before."""
    from workers.modeling.mt_install import install_fp32

    folder = services.model_repo / FP32 / "1"
    existed = folder.is_dir()
    install_fp32(services.model_repo, services.cache_dir, Console(stderr=True).log)

    async def control(load: bool) -> None:
        client = grpcclient.InferenceServerClient(url=services.triton_endpoint)
        try:
            if load:
                await client.load_model(FP32, client_timeout=300)
            else:
                await client.unload_model(FP32)
        finally:
            await client.close()

    asyncio.run(control(True))
    try:
        yield
    finally:
        asyncio.run(control(False))
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "experiment", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def send(settings: Settings, events: list[ConversationEvent]) -> None:
    records = [(e.conversation_id.encode(), e.to_json()) for e in events]
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records)


def turns(prefix: str, conversations: int, per: int) -> list[ConversationEvent]:
    now = time.time()
    return [
        ConversationEvent(
            f"{prefix}-{c}-{t}", f"{prefix}-c{c}", "acme", "u1", TEXTS[(c + t) % len(TEXTS)], now
        )
        for t in range(per)
        for c in range(conversations)
    ]


def read(settings: Settings, topic: str, want: set[str], timeout_s: float) -> list[dict[str, Any]]:
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [topic],
        until=lambda r: want <= {x["event_id"] for x in r[topic]},
        timeout_s=timeout_s,
        settle_s=1.0,
    )
    return [r for r in out[topic] if r["event_id"] in want]


def start(start_worker: WorkerFactory, **env: str) -> tuple[Settings, dict[str, str]]:
    worker, settings = start_worker(**env)
    asyncio.run(_allow(settings))
    return settings, worker.env


async def _allow(settings: Settings) -> None:
    from streams.console import allow_all_policy, publish_policy

    await publish_policy(settings, "acme", allow_all_policy("acme", 1))


def test_canary_share_sticky_and_shadow_only_on_experiment_events(
    start_worker: WorkerFactory, fp32_model: None
) -> None:
    # shadows paced to at most 20 % of the time by default (what a shared 2-core host affords
    # the primary, bench/experiments.py); here every copy is to be compared
    settings, env = start(start_worker, INFERSTREAM_SHADOW_MAX_DUTY="1")
    out = cli(env, "set", "canary", "--primary", f"{INT8}:1", "--candidate", f"{FP32}:1=0.1",
              "--no-guard")  # fmt: skip
    assert "candidate inferstream_cpu_fp32:1 10%" in out
    time.sleep(1.0)
    events = turns("can", 2000, 2)
    send(settings, events)
    results = read(settings, settings.topic_out, {e.event_id for e in events}, 240)
    assert len(results) == len(events)  # one each (read_committed)
    arms: dict[str, set[tuple[str, str]]] = {}
    for r in results:
        assert r["experiment"]["name"] == "canary" and r["experiment"]["fallback"] is False
        arm = r["experiment"]["arm"]
        primary = (INT8, served.cpu_backend(settings.model_repo))
        want = (FP32, "openvino-fp32") if arm == "candidate" else primary
        assert (r["model"]["name"], r["backend"]) == want and r["model"]["version"] == "1"
        arms.setdefault(r["conversation_id"], set()).add((arm, r["model"]["name"]))
    assert all(len(a) == 1 for a in arms.values())  # no conversation split between versions
    share = sum(1 for a in arms.values() if ("candidate", FP32) in a) / len(arms)
    print(f"\ncanary share over {len(arms)} conversations: {share:.3f}")
    assert abs(share - 0.10) <= 0.03

    # a shadow on every conversation: its answers reach experiments.events only
    cli(env, "set", "canary", "--primary", f"{INT8}:1", "--shadow", f"{FP32}:1", "--no-guard")
    time.sleep(1.0)
    shadowed = turns("sh", 150, 2)
    for i in range(0, len(shadowed), 20):  # about 40 events/s: well under what both can do
        send(settings, shadowed[i : i + 20])
        time.sleep(0.5)
    ids = {e.event_id for e in shadowed}
    results = read(settings, settings.topic_out, ids, 120)
    assert len(results) == len(shadowed)
    assert {(r["model"]["name"], r["experiment"]["arm"]) for r in results} == {(INT8, "primary")}
    records = read(settings, settings.topic_experiment_events, ids, 120)
    latest = {r["event_id"]: r for r in records}
    assert set(latest) == ids
    compared = [r["shadows"][0] for r in latest.values() if r["shadows"]]
    shed = sum(1 for r in latest.values() if r["shed"])
    assert len(compared) + shed == len(ids)
    assert len(compared) >= 0.9 * len(ids), f"{shed} of {len(ids)} shadow copies shed"
    assert all(c["model"] == FP32 and c["error"] is None for c in compared)
    agree = sum(1 for c in compared if c["agree"]) / len(compared)
    print(f"INT8 vs FP32 intent agreement on {len(compared)} turns: {agree:.3f}")
    assert agree >= 0.8  # the same model before and after quantization
    report = cli(env, "report", "canary")
    assert "inferstream_cpu_fp32:1" in report and "label agreement" in report


def test_promote_and_rollback_live_lose_and_double_nothing(
    start_worker: WorkerFactory, fp32_model: None
) -> None:
    settings, env = start(start_worker)
    cli(env, "set", "live", "--primary", f"{INT8}:1", "--candidate", f"{FP32}:1=0.3",
        "--no-guard")  # fmt: skip
    time.sleep(1.0)
    events = turns("live", 160, 10)  # 1,600 turns over about 32 s
    changes: dict[str, float] = {}

    def operator() -> None:
        time.sleep(8)
        changes["rollback"] = time.time()
        cli(env, "rollback", "live", "--reason", "test")
        time.sleep(8)
        changes["set"] = time.time()
        cli(env, "set", "live", "--primary", f"{INT8}:1", "--candidate", f"{FP32}:1=0.3",
            "--no-guard")  # fmt: skip
        changes["promote"] = time.time()
        cli(env, "promote", "live")

    thread = threading.Thread(target=operator)
    thread.start()
    sent_at: dict[str, float] = {}
    for i in range(0, len(events), 10):
        chunk = [replace(e, ts=time.time()) for e in events[i : i + 10]]
        send(settings, chunk)
        sent_at |= {e.event_id: time.time() for e in chunk}
        time.sleep(0.2)
    thread.join()
    ids = set(sent_at)
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out],
        until=lambda r: ids <= {x["event_id"] for x in r[settings.topic_out]},
        timeout_s=180,
        settle_s=3.0,
    )[settings.topic_out]
    counts = Counter(r["event_id"] for r in out)
    assert set(counts) == ids and max(counts.values()) == 1  # none lost, none doubled
    by_id = {r["event_id"]: r for r in out}
    # a change applies within 5 s: every turn sent later follows it
    after_rollback = [
        by_id[i] for i, at in sent_at.items() if changes["rollback"] + 5 < at < changes["set"]
    ]
    after_promote = [by_id[i] for i, at in sent_at.items() if at > changes["promote"] + 5]
    assert after_rollback and after_promote
    assert {r["model"]["name"] for r in after_rollback} == {INT8}
    assert {r["model"]["name"] for r in after_promote} == {FP32}
    assert {r["experiment"]["version"] for r in after_promote} == {4}  # set, rollback, set, promote
    before = [by_id[i] for i, at in sent_at.items() if at < changes["rollback"]]
    assert {r["model"]["name"] for r in before} == {INT8, FP32}


def test_guard_rolls_back_a_failing_candidate(start_worker: WorkerFactory) -> None:
    settings, env = start(start_worker)
    # version 9 of the INT8 model does not exist: every candidate call fails
    cli(env, "set", "doomed", "--primary", f"{INT8}:1", "--candidate", f"{INT8}:9=0.5",
        "--guard-min-events", "20", "--guard-window", "60", "--no-check")  # fmt: skip
    time.sleep(1.0)
    events = turns("doom", 100, 3)
    for i in range(0, len(events), 20):
        send(settings, events[i : i + 20])
        time.sleep(0.3)
    results = read(settings, settings.topic_out, {e.event_id for e in events}, 180)
    assert len(results) == len(events)  # every turn answered, by the primary
    assert {r["model"]["name"] + ":" + r["model"]["version"] for r in results} == {f"{INT8}:1"}
    assert any(r["experiment"]["fallback"] for r in results)
    config = kafka_io.consume_raw(
        settings.bootstrap_servers,
        [settings.topic_experiments],
        until=lambda r: any(
            b"rolled_back" in (x.value or b"") for x in r[settings.topic_experiments]
        ),
        timeout_s=30,
        settle_s=0.5,
    )[settings.topic_experiments]
    rolled = [parse_experiment("*", x.value) for x in config if b"rolled_back" in (x.value or b"")]
    assert rolled and rolled[0].candidates == () and rolled[0].reason
    assert rolled[0].reason.startswith("automatic: candidate error rate")
    assert rolled[0].updated_by.startswith("guard@")
    shown = [orjson.loads(line) for line in cli(env, "show").splitlines()]
    assert shown[0]["state"] == "rolled_back"
