"""The config.pbtxt readers the build and the benchmark use, on the tracked CPU model config."""

from __future__ import annotations

from streams.settings import REPO_ROOT
from workers.modeling.triton_config import parse_instance_count, parse_parameters

CONFIG = REPO_ROOT / "model_repo" / "inferstream_cpu" / "config.pbtxt"


def test_instance_count_ignores_comments_and_defaults_to_one() -> None:
    assert parse_instance_count('# instance_group [ { count: 9 } ]\nname: "m"') == 1
    assert parse_instance_count("instance_group [ { count: 3, kind: KIND_CPU } ]") == 3
    assert parse_instance_count(CONFIG.read_text()) == 2


def test_served_knobs_are_read_from_the_tracked_config() -> None:
    params = parse_parameters(CONFIG.read_text())
    assert params["num_threads"] == "1" and params["cpu_pinning"] == "false"
    assert params["performance_hint"] == "LATENCY"
