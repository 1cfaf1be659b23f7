"""What the OpenVINO python_backend models share (``minilm_cpu``, ``inferstream_cpu``).

Triton ignores files at the top of a model repository; the build copies this file into each
version folder beside ``model.py``, which imports it from there (or, read from the tracked tree,
from here). Thin by design: ``initialize`` reads the config and compiles ``<version>/model.xml``;
``execute`` validates each request, pads the valid ones into one batch, runs it once and returns
exactly one response per request (a bad request gets an error response, the others are served).
Only numpy and openvino are needed here (never torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton, e.g. to unit-test the helpers below
    pb_utils = None

IntArray = npt.NDArray[np.int64]
_REPORTED = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")


class RequestError(ValueError):
    """This request is invalid; it gets an error response, the rest of the batch is served."""


def parse_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a Triton model config (JSON form) as ``{key: string_value}``."""
    raw = model_config.get("parameters", {}) or {}
    return {k: str(v.get("string_value", "")) for k, v in raw.items()}


def compile_properties(params: Mapping[str, str]) -> dict[str, Any]:
    """The OpenVINO compile properties of the config's parameters (bench/ceiling.py compiles the
    in-process ceiling with these too)."""
    props: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": params.get("inference_precision", "f32"),
        "PERFORMANCE_HINT": params.get("performance_hint", "LATENCY"),
    }
    if int(params.get("num_streams", "0") or 0) > 0:
        props["NUM_STREAMS"] = int(params["num_streams"])
    if int(params.get("num_threads", "0") or 0) > 0:
        props["INFERENCE_NUM_THREADS"] = int(params["num_threads"])
    if params.get("cpu_pinning"):  # "false" with several instances: each would pin core 0
        props["ENABLE_CPU_PINNING"] = params["cpu_pinning"].lower() == "true"
    return props


def validate(ids: IntArray, mask: IntArray, max_seq_len: int, vocab_size: int) -> None:
    """Raise :class:`RequestError` unless ``ids``/``mask`` are a usable ``[b, L]`` pair."""
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise RequestError(f"input_ids {ids.shape} and attention_mask {mask.shape} must match, 2-D")
    batch, length = ids.shape
    if batch < 1 or length < 1:
        raise RequestError(f"empty input {ids.shape}")
    if length > max_seq_len:
        raise RequestError(f"sequence length {length} exceeds max_seq_len {max_seq_len}")
    if vocab_size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise RequestError(f"input_ids outside [0, {vocab_size})")
    if np.any((mask != 0) & (mask != 1)):
        raise RequestError("attention_mask must be 0/1")


def pad_and_stack(pairs: Sequence[tuple[IntArray, IntArray]]) -> tuple[IntArray, IntArray]:
    """Right-pad every ``(ids, mask)`` to the longest length (pad id 0, mask 0) and stack."""
    total = sum(ids.shape[0] for ids, _ in pairs)
    length = max(ids.shape[1] for ids, _ in pairs)
    out_ids = np.zeros((total, length), dtype=np.int64)
    out_mask = np.zeros((total, length), dtype=np.int64)
    row = 0
    for ids, mask in pairs:
        b, n = ids.shape
        out_ids[row : row + b, :n] = ids
        out_mask[row : row + b, :n] = mask
        row += b
    return out_ids, out_mask


def split_rows(array: npt.NDArray[Any], sizes: Sequence[int]) -> list[npt.NDArray[Any]]:
    """Split ``array`` along axis 0 into contiguous chunks of ``sizes`` rows."""
    return [np.ascontiguousarray(a) for a in np.split(array, np.cumsum(sizes)[:-1])]


def _error_response(message: str, code: str = "INVALID_ARG") -> Any:
    try:
        error = pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
    except (AttributeError, TypeError):
        error = pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


