"""Async Triton client (gRPC) for the turn classifier, with errors mapped onto our hierarchy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from workers.errors import InferenceRejected, InferenceUnavailable
from workers.inference.tokenizer import DEFAULT_TOKENIZER

# gRPC codes after which the same request may succeed later (server starting, overloaded, slow).
_RETRIABLE = {
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "CANCELLED",
    "UNKNOWN",
    "NOT_FOUND",  # NOT_FOUND: the model is (re)loading
}


def map_error(exc: InferenceServerException) -> InferenceUnavailable | InferenceRejected:
    code = str(exc.status() or "UNKNOWN").rsplit(".", 1)[-1]
    detail = f"{code}: {exc.message()}"
    return InferenceUnavailable(detail) if code in _RETRIABLE else InferenceRejected(detail)


# Outputs beyond logits + embedding that a model may declare; requested only when it does.
OPTIONAL_OUTPUTS = ("sentiment", "safety", "token_logits")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    labels: list[str]
    backend: str
    max_seq_len: int
    outputs: tuple[str, ...] = ("logits", "embedding")
    entity_labels: tuple[str, ...] = ()
    tokenizer: str = DEFAULT_TOKENIZER  # the config's ``tokenizer`` parameter


@dataclass(frozen=True, slots=True)
class InferenceOutput:
    logits: npt.NDArray[Any]  # [B, C]
    embedding: npt.NDArray[Any]  # [B, D]
    model_version: str
    seconds: float
    safety: npt.NDArray[Any] | None = None  # [B, 2] logits (safe, unsafe)
    sentiment: npt.NDArray[Any] | None = None  # [B, 2] logits (negative, positive)
    token_logits: npt.NDArray[Any] | None = None  # [B, L, T] BIO logits
    backend: str | None = None  # set by the router: the route that served the batch
    model_name: str | None = None


class TritonClassifierClient:
    """Holds one gRPC channel; ``info()`` reads labels and limits from the model's config.
    ``model_version`` "" asks for the version Triton serves by default (its highest loaded);
    a number pins that version (experiments)."""

    def __init__(
        self, url: str, model_name: str, timeout_s: float, model_version: str = ""
    ) -> None:
        self.url = url
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self._client: Any = None
        self._info: ModelInfo | None = None

    def _conn(self) -> Any:
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(url=self.url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def info(self) -> ModelInfo:
        if self._info is None:
            try:
                version = self.model_version
                cfg = await self._conn().get_model_config(
                    self.model_name, version, as_json=True, client_timeout=self.timeout_s
                )
                meta = await self._conn().get_model_metadata(
                    self.model_name, version, as_json=True, client_timeout=self.timeout_s
                )
            except InferenceServerException as exc:
                raise map_error(exc) from exc
            params = {k: v.get("string_value", "") for k, v in cfg["config"]["parameters"].items()}
            declared = {o["name"] for o in meta.get("outputs", [])}
            entity_labels = params.get("entity_labels", "")
            self._info = ModelInfo(
                name=self.model_name,
                version=self.model_version or str(max(meta.get("versions", ["1"]), key=int)),
                labels=[x.strip() for x in params["labels"].split(",")],
                backend=params.get("backend_label", "unknown"),
                max_seq_len=int(params.get("max_seq_len", "256")),
                outputs=("logits", "embedding", *(o for o in OPTIONAL_OUTPUTS if o in declared)),
                entity_labels=tuple(x.strip() for x in entity_labels.split(",") if x.strip()),
                tokenizer=params.get("tokenizer") or DEFAULT_TOKENIZER,
            )
        return self._info

    async def ready(self) -> bool:
        """Whether Triton reports the model ready (for health checks and routing probes)."""
        try:
            return bool(
                await self._conn().is_model_ready(
                    self.model_name, self.model_version, client_timeout=self.timeout_s
                )
            )
        except InferenceServerException:
            return False

    async def infer(
        self, input_ids: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
    ) -> InferenceOutput:
        inputs = []
        for name, array in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        info = await self.info()
        outputs = [grpcclient.InferRequestedOutput(n) for n in info.outputs]
        start = time.perf_counter()
        try:
            result = await self._conn().infer(
                self.model_name,
                inputs,
                model_version=self.model_version,
                outputs=outputs,
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            raise map_error(exc) from exc
        seconds = time.perf_counter() - start
        response = result.get_response()
        optional = {n: result.as_numpy(n) for n in OPTIONAL_OUTPUTS if n in info.outputs}
        return InferenceOutput(
            logits=result.as_numpy("logits"),
            embedding=result.as_numpy("embedding"),
            model_version=str(response.model_version),
            seconds=seconds,
            **optional,
        )
