"""One real Kafka broker and one real Triton server for the whole test session, on test ports,
shared by tests/integration and tests/reliability (unit tests never ask for them, so nothing
starts for them).

They are started through `streams.local`, i.e. the same deploy/ scripts `inferstream up` uses.
Each test gets its own topics and consumer group; workers run as real processes.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams import local
from streams.admin import ensure_topics
from streams.settings import REPO_ROOT, Settings
from workers.provenance.keys import generate_key_file

# INFERSTREAM_TEST_PORT_BASE moves the whole set (and the run dir) so that two test sessions on one
# machine do not share a broker: Kafka base+1092, Triton base..base+2, worker web ports base+8000+.
PORT_BASE = int(os.environ.get("INFERSTREAM_TEST_PORT_BASE", "28000"))
TEST_PORTS = {
    "INFERSTREAM_KAFKA_PORT": str(PORT_BASE + 1092),
    "INFERSTREAM_TRITON_HTTP_PORT": str(PORT_BASE),
    "INFERSTREAM_TRITON_GRPC_PORT": str(PORT_BASE + 1),
    "INFERSTREAM_TRITON_METRICS_PORT": str(PORT_BASE + 2),
    "INFERSTREAM_RUN_DIR": str(REPO_ROOT / ".run" / f"test-{PORT_BASE}"),
}


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    settings = Settings(
        **{k.removeprefix("INFERSTREAM_").lower(): v for k, v in TEST_PORTS.items()}
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workers.modeling.build import build_models
    from workers.ocr.install import install_ocr

    build_models(  # a cache hit when `make test` built
        settings.model_repo, settings.cache_dir, precision=settings.model_precision
    )
    install_ocr(  # the OCR models' folders (unchanged: nothing to do)
        settings.model_repo, int8=settings.ocr_int8, cache_root=settings.cache_dir
    )
    local.kafka(settings, "start", "--clean")
    try:
        local.triton(settings, "start")
        yield settings
    finally:
        local.triton(settings, "stop")
        local.kafka(settings, "stop")


@pytest.fixture(scope="session")
def watermark_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway Ed25519 signing key for the session (keys never live in code)."""
    key_dir = tmp_path_factory.mktemp("keys")
    generate_key_file(key_dir, "test-k1")
    return key_dir


WorkerFactory = Callable[..., tuple[local.WorkerProcess, Settings]]


@pytest.fixture
def start_worker(services: Settings, watermark_keys: Path) -> Iterator[WorkerFactory]:
    """Start worker processes on fresh topics: `start_worker(**env)` -> (process, settings)."""
    started: list[local.WorkerProcess] = []
    uid = uuid.uuid4().hex[:8]
    topics = {
        "INFERSTREAM_APP_ID": f"test-{uid}",
        "INFERSTREAM_TOPIC_IN": f"t-{uid}.in",
        "INFERSTREAM_TOPIC_OUT": f"t-{uid}.out",
        "INFERSTREAM_TOPIC_DEADLETTER": f"t-{uid}.dead",
        "INFERSTREAM_TOPIC_POLICIES": f"t-{uid}.policies",
        "INFERSTREAM_TOPIC_MODERATION": f"t-{uid}.moderation",
        "INFERSTREAM_TOPIC_ANALYTICS": f"t-{uid}.analytics",
        "INFERSTREAM_TOPIC_DOCUMENTS_IN": f"t-{uid}.documents.in",
        "INFERSTREAM_TOPIC_DOCUMENTS_OUT": f"t-{uid}.documents.out",
        "INFERSTREAM_TOPIC_EXPERIMENTS": f"t-{uid}.experiments",
        "INFERSTREAM_TOPIC_EXPERIMENT_EVENTS": f"t-{uid}.experiments.events",
        "INFERSTREAM_WATERMARK_KEY_DIR": str(watermark_keys),
    }
    created = False

    def start(**extra: str) -> tuple[local.WorkerProcess, Settings]:
        nonlocal created
        env = dict(os.environ) | TEST_PORTS | topics
        env |= {"INFERSTREAM_WEB_PORT": str(PORT_BASE + 8000 + len(started)), "HF_HUB_OFFLINE": "1"}
        env |= extra
        settings = Settings(
            **{
                k.removeprefix("INFERSTREAM_").lower(): v
                for k, v in env.items()
                if k.startswith("INFERSTREAM_")
            }
        )
        if not created:  # before any producer could auto-create them with broker defaults
            asyncio.run(ensure_topics(settings))
            created = True
        proc = local.WorkerProcess(settings, env, name=f"worker-{uid}-{len(started)}")
        proc.start()
        started.append(proc)
        proc.wait_ready()
        return proc, settings

    yield start
    for proc in started:
        proc.stop()
