"""Content-filter rules: recall per PII type on generated held-out text, false positives on clean
dialogue (chatterbot-corpus, every language), and throughput (messages/s and µs per message).

    .venv/bin/python bench/guard.py [--per-type 1000] [--seed 20240611]

The generator below is the held-out set: values with valid checksums in the formats the detectors
document, inside varied templates, seeded; the unit tests use separate hand-written examples.
A clean message counts as a false positive when ``detect_pii`` reports anything in it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import chatterbot_corpus
import click
import yaml

from workers.guard.detectors import PII_TYPES, detect_pii
from workers.guard.filter import ContentFilter, FilterPolicy

TARGET_RECALL, TARGET_FP = 0.99, 0.003
ALNUM = string.ascii_letters + string.digits
LABEL = {"EMAIL": "email", "PHONE": "phone number", "CARD": "card number", "IBAN": "IBAN"}
LABEL |= {"CN_ID": "ID number", "US_SSN": "SSN", "IP_ADDRESS": "IP", "SECRET": "key"}
TEMPLATES = (
    "{v}",
    "My {label} is {v}.",
    "You can reach it at {v}, thanks!",
    "Sure, here it is: {v}",
    "(see {v})",
    '"{v}"',
    "Details:\n- name: Jane Roe\n- {label}: {v}\n- city: Lyon",
    "请把{v}发给我",
    "{v} is what the form says.",
    "'{label}': '{v}',",
    "Before: {v}; after: nothing.",
    "I wrote down {v} yesterday at 10:30 and again on 2024-03-05.",
    "**{label}**: `{v}`",
    "<td>{v}</td>",
    "Ok so the {label} would be {v}?",
    "Le {label} est {v}. Merci!",
    "Got it.\n\n{v}\n\nAnything else?",
    "[{v}]",
    "«{v}»",
    "{label}:{v}",
    "https://example.net/form?value={v}&next=1",
    "It is {v}...",
    "Ping me on {v}!!",
    "| Jane | {v} | active |",
    "<{v}>",
    "copy this — {v} — and paste it",
)


@dataclass(frozen=True)
class Sample:
    type: str
    text: str
    start: int  # the sensitive part inside text
    end: int


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (1 if i % 2 else 2)
        total += d - 9 if d > 9 else d
    return body + str(-total % 10)


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def split(r: random.Random, s: str, sizes: tuple[int, ...] = (2, 3, 4)) -> list[str]:
    """``s`` cut into random groups (the last may be shorter)."""
    out: list[str] = []
    while s:
        n = r.choice(sizes)
        out.append(s[:n])
        s = s[n:]
    return out


FIRST = ("anna", "li", "jose", "wei", "o", "mary-kate", "J", "noreply")
LAST = ("smith", "zhang", "garcia", "muller", "okafor", "x", "Lee")
LOCAL: tuple[str, ...] = ("{f}.{l}", "{f}_{l}{n}", "{i}{l}", "{f}+news", "{l}19{n}", "{f}.{l}.{n}")
DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "mail.example.org",
    "corp.co.uk",
    "qq.com",
    "uni-bonn.de",
    "163.com",
)
DOMAINS += ("dept{n}.acme-corp.io", "xn--bcher-kva.ch", "post.gov.au", "web.de")
E164: tuple[tuple[str, int], ...] = (
    ("44", 10),
    ("49", 11),
    ("33", 9),
    ("91", 10),
    ("81", 10),
    ("61", 9),
    ("55", 11),
)
E164 += (("7", 10), ("34", 9), ("971", 9), ("234", 10), ("65", 8), ("852", 8), ("31", 9))
NANP = ("({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "1-{a}-{e}-{l}", "({a}){e}-{l}")
NANP_INTL = (
    "+1 {a} {e} {l}",
    "+1 ({a}) {e}-{l}",
    "+1{a}{e}{l}",
    "+1-{a}-{e}-{l}",
    "+1.{a}.{e}.{l}",
)


def gen_email(r: random.Random) -> str:
    first, last, n = r.choice(FIRST), r.choice(LAST), digits(r, 2)
    local = r.choice(LOCAL).format(f=first, l=last, i=first[0], n=n)
    domain = r.choice(DOMAINS).format(n=n)
    return f"{local}@{domain.upper() if r.random() < 0.1 else domain}"


def gen_phone(r: random.Random) -> str:
    kind = r.randrange(5)
    if kind <= 1:  # + international, varied grouping and separators
        cc, n = r.choice(E164)
        nat = str(r.randint(1, 9)) + digits(r, n - 1)
        sep = r.choice(["", " ", " ", "-", "."])
        if not sep:
            return f"+{cc}{nat}"
        if r.random() < 0.2:  # area code in parentheses, optionally with a trunk (0)
            area = r.choice([f"({nat[:2]}) ", f"(0){nat[:2]} "])
            return f"+{cc} {area}{sep.join(split(r, nat[2:], (3, 4)))}"
        return f"+{cc}{sep}{sep.join(split(r, nat))}"
    if kind == 2:  # mainland-China mobile
        num = "1" + r.choice("3456789") + digits(r, 9)
        spaced = f"{num[:3]} {num[3:7]} {num[7:]}"
        return r.choice([num, num, f"+86 {num}", f"+86{num}", spaced, spaced.replace(" ", "-")])
    area, exch, line = f"{r.randint(2, 9)}{digits(r, 2)}", digits(r, 3), digits(r, 4)
    return r.choice(NANP if kind == 3 else NANP_INTL).format(a=area, e=exch, l=line)


CARD_GROUPS = {15: (4, 6, 5), 14: (4, 6, 4), 16: (4, 4, 4, 4), 19: (4, 4, 4, 4, 3)}


CARD_PREFIXES: tuple[tuple[str, int], ...] = (
    ("4", 16),
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51-55", 16),
    ("2221-2720", 16),
)
CARD_PREFIXES += (("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528-3589", 16))
CARD_PREFIXES += (("62", 16), ("62", 17), ("62", 18), ("62", 19), ("36", 14))


def gen_card(r: random.Random) -> str:
    prefix, n = r.choice(CARD_PREFIXES)
    if "-" in prefix:
        lo, hi = prefix.split("-")
        prefix = str(r.randint(int(lo), int(hi)))
    num = luhn_complete(prefix + digits(r, n - len(prefix) - 1))
    sep = r.choice(["", " ", " ", "-"])
    if not sep or n not in CARD_GROUPS:
        return num
    out, i = [], 0
    for g in CARD_GROUPS[n]:
        out.append(num[i : i + g])
        i += g
    return sep.join(out)


IBAN_BBAN = {"DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c"}
IBAN_BBAN |= {"NL": "4a10n", "BE": "12n", "CH": "5n12c", "PL": "24n", "SA": "2n18c", "AE": "19n"}
IBAN_BBAN |= {"NO": "11n", "MT": "4a5n18c", "SE": "20n", "AT": "16n", "IE": "4a14n"}


def gen_iban(r: random.Random) -> str:
    cc = r.choice(sorted(IBAN_BBAN))
    pools = {"n": string.digits, "a": string.ascii_uppercase}
    pools["c"] = string.ascii_uppercase + string.digits
    bban = "".join(
        "".join(r.choice(pools[kind]) for _ in range(int(n)))
        for n, kind in re.findall(r"(\d+)([anc])", IBAN_BBAN[cc])
    )
    check = 98 - int("".join(str(int(c, 36)) for c in bban + cc + "00")) % 97
    iban = f"{cc}{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if r.random() < 0.5 else iban


PROVINCES: tuple[int, ...] = (
    11,
    12,
    13,
    14,
    15,
    21,
    22,
    23,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    41,
    42,
    43,
    44,
    45,
    46,
)
PROVINCES += (50, 51, 52, 53, 54, 61, 62, 63, 64, 65)


def gen_cn_id(r: random.Random) -> str:
    region = f"{r.choice(PROVINCES)}{r.randint(1, 99):02d}{r.randint(0, 99):02d}"
    born = date(1930, 1, 1) + timedelta(days=r.randrange(33000))
    body = f"{region}{born:%Y%m%d}{digits(r, 3)}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + (check.lower() if r.random() < 0.2 else check)


def gen_ssn(r: random.Random) -> str:
    area = r.choice([a for a in range(1, 900) if a != 666])
    sep = "-" if r.random() < 0.85 else " "
    return f"{area:03d}{sep}{r.randint(1, 99):02d}{sep}{r.randint(1, 9999):04d}"


def gen_ip(r: random.Random) -> str:
    kind = r.randrange(5)
    if kind <= 2:
        first = r.choice([a for a in range(1, 224) if a != 127])
        return f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind == 3 and r.random() < 0.3:
        return (
            f"::ffff:{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 9)}"
        )
    groups = [r.choice(["2001", "2a00", "fe80", "2607", "2400", "fd12"])]
    groups += [r.choice(["0", "0", f"{r.randrange(65536):x}"]) for _ in range(7)]
    addr = ipaddress.IPv6Address(":".join(groups))
    text = addr.exploded if r.random() < 0.3 else addr.compressed
    return text.upper() if r.random() < 0.1 else text


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def gen_secret(r: random.Random) -> tuple[str, int, int]:
    """(value, start, end): for assignments only the assigned value is the secret."""

    def rnd(n: int, pool: str = ALNUM) -> str:
        return "".join(r.choice(pool) for _ in range(n))

    kind = r.randrange(11)
    if kind == 0:
        body = "\n".join(rnd(64, ALNUM + "+/") for _ in range(r.randint(3, 8)))
        label = r.choice(
            ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"]
        )
        v = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"
    elif kind == 1:
        v = r.choice(["AKIA", "ASIA"]) + rnd(16, string.ascii_uppercase + "234567")
    elif kind == 2:
        pat = "github_pat_" + rnd(22) + "_" + rnd(59)
        v = r.choice(["ghp_", "gho_", "ghs_"]) + rnd(36) if r.random() < 0.7 else pat
    elif kind == 3:
        v = f"xox{r.choice('abpr')}-{digits(r, 12)}-{digits(r, 13)}-{rnd(24)}"
    elif kind == 4:
        v = r.choice(["sk_live_", "rk_live_", "sk_test_"]) + rnd(r.choice([24, 34, 99]))
    elif kind == 5:
        v = "AIza" + rnd(35, ALNUM + "_-")
    elif kind == 6:
        body = rnd(r.choice([32, 48, 64]), ALNUM + "_-")
        v = r.choice(["sk-", "sk-proj-", "sk-ant-api03-"]) + body
    elif kind == 7:
        head = {"alg": r.choice(["HS256", "RS256"]), "typ": "JWT"}
        claims = {"sub": digits(r, 8), "name": rnd(6), "iat": r.randint(10**9, 2 * 10**9)}
        v = f"{_b64url(head)}.{_b64url(claims)}.{rnd(43, ALNUM + '_-')}"
    else:
        value = rnd(r.choice([16, 24, 32, 40]), ALNUM + r.choice(["", "+/", "_-"]))
        key = r.choice(
            ["api_key", "API_KEY", "secret", "client_secret", "access_token", "password"]
        )
        prefix = r.choice([f"{key}=", f"{key}: ", f'"{key}": "', "Authorization: Bearer "])
        return prefix + value, len(prefix), len(prefix) + len(value)
    return v, 0, len(v)


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": gen_email,
    "PHONE": gen_phone,
    "CARD": gen_card,
    "IBAN": gen_iban,
    "CN_ID": gen_cn_id,
    "US_SSN": gen_ssn,
    "IP_ADDRESS": gen_ip,
}


def held_out(seed: int, per_type: int) -> list[Sample]:
    r = random.Random(seed)
    out = []
    for kind in PII_TYPES:
        for _ in range(per_type):
            if kind == "SECRET":
                value, vs, ve = gen_secret(r)
            else:
                value = GENERATORS[kind](r)
                vs, ve = 0, len(value)
            template = r.choice(TEMPLATES)
            at = template.index("{v}")
            head = template[:at].replace("{label}", LABEL[kind])
            text = head + value + template[at + 3 :].replace("{label}", LABEL[kind])
            out.append(Sample(kind, text, len(head) + vs, len(head) + ve))
    return out


def _bump_last_digit(v: str) -> str:
    """Change the check digit (any single-digit change breaks Luhn)."""
    i = max(i for i, c in enumerate(v) if c.isdigit())
    return v[:i] + str((int(v[i]) + 1 + sum(map(ord, v)) % 9) % 10) + v[i + 1 :]


def _wrong_iban(r: random.Random) -> str:
    iban = gen_iban(r).replace(" ", "")
    return iban[:2] + f"{(int(iban[2:4]) + r.randint(1, 50)) % 100:02d}" + iban[4:]


def _wrong_cn_id(r: random.Random) -> str:
    v = gen_cn_id(r)
    return v[:17] + r.choice([c for c in "0123456789X" if c != v[17].upper()])


PLACEHOLDER_VALUES: tuple[str, ...] = (
    "your-api-key-here",
    "<YOUR_TOKEN>",
    "xxxxxxxxxxxxxxxx",
    "${TOKEN}",
)
PLACEHOLDER_VALUES += ("process.env.API_KEY", "config.API_TOKEN")
NEAR_MISSES: dict[str, Callable[[random.Random], str]] = {
    "card number, Luhn broken": lambda r: _bump_last_digit(gen_card(r)),
    "IBAN, wrong check digits": _wrong_iban,
    "China ID, wrong check character": _wrong_cn_id,
    "SSN-shaped, area 000/666/9xx": lambda r: (
        f"{r.choice(['000', '666', '9' + digits(r, 2)])}"
        f"-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
    ),
    "dotted quad with an octet > 255": lambda r: (
        f"{r.randint(1, 223)}.{r.randint(256, 999)}.{r.randint(0, 255)}.{r.randint(0, 255)}"
    ),
    "'version 1.2.3.4'": lambda r: (
        f"version {r.randint(1, 20)}.{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 200)}"
    ),
    "+number, unassigned country code": lambda r: (
        f"+{r.choice(['28', '83', '89', '0'])}{digits(r, r.randint(7, 10))}"
    ),
    "key = placeholder / low entropy": lambda r: (
        r.choice(["api_key", "password", "token"])
        + r.choice(["=", ": "])
        + r.choice(PLACEHOLDER_VALUES)
    ),
    "bare digit run, 9-19 digits": lambda r: str(r.randint(1, 9)) + digits(r, r.randint(8, 18)),
}
OUT_OF_SCOPE: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "bare 10-digit NANP number": ("PHONE", lambda r: f"{r.randint(2, 9)}{digits(r, 9)}"),
    "NANP with spaces only": (
        "PHONE",
        lambda r: f"{r.randint(2, 9)}{digits(r, 2)} {digits(r, 3)} {digits(r, 4)}",
    ),
    "00-prefixed international": ("PHONE", lambda r: f"0044 20 {digits(r, 4)} {digits(r, 4)}"),
    "UK national 020 ...": ("PHONE", lambda r: f"020 {digits(r, 4)} {digits(r, 4)}"),
    "SSN without separators": ("US_SSN", lambda r: gen_ssn(r).replace("-", "").replace(" ", "")),
    "lower-case IBAN": ("IBAN", lambda r: gen_iban(r).lower()),
}


def near_miss_report(seed: int, n: int) -> None:
    r = random.Random(seed + 1)
    print(f"\n(1b) look-alikes that must not be reported ({n} each, same templates)")
    print(f"{'look-alike':<36}{'reported':>9}   as")
    for name, gen in NEAR_MISSES.items():
        hits: Counter[str] = Counter()
        for _ in range(n):
            found = detect_pii(
                r.choice(TEMPLATES).replace("{label}", "value").replace("{v}", gen(r))
            )
            hits.update({f.type for f in found})
        flagged = sum(hits.values())
        print(f"{name:<36}{flagged:>9}   {dict(hits) or ''}")
    print(f"\n(1c) formats deliberately out of scope: recall ({n} each; low is expected)")
    for name, (kind, gen) in OUT_OF_SCOPE.items():
        found_n = sum(
            any(f.type == kind for f in detect_pii(f"it is {gen(r)} ok")) for _ in range(n)
        )
        print(f"{name:<36}{found_n / n:>9.1%}")


def corpus_messages() -> dict[str, list[str]]:
    """Every statement/response string of the corpus, by language."""
    root = Path(chatterbot_corpus.__file__).parent / "data"
    out: dict[str, list[str]] = {}
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(lang_dir.glob("*.yml")):
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for conversation in doc.get("conversations") or []:
                for message in conversation:
                    if isinstance(message, str):
                        out.setdefault(lang_dir.name, []).append(message)
    return out


def recall(samples: list[Sample]) -> None:
    print(f"\n(1) recall on held-out generated text ({len(samples)} messages)")
    print(f"{'type':<12}{'n':>7}{'found':>7}{'recall':>9}{'exact span':>12}{'wrong type':>12}")
    misses: dict[str, list[tuple[Sample, list[str]]]] = {}
    for kind in PII_TYPES:
        group = [s for s in samples if s.type == kind]
        hit = exact = wrong = 0
        for s in group:
            found = detect_pii(s.text)
            covering = [f for f in found if f.start <= s.start and f.end >= s.end]
            if any(f.type == kind for f in covering):
                hit += 1
                exact += any(f.type == kind and (f.start, f.end) == (s.start, s.end) for f in found)
            else:
                wrong += bool(covering)
                got = [f"{f.type}:{s.text[f.start : f.end]!r}" for f in found]
                misses.setdefault(kind, []).append((s, got))
        rate = hit / len(group)
        flag = "" if rate >= TARGET_RECALL else "  < target"
        exact_rate = exact / len(group)
        print(f"{kind:<12}{len(group):>7}{hit:>7}{rate:>9.2%}{exact_rate:>12.2%}{wrong:>12}{flag}")
    for s, got in (m for group in misses.values() for m in group[:4]):
        print(f"  missed {s.type}: {s.text[s.start : s.end]!r} in {s.text!r:.80} -> {got}")


def false_positives(corpus: dict[str, list[str]]) -> None:
    print("\n(2) false positives on clean chatterbot-corpus messages")
    print(f"{'language':<20}{'messages':>9}{'unique':>8}{'FP':>5}{'FP rate':>9}")
    examples: list[tuple[str, str, list[str]]] = []
    totals = [0, 0]
    for lang, messages in corpus.items():
        fp = 0
        for m in messages:
            found = detect_pii(m)
            if found:
                fp += 1
                if len(examples) < 10:
                    examples.append((lang, m, [f"{f.type}:{m[f.start : f.end]!r}" for f in found]))
        totals[0] += len(messages)
        totals[1] += fp
        flag = "" if fp / len(messages) < TARGET_FP else "  >= target"
        rate = fp / len(messages)
        print(f"{lang:<20}{len(messages):>9}{len(set(messages)):>8}{fp:>5}{rate:>9.3%}{flag}")
    print(f"{'all languages':<20}{totals[0]:>9}{'':>8}{totals[1]:>5}{totals[1] / totals[0]:>9.3%}")
    for lang, m, got in examples:
        print(f"  FP [{lang}] {got} in {m!r:.90}")


def throughput(label: str, texts: list[str], fn: Callable[[str], object]) -> None:
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < 1.5:
        for t in texts:
            fn(t)
        n += len(texts)
    elapsed = time.perf_counter() - started
    chars = sum(map(len, texts)) / len(texts)
    rate, us = n / elapsed, elapsed / n * 1e6
    print(f"{label:<44}{rate:>12,.0f} msg/s {us:>7.1f} µs/msg   (mean {chars:.0f} chars)")


def cost_by_type(samples: list[Sample], passes: int = 5) -> None:
    """CPU µs per held-out message of each type: process time, the fastest of ``passes`` passes,
    so that other processes on the machine count as little as possible."""
    print(f"\n(3b) detect_pii CPU µs per held-out message, by type (fastest of {passes} passes)")
    for kind in PII_TYPES:
        texts = [s.text for s in samples if s.type == kind]
        best = float("inf")
        for _ in range(passes):
            started = time.process_time()
            for t in texts:
                detect_pii(t)
            best = min(best, time.process_time() - started)
        print(f"{kind:<12}{best / len(texts) * 1e6:>8.1f} µs")


@click.command(help=(__doc__ or "").split("\n\n")[0], context_settings={"show_default": True})
@click.option("--per-type", type=int, default=1000, help="held-out messages per PII type")
@click.option("--seed", type=int, default=20240611)
def main(per_type: int, seed: int) -> None:
    samples = held_out(seed, per_type)
    corpus = corpus_messages()
    recall(samples)
    near_miss_report(seed, 500)
    false_positives(corpus)
    print("\n(3) throughput, one core")
    english = corpus["english"]
    short = [m for m in english if len(m) <= 200]
    content_filter, policy = ContentFilter(), FilterPolicy()
    throughput("detect_pii, English corpus (<=200 chars)", short, detect_pii)
    throughput("detect_pii, English corpus (all)", english, detect_pii)
    throughput("detect_pii, held-out PII messages", [s.text for s in samples], detect_pii)
    throughput(
        "ContentFilter.decide, English corpus (all)",
        english,
        lambda t: content_filter.decide(t, tenant="t", policy=policy, safety_score=0.1),
    )
    cost_by_type(samples)
    print(f"\ntargets: recall >= {TARGET_RECALL:.0%} per type, false positives < {TARGET_FP:.1%}")


if __name__ == "__main__":
    main()
