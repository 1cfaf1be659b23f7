"""Provenance figures: envelopes verify, tamperings are rejected, marked fragments are traced after
common transformations, clean texts are never flagged, and how fast each step is.

    .venv/bin/python bench/provenance.py [--seed 7] [--n 1000] [--clean 10000]

Seeded (keys, ids, texts, cuts, tamperings); exits 1 if a target figure is missed. Texts are
chatterbot-corpus messages (prose and some indented code) joined to >= 200 characters.
Fragments are cut on visible characters: a letter keeps its invisible symbol, as selecting and
copying text does with grapheme clusters.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import textwrap
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import orjson
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.provenance import textmark
from workers.provenance.envelope import Envelope, Signer, Verifier
from workers.provenance.keys import KeyRing
from workers.provenance.stamp import Stamped, Watermarker
from workers.provenance.verify import EnvelopeIndex, verify_record, verify_text

CORPUS = Path(sys.prefix) / "lib/python3.11/site-packages/chatterbot_corpus/data"
FRAME = textmark.FRAME_LEN
LENGTHS = (40, 60, 80)
SIGNED = [
    "provenance_id", "model_name", "model_version", "backend", "input_digest", "output_digest",
    "policy_version", "decisions", "trace_id", "timestamp", "kid", "envelope_version",
]  # fmt: skip
TAMPERINGS = [
    "field", "text", "swap digests", "timestamp", "re-sign", "signature", "swap envelope",
    "mark symbol",
]  # fmt: skip
EMOJI = ["😀", "👍🏽", "❤️", "1️⃣", "👨‍👩‍👧", "🇫🇷", "☺︎", "✔️", "葛󠄀", "0︀", "ℹ️", "#️⃣"]


def reflow(t: str) -> str:
    return textwrap.fill(" ".join(t.split()), width=33).replace(" ", "  ").replace("\n", "\r\n")


def json_round_trip(t: str) -> str:
    once = json.loads(json.dumps(t, ensure_ascii=True))
    return str(orjson.loads(orjson.dumps({"t": once}))["t"])


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "none": lambda t: t,
    "whitespace reflow": reflow,
    "NFC": lambda t: unicodedata.normalize("NFC", t),
    "JSON round trip": json_round_trip,
    "all combined": lambda t: json_round_trip(unicodedata.normalize("NFC", reflow(t))),
    "(extra) NFKC": lambda t: unicodedata.normalize("NFKC", t),
    "(not survived) drop Mn": lambda t: "".join(c for c in t if unicodedata.category(c) != "Mn"),
    "(not survived) ASCII only": lambda t: t.encode("ascii", "ignore").decode(),
}


def messages(language: str) -> list[str]:
    out: list[str] = []
    for path in sorted((CORPUS / language).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            out.extend(str(m).strip() for m in conversation if str(m).strip())
    return out


def long_text(rng: random.Random, pool: list[str], min_len: int = 200) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < min_len:
        parts.append(rng.choice(pool))
    return " ".join(parts)


def ring_from(rng: random.Random, kids: list[str]) -> KeyRing:
    return KeyRing({k: Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for k in kids})


def stamp_all(rng: random.Random, keys: KeyRing, texts: list[str]) -> list[Stamped]:
    clock = iter(range(1_700_000_000, 1_800_000_000, 3))
    marker = Watermarker(keys, lambda: float(next(clock)), lambda: rng.randbytes(8).hex())
    return [
        marker.stamp(
            model_name=rng.choice(["minilm-intent", "distil-guard"]),
            model_version=str(rng.randint(1, 9)),
            backend=rng.choice(["openvino", "onnxruntime", "tensorrt"]),
            input_text=f"prompt {rng.random()}",
            output_text=text,
            policy_version=f"policy-{rng.randint(1, 50)}",
            decisions=[{"filter": "terms", "action": "allow", "score": rng.random()}],
            trace_id=rng.randbytes(16).hex(),
        )
        for text in texts
    ]


def record(text: str, env: Envelope | dict[str, Any]) -> dict[str, Any]:
    return {"text": text, "provenance": env.to_dict() if isinstance(env, Envelope) else env}


def selector_positions(text: str, visible: bool) -> list[int]:
    return [i for i, c in enumerate(text) if (textmark.from_selector(c) is None) is visible]


def change_char(rng: random.Random, value: str, alphabet: str) -> str:
    i = rng.randrange(len(value))
    return value[:i] + rng.choice([c for c in alphabet if c != value[i]]) + value[i + 1 :]


def tamper(rng: random.Random, s: Stamped, other: Stamped, forger: Signer) -> tuple[str, Any]:
    """One random tampering of a stamped record: (kind, record)."""
    env, text, kind = s.envelope.to_dict(), s.text, rng.choice(TAMPERINGS)
    if kind == "field":
        name = rng.choice(SIGNED)
        value = env[name]
        if isinstance(value, str):
            env[name] = change_char(rng, value, "0123456789abcdefXYZ")
        elif name == "decisions":
            env[name] = [{**value[0], "action": "block"}] if rng.random() < 0.5 else []
        else:
            env[name] = value + 1
    elif kind == "text":
        i = rng.choice(selector_positions(text, visible=True))
        new = rng.choice([c for c in "aeiouXYZ .,!é\n" if c != text[i]])
        op = rng.choice(["insert", "delete", "replace"])
        kind = f"text {op}"
        text = (
            text[:i] + {"insert": new + text[i], "delete": "", "replace": new}[op] + text[i + 1 :]
        )
    elif kind == "swap digests":
        env["input_digest"], env["output_digest"] = env["output_digest"], env["input_digest"]
    elif kind == "timestamp":
        env["timestamp"] += rng.choice([-1, 1]) * rng.uniform(0.001, 86400)
    elif kind == "re-sign":
        same = ("model_name", "model_version", "backend", "policy_version", "decisions", "trace_id")
        fake = forger.sign(
            input_text="x", output_text=textmark.strip(text), **{k: env[k] for k in same}
        )
        env = replace(fake, kid=s.envelope.kid if rng.random() < 0.5 else fake.kid).to_dict()
    elif kind == "signature":
        raw = bytearray(base64.b64decode(env["signature"]))
        raw[rng.randrange(64)] ^= 1 << rng.randrange(8)
        env["signature"] = base64.b64encode(bytes(raw)).decode()
    elif kind == "swap envelope":
        env = other.envelope.to_dict()
    else:
        i = rng.choice(selector_positions(text, visible=False))
        byte = (textmark.from_selector(text[i]) or 0) + rng.randrange(1, 256)
        text = text[:i] + textmark.to_selector(byte % 256) + text[i + 1 :]
    return kind, record(text, env)


def fragment(rng: random.Random, text: str, length: int) -> str:
    visible = selector_positions(text, visible=True)
    start = rng.randrange(len(visible) - length)
    return text[visible[start] : visible[start + length]]


def random_unicode(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(5, 120)):
        r = rng.random()
        if r < 0.2:
            pieces.append(rng.choice(EMOJI))
        elif r < 0.3:
            pieces.append(chr(rng.choice([0xFE0F, 0xFE0E, 0xFE00, 0xE0100 + rng.randrange(240)])))
        elif r < 0.7:
            pieces.append(chr(rng.randrange(0x20, 0x2FFF)))
        else:
            pieces.append(rng.choice(" abcdefghijklmnopqrstuvwxyzéü.,\n0123456789"))
    return "".join(pieces)


def rate(ok: int, total: int) -> str:
    return f"{ok}/{total} ({100 * ok / max(total, 1):.1f}%)"


def section_verify(keys: KeyRing, stamped: list[Stamped]) -> bool:
    good = sum(verify_record(record(s.text, s.envelope), keys).authentic for s in stamped)
    public = Verifier(keys.public_only())
    pub = sum(public.verify_output(s.envelope, s.text).ok for s in stamped)
    print("\n1. signed outputs verify")
    print(f"  record + marked text (private ring)    {rate(good, len(stamped))}")
    print(f"  envelope + digest (public keys only)   {rate(pub, len(stamped))}")
    return good == pub == len(stamped)


def section_tamper(rng: random.Random, keys: KeyRing, stamped: list[Stamped]) -> bool:
    forger = Signer(ring_from(rng, ["k-2025", "forged"]))
    total: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    original = {s.envelope.provenance_id: record(s.text, s.envelope) for s in stamped}
    for _ in range(1000):
        s, other = rng.sample(stamped, 2)
        kind, rec = tamper(rng, s, other, forger)
        while rec == original[s.envelope.provenance_id]:  # a no-op draw is not a tampering
            kind, rec = tamper(rng, s, other, forger)
        total[kind] += 1
        caught[kind] += not verify_record(rec, keys).authentic
    print("\n2. random tamperings rejected")
    for kind in sorted(total):
        print(f"  {kind:<16} {rate(caught[kind], total[kind])}")
    print(f"  {'total':<16} {rate(sum(caught.values()), 1000)}")
    return caught == total


def section_fragments(rng: random.Random, keys: KeyRing, stamped: list[Stamped]) -> bool:
    index = EnvelopeIndex(s.envelope for s in stamped)
    frags = {n: [fragment(rng, s.text, n) for s in stamped] for n in LENGTHS}
    short = {
        n: {i for i, f in enumerate(frags[n]) if textmark.capacity(f) < FRAME} for n in LENGTHS
    }
    ok = True
    print("\n3. marked fragments traced to their record, by transformation and length")
    print(f"  {'':<28}" + "".join(f"{n:>12} chars" for n in LENGTHS))
    for name, fn in TRANSFORMS.items():
        cells = []
        for n in LENGTHS:
            missed = set()
            for i, (s, frag) in enumerate(zip(stamped, frags[n], strict=True)):
                v = verify_text(fn(frag), keys, index.get)
                if not (v.authentic and v.provenance_id == s.envelope.provenance_id):
                    missed.add(i)
            cells.append(f"{100 * (1 - len(missed) / len(stamped)):>17.1f}%")
            ok &= name.startswith("(") or missed <= short[n]
        print(f"  {name:<28}" + "".join(cells))
    print(f"  fragments with < {FRAME} carriers (no full copy fits; every miss above is one):")
    print(f"  {'':<28}" + "".join(f"{len(short[n]):>18}" for n in LENGTHS))
    for i in sorted(short[40])[:2]:
        print(f"    e.g. {textmark.strip(frags[40][i])!r}")
    print("  other languages (200 texts each), no transformation:")
    for lang in ("french", "german", "russian", "hindi", "korean", "japanese", "chinese"):
        pool = messages(lang)
        lang_stamped = stamp_all(rng, keys, [long_text(rng, pool) for _ in range(200)])
        cells = []
        for n in LENGTHS:
            found = 0
            for s in lang_stamped:
                hits = textmark.extract(fragment(rng, s.text, n), keys)
                found += any(h.provenance_id == s.envelope.provenance_id for h in hits)
            cells.append(f"{100 * found / len(lang_stamped):>17.1f}%")
        print(f"    {lang:<26}" + "".join(cells))
    return ok


def section_false(rng: random.Random, keys: KeyRing, english: list[str], n: int) -> bool:
    clean = [rng.choice(english) for _ in range(n // 4)]
    clean += [long_text(rng, english, rng.randint(40, 600)) for _ in range(n // 4)]
    clean += [random_unicode(rng) for _ in range(n - len(clean))]
    noisy = [
        "".join(c + textmark.to_selector(rng.randrange(256)) if c.isalnum() else c for c in t)
        for t in clean[: n // 2]
    ]
    foreign = ring_from(rng, ["k-2025"])
    foreign_texts = [
        textmark.embed(long_text(rng, english), rng.randbytes(8).hex(), "k-2025", foreign)
        for _ in range(1000)
    ]
    rows = {
        f"clean texts ({sum(any(e in t for e in EMOJI) for t in clean)} with emoji)": clean,
        "random selector after every letter/digit": noisy,
        "marked with another key of the same kid": foreign_texts,
    }
    print("\n4. false detections")
    found = 0
    for label, texts in rows.items():
        hits = sum(bool(textmark.extract(t, keys)) for t in texts)
        found += hits
        print(f"  {label:<44} {hits}/{len(texts)}")
    return found == 0


def timed(label: str, call: Callable[[], object], repeat: int) -> None:
    t0 = time.perf_counter()
    for _ in range(repeat):
        call()
    dt = (time.perf_counter() - t0) / repeat
    print(f"  {label:<28} {1 / dt:>10,.0f} /s   {dt * 1e6:8.1f} us/op")


def section_speed(keys: KeyRing, s: Stamped) -> None:
    verifier, signer = Verifier(keys), Signer(keys)
    plain, env = textmark.strip(s.text), s.envelope
    fields: dict[str, Any] = dict(model_name="m", model_version="1", backend="b", trace_id="t")
    print(f"\n5. throughput (one core, {len(plain)}-char output)")
    timed("sign", lambda: signer.sign(input_text="i", output_text=plain, policy_version="p",
                                      decisions=[], **fields), 2000)  # fmt: skip
    timed("verify envelope", lambda: verifier.verify_envelope(env), 2000)
    timed("verify output + its mark", lambda: verifier.verify_output(env, s.text), 1000)
    timed("embed", lambda: textmark.embed(plain, env.provenance_id, env.kid, keys), 1000)
    timed("extract (marked)", lambda: textmark.extract(s.text, keys), 1000)
    timed("extract (clean)", lambda: textmark.extract(plain, keys), 5000)
    print(f"  marked / unmarked UTF-8 size {len(s.text.encode()) / len(plain.encode()):.2f}x")


@click.command(
    "provenance", help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True}
)
@click.option("--seed", type=int, default=7)
@click.option("--n", type=int, default=1000, help="signed outputs")
@click.option("--clean", type=int, default=10_000, help="clean texts")
def main(seed: int, n: int, clean: int) -> None:
    rng = random.Random(seed)
    keys = ring_from(rng, ["k-2024", "k-2025"])
    english = messages("english")
    stamped = stamp_all(rng, keys, [long_text(rng, english) for _ in range(n)])
    mean = sum(len(textmark.strip(s.text)) for s in stamped) / n
    print(f"provenance bench  seed={seed}  outputs={n}  mean {mean:.0f} chars")
    results = {
        "outputs verify": section_verify(keys, stamped),
        "tamperings rejected": section_tamper(rng, keys, stamped),
        "fragments traced": section_fragments(rng, keys, stamped),
        "no false detections": section_false(rng, keys, english, clean),
    }
    section_speed(keys, stamped[0])
    missed = [name for name, ok in results.items() if not ok]
    print("\nresult:", f"MISSED {missed}" if missed else "all targets met")
    if missed:
        raise click.ClickException(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
