"""What the two OCR python_backend models share (``ocr_det``, ``ocr_rec``).

The build copies this file, ``openvino_model.py`` and ``workers/ocr/processing.py`` (as
``ocr_processing.py``) into each version folder beside ``model.py``; read from the tracked tree
they are found here and in the ``workers`` package. Thin by design: ``initialize`` compiles
``<version>/model.xml`` (the INT8 IR, where the build's gate chose it) if present, else
``<version>/model.onnx`` (FP32, as shipped), with the config's OpenVINO properties; ``execute``
answers each request on its own (one response per request, a bad request gets an error
response, the rest are served).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from openvino_model import (  # noqa: E402
    RequestError,
    _error_response,
    compile_properties,
    parse_parameters,
)

try:
    import ocr_processing as processing
except ImportError:  # the tracked tree
    from workers.ocr import processing

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests)
    pb_utils = None

__all__ = ["OcrModel", "RequestError", "error_response", "processing"]


class OcrModel:
    """Compiles the version folder's ``model.xml``, or its ``model.onnx`` where there is no IR;
    subclasses implement ``answer``."""

    def initialize(self, args: dict[str, str]) -> None:
        import openvino as ov

        config = json.loads(args["model_config"])
        self.params = parse_parameters(config)
        niceness = lower_priority(int(self.params.get("nice", "0") or 0))
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.version_dir = version_dir
        ir = version_dir / "model.xml"
        self.model_file = ir if ir.is_file() else version_dir / "model.onnx"
        self.compiled = ov.Core().compile_model(
            str(self.model_file), "CPU", compile_properties(self.params)
        )
        self.request = self.compiled.create_infer_request()
        if pb_utils is not None and hasattr(pb_utils, "Logger"):
            name = args.get("model_name", "")
            pb_utils.Logger.log_info(
                f"{name}: {self.model_file.name} on OpenVINO {ov.get_version()} {self.params}, "
                f"nice {niceness}"
            )
        self.setup()

    def setup(self) -> None:
        """After compiling: read what the model needs, warm it up."""

    def run(self, tensor: Any) -> Any:
        self.request.infer({0: tensor})
        return self.request.get_output_tensor(0).data.copy()

    def answer(self, request: Any) -> list[Any]:
        raise NotImplementedError

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._one(r, self.answer) for r in requests]

    @staticmethod
    def _one(request: Any, answer: Callable[[Any], list[Any]]) -> Any:
        try:
            return pb_utils.InferenceResponse(output_tensors=answer(request))
        except RequestError as exc:
            return _error_response(str(exc))
        except Exception as exc:  # the others in the batch are still served
            return _error_response(f"inference failed: {exc}", "INTERNAL")

    def finalize(self) -> None:
        self.request = None
        self.compiled = None


def lower_priority(niceness: int) -> int:
    """Give every thread of this stub process the scheduler niceness ``niceness`` (0: leave it)
    and return what the process runs at. Called before OpenVINO compiles, so the threads it
    starts inherit it: on a host whose cores the text model shares, CFS then gives an image's
    OCR what the text path leaves (nice 10 weighs 110 against 1024 at nice 0), so text turns
    are not held back, and OCR still gets every idle cycle. Raising niceness needs no
    privilege; one that cannot be set is logged and the model serves at normal priority."""
    if niceness > 0:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), niceness)
            except OSError as exc:  # a thread gone meanwhile, or a sandbox that forbids it
                if pb_utils is not None and hasattr(pb_utils, "Logger"):
                    pb_utils.Logger.log_warn(f"setpriority({tid}, {niceness}): {exc}")
    return os.getpriority(os.PRIO_PROCESS, 0)


def error_response(message: str, code: str = "INVALID_ARG") -> Any:
    return _error_response(message, code)


def input_array(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"input {name!r} is required")
    return tensor.as_numpy()
