"""The services a benchmark run needs, on the benchmark's own ports: Kafka and Triton (through
``streams.local``, i.e. the deploy/ scripts), inferstream worker processes and naive-peer
processes. Each worker or peer gets fresh topics and a fresh consumer group, so no run sees
another's backlog.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import local
from streams.admin import ensure_topics
from streams.console import allow_all_policy, publish_policy
from streams.settings import REPO_ROOT, Settings

TENANT = "bench"


@dataclass(frozen=True)
class Ports:
    """Where the benchmark's own services listen (kept clear of other people's ranges)."""

    kafka: int = 45092  # the KRaft controller takes kafka + 1
    triton_http: int = 44000
    web: int = 44066
    run_dir: Path = REPO_ROOT / ".run" / "bench"

    @property
    def triton_pid_file(self) -> Path:
        return self.run_dir / f"triton-{self.triton_http + 1}" / "triton.pid"

    @property
    def kafka_pid_file(self) -> Path:
        return self.run_dir / f"kafka-{self.kafka}" / "kafka.pid"

    @property
    def env(self) -> dict[str, str]:
        return {
            "INFERSTREAM_KAFKA_PORT": str(self.kafka),
            "INFERSTREAM_TRITON_HTTP_PORT": str(self.triton_http),
            "INFERSTREAM_TRITON_GRPC_PORT": str(self.triton_http + 1),
            "INFERSTREAM_TRITON_METRICS_PORT": str(self.triton_http + 2),
            "INFERSTREAM_RUN_DIR": str(self.run_dir),
            "INFERSTREAM_WEB_PORT": str(self.web),
        }


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings from these INFERSTREAM_* values; bench.run drops its own INFERSTREAM_* variables
    at start, so nothing else comes in."""
    values: dict[str, Any] = {
        k.removeprefix("INFERSTREAM_").lower(): v
        for k, v in env.items()
        if k.startswith("INFERSTREAM_")
    }
    return Settings(**values)


