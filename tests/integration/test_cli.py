"""The README run path: `inferstream up`, `demo`, `down` as a user runs them, on other ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.local import port_open
from streams.settings import REPO_ROOT

pytestmark = pytest.mark.integration

PORTS = {
    "INFERSTREAM_KAFKA_PORT": 39092,
    "INFERSTREAM_TRITON_HTTP_PORT": 38000,
    "INFERSTREAM_TRITON_GRPC_PORT": 38001,
    "INFERSTREAM_TRITON_METRICS_PORT": 38002,
    "INFERSTREAM_WEB_PORT": 36999,
}


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ", 1)[1][:1] != "Z"


def test_up_demo_down_leaves_nothing_behind(services: object, tmp_path: Path) -> None:
    # `services` only orders this test after the session's model build; its ports are others.
    env = dict(os.environ) | {k: str(v) for k, v in PORTS.items()}
    env |= {"INFERSTREAM_RUN_DIR": str(tmp_path / "run"), "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    for key in ("INFERSTREAM_BROKER_URL", "INFERSTREAM_TRITON_URL"):
        env.pop(key, None)
    try:
        up = cli(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "worker ready" in up.stdout

        demo = cli(env, "demo", "--burst", "300")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "My card was charged twice" in demo.stdout
        assert "300/300 results" in demo.stdout
        assert "no result" not in demo.stdout
        print(demo.stdout)

        pids = [int(p.read_text()) for p in (tmp_path / "run").rglob("*.pid")]
        assert len(pids) == 3, pids  # kafka, triton, worker
        assert all(alive(p) for p in pids)
    finally:
        down = cli(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in pids if alive(p)]
    ports = [*PORTS.values(), PORTS["INFERSTREAM_KAFKA_PORT"] + 1]  # + the KRaft controller port
    assert not [p for p in ports if port_open(p)]
    assert not list((tmp_path / "run").rglob("*.pid"))
