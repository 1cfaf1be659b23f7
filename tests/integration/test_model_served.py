"""inferstream_cpu in the real Triton equals in-process OpenVINO on the installed network and is
labelled with its precision; the INT8 gate bites (an error where INT8 was asked for, FP32 served
where it was the automatic choice)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from rich.console import Console
from rich.progress import Progress

from streams.settings import Settings
from tests.integration import served
from workers.inference.tokenizer import ModelTokenizer
from workers.modeling import cache, hardware, mt_build, mt_install
from workers.modeling.examples import BIO_TAGS
from workers.modeling.mt_export import openvino_engine
from workers.modeling.multitask import OUTPUT_NAMES as OUTPUTS
from workers.modeling.steps import BuildError
from workers.modeling.taskdata import load_task_data
from workers.modeling.triton_config import parse_parameters

pytestmark = pytest.mark.integration


def _held_out_texts(n: int = 200) -> list[str]:
    held = load_task_data().held_out
    texts = [t.text for t in held.intent[::10][:70]] + [s.text for s in held.safety[::5][:50]]
    texts += [d.text for d in held.entities["clinical_zh"][:30]]
    texts += [d.text for d in held.entities["clinical_en"][:20]]
    return (texts + [d.text for d in held.entities["peoples_daily"]])[:n]


def test_triton_serves_the_installed_network_under_its_label(services: Settings) -> None:
    version = services.model_repo / mt_build.CPU_MODEL / "1"
    local = openvino_engine(version / "model.xml", "f32")
    tok = ModelTokenizer(256)
    client = grpcclient.InferenceServerClient(services.triton_endpoint)
    assert client.is_model_ready(mt_build.CPU_MODEL) and client.is_model_ready(
        "inferstream_replies"
    )
    label = client.get_model_config(mt_build.CPU_MODEL, as_json=True)["config"]["parameters"]
    backend = served.cpu_backend(services.model_repo)
    assert label["backend_label"]["string_value"] == backend
    built_config = services.model_repo / mt_build.CPU_MODEL / "configs" / "built.pbtxt"
    assert built_config.is_file() == (backend == "openvino-fp32")
    replies = json.loads(
        (services.model_repo / "inferstream_replies" / "1" / "replies.json").read_text()
    )
    texts = _held_out_texts()
    assert len(texts) == 200
    worst: dict[str, float] = dict.fromkeys(OUTPUTS, 0.0)
    for text in texts:
        enc = tok.encode([text])
        ids, mask = enc.input_ids, enc.attention_mask
        inputs = [
            grpcclient.InferInput(n, list(ids.shape), "INT64")
            for n in ("input_ids", "attention_mask")
        ]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        result = client.infer(mt_build.CPU_MODEL, inputs)
        want = local(ids, mask)
        for name in OUTPUTS:
            got = result.as_numpy(name)
            assert got is not None and got.shape == want[name].shape, name
            if name == "reply_index":
                assert (got == want[name]).all()
            else:
                worst[name] = max(worst[name], float(np.abs(got - want[name]).max()))
        assert result.as_numpy("token_logits").shape == (1, ids.shape[1], len(BIO_TAGS))
    assert max(worst.values()) < 1e-4, worst
    index = grpcclient.InferInput("reply_index", [1, 3], "INT64")
    index.set_data_from_numpy(result.as_numpy("reply_index"))
    texts_out = client.infer("inferstream_replies", [index]).as_numpy("reply_text")
    assert [t.decode() for t in texts_out[0]] == [
        replies[i] for i in result.as_numpy("reply_index")[0]
    ]


def _build(
    repo: Path, cache_dir: Path, log: Path, tolerance: float, precision: str = "auto"
) -> dict[str, Any]:
    console = Console(file=log.open("a"))
    with Progress(console=console) as progress:
        built = mt_build.build_multitask(
            repo, cache_dir, console, progress, tolerance=tolerance, precision=precision
        )
    return dict(built[mt_build.CPU_MODEL])


def test_int8_asked_for_fails_the_build_when_its_gate_fails(
    services: Settings, tmp_path: Path
) -> None:
    """Only the install reruns: the FP32 stage is the session build's, the INT8 stage is cached
    after its first run."""
    installed = (services.model_repo / mt_build.CPU_MODEL / "1" / "build.json").read_bytes()
    with pytest.raises(BuildError, match="INT8 gate failed"):
        _build(services.model_repo, services.cache_dir, tmp_path / "log.txt", -100.0, "int8")
    assert (services.model_repo / mt_build.CPU_MODEL / "1" / "build.json").read_bytes() == installed


def test_automatic_int8_falls_back_to_fp32_labelled_so(
    services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU with VNNI (told so here), INT8 that fails its gate is not served: the FP32 IR is,
    with a config that says so; once INT8 passes, it is served and that config is gone."""
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    repo = tmp_path / "model_repo"
    shutil.copytree(
        services.model_repo, repo, ignore=shutil.ignore_patterns("[0-9]*", "configs", ".*")
    )
    built_config = repo / mt_build.CPU_MODEL / "configs" / "built.pbtxt"

    failed = _build(repo, services.cache_dir, tmp_path / "log.txt", -100.0)
    assert failed["precision"] == "fp32"
    assert failed["precision_reason"].startswith("INT8 failed its gate (tolerance -100 ")
    fp32_dir = services.cache_dir / "multitask" / f"fp32-{failed['fp32_key'][:24]}"
    version = repo / mt_build.CPU_MODEL / "1"
    assert cache.sha256_file(version / "model.bin") == cache.sha256_file(fp32_dir / "fp32.bin")
    params = parse_parameters(built_config.read_text(encoding="utf-8"))
    tracked = parse_parameters((repo / mt_build.CPU_MODEL / "config.pbtxt").read_text())
    assert params == tracked | {"backend_label": "openvino-fp32"}
    assert tracked["backend_label"] == "openvino-int8"

    passed = _build(repo, services.cache_dir, tmp_path / "log.txt", 100.0)
    assert passed["precision"] == "int8" and passed["int8_key"] == failed["int8_key"]
    int8_dir = services.cache_dir / "multitask" / f"int8-{passed['int8_key'][:24]}"
    assert cache.sha256_file(version / "model.bin") == cache.sha256_file(int8_dir / "model.bin")
    assert not built_config.exists()
    assert mt_install.LABELS["int8"] == tracked["backend_label"]
