"""Hostile input through the real broker, a real worker and the real Triton: every record is
accounted for (exactly one dead letter with the right reason, or exactly one result), the worker
stays up and keeps producing, and the valid events mixed in all come out."""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from streams.settings import Settings
from tests.conftest import WorkerFactory
from tests.integration import kafka_io
from tests.reliability import hostile
from tests.reliability.hostile import Case
from tests.reliability.support import allow_tenants, as_records, result_ids, valid_turns
from workers.provenance.envelope import HEADER_ENVELOPE
from workers.provenance.keys import KeyRing
from workers.provenance.verify import verify_record

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

MiB = 1024 * 1024
BIG_TOPIC = {"max.message.bytes": str(16 * MiB), "retention.ms": str(3600_000)}
HYPOTHESIS_EXAMPLES = 200
LONG_CONVERSATION_TURNS = 300
VALID = 200


def test_broker_refuses_10mb_record_on_a_default_topic(services: Settings) -> None:
    """What the broker does with a 10 MB record when the topic keeps the default limit
    (message.max.bytes ~1 MB): it refuses it (the client limit raised so that it is sent)."""
    topic = f"rel-{uuid.uuid4().hex[:8]}.default"
    kafka_io.create_topic(services.bootstrap_servers, topic, 1, {})
    big = b"x" * 10_000_000
    [sent] = kafka_io.produce_each(
        services.bootstrap_servers, topic, [(b"k", big, [])], max_request_size=16 * MiB
    )
    assert isinstance(sent, MessageSizeTooLargeError), sent
    [client_side] = kafka_io.produce_each(services.bootstrap_servers, topic, [(b"k", big, [])])
    assert isinstance(client_side, MessageSizeTooLargeError), client_side  # default 1 MiB
    print(f"\n10 MB on a default topic: broker says {type(sent).__name__}: {sent}")


def interleave(fixed: list[Case], hostile_cases: list[Case], seed: int) -> list[Case]:
    """Hostile cases at random places among `fixed`, whose order is kept."""
    out = list(fixed)
    rng = random.Random(seed)
    for case in hostile_cases:
        out.insert(rng.randrange(len(out) + 1), case)
    return out


def valid_cases() -> list[Case]:
    turns = valid_turns("valid", VALID, hostile.ALLOWED_TENANTS)
    return [
        Case(e.event_id, raw, ("ok", ""), key=key, event_id=e.event_id)
        for e, (key, raw) in zip(turns, as_records(turns), strict=True)
    ]


def check_result(case: Case, record: Any, value: dict[str, Any], keys: KeyRing) -> list[str]:
    kind, reason = case.expect
    problems = []
    status = value["status"]
    if kind == "ok" and status not in ("ok", "blocked"):
        problems.append(f"{case.name}: status {status} ({value.get('reason')}), expected ok")
    if kind == "denied" and (status, value["reason"]) != ("denied", reason):
        problems.append(f"{case.name}: {status}/{value['reason']}, expected denied/{reason}")
    headers = [(k, v) for k, v in record.headers]
    if not verify_record(value, keys).authentic:
        problems.append(f"{case.name}: the result's provenance does not verify")
    if sum(1 for k, _ in headers if k == HEADER_ENVELOPE) != 1:
        problems.append(f"{case.name}: not exactly one {HEADER_ENVELOPE} header")
    if dict(headers).get("inferstream-event-id") != value["event_id"].encode():
        problems.append(f"{case.name}: inferstream-event-id header is not the event id")
    if any(hostile.FORGED_ID in v or v in (b"second-copy", b"someone-else") for _, v in headers):
        problems.append(f"{case.name}: a forged input header reached the output")
    if hostile.FORGED_ID.decode() in orjson.dumps(value["provenance"]).decode():
        problems.append(f"{case.name}: the forged provenance id reached the result")
    return problems


