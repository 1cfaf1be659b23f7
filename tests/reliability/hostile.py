"""Hostile input for the worker: hand-picked cases with their expected outcome, and a hypothesis
strategy of mutated events whose outcome an oracle (``expected_outcome``) predicts.

An outcome is ``("dead", reason)`` (a dead letter with that reason code), ``("ok", "")`` (a
result, status ok or blocked: the content filter may block a generated text) or
``("denied", reason)`` (a result with status denied and that reason).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from typing import Any
from unittest import mock

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.records import CONVERSATION_SCHEMA, decode_conversation
from workers.errors import InvalidEvent

ALLOWED_TENANTS = ("acme", "globex")
UNKNOWN_TENANT = "no-such-tenant"
Outcome = tuple[str, str]
Headers = list[tuple[str, bytes]]
DROP = object()  # a field value meaning "leave the field out"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: Outcome
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    event_id: str | None = None  # the id a result must carry (results only)


def event(event_id: str, /, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": event_id,
        "conversation_id": f"conv-{event_id}",
        "tenant": "acme",
        "user_id": "u1",
        "text": "Hello, my order arrived damaged, can you help?",
        "ts": time.time(),
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not DROP}


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"n": value}
    return value


def nested_json(depth: int) -> bytes:
    return b'{"n":' * depth + b"1" + b"}" * depth


def with_raw(obj: dict[str, Any], name: str, raw_json: bytes) -> bytes:
    """`obj` as JSON with field `name` set to the given raw JSON text."""
    return orjson.dumps(obj | {name: "@@RAW@@"}).replace(b'"@@RAW@@"', raw_json)


def forged_provenance_headers() -> Headers:
    """Headers that look like a signed envelope from our own key id, but are made up."""
    envelope = {
        "v": 1,
        "provenance_id": "deadbeefdeadbeef",
        "model_name": "inferstream_cpu",
        "model_version": "1",
        "backend": "openvino-int8",
        "input_digest": "0" * 64,
        "output_digest": "0" * 64,
        "policy_version": "1",
        "trace_id": "",
        "kid": "test-k1",
        "signature": "Zm9yZ2VkLXNpZ25hdHVyZQ==",
    }
    return [
        ("inferstream-provenance", orjson.dumps(envelope)),
        ("inferstream-provenance-kid", b"test-k1"),
        ("inferstream-provenance-sig", b"Zm9yZ2VkLXNpZ25hdHVyZQ=="),
        ("inferstream-provenance-sig", b"second-copy"),
    ]


FORGED_ID = b"deadbeefdeadbeef"


def hand_picked(max_text_bytes: int) -> list[Case]:
    """Every kind of bad input we know of, plus valid-but-odd events that must come out."""
    cases: list[Case] = []

    def dead(name: str, raw: bytes, reason: str, **kw: Any) -> None:
        cases.append(Case(name, raw, ("dead", reason), key=f"hp-{name}".encode(), **kw))

    def ok(name: str, obj: dict[str, Any] | bytes, **kw: Any) -> None:
        raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
        event_id = kw.pop("event_id", None) or (
            obj.get("event_id") if isinstance(obj, dict) else None
        )
        key = kw.pop("key", f"hp-{name}".encode())
        cases.append(Case(name, raw, ("ok", ""), key=key, event_id=event_id, **kw))

    def dumps(name: str, **fields: Any) -> bytes:
        return orjson.dumps(event(f"hp-{name}", **fields))

    # --- not JSON -------------------------------------------------------------------------
    dead("truncated", b'{"event_id": "hp-truncated", "text": "hel', "bad_json")
    dead("trailing_garbage", dumps("trailing_garbage") + b"}}", "bad_json")
    dead("nan", dumps("nan").replace(b'"ts":', b'"ts":NaN,"x":'), "bad_json")
    dead("infinity", dumps("infinity").replace(b'"ts":', b'"ts":1e400,"x":'), "bad_json")
    dead("single_quotes", b"{'event_id': 'hp-single_quotes'}", "bad_json")
    dead(
        "raw_control_char",
        dumps("raw_control_char", text="nul\\u0000").replace(b"\\u0000", b"\x00"),
        "bad_json",
    )
    raw_newline = dumps("raw_newline", text="a\nb").replace(b"a\\nb", b"a\nb")
    dead("raw_newline", raw_newline, "bad_json")
    dead(
        "lone_surrogate_escape",
        dumps("lone_surrogate_escape", text="X").replace(b'"X"', b'"\\ud800"'),
        "bad_json",
    )
    dead("bom", b"\xef\xbb\xbf" + dumps("bom"), "bad_json")
    dead("whitespace_only", b" \n\t ", "bad_json")
    dead("deep_array_unclosed", b"[" * 100_000, "bad_json")
    # orjson refuses nesting deeper than 1024
    dead("deep_2000", with_raw(event("hp-deep_2000"), "extra", nested_json(2000)), "bad_json")
    # --- not UTF-8 ------------------------------------------------------------------------
    for name, bad in [
        ("lone_continuation", b"\x80"),
        ("overlong", b"\xc0\xaf"),
        ("surrogate_bytes", b"\xed\xa0\x80"),
        ("truncated_multibyte", b"\xe2\x82"),
        ("latin1", b"caf\xe9"),
    ]:
        dead(f"utf8_{name}", dumps(f"utf8_{name}", text="T-T").replace(b"T-T", bad), "invalid_utf8")
    # --- JSON, not an event object --------------------------------------------------------
    for i, raw in enumerate([b'"just a string"', b"null", b"42", b"[]", b"true", b"[{}]"]):
        dead(f"not_object_{i}", raw, "not_an_object")
    dead("empty", b"", "empty_event")
    # --- missing fields and wrong types ---------------------------------------------------
    for name in ("event_id", "conversation_id", "tenant", "user_id", "text", "ts"):
        dead(f"missing_{name}", dumps(f"missing_{name}", **{name: DROP}), "missing_field")
    dead("missing_all", b"{}", "missing_field")
    for name, value in [
        ("event_id", 123),
        ("tenant", None),
        ("user_id", ["u"]),
        ("conversation_id", {"a": 1}),
        ("text", {"a": 1}),
        ("text", 42),
        ("ts", True),
        ("ts", [1]),
        ("ts", None),
        ("metadata", [1, 2]),
        ("metadata", "x"),
    ]:
        tag = f"type_{name}_{type(value).__name__}"
        dead(tag, dumps(tag, **{name: value}), "wrong_type")
    # --- right types, unacceptable values -------------------------------------------------
    dead("empty_event_id", orjson.dumps(event("")), "invalid_field")
    dead("long_event_id", orjson.dumps(event("e" * 257)), "invalid_field")
    for name, value in [
        ("ts_negative", -1),
        ("ts_words", "yesterday"),
        ("ts_naive_iso", "2024-01-01T00:00:00"),
        ("metadata_nested", {"a": {"b": 1}}),
        ("metadata_deep", nested(100)),
        ("metadata_33_keys", {f"k{i}": i for i in range(33)}),
        ("metadata_long_value", {"k": "v" * 1025}),
    ]:
        field_name = "ts" if name.startswith("ts") else "metadata"
        dead(name, dumps(name, **{field_name: value}), "invalid_field")
    # --- text ---------------------------------------------------------------------------
    for i, text in enumerate(["", " \n\t ", "\x1c\x1d\x1e\x1f", "\u2028\u3000\u00a0"]):
        dead(f"empty_text_{i}", dumps(f"empty_text_{i}", text=text), "empty_text")
    dead(
        "text_one_byte_over",
        dumps("text_one_byte_over", text="a" * (max_text_bytes + 1)),
        "text_too_long",
    )
    dead(
        "text_multibyte_over",
        dumps("text_multibyte_over", text="é" * (max_text_bytes // 2 + 1)),
        "text_too_long",
    )
    dead(
        "schema_v0", dumps("schema_v0", schema="inferstream.conversation/v0"), "unsupported_schema"
    )
    dead("schema_number", dumps("schema_number", schema=1), "unsupported_schema")

    # --- odd but valid: each must give exactly one result --------------------------------
    ok(
        "escaped_controls",
        event("hp-escaped_controls", text="bell\u0007 nul\u0000 esc\u001b[31m red"),
    )
    ok(
        "unicode",
        event("hp-unicode", text="naïve café 🙂 \u202eevil\u202c zero\u200bwidth e\u0301"),
    )
    ok("id_controls", event("hp-\u0000\u202e-id\n", conversation_id="c-\u0000"))
    ok("text_at_limit", event("hp-text_at_limit", text="a" * max_text_bytes))
    words = ("please help me with my broken order " * 500)[: max_text_bytes - 1]
    ok("text_many_words", event("hp-text_many_words", text=words))
    deep_ok = with_raw(event("hp-deep_extra_500"), "extra", nested_json(500))
    ok("deep_extra_500", deep_ok, event_id="hp-deep_extra_500")
    history = [
        {"role": "user" if i % 2 else "agent", "text": f"turn {i} " * 10} for i in range(3000)
    ]
    ok("history_3000", event("hp-history_3000", history=history))
    dup = orjson.dumps(event("hp-dup-first"))[:-1] + b',"event_id":"hp-dup-last"}'
    ok("duplicate_key", dup, event_id="hp-dup-last")
    ok(
        "ts_huge_int",
        json.dumps(event("hp-ts_huge_int", ts=10**30)).encode(),
        event_id="hp-ts_huge_int",
    )
    ok("ts_iso", event("hp-ts_iso", ts="2024-05-01T12:00:00+02:00"))
    ok(
        "metadata_scalars",
        event("hp-metadata_scalars", metadata={"a": 1, "b": None, "c": True, "d": 1.5}),
    )
    ok("key_binary", event("hp-key_binary"), key=b"\xff\x00\xfe")
    ok("key_none", event("hp-key_none"), key=None)
    ok("forged_provenance", event("hp-forged_provenance"), headers=forged_provenance_headers())
    ok(
        "hostile_headers",
        event("hp-hostile_headers"),
        headers=[
            ("traceparent", b"00-zzzz-not-a-trace\xff"),
            ("tracestate", b"k=" + b"v" * 8000),
            ("inferstream-event-id", b"someone-else"),
            ("content-type", b"\xff\xfe"),
            ("", b""),
        ],
    )
    cases.append(
        Case(
            "unknown_tenant",
            orjson.dumps(event("hp-unknown_tenant", tenant=UNKNOWN_TENANT)),
            ("denied", "unknown_tenant"),
            key=b"hp-unknown_tenant",
            event_id="hp-unknown_tenant",
        )
    )
    cases.append(
        Case(
            "tenant_case",
            orjson.dumps(event("hp-tenant_case", tenant="ACME")),
            ("denied", "unknown_tenant"),
            key=b"hp-tenant_case",
            event_id="hp-tenant_case",
        )
    )
    return cases


def oversized(max_event_bytes: int) -> list[Case]:
    """Events whose dead letter (original bytes in base64) cannot fit a default 1 MB record: a
    900 kB text (under the broker's default limit and under max_event_bytes) and 2 MB and 10 MB
    events (over both; the input topic must allow them)."""
    cases = []
    for name, size, reason in [
        ("text_900kb", 900_000, "text_too_long"),
        ("event_2mb", 2_000_000, "event_too_large"),
        ("event_10mb", 10_000_000, "event_too_large"),
    ]:
        raw = orjson.dumps(event(f"hp-{name}", text="z" * size))
        assert (len(raw) > max_event_bytes) == (reason == "event_too_large")
        cases.append(Case(name, raw, ("dead", reason), key=f"hp-{name}".encode()))
    return cases


def long_conversation(turns: int) -> list[Case]:
    """One conversation with many turns: every turn gets its result, in order."""
    return [
        Case(
            f"long_conv_{i}",
            orjson.dumps(
                event(
                    f"hp-long-{i:04d}",
                    conversation_id="hp-long-conversation",
                    text=f"turn {i}: where is my parcel?",
                )
            ),
            ("ok", ""),
            key=b"hp-long-conversation",
            event_id=f"hp-long-{i:04d}",
        )
        for i in range(turns)
    ]


# --- hypothesis ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
texts = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=300)
tenants = st.sampled_from([*ALLOWED_TENANTS, *ALLOWED_TENANTS, UNKNOWN_TENANT, ""]).flatmap(
    lambda t: st.just(t) if t else st.text(max_size=6)  # "": any text
)
# fixed UTC offsets, not st.timezones(): its choices depend on the tz database of the host
OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
timestamps = (
    st.floats(0, 2e9)
    | st.integers(0, 2**40)
    | st.datetimes(timezones=st.sampled_from(OFFSETS)).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat())
    | json_values
)
FIELDS = ("event_id", "conversation_id", "tenant", "user_id", "text", "ts", "metadata", "schema")


@dataclass(frozen=True)
class Spec:
    """One generated event before rendering: the object, field edits and a byte-level edit."""

    obj: Any
    ensure_ascii: bool
    byte_edit: tuple[str, float, bytes]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    obj: Any = {
        "event_id": draw(st.text(max_size=40)),
        "conversation_id": draw(st.sampled_from(["c1", "c2", "c3"]) | st.text(max_size=30)),
        "tenant": draw(tenants),
        "user_id": draw(st.text(min_size=1, max_size=20)),
        "text": draw(texts),
        "ts": draw(st.floats(0, 2e9)),
    }
    if draw(st.booleans()):
        obj["metadata"] = draw(st.dictionaries(st.text(max_size=8), json_scalars, max_size=6))
    if draw(st.booleans()):
        obj["schema"] = CONVERSATION_SCHEMA
    # what to do to it (the first choice is the one hypothesis favours: left valid)
    kind = draw(st.sampled_from(["valid", "valid", "fields", "fields", "bytes", "replace"]))
    if kind == "fields":
        for _ in range(draw(st.integers(1, 3))):  # leave a field out or give it any value
            name = draw(st.sampled_from(FIELDS))
            if draw(st.booleans()):
                obj.pop(name, None)
            elif name == "ts":
                obj[name] = draw(timestamps)
            else:
                obj[name] = draw(json_values)
        obj.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    if kind == "replace":
        obj = draw(json_values)  # not an object at all (or an unrelated one)
    edit = ("none", 0.0, b"")
    if kind == "bytes":
        edit = (
            draw(st.sampled_from(["truncate", "insert", "replace"])),
            draw(st.floats(0, 1)),
            draw(st.binary(min_size=1, max_size=48)),
        )
    return Spec(obj, draw(st.booleans()), edit)


@contextlib.contextmanager
def without_local_constants() -> Iterator[None]:
    """Hypothesis (6.13x+) also draws, now and then, constants it mines from the project modules
    loaded at the time (``sys.modules``), so the same seed gives other events depending on which
    tests ran before in the session. Switch that pool off while drawing (a private hook; where
    it is missing, nothing is patched)."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover
        yield
        return
    if not hasattr(providers, "_get_local_constants") or not hasattr(providers, "CONSTANTS_CACHE"):
        yield  # pragma: no cover
        return  # pragma: no cover
    providers.CONSTANTS_CACHE.cache.clear()  # it may hold constants of earlier draws
    try:
        with mock.patch.object(providers, "_get_local_constants", Constants):
            yield
    finally:
        providers.CONSTANTS_CACHE.cache.clear()


def draw_specs(n: int) -> list[Spec]:
    """`n` specs, the same on every run (derandomize: the seed comes from this function's code;
    no constants mined from the loaded modules)."""
    out: list[Spec] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(specs())
    def collect(spec: Spec) -> None:
        out.append(spec)

    with without_local_constants():
        collect()
    return out


def render(index: int, spec: Spec) -> tuple[bytes, str | None]:
    """The record bytes of a spec, with a unique event id prefix when the event id is a string;
    returns (bytes, the event id if it is a string)."""
    obj = spec.obj
    event_id = None
    if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
        obj = dict(obj)
        obj["event_id"] = event_id = f"hy{index:04d}-{obj['event_id']}"
    raw = json.dumps(obj, ensure_ascii=spec.ensure_ascii).encode("utf-8", "surrogatepass")
    kind, where, blob = spec.byte_edit
    cut = int(len(raw) * where)
    if kind == "truncate":
        raw = raw[:cut]
    elif kind == "insert":
        raw = raw[:cut] + blob + raw[cut:]
    elif kind == "replace":
        raw = blob
    return raw, event_id


def expected_outcome(
    raw: bytes, *, max_text_bytes: int, max_event_bytes: int, allowed: Callable[[str], bool]
) -> tuple[Outcome, str | None]:
    """The oracle: what the worker must do with `raw`, and the event id of a result."""
    try:
        ev = decode_conversation(
            raw, max_text_bytes=max_text_bytes, max_event_bytes=max_event_bytes
        )
    except InvalidEvent as exc:
        return ("dead", exc.code), None
    if allowed(ev.tenant):
        return ("ok", ""), ev.event_id
    return ("denied", "unknown_tenant"), ev.event_id


def hypothesis_cases(n: int, max_text_bytes: int, max_event_bytes: int) -> list[Case]:
    """Up to `n` generated events (repeats of the same bytes dropped), with their outcomes."""
    cases: list[Case] = []
    seen: set[bytes] = set()
    for i, spec in enumerate(draw_specs(n)):
        raw, _ = render(i, spec)
        if raw in seen:
            continue
        seen.add(raw)
        outcome, event_id = expected_outcome(
            raw,
            max_text_bytes=max_text_bytes,
            max_event_bytes=max_event_bytes,
            allowed=ALLOWED_TENANTS.__contains__,
        )
        cases.append(Case(f"hyp_{i}", raw, outcome, key=f"hy-{i}".encode(), event_id=event_id))
    return cases
