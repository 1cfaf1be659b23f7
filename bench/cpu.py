"""Where the CPU went during a phase: CPU seconds of each component's process tree (the worker or
naive peer, Triton with its python-backend stubs, the Kafka JVM, this load generator), and the
machine's busy and steal time from /proc/stat (steal = time the hypervisor gave to other guests:
the sign of a shared machine). A JVM's JIT compiler threads are also counted on their own
(``<name>_jit``): a fresh Kafka broker spends minutes compiling, which a broker that has run for
days does not. Linux /proc only; elsewhere the figures are empty.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
Roots = dict[str, Callable[[], int | None]]


@dataclass(frozen=True)
class Sample:
    wall: float
    seconds: dict[str, float]  # CPU seconds per component, cumulative
    busy: float  # machine-wide, seconds summed over CPUs
    steal: float
    total: float


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime + stime in seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _processes() -> dict[int, tuple[int, float]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            out[int(entry.name)] = st
    return out


def _tree(root: int, procs: dict[int, tuple[int, float]]) -> float:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo += children.get(pid, [])
    return total


def _machine() -> tuple[float, float, float]:
    """(busy, steal, total) seconds over all CPUs since boot."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (FileNotFoundError, IndexError):
        return 0.0, 0.0, 0.0
    ticks = [int(x) for x in first[:8]] + [0] * (8 - len(first[:8]))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    total = sum(ticks)
    return (user + nice + system + irq + softirq) / TICK, steal / TICK, total / TICK


JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # HotSpot's, as /proc shows their names


def _jit_seconds(pid: int) -> float:
    """CPU seconds of a JVM's JIT compiler threads."""
    total = 0.0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, PermissionError):
        return 0.0
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(JIT_THREADS):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def pid_file(path: Path) -> Callable[[], int | None]:
    def read() -> int | None:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    return read


class CpuMeter:
    """``sample()`` before and after; ``usage(a, b)`` gives cores used per component.
    ``self_only`` components count their own process, not its children (the load generator
    is the parent of the worker it started)."""

    def __init__(
        self,
        roots: Roots,
        self_only: tuple[str, ...] = ("load",),
        jvms: tuple[str, ...] = ("kafka",),
    ) -> None:
        self.roots = roots
        self.self_only = self_only
        self.jvms = jvms  # their JIT threads are also reported as <name>_jit

    def sample(self) -> Sample:
        procs = _processes() if Path("/proc/self/stat").exists() else {}
        seconds = {}
        for name, root in self.roots.items():
            pid = root()
            if pid is None:
                continue
            if name in self.self_only:
                seconds[name] = procs.get(pid, (0, 0.0))[1]
            else:
                seconds[name] = _tree(pid, procs)
            if name in self.jvms:
                seconds[f"{name}_jit"] = _jit_seconds(pid)
        busy, steal, total = _machine()
        return Sample(time.monotonic(), seconds, busy, steal, total)

    @staticmethod
    def usage(a: Sample, b: Sample, events: int) -> dict[str, Any]:
        wall = b.wall - a.wall
        if wall <= 0:
            return {}
        used = {k: b.seconds[k] - a.seconds[k] for k in b.seconds if k in a.seconds}
        total = b.total - a.total
        busy = (b.busy - a.busy) / wall
        own = sum(v for k, v in used.items() if not k.endswith("_jit"))  # JIT: part of its JVM
        return {
            "wall_s": round(wall, 2),
            "cores": {k: round(v / wall, 2) for k, v in used.items()},
            "cpu_ms_per_event": {k: round(1000 * v / events, 2) for k, v in used.items() if events},
            "machine_busy_cores": round(busy, 2),
            "others_cores": round(max(0.0, busy - own / wall), 2),
            "steal_pct": round(100 * (b.steal - a.steal) / total, 1) if total > 0 else None,
        }
