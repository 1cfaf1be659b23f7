"""Local (embedded) services: the Kafka broker and Triton via deploy/ scripts, and worker processes.

`inferstream up/down` and the integration-test fixtures both use this module, so what the tests
start is what users start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.settings import REPO_ROOT, Settings
from workers.telemetry import taskdump

KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
TRITON_SCRIPT = REPO_ROOT / "deploy" / "triton" / "triton.sh"


# The engine's line once its partitions are assigned and their tables restored (aiokafka logs
# "Revoking previously assigned partitions" earlier: not a match).
ASSIGNED = "[INFO] assigned "


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        INFERSTREAM_KAFKA_PORT=str(settings.kafka_port),
        INFERSTREAM_TRITON_HTTP_PORT=str(settings.triton_http_port),
        INFERSTREAM_TRITON_GRPC_PORT=str(settings.triton_grpc_port),
        INFERSTREAM_TRITON_METRICS_PORT=str(settings.triton_metrics_port),
        INFERSTREAM_MODEL_REPO=str(settings.model_repo),
        INFERSTREAM_RUN_DIR=str(settings.run_dir),
        INFERSTREAM_CACHE_DIR=str(settings.cache_dir),
    )
    env.update(extra)
    return env


def _script(script: Path, action: str, settings: Settings, *args: str) -> None:
    subprocess.run(["bash", str(script), action, *args], env=service_env(settings), check=True)


def kafka(settings: Settings, action: str, *args: str) -> None:
    _script(KAFKA_SCRIPT, action, settings, *args)


def triton(settings: Settings, action: str) -> None:
    _script(TRITON_SCRIPT, action, settings)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def new_kid() -> str:
    return "k" + time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def dev_keys(settings: Settings) -> Path:
    """A local folder with one watermark key, made on first use (for `up` without configured
    keys). Production sets INFERSTREAM_WATERMARK_KEY_DIR or INFERSTREAM_WATERMARK_KEYS."""
    from workers.provenance.keys import generate_key_file

    key_dir = settings.run_dir / "keys"
    if not list(key_dir.glob("*.pem")):
        generate_key_file(key_dir, new_kid())
    return key_dir


@dataclass
class WorkerProcess:
    """A Faust worker in its own process group, logging to a file."""

    settings: Settings
    env: dict[str, str]
    name: str = "worker"
    # the log is appended to across runs: what this start wrote begins here (``wait_log``
    # must not find the "assigned" of an earlier run, or `up` returns before the worker joined)
    log_from: int = field(default=0, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.settings.run_dir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    def start(self) -> int:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.log_from = log.tell()
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_path.write_text(str(proc.pid))
        return proc.pid

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until the worker joined its group and restored its partitions' tables (its
        engine logs "assigned ..."; Faust's own "Ready" comes before that)."""
        self.wait_log(ASSIGNED, timeout_s)

    def log_since_start(self) -> str:
        """What this worker (started by this object) has logged so far."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_from)
            return log.read().decode(errors="replace")

    def wait_log(self, text: str, timeout_s: float = 120.0, *, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the worker's log (e.g. "assigned")."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise RuntimeError(f"worker exited; see {self.log_path}:\n{self.tail()}")
            if self.log_since_start().count(text) >= count:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{text!r} not in {self.log_path} after {timeout_s:.0f}s")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def diagnose(self, lines: int = 60, wait_s: float = 5.0) -> str:
        """What a stuck worker is doing: its last ``lines`` log lines (aiokafka's per-retry
        lines are already collapsed in the worker, ``workers.telemetry.logfilter``) and a dump of
        its asyncio tasks (SIGUSR1, see ``workers.telemetry.taskdump``)."""
        pid = self.pid()
        if pid is None:
            return f"worker not running; log tail:\n{self.tail(lines)}"
        before = self.log_path.read_text(errors="replace").count(taskdump.HEADER)
        os.kill(pid, signal.SIGUSR1)
        with contextlib.suppress(TimeoutError):
            self.wait_log(taskdump.HEADER, wait_s, count=before + 1)
        text = self.log_path.read_text(errors="replace")
        at = text.rfind(taskdump.HEADER) if text.count(taskdump.HEADER) > before else len(text)
        tail = text[:at].splitlines()[-lines:]
        return "\n".join(tail) + "\n" + (text[at:] or "(no task dump)")

    def stop(self, grace_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if pid is not None:
            stop_process_group(pid, grace_s, sig)
        self.pid_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0): reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return "Z"


def stop_process_group(pid: int, grace_s: float, sig: int = signal.SIGTERM) -> None:
    """Signal a process group, then SIGKILL it if it outlives the grace period (a Faust worker can
    hang at 'Fetcher: Stopping…')."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.1)
