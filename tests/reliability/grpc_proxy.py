"""A gRPC pass-through proxy in front of Triton's gRPC port, for fault injection in tests.

Every call is forwarded as raw bytes to the real Triton (never decoded, never re-encoded), so the
worker talks to the real server and the real model. Two switches act on ``ModelInfer`` only:

* ``delay_s``: sleep before forwarding (a slow server or network);
* ``poison``: a token-id sequence; a request whose ``input_ids`` contain it in any row is refused
  with ``INVALID_ARGUMENT`` without reaching Triton, just as the python backend refuses a request
  it cannot validate (``model.py`` ``RequestError``), and every other request is served.

The served model offers no input that the worker can send and it refuses (the tokenizer caps the
length at the model's own ``max_seq_len`` and only emits in-vocabulary ids), hence this hook.
It runs its own event loop in a daemon thread; ``port`` is chosen by the OS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

INFER = "/inference.GRPCInferenceService/ModelInfer"
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def contains_sequence(row: np.ndarray[Any, Any], seq: np.ndarray[Any, Any]) -> bool:
    n = len(seq)
    if n == 0 or len(row) < n:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(row, n)
    return bool(np.any(np.all(windows == seq, axis=1)))


def input_rows(request: bytes, name: str = "input_ids") -> np.ndarray[Any, Any] | None:
    """The ``[B, L]`` int64 tensor ``name`` of a serialized ``ModelInferRequest``, if present."""
    msg = service_pb2.ModelInferRequest.FromString(request)
    for i, tensor in enumerate(msg.inputs):
        if tensor.name == name and i < len(msg.raw_input_contents):
            flat = np.frombuffer(msg.raw_input_contents[i], dtype=np.int64)
            return flat.reshape([int(d) for d in tensor.shape])
    return None


class TritonProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.delay_s = 0.0
        self.poison: np.ndarray[Any, Any] = np.zeros(0, dtype=np.int64)
        self.infer_calls = 0
        self.refused = 0
        self.batch_sizes: list[int] = []  # rows of every ModelInfer call while poison is set
        self.refused_batches: list[int] = []  # rows of the calls refused for the poison
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def set_poison(self, token_ids: Sequence[int]) -> None:
        self.poison = np.asarray(token_ids, dtype=np.int64)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="triton-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"proxy did not start: {self._error!r}")

    def stop(self) -> None:
        """Cancel the calls in flight and stop; a daemon thread that outlives this is harmless."""
        if self._loop is not None and self._server is not None:
            stopping = asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                stopping.result(timeout=15)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        channel = grpc.aio.insecure_channel(self.upstream, options=_UNLIMITED)
        self._server = grpc.aio.server(options=_UNLIMITED)
        self._server.add_generic_rpc_handlers((_Handler(self, channel),))
        self.port = self._server.add_insecure_port(f"{self.host}:0")
        await self._server.start()
        self._ready.set()
        await self._server.wait_for_termination()
        await channel.close()

    # -- per call -----------------------------------------------------------------------------

    def _poisoned(self, request: bytes) -> bool:
        if not len(self.poison):
            return False
        rows = input_rows(request)
        if rows is None:
            return False
        self.batch_sizes.append(int(rows.shape[0]))
        if any(contains_sequence(row, self.poison) for row in rows):
            self.refused_batches.append(int(rows.shape[0]))
            return True
        return False

    async def forward(
        self, channel: grpc.aio.Channel, method: str, request: bytes, context: Any
    ) -> bytes:
        if method == INFER:
            self.infer_calls += 1
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            if self._poisoned(request):
                self.refused += 1
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "input_ids contain the poison marker (proxy)"
                )
        call = channel.unary_unary(method)  # no (de)serializers: bytes in, bytes out
        try:
            timeout = context.time_remaining() or 60.0
            response: bytes = await call(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        return response


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no stubs
    def __init__(self, proxy: TritonProxy, channel: grpc.aio.Channel) -> None:
        self.proxy = proxy
        self.channel = channel

    def service(self, handler_call_details: Any) -> Any:
        method = handler_call_details.method

        async def unary(request: bytes, context: Any) -> bytes:
            return await self.proxy.forward(self.channel, method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)