def check_dead_letter(case: Case, value: dict[str, Any], topic_in: str) -> list[str]:
    problems = []
    if case.expect[0] != "dead":
        return [f"{case.name}: dead letter {value['reason']} ({value['detail']}), expected result"]
    if value["reason"] != case.expect[1]:
        problems.append(f"{case.name}: reason {value['reason']}, expected {case.expect[1]}")
    if value["source"]["topic"] != topic_in:
        problems.append(f"{case.name}: source topic {value['source']['topic']}")
    original = base64.b64decode(value.get("original_b64") or "")
    if value.get("original_truncated"):  # a large input: a prefix, with its size and SHA-256
        if not (0 < len(original) < len(case.raw) and case.raw.startswith(original)):
            problems.append(f"{case.name}: original_b64 is not a prefix of the input")
        if value.get("original_size") != len(case.raw):
            problems.append(f"{case.name}: original_size is not the input's size")
        if value.get("original_sha256") != hashlib.sha256(case.raw).hexdigest():
            problems.append(f"{case.name}: original_sha256 is not the input's SHA-256")
    elif original != case.raw:
        problems.append(f"{case.name}: original_b64 is not the exact input bytes")
    key_b64 = value["source"]["key_b64"]
    if (base64.b64decode(key_b64) if key_b64 is not None else None) != case.key:
        problems.append(f"{case.name}: source key_b64 is not the input key")
    return problems


@dataclass
class Accounting:
    results: int = 0
    dead: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def send_and_account(
    settings: Settings, topic_in: str, cases: list[Case], keys: KeyRing, timeout_s: float
) -> Accounting:
    """Produce `cases` in order, read outputs and dead letters until there are as many as cases
    (then 3 s more, for duplicates) and check that each case got exactly its one outcome."""
    assert len({c.event_id for c in cases if c.expect[0] != "dead"}) == sum(
        1 for c in cases if c.expect[0] != "dead"
    ), "result event ids must be unique"
    start = time.perf_counter()
    sent = kafka_io.produce_each(
        settings.bootstrap_servers,
        topic_in,
        [(c.key, c.raw, c.headers) for c in cases],
        max_request_size=16 * MiB,
    )
    refused = [(c.name, s) for c, s in zip(cases, sent, strict=True) if isinstance(s, Exception)]
    assert not refused, refused
    by_offset = {(s.partition, s.offset): c for c, s in zip(cases, sent, strict=True)}
    by_event_id = {c.event_id: c for c in cases if c.expect[0] != "dead"}
    out_topics = [settings.topic_out, settings.topic_deadletter]
    out = kafka_io.consume_raw(
        settings.bootstrap_servers,
        out_topics,
        until=lambda r: sum(len(r[t]) for t in out_topics) >= len(cases),
        timeout_s=timeout_s,
        settle_s=3.0,
    )
    acc = Accounting(seconds=time.perf_counter() - start)
    results, dead = out[settings.topic_out], out[settings.topic_deadletter]
    acc.results, acc.dead = len(results), len(dead)
    seen: Counter[str] = Counter()
    orders: dict[str, list[str]] = {}
    for record in results:
        value = orjson.loads(record.value)
        case = by_event_id.get(value["event_id"])
        if case is None:
            acc.problems.append(f"a result for an unexpected event id {value['event_id']!r}")
            continue
        seen[case.name] += 1
        acc.problems += check_result(case, record, value, keys)
        orders.setdefault(value["conversation_id"], []).append(value["event_id"])
    for record in dead:
        value = orjson.loads(record.value)
        acc.reasons[value["reason"]] += 1
        src = value["source"]
        case = by_offset.get((src["partition"], src["offset"]))
        if case is None:
            acc.problems.append(f"a dead letter for an unknown input {src}")
            continue
        seen[case.name] += 1
        acc.problems += check_dead_letter(case, value, topic_in)
    acc.problems += [
        f"{c.name}: no output (expected {c.expect})" for c in cases if not seen[c.name]
    ]
    acc.problems += [f"{c.name}: {seen[c.name]} outputs" for c in cases if seen[c.name] > 1]
    for conversation in ("hp-long-conversation", *(f"valid-conv-{i}" for i in range(31))):
        ids = orders.get(conversation, [])
        if ids != sorted(ids):
            acc.problems.append(f"results of {conversation} are out of order")
    return acc


