"""inferstream_cpu in the real Triton equals in-process OpenVINO INT8; the INT8 gate bites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from rich.console import Console
from rich.progress import Progress

from streams.settings import Settings
from workers.inference.tokenizer import ModelTokenizer
from workers.modeling import mt_build
from workers.modeling.examples import BIO_TAGS
from workers.modeling.mt_export import openvino_engine
from workers.modeling.multitask import OUTPUT_NAMES as OUTPUTS
from workers.modeling.steps import BuildError
from workers.modeling.taskdata import load_task_data

pytestmark = pytest.mark.integration


def _held_out_texts(n: int = 200) -> list[str]:
    held = load_task_data().held_out
    texts = [t.text for t in held.intent[::10][:70]] + [s.text for s in held.safety[::5][:50]]
    texts += [d.text for d in held.entities["clinical_zh"][:30]]
    texts += [d.text for d in held.entities["clinical_en"][:20]]
    return (texts + [d.text for d in held.entities["peoples_daily"]])[:n]


def test_triton_int8_equals_in_process_openvino(services: Settings) -> None:
    version = services.model_repo / mt_build.CPU_MODEL / "1"
    local = openvino_engine(version / "model.xml", "f32")
    tok = ModelTokenizer(256)
    client = grpcclient.InferenceServerClient(services.triton_endpoint)
    assert client.is_model_ready(mt_build.CPU_MODEL) and client.is_model_ready(
        "inferstream_replies"
    )
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


def test_int8_gate_fails_the_build_with_an_impossible_tolerance(
    services: Settings, tmp_path: Path
) -> None:
    """Only the INT8 stage reruns (the FP32 stage is cached by the session build)."""
    installed = (services.model_repo / mt_build.CPU_MODEL / "1" / "build.json").read_bytes()
    console = Console(file=(tmp_path / "log.txt").open("w"))
    with Progress(console=console) as progress, pytest.raises(BuildError, match="INT8 gate failed"):
        mt_build.build_multitask(
            services.model_repo, services.cache_dir, console, progress, tolerance=-100.0,
        )  # fmt: skip
    assert (services.model_repo / mt_build.CPU_MODEL / "1" / "build.json").read_bytes() == installed
