"""The naive peer: what a team writes without inferstream. One aiokafka consumer (a group, auto
commit), and for each message, one at a time: decode, tokenize (the worker's tokenizer), one Triton
gRPC call with the same model, softmax, produce the result. No micro-batching, no policy check,
no content filter, no signature or text mark: it does less work per event than the worker.

    .venv/bin/python -m bench.naive --bootstrap HOST:PORT --triton HOST:PORT \
        --topic-in T --topic-out T --group G

Prints READY once its partitions are assigned; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import click
import numpy as np
import orjson
import tritonclient.grpc.aio as grpcclient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from workers.inference.tokenizer import ModelTokenizer


class _Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        print(f"READY: assigned {sorted(tp.partition for tp in assigned)}", flush=True)


async def labels_of(client: Any, model: str) -> list[str]:
    cfg = await client.get_model_config(model, as_json=True)
    return [x.strip() for x in cfg["config"]["parameters"]["labels"]["string_value"].split(",")]


@dataclass(frozen=True)
class Options:
    bootstrap: str
    triton: str
    model: str
    topic_in: str
    topic_out: str
    group: str
    max_seq_len: int


async def serve(opts: Options) -> None:
    tokenizer = ModelTokenizer(opts.max_seq_len)
    triton = grpcclient.InferenceServerClient(url=opts.triton)
    labels = await labels_of(triton, opts.model)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=opts.bootstrap,
        group_id=opts.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=opts.bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    consumer.subscribe([opts.topic_in], listener=_Ready())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async for msg in _until(consumer, stop):
            event = orjson.loads(msg.value)
            enc = tokenizer.encode([event["text"]])
            inputs = []
            for name, array in (
                ("input_ids", enc.input_ids),
                ("attention_mask", enc.attention_mask),
            ):
                tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            start = time.perf_counter()
            result = await triton.infer(
                opts.model, inputs, outputs=[grpcclient.InferRequestedOutput("logits")]
            )
            inference_ms = (time.perf_counter() - start) * 1000
            logits = result.as_numpy("logits")[0].astype(np.float64)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            now = time.time()
            out = {
                "event_id": event["event_id"],
                "conversation_id": event["conversation_id"],
                "status": "ok",
                "label": labels[int(probs.argmax())],
                "scores": {lab: round(float(p), 6) for lab, p in zip(labels, probs, strict=True)},
                "backend": "naive",
                "latency_ms": {
                    "inference": round(inference_ms, 3),
                    "end_to_end": round((now - float(event["ts"])) * 1000, 3),
                },
                "produced_at": now,
            }
            await producer.send(opts.topic_out, orjson.dumps(out), key=msg.key)
    finally:
        await consumer.stop()
        await producer.stop()
        await triton.close()


async def _until(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> Any:
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for rec in records:
                yield rec


@click.command(
    "naive", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--bootstrap", required=True, help="Kafka HOST:PORT")
@click.option("--triton", required=True, help="Triton gRPC host:port")
@click.option("--model", default="inferstream_cpu")
@click.option("--topic-in", required=True)
@click.option("--topic-out", required=True)
@click.option("--group", required=True, help="consumer group")
@click.option("--max-seq-len", type=int, default=256)
def main(
    bootstrap: str,
    triton: str,
    model: str,
    topic_in: str,
    topic_out: str,
    group: str,
    max_seq_len: int,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(serve(Options(bootstrap, triton, model, topic_in, topic_out, group, max_seq_len)))


if __name__ == "__main__":
    main()
