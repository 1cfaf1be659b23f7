"""produce / tail / demo: small aiokafka clients for people at a terminal (and the README demo)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from rich.console import Console
from rich.table import Table

from streams.admin import ensure_topics, topic_partitions
from streams.records import ConversationEvent, DocumentEvent
from streams.samples import (
    POLICY_TENANTS,
    SAMPLE_NOTE,
    SAMPLE_TURNS,
    sample_events,
    sample_image_png,
)
from streams.security import kafka_client_kwargs
from streams.settings import Settings
from workers.provenance.textmark import strip

console = Console()


async def publish_policy(settings: Settings, tenant: str, value: bytes | None) -> None:
    """Write one record (None = tombstone) to the compacted policies topic, key = tenant."""
    await publish_one(settings, settings.topic_policies, tenant.encode(), value)


async def publish_one(settings: Settings, topic: str, key: bytes, value: bytes | None) -> None:
    """One record (None = tombstone), acknowledged by all in-sync replicas."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", **kafka_client_kwargs(settings)
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def scan(
    settings: Settings, topic: str, timeout_s: float | None = None
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every committed record of ``topic`` from its beginning to its end when the scan began
    (no group). ``timeout_s``: how long to wait for the topic to exist (None: no limit)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic, timeout_s=timeout_s)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    yield rec
    finally:
        await consumer.stop()


def allow_all_policy(tenant: str, version: int) -> bytes:
    """A permissive policy: every department and role may use every capability; PII masked."""
    return orjson.dumps(
        {
            "schema": "inferstream.policy/v1",
            "tenant": tenant,
            "version": version,
            "default": "deny",
            "rules": [
                {
                    "department": "*",
                    "role": "*",
                    "capabilities": ["conversation.reply", "document.extract"],
                    "unmasked": [],
                }
            ],
        }
    )


async def produce(
    settings: Settings,
    values: Iterable[tuple[bytes | None, bytes]]
    | Callable[[], Iterable[tuple[bytes | None, bytes]]],
    topic: str | None = None,
) -> int:
    """Send ``values`` (key, value) to ``topic`` (default: the conversations input topic).
    A callable is called once the producer is connected: events stamped there carry the time
    they were sent, not the time the client took to start."""
    await ensure_topics(settings)  # never let a producer auto-create them with broker defaults
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        **kafka_client_kwargs(settings),
    )
    await producer.start()
    sent = 0
    try:
        records = values() if callable(values) else values
        futures = [
            await producer.send(topic or settings.topic_in, key=key, value=value)
            for key, value in records
        ]
        await asyncio.gather(*futures)
        sent = len(futures)
    finally:
        await producer.stop()
    return sent


def events_as_records(events: Iterable[ConversationEvent]) -> Iterable[tuple[bytes, bytes]]:
    return ((ev.conversation_id.encode(), ev.to_json()) for ev in events)


def file_records(path: Path) -> Iterable[tuple[bytes | None, bytes]]:
    """One event per line (JSON lines), sent as the exact bytes of the line."""
    for line in path.read_bytes().splitlines():
        if line.strip():
            key = None
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict) and isinstance(obj.get("conversation_id"), str):
                    key = obj["conversation_id"].encode()
            except orjson.JSONDecodeError:
                pass
            yield key, line


