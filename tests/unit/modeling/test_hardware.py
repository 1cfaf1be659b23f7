"""Which precision a build aims at, from what the CPU can do."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.modeling.hardware import choose, cpu_flags

AVX2 = "fpu sse2 avx avx2 fma bmi2"
VNNI = AVX2 + " avx512f avx512bw avx512_vnni"


def _cpuinfo(tmp_path: Path, flags: str, key: str = "flags") -> Path:
    path = tmp_path / "cpuinfo"
    body = f"processor\t: 0\nmodel name\t: Some CPU\n{key}\t\t: {flags}\n\nprocessor\t: 1\n"
    path.write_text(body + f"{key}\t\t: {flags}\n", encoding="utf-8")
    return path


def test_flags_are_read_from_the_first_processor(tmp_path: Path) -> None:
    assert cpu_flags(_cpuinfo(tmp_path, VNNI)) == frozenset(VNNI.split())
    assert cpu_flags(_cpuinfo(tmp_path, "fp asimd", key="Features")) == {"fp", "asimd"}
    assert cpu_flags(tmp_path / "absent") is None


@pytest.mark.parametrize("flag", ["avx512_vnni", "avx_vnni", "amx_int8"])
def test_auto_is_int8_with_an_8_bit_dot_product(flag: str) -> None:
    choice = choose("auto", frozenset([*AVX2.split(), flag]))
    assert choice.precision == "int8" and flag in choice.reason and "gate" in choice.reason


def test_auto_is_fp32_on_avx2_alone() -> None:
    choice = choose("auto", frozenset(AVX2.split()))
    assert choice.precision == "fp32" and "no VNNI" in choice.reason


def test_unknown_flags_try_int8_and_a_request_is_kept() -> None:
    assert choose("auto", None).precision == "int8"
    assert choose("int8", frozenset(AVX2.split())) == choose("int8", None)
    assert choose("int8", None).precision == "int8"
    assert choose("fp32", frozenset(VNNI.split())).precision == "fp32"
    assert choose("int8", None).requested and not choose("auto", None).requested
    with pytest.raises(ValueError, match="auto, int8 or fp32"):
        choose("bf16", None)
