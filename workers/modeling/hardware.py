"""What this CPU makes of INT8: the build serves an INT8 network only where it pays.

OpenVINO's INT8 kernels are fast where the CPU has an 8-bit dot-product instruction (VNNI, in
AVX-512 or AVX form, or AMX). Measured for this project's model (model card, "Speed"): 2.2-3.1x
FP32's throughput on an AVX-512 VNNI CPU, and no faster than FP32 (64 / 80 / 89 against
62 / 103 / 91 seq/s at batch 1 / 8 / 32) on an AVX2-only one, where 8-bit weights also saturate
and INT8 moved the held-out metrics more. ``auto`` therefore means INT8 (behind its accuracy gate)
with VNNI or AMX, FP32 without.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Precision = Literal["int8", "fp32"]
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo names
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True, slots=True)
class Choice:
    precision: Precision
    reason: str
    requested: bool = False  # named by the caller, not inferred from the CPU


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first processor's feature flags, or None where the file is not there (not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def choose(requested: str, flags: frozenset[str] | None) -> Choice:
    """The precision to build for: ``requested`` is ``int8``, ``fp32`` or ``auto`` (by ``flags``;
    unknown flags try INT8, whose gate still decides)."""
    if requested in ("int8", "fp32"):
        return Choice(requested, f"requested ({requested})", requested=True)  # type: ignore[arg-type]
    if requested != "auto":
        raise ValueError(f"precision must be auto, int8 or fp32, not {requested!r}")
    if flags is None:
        return Choice("int8", "CPU features unknown: INT8, behind its accuracy gate")
    found = [f for f in INT8_FLAGS if f in flags]
    if found:
        return Choice("int8", f"the CPU has {', '.join(found)}: INT8, behind its accuracy gate")
    return Choice(
        "fp32",
        "the CPU has no VNNI or AMX (" + " / ".join(INT8_FLAGS) + "): INT8 would be no faster "
        "than FP32 there, so FP32 is served",
    )
