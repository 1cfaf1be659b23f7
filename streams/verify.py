"""`inferstream verify` against Kafka: the checks live in ``workers.provenance.verify``; this
module finds the record a text fragment came from on the output topic, by its provenance id."""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any

import orjson

from streams.console import scan
from streams.settings import Settings
from workers.provenance import textmark
from workers.provenance.envelope import Envelope
from workers.provenance.keys import KeyRing
from workers.provenance.verify import Verdict, verify_record, verify_text


def describe(verdict: Verdict, record: dict[str, Any] | None) -> str:
    head = "AUTHENTIC" if verdict.authentic else "NOT AUTHENTIC"
    if verdict.provenance_id is None:
        return f"{head}: {verdict.reason}"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(verdict.timestamp or 0))
    event = f" event_id={record.get('event_id')}" if record else ""
    kind = (
        ""
        if verdict.whole_output is None
        else (
            " (whole output)"
            if verdict.whole_output
            else f" (traced: {verdict.copies} mark copies)"
        )
    )
    return (
        f"{head}: {verdict.reason}{kind}.{event} model={verdict.model_name}:"
        f"{verdict.model_version} backend={verdict.backend} at={at} "
        f"provenance_id={verdict.provenance_id} kid={verdict.kid}"
    )


def check_record(record: dict[str, Any], keys: KeyRing) -> tuple[bool, str]:
    verdict = verify_record(record, keys)
    return verdict.authentic, describe(verdict, record)


async def check_text(settings: Settings, text: str, keys: KeyRing) -> tuple[bool, str]:
    """Trace ``text`` by its mark to the record on the output topic, then verify against it."""
    record = None
    hits = textmark.extract(text, keys) if keys.private_kids else []
    if hits:
        record = await find_record(settings, hits[0].provenance_id)
    envelope = Envelope.from_dict(record["provenance"]) if record else None
    verdict = verify_text(
        text, keys, lambda pid: envelope if envelope and envelope.provenance_id == pid else None
    )
    return verdict.authentic and record is not None, describe(verdict, record)


async def find_record(settings: Settings, provenance_id: str) -> dict[str, Any] | None:
    """Scan the output topic (from the beginning to its current end) for the provenance id."""
    needle = provenance_id.encode()
    try:
        async with aclosing(scan(settings, settings.topic_out, timeout_s=5.0)) as records:
            async for rec in records:
                if rec.value and needle in rec.value:
                    value: dict[str, Any] = orjson.loads(rec.value)
                    if value.get("provenance", {}).get("provenance_id") == provenance_id:
                        return value
    except TimeoutError:  # no output topic yet
        return None
    return None