def assert_still_producing(worker: Any, settings: Settings, topic_in: str, pid: int | None) -> None:
    """The worker process is the same one and it still turns valid events into results."""
    canaries = valid_turns(f"canary-{uuid.uuid4().hex[:4]}", 20, hostile.ALLOWED_TENANTS)
    kafka_io.produce(settings.bootstrap_servers, topic_in, as_records(canaries))
    want = {e.event_id for e in canaries}
    ids = result_ids(settings.bootstrap_servers, settings.topic_out, want, timeout_s=60)
    assert Counter(i for i in ids if i in want) == Counter(want), worker.tail()
    assert worker.pid() == pid, worker.tail()


def test_hostile_events_each_get_a_dead_letter_or_a_result(
    start_worker: WorkerFactory, watermark_keys: Path
) -> None:
    worker, settings = start_worker()
    pid = worker.pid()
    allow_tenants(settings, hostile.ALLOWED_TENANTS)
    generated = hostile.hypothesis_cases(
        HYPOTHESIS_EXAMPLES,
        max_text_bytes=settings.max_text_bytes,
        max_event_bytes=settings.max_event_bytes,
    )
    picked = hostile.hand_picked(settings.max_text_bytes)
    ordered = hostile.long_conversation(LONG_CONVERSATION_TURNS) + valid_cases()
    cases = interleave(ordered, picked + generated, seed=11)

    acc = send_and_account(
        settings, settings.topic_in, cases, KeyRing.from_dir(watermark_keys), timeout_s=120
    )
    print(
        f"\n{len(cases)} records ({len(picked)} hand-picked, {len(generated)} hypothesis, "
        f"{LONG_CONVERSATION_TURNS} turns of one conversation, {VALID} valid) -> "
        f"{acc.results} results + {acc.dead} dead letters in {acc.seconds:.1f}s; "
        f"dead letters by reason: {dict(sorted(acc.reasons.items()))}"
    )
    assert not acc.problems, f"{len(acc.problems)} problems:\n" + "\n".join(acc.problems[:40])
    assert_still_producing(worker, settings, settings.topic_in, pid)
    assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.tail(60)


def test_oversized_events_get_dead_letters_and_the_worker_goes_on(
    start_worker: WorkerFactory, services: Settings, watermark_keys: Path
) -> None:
    """A 900 kB text (under the broker's default message size and under max_event_bytes: any
    producer can send it to an ordinary topic) and 2 MB and 10 MB events (the input topic is
    created with max.message.bytes = 16 MiB), among 40 valid turns: one dead letter each
    (text_too_long, event_too_large), every valid turn comes out, the worker goes on.

    A dead letter carrying such an input whole (base64: 4/3 of it) would not fit the
    dead-letter topic's default ~1 MB limit: it carries a prefix (original_truncated) with the
    input's size and SHA-256, which must match."""
    topic_in = f"rel-{uuid.uuid4().hex[:8]}.in"
    kafka_io.create_topic(
        services.bootstrap_servers, topic_in, services.topic_partitions, BIG_TOPIC
    )
    worker, settings = start_worker(INFERSTREAM_TOPIC_IN=topic_in)
    pid = worker.pid()
    allow_tenants(settings, hostile.ALLOWED_TENANTS)
    big = hostile.oversized(settings.max_event_bytes)
    cases = interleave(valid_cases()[:40], big, seed=3)
    keys = KeyRing.from_dir(watermark_keys)
    acc = send_and_account(settings, topic_in, cases, keys, timeout_s=45)
    print(
        f"\n900 kB + 2 MB + 10 MB events + 40 valid -> {acc.results} results + {acc.dead} dead "
        f"letters in {acc.seconds:.1f}s; by reason: {dict(sorted(acc.reasons.items()))}"
    )
    assert not acc.problems, f"{len(acc.problems)} problems:\n" + "\n".join(acc.problems[:40])
    assert_still_producing(worker, settings, topic_in, pid)