def clean_environ() -> dict[str, str]:
    """This process's environment without any INFERSTREAM_* (ours are set explicitly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERSTREAM_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


@dataclass
class Services:
    """Kafka + Triton on the benchmark ports; stops only what it started itself."""

    ports: Ports
    started: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return settings_from_env(self.ports.env)

    def start(self, log: object = print) -> None:
        settings = self.settings
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        if local.port_open(settings.kafka_port):
            _say(log, f"reusing the Kafka already on port {settings.kafka_port}")
        else:
            local.kafka(settings, "start", "--clean")
            self.started.append("kafka")
        if local.port_open(settings.triton_http_port):
            local.triton(settings, "start")  # exits 0 when ready; fails if the port is foreign
            _say(log, f"reusing the Triton already on port {settings.triton_http_port}")
        else:
            local.triton(settings, "start")
            self.started.append("triton")

    def stop(self) -> None:
        settings = self.settings
        if "triton" in self.started:
            local.triton(settings, "stop")
        if "kafka" in self.started:
            local.kafka(settings, "stop")
        self.started.clear()


def _say(log: object, line: str) -> None:
    if callable(log):
        log(line)


def topic_env(prefix: str) -> dict[str, str]:
    """A fresh app id and a fresh name for every topic setting (``topic_*`` fields that name a
    topic, whatever the worker's version has): nothing left over from an earlier run is read."""
    uid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {"INFERSTREAM_APP_ID": uid}
    for name, spec in Settings.model_fields.items():
        if name.startswith("topic_") and spec.annotation is str:
            env[f"INFERSTREAM_{name.upper()}"] = f"{uid}.{name.removeprefix('topic_')}"
    return env


def watermark_key_dir(ports: Ports) -> Path:
    from workers.provenance.keys import generate_key_file

    key_dir = ports.run_dir / "keys"
    if not list(key_dir.glob("*.pem")):
        generate_key_file(key_dir, "bench-k1")
    return key_dir


def bindable_port(preferred: int, tries: int = 100) -> int:
    """``preferred`` if a server could bind it now, else the next port that could."""
    for port in range(preferred, preferred + tries):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise ProcessFailed(f"no bindable port in {preferred}..{preferred + tries - 1}")


class ProcessFailed(RuntimeError):
    """A worker or naive peer exited, or never became ready."""


@dataclass
class Worker:
    """One inferstream worker process (``python -m streams worker``) on fresh topics.

    ``knobs`` are INFERSTREAM_* settings for it (max_batch, max_wait_ms, ...). The allow-all
    policy for the benchmark tenant is published before the worker starts, so its policy table
    holds it once it is ready.
    """

    ports: Ports
    knobs: dict[str, str]
    name: str = "worker"
    env: dict[str, str] = field(init=False)
    settings: Settings = field(init=False)
    proc: local.WorkerProcess = field(init=False)

    def __post_init__(self) -> None:
        # the default ports lie in Linux's ephemeral range: a client socket may hold one
        web = {"INFERSTREAM_WEB_PORT": str(bindable_port(self.ports.web))}
        ours = self.ports.env | web | topic_env("bench") | self.knobs
        ours["INFERSTREAM_WATERMARK_KEY_DIR"] = str(watermark_key_dir(self.ports))
        self.env = clean_environ() | ours
        self.settings = settings_from_env(ours)
        self.proc = local.WorkerProcess(self.settings, self.env, name=self.name)

    def start(self, timeout_s: float = 180.0) -> float:
        """Create the topics, publish the policy, start the worker; returns seconds to ready."""
        begin = time.monotonic()
        asyncio.run(_prepare(self.settings))
        self.proc.log_path.unlink(missing_ok=True)
        self.proc.start()
        try:
            self.proc.wait_ready(timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise ProcessFailed(f"worker did not start: {exc}") from exc
        return time.monotonic() - begin

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def pid(self) -> int | None:
        return self.proc.pid()

    def alive(self) -> bool:
        return self.proc.pid() is not None

    def tail(self, lines: int = 30) -> str:
        return self.proc.tail(lines)

    def stop(self, grace_s: float = 15.0) -> None:
        self.proc.stop(grace_s=grace_s)
        deadline = time.monotonic() + 10
        while local.port_open(self.settings.web_port) and time.monotonic() < deadline:
            time.sleep(0.2)


async def _prepare(settings: Settings) -> None:
    await ensure_topics(settings)
    await publish_policy(settings, TENANT, allow_all_policy(TENANT, int(time.time())))


@dataclass
class NaivePeer:
    """The plain consumer -> Triton -> producer loop of bench/naive.py, as its own process."""

    ports: Ports
    name: str = "naive"
    settings: Settings = field(init=False)
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.settings = settings_from_env(self.ports.env | topic_env("naive"))

    @property
    def log_path(self) -> Path:
        return self.ports.run_dir / f"{self.name}.log"

    def start(self, timeout_s: float = 120.0) -> float:
        begin = time.monotonic()
        asyncio.run(ensure_topics(self.settings))
        s = self.settings
        cmd = [
            sys.executable, "-m", "bench.naive",
            "--bootstrap", s.bootstrap_servers, "--triton", s.triton_endpoint,
            "--model", s.model_name, "--topic-in", s.topic_in, "--topic-out", s.topic_out,
            "--group", s.app_id, "--max-seq-len", str(s.max_seq_len),
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=clean_environ(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ProcessFailed(f"naive peer exited:\n{self.tail()}")
            if "READY" in self.log_path.read_text(errors="replace"):
                return time.monotonic() - begin
            time.sleep(0.3)
        self.stop()
        raise ProcessFailed(f"naive peer not ready in {timeout_s:.0f}s:\n{self.tail()}")

    def pid(self) -> int | None:
        return self.popen.pid if self.alive() and self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            local.stop_process_group(self.popen.pid, grace_s)
            self.popen.wait()
        self.popen = None