class OpenVINOModel:
    """Triton's entry point for an OpenVINO IR; a model's ``model.py`` subclasses it and sets:

    ``OUTPUTS`` (their order), ``INT_OUTPUTS`` (INT64 ones; the rest are FP32),
    ``SEQUENCE_OUTPUTS`` (``[b, L, ...]`` ones, cut back to each request's own length),
    ``WARMUP_IDS`` (one short input run at start) and :meth:`check_build`.
    """

    OUTPUTS: ClassVar[tuple[str, ...]] = ()
    INT_OUTPUTS: ClassVar[frozenset[str]] = frozenset()
    SEQUENCE_OUTPUTS: ClassVar[tuple[str, ...]] = ()
    WARMUP_IDS: ClassVar[tuple[int, ...]] = (0, 2)

    def check_build(self, build: Mapping[str, Any], params: Mapping[str, str]) -> int:
        """Raise ValueError where the built folder and the config disagree; return the vocab size
        inputs are checked against (0: unchecked)."""
        return 0

    def initialize(self, args: dict[str, str]) -> None:
        import openvino as ov

        config = json.loads(args["model_config"])
        params = parse_parameters(config)
        self.labels = params["labels"].split(",")
        self.max_seq_len = int(params.get("max_seq_len", "256"))
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        build = json.loads((version_dir / "build.json").read_text(encoding="utf-8"))
        if build.get("labels") != self.labels:
            raise ValueError(f"config labels {self.labels} != built labels {build.get('labels')}")
        self.vocab_size = self.check_build(build, params)
        props = compile_properties(params)
        self.compiled = ov.Core().compile_model(str(version_dir / "model.xml"), "CPU", props)
        self.request = self.compiled.create_infer_request()
        if pb_utils is not None and hasattr(pb_utils, "Logger"):
            effective = {k: str(self.compiled.get_property(k)) for k in _REPORTED}
            name = args.get("model_name", "")
            pb_utils.Logger.log_info(f"{name}: OpenVINO {ov.get_version()} {effective}")
        self._infer(np.array([self.WARMUP_IDS], dtype=np.int64), np.ones((1, 2), dtype=np.int64))

    def _infer(self, ids: IntArray, mask: IntArray) -> dict[str, Any]:
        self.request.infer({"input_ids": ids, "attention_mask": mask})
        return {
            name: np.array(
                self.request.get_tensor(name).data,
                dtype=np.int64 if name in self.INT_OUTPUTS else np.float32,
                copy=True,
            )
            for name in self.OUTPUTS
        }

    def _inputs(self, request: Any) -> tuple[IntArray, IntArray]:
        ids_t = pb_utils.get_input_tensor_by_name(request, "input_ids")
        mask_t = pb_utils.get_input_tensor_by_name(request, "attention_mask")
        if ids_t is None or mask_t is None:
            raise RequestError("input_ids and attention_mask are both required")
        ids = ids_t.as_numpy().astype(np.int64, copy=False)
        mask = mask_t.as_numpy().astype(np.int64, copy=False)
        validate(ids, mask, self.max_seq_len, self.vocab_size)
        return ids, mask

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        valid: list[int] = []
        pairs: list[tuple[IntArray, IntArray]] = []
        for i, request in enumerate(requests):
            try:
                pairs.append(self._inputs(request))
            except RequestError as exc:
                responses[i] = _error_response(str(exc))
                continue
            valid.append(i)
        if not valid:
            return responses
        try:
            outputs = self._infer(*pad_and_stack(pairs))
        except Exception as exc:  # every pending request gets the error
            for i in valid:
                responses[i] = _error_response(f"inference failed: {exc}", "INTERNAL")
            return responses
        chunks = {
            name: split_rows(outputs[name], [ids.shape[0] for ids, _ in pairs])
            for name in self.OUTPUTS
        }
        for n, i in enumerate(valid):
            length = pairs[n][0].shape[1]
            for name in self.SEQUENCE_OUTPUTS:
                chunks[name][n] = np.ascontiguousarray(chunks[name][n][:, :length])
            tensors = [pb_utils.Tensor(name, chunks[name][n]) for name in self.OUTPUTS]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.request = None
        self.compiled = None
