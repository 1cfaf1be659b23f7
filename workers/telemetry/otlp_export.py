"""OTLP trace export: requests (``otlp.Encoder``'s bytes) sent over gRPC or HTTP.

Transports follow the OTLP exporter spec: gRPC ``TraceService/Export`` or HTTP ``POST /v1/traces``
(``application/x-protobuf``); retryable failures (gRPC UNAVAILABLE and friends, HTTP 429/502/503/
504) are retried with exponential backoff and jitter within ``timeout_s``; the rest fail at once.
A failed batch is dropped and counted by the pipeline, and logged at most every 30 s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from workers.telemetry.otlp import Encoder

log = logging.getLogger(__name__)

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_GRPC_ENDPOINT = "localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"


class Transport(Protocol):
    """Sends one encoded request; raises ``ExportError`` (``retryable`` or not) on failure."""

    def send(self, body: bytes, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class ExportError(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable, self.retry_after_s = retryable, retry_after_s


class GrpcTransport:
    """OTLP/gRPC: the request bytes as they are (no protobuf objects on this side either).
    ``https://`` endpoints get TLS with the system roots; ``host:port`` and ``http://`` do not."""

    RETRYABLE = frozenset(
        {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
         "UNAVAILABLE", "DATA_LOSS"}
    )  # fmt: skip

    def __init__(self, endpoint: str | None, headers: Mapping[str, str] | None = None) -> None:
        import grpc  # here: only the gRPC exporter needs it

        target = endpoint or DEFAULT_GRPC_ENDPOINT
        secure = target.startswith("https://")
        target = target.removeprefix("https://").removeprefix("http://").rstrip("/")
        self.channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if secure
            else grpc.insecure_channel(target)
        )
        self._call = self.channel.unary_unary(GRPC_METHOD)  # bytes in, bytes out
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items())
        self._rpc_error = grpc.RpcError

    def send(self, body: bytes, timeout_s: float) -> None:
        try:
            reply = self._call(body, timeout=timeout_s, metadata=self._metadata or None)
        except self._rpc_error as exc:
            code = exc.code()  # type: ignore[attr-defined]
            name = code.name if code is not None else "UNKNOWN"
            raise ExportError(
                f"gRPC {name}: {exc.details()}",  # type: ignore[attr-defined]
                retryable=name in self.RETRYABLE,
            ) from None
        _check_partial_success(reply)

    def close(self) -> None:
        self.channel.close()


class HttpTransport:
    """OTLP/HTTP: ``POST <endpoint>`` with ``application/x-protobuf`` (a bare ``scheme://host:port``
    gets ``/v1/traces``)."""

    RETRYABLE = frozenset({429, 502, 503, 504})

    def __init__(self, endpoint: str | None, headers: Mapping[str, str] | None = None) -> None:
        import requests  # here: only the HTTP exporter needs it

        url = endpoint or DEFAULT_HTTP_ENDPOINT
        if url.rstrip("/").count("/") <= 2:  # scheme://host:port
            url = url.rstrip("/") + "/v1/traces"
        self.url = url
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": "application/x-protobuf", **(headers or {})})
        self._request_error = requests.RequestException

    def send(self, body: bytes, timeout_s: float) -> None:
        try:
            reply = self.session.post(self.url, data=body, timeout=timeout_s)
        except self._request_error as exc:
            raise ExportError(f"HTTP: {exc}", retryable=True) from None
        if reply.status_code != 200:
            after = reply.headers.get("Retry-After", "")
            raise ExportError(
                f"HTTP {reply.status_code}: {reply.text[:200]}",
                retryable=reply.status_code in self.RETRYABLE,
                retry_after_s=float(after) if after.isdigit() else None,
            )
        _check_partial_success(reply.content)

    def close(self) -> None:
        self.session.close()


def _check_partial_success(reply: bytes) -> None:
    """An ``ExportTraceServiceResponse`` that rejected some spans: logged, not retried (spec)."""
    if not reply:
        return
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    partial = ExportTraceServiceResponse.FromString(reply).partial_success
    if partial.rejected_spans or partial.error_message:
        log.warning(
            "OTLP receiver rejected %d spans: %s", partial.rejected_spans, partial.error_message
        )


class OtlpSink:
    """Encodes spans as they end (``prepare``: one span, ``prepare_event``: an event's spans at
    once; on the caller's thread, no object kept), then sends batches of them with
    ``transport``, retrying what the spec calls retryable with backoff (0.5 s doubling, ±50 %
    jitter, honouring Retry-After) until ``timeout_s`` has passed; ``shutdown`` cuts a retry
    wait short. A request holds at most about ``max_request_bytes`` (1 MiB: well inside the 4 MiB
    a collector's gRPC receiver takes by default)."""

    max_request_bytes = 1 << 20

    def __init__(self, encoder: Encoder, transport: Transport, *, timeout_s: float = 10.0):
        self.encoder, self.transport, self.timeout_s = encoder, transport, timeout_s
        self.prepare, self.prepare_event = encoder.span, encoder.event
        self._stop = threading.Event()
        self._last_log = 0.0
        self._failed_since_log = 0

    def export(self, spans: Sequence[bytes]) -> bool:
        body = self.encoder.wrap(spans)
        deadline = time.monotonic() + self.timeout_s
        delay = 0.5
        while True:
            left = deadline - time.monotonic()
            try:
                self.transport.send(body, max(0.1, left))
                return True
            except ExportError as exc:
                wait = exc.retry_after_s or delay * random.uniform(0.5, 1.5)
                if not exc.retryable or wait >= deadline - time.monotonic() or self._stop.is_set():
                    self._report(exc)
                    return False
                self._stop.wait(wait)
                delay *= 2

    def _report(self, exc: ExportError) -> None:
        self._failed_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= 30.0:
            log.warning(
                "OTLP export failed (%s): %d requests' spans dropped since the last report "
                "(inferstream_spans_dropped_total counts them)", exc, self._failed_since_log,
            )  # fmt: skip
            self._last_log, self._failed_since_log = now, 0

    def shutdown(self) -> None:
        self._stop.set()
        self.transport.close()