async def _end_offsets_consumer(settings: Settings, topics: list[str]) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition of `topics`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    parts = [tp for t in topics for tp in await topic_partitions(consumer, t)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:  # resolve positions now, before anything is produced
        await consumer.position(tp)
    return consumer


async def tail(
    settings: Settings, topic: str, count: int | None, timeout_s: float, from_beginning: bool
) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        group_id=None,
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    seen = 0
    try:
        parts = await topic_partitions(consumer, topic)
        consumer.assign(parts)
        if from_beginning:
            await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        while (count is None or seen < count) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    console.print_json(rec.value.decode("utf-8", "replace"))
                    seen += 1
    finally:
        await consumer.stop()
    return seen


async def demo(settings: Settings, repeat: int, burst: int, timeout_s: float = 120.0) -> float:
    """Send the sample dialogues, print their results, then time a burst: returns events/s."""
    run_id = uuid.uuid4().hex[:8]
    for tenant in POLICY_TENANTS:  # newest version wins: re-running the demo re-applies them
        await publish_policy(settings, tenant, allow_all_policy(tenant, int(time.time())))
    consumer = await _end_offsets_consumer(settings, [settings.topic_out])
    try:
        samples = list(sample_events(f"demo-{run_id}", repeat=repeat))
        await produce(settings, lambda: events_as_records(_stamped(samples)))
        results = await _collect(consumer, {ev.event_id for ev in samples}, timeout_s)
        _print_results(samples, results)

        await _demo_document(settings, run_id, timeout_s)
        await _demo_image(settings, run_id, consumer, timeout_s)
        base = list(sample_events(f"burst-{run_id}", repeat=burst // SAMPLE_TURNS + 1))[:burst]
        start = time.perf_counter()
        events = list(_stamped(base))
        await produce(settings, events_as_records(events))
        burst_results = await _collect(consumer, {ev.event_id for ev in events}, timeout_s)
        elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
    rate = len(burst_results) / elapsed
    e2e = sorted(r["latency_ms"]["end_to_end"] for r in burst_results.values())
    console.print(
        f"[bold]burst:[/] {len(burst_results)}/{len(events)} results in {elapsed:.2f}s = "
        f"[bold green]{rate:.0f} events/s[/], end-to-end latency p50 {e2e[len(e2e) // 2]:.0f} ms, "
        f"p99 {e2e[int(len(e2e) * 0.99)]:.0f} ms"
    )
    if len(burst_results) != len(events):
        raise RuntimeError(f"{len(events) - len(burst_results)} burst events got no result")
    return rate


def _stamped(events: Iterable[ConversationEvent]) -> Iterator[ConversationEvent]:
    """The events with the time now as their ``ts`` (latency counts from here)."""
    now = time.time()
    return (replace(ev, ts=now) for ev in events)


async def _demo_document(settings: Settings, run_id: str, timeout_s: float) -> None:
    """The sample Chinese clinical note through the document flow: its grouped entities."""
    doc = DocumentEvent(f"note-{run_id}", "clinic", SAMPLE_NOTE, time.time())
    consumer = await _end_offsets_consumer(settings, [settings.topic_documents_out])
    try:
        record = (doc.document_id.encode(), doc.to_json())
        await produce(settings, [record], topic=settings.topic_documents_in)
        got = await _collect(consumer, {doc.document_id}, timeout_s, key="document_id")
    finally:
        await consumer.stop()
    result = got.get(doc.document_id)
    if result is None:
        raise RuntimeError("the sample clinical note got no result")
    console.print(f"[bold]document[/] {SAMPLE_NOTE}")
    for kind, items in result.get("grouped", {}).items():
        found = ", ".join(f"{i['text']} [{i['start']}:{i['end']}]" for i in items)
        console.print(f"  [bold]{kind}[/]: {found}")


async def _demo_image(
    settings: Settings, run_id: str, consumer: AIOKafkaConsumer, timeout_s: float
) -> None:
    """A photographed note as an image turn: the lines OCR read, masked, with their boxes."""
    event_id = f"image-{run_id}"
    event: dict[str, Any] = {
        "event_id": event_id,
        "conversation_id": f"clinic-image-{run_id}",
        "tenant": "clinic",
        "user_id": "demo",
        "text": "",
        "ts": time.time(),
        "attachments": [
            {
                "id": "note",
                "media_type": "image/png",
                "data": base64.b64encode(sample_image_png()).decode("ascii"),
            }
        ],
    }
    await produce(settings, [(event["conversation_id"].encode(), orjson.dumps(event))])
    got = await _collect(consumer, {event_id}, timeout_s)
    result = got.get(event_id)
    if result is None:
        raise RuntimeError("the sample image turn got no result")
    console.print(
        f"[bold]image turn[/] ({result['source']}): intent {result['label']}, "
        f"{result['latency_ms']['end_to_end']:.0f} ms"
    )
    for image in result["ocr"] or []:
        for line in image["lines"]:
            console.print(f"  {line['text']!r}  conf {line['confidence']:.2f}  box {line['box']}")
        for red in image["redactions"]:
            console.print(f"  [bold]masked[/] {red['type']} on line {red['line']} at {red['box']}")
    found = ", ".join(f"{e['type']} {e['text']!r}" for e in result.get("entities") or [])
    console.print(f"  entities: {found}")


async def _collect(
    consumer: AIOKafkaConsumer, wanted: set[str], timeout_s: float, key: str = "event_id"
) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < len(wanted) and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for rec in records:
                value = orjson.loads(rec.value)
                if value.get(key) in wanted:
                    got[value[key]] = value
    return got


def _print_results(events: list[ConversationEvent], results: dict[str, dict[str, Any]]) -> None:
    table = Table(title="inferstream demo: conversation turns and what came out")
    for col in ("tenant", "conversation", "turn", "intent / status", "score", "sentiment", "ms"):
        table.add_column(col)
    masked = []
    for ev in events:
        res = results.get(ev.event_id)
        conv = "-".join(ev.conversation_id.rsplit("-", 2)[-2:])
        if res is None:
            table.add_row(ev.tenant, conv, ev.text, "[red]no result[/]", "", "", "")
            continue
        feeling = ""
        if res["status"] == "ok":
            outcome, score = res["label"], f"{res['scores'][res['label']]:.2f}"
            if res.get("sentiment"):
                feeling = f"{res['sentiment']['label']} {res['sentiment']['score']:.2f}"
        else:
            outcome, score = f"[yellow]{res['status']}: {res['reason']}[/]", ""
        ms = f"{res['latency_ms']['end_to_end']:.0f}"
        table.add_row(ev.tenant, conv, ev.text, outcome, score, feeling, ms)
        if (res.get("filter") or {}).get("action") == "mask":
            masked.append((ev.text, strip(res["text"]), res["provenance"]["provenance_id"]))
    console.print(table)
    for original, output, pid in masked:
        console.print(f"[bold]masked:[/] {original!r}\n   -> {output!r}  (signed, marked: {pid})")
    missing = [ev.event_id for ev in events if ev.event_id not in results]
    if missing:
        raise RuntimeError(f"{len(missing)} sample events got no result: {missing[:5]}")
