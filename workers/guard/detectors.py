"""Rule detectors for PII and secrets in model outputs: a candidate regex, then a validator.

Every number-like type is checked beyond its shape (Luhn, IBAN structure and mod-97, the
resident-ID checksum and date, SSN area rules, E.164 country codes and lengths, octet ranges,
``ipaddress``), which is what keeps the false-positive rate low. The IBAN registry, Luhn, the
ISO 7064 check character and the SSN rules come from ``python-stdnum``; calling codes and the
possible lengths per country from ``phonenumbers``; the card schemes' IIN ranges are ours.
Digit boundaries are "not next to an ASCII letter, a digit or ``_``", so values glued to CJK
text (``电话13800138000谢谢``) are still found. Scope and exclusions:

- PHONE: ``+`` international numbers (8-15 digits, an assigned country code and a length possible
  for it, a +1 area code starting 2-9; number ranges are not checked), mainland-China mobiles
  (``1[3-9]`` + 9 digits, optional +86/0086, bare or 3-4-4), and NANP national numbers only when
  formatted: ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567`` (optional leading ``1-``).
  Bare 10-digit runs are never phones.
- IP_ADDRESS: loopback, unspecified (``0.0.0.0``, ``::``) and limited-broadcast addresses name no
  host and are not reported; nor are compressed IPv6 strings without a group of 3-4 hex digits
  (``a[1::2]`` is slicing syntax), nor dotted quads after "version", "release", "build", ...
- SECRET: ``key = value`` assignments count only when the value has >= 10 characters, >= 3 bits
  of entropy per character, two of lower/upper/digit and is not a dotted name (``cfg.API_KEY``);
  so ``'your-secret-key'`` is not a secret and ``changeme123`` is.

``Finding.why`` says which rule matched and which checks passed, never the value itself.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn, numdb
from stdnum.iso7064 import mod_11_2
from stdnum.us import ssn as stdnum_ssn

PII_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "CN_ID", "US_SSN", "IP_ADDRESS", "SECRET")
# Ties between equally long overlapping findings go to the more specific type.
_PRIORITY = {"SECRET": 9, "CN_ID": 8, "IBAN": 7, "CARD": 6, "US_SSN": 5, "EMAIL": 4, "PHONE": 3}
_PRIORITY |= {"IP_ADDRESS": 2, "TERM": 1}


@dataclass(frozen=True, slots=True)
class Finding:
    type: str
    start: int
    end: int
    detector: str
    why: str


# --- validators --------------------------------------------------------------------------------


def _expand(spec: str) -> frozenset[str]:
    """``"30-32 36"`` -> ``{"30", "31", "32", "36"}``."""
    out: set[str] = set()
    for lo, hi in re.findall(r"(\d+)(?:-(\d+))?", spec):
        out.update(str(n) for n in range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


_CARD_SCHEMES = (  # name, leading-digit ranges, lengths
    ("Visa", _expand("4"), (13, 16, 19)),
    ("Mastercard", _expand("51-55 2221-2720"), (16,)),
    ("Amex", _expand("34 37"), (15,)),
    ("Discover", _expand("6011 644-649 65"), range(16, 20)),
    ("JCB", _expand("3528-3589"), range(16, 20)),
    ("Diners", _expand("300-305 36 38 39"), range(14, 20)),
    ("UnionPay", _expand("62"), range(16, 20)),
    ("Maestro", _expand("50 56-69"), range(12, 20)),
)


def card_brand(digits: str) -> str | None:
    """The scheme whose prefix (IIN range) and length fit the card number, or None."""
    if not digits.isdecimal():
        return None
    for name, prefixes, lengths in _CARD_SCHEMES:
        if len(digits) in lengths and any(digits[:k] in prefixes for k in (1, 2, 3, 4)):
            return name
    return None


def card_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits) and card_brand(digits) is not None


@functools.cache
def iban_length(country: str) -> int | None:
    """The IBAN length for ``country`` in python-stdnum's copy of the SWIFT registry, or None."""
    bban = numdb.get("iban").info(country)[0][1].get("bban")
    return 4 + sum(map(int, re.findall(r"(\d+)!", bban))) if bban else None


def iban_valid(iban: str) -> bool:
    """ISO 13616 (python-stdnum): the country's BBAN structure in the SWIFT registry and
    mod-97 == 1; spaces are ignored. National check digits are not checked: a BBAN that breaks
    them can still be a real account number typed wrong, and it is still PII."""
    return stdnum_iban.is_valid(iban, check_country=False)


_CN_PROVINCES = _expand("11-15 21-23 31-37 41-46 50-54 61-65 71 81-83")


def cn_id_valid(s: str) -> bool:
    """GB 11643: province code, a real birth date (1900 or later), ISO 7064 mod 11-2 check."""
    if len(s) != 18 or not s[:17].isdecimal() or s[:2] not in _CN_PROVINCES:
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if born.year < 1900:
        return False
    return mod_11_2.is_valid(s.upper())


_SSN_SHAPE = re.compile(r"\d{3}([- ]?)\d\d\1\d{4}")


def ssn_valid(ssn: str) -> bool:
    """One separator used consistently (or none), then python-stdnum's rules: area not
    000/666/9xx, group not 00, serial not 0000, not a well-known advertised number."""
    return bool(_SSN_SHAPE.fullmatch(ssn)) and stdnum_ssn.is_valid(ssn.replace(" ", ""))


def e164_valid(digits: str) -> bool:
    """8-15 digits after ``+``: ``phonenumbers`` finds an assigned country code and a length
    possible for it (not a local-only one, so ``+12345678`` is no NANP number); a +1 (NANP) area
    code starts with 2-9. Number ranges are not checked (``is_valid_number`` costs a third of the
    recall on the bench)."""
    if not (8 <= len(digits) <= 15 and digits.isdecimal()) or digits[:2] in ("10", "11"):
        return False
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return False
    possible = phonenumbers.is_possible_number_with_reason(number)
    return possible == phonenumbers.ValidationResult.IS_POSSIBLE


def shannon_entropy(s: str) -> float:
    """Bits per character of ``s``'s own character distribution."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def looks_random(value: str, *, min_len: int = 10, min_bits: float = 3.0) -> bool:
    classes = any(c.islower() for c in value) + any(c.isupper() for c in value)
    classes += any(c.isdigit() for c in value)
    return len(value) >= min_len and classes >= 2 and shannon_entropy(value) >= min_bits


def jwt_valid(token: str) -> bool:
    """The first segment must decode (base64url) to a JSON object with an ``alg``."""
    head = token.split(".", 1)[0]
    try:
        obj = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(obj, dict) and "alg" in obj


def ip_reportable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    bcast = addr == ipaddress.IPv4Address("255.255.255.255")
    return not (addr.is_loopback or addr.is_unspecified or bcast)


# --- candidate patterns ------------------------------------------------------------------------

_NB, _NA = r"(?<![\dA-Za-z_])", r"(?![\dA-Za-z_])"  # numeric boundaries (CJK neighbours are fine)
_ANY_DIGIT, _NOT_DIGIT = re.compile(r"\d"), re.compile(r"\D")
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")  # e.g. fullwidth ０-９
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![A-Za-z0-9_-])"
)
_SEP = r"(?:[ .\-]|[ .\-]?\(\d{1,4}\)[ .\-]?)"
_PHONE_INTL = re.compile(
    rf"(?<![\dA-Za-z_+])\+(?:\d{{8,15}}|\d{{1,4}}(?:{_SEP}\d{{1,12}}){{1,7}}){_NA}"
)
_PHONE_CN = re.compile(
    r"(?<![\dA-Za-z_+])(?:(?:\+|00)86[ \-]?)?1[3-9]\d(?:\d{8}|([ \-])\d{4}\1\d{4})" + _NA
)
_PHONE_NANP = re.compile(
    r"(?<![\dA-Za-z_+\-./])(?:1[ .\-])?(?:\(([2-9]\d\d)\) ?\d{3}[ .\-]\d{4}|"
    r"([2-9]\d\d)([.\-])\d{3}\3\d{4})(?![\dA-Za-z_]|[.\-]\d)"
)
_CARD = re.compile(
    _NB + r"(?:\d{13,19}|\d{4}([ \-])\d{4,6}\1\d{4,5}(?:\1\d{1,4}){0,2})(?![\dA-Za-z_]|[.\-]\d)"
)
_IBAN = re.compile(r"(?<![\dA-Za-z_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _NA)
_CN_ID = re.compile(
    _NB + r"[1-9]\d{5}(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _NA
)
_SSN = re.compile(r"(?<![\dA-Za-z_.\-])\d{3}([\- ])\d\d\1\d{4}(?![\dA-Za-z_]|[.\-]\d)")
_IPV4 = re.compile(r"(?<![0-9A-Za-z_.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z_]|\.[0-9])")
_VERSIONISH = re.compile(r"(?i)(?:version|release|build|firmware|ver\.?)\s*[:#]?\s*$")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z_.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?:\.[0-9]{1,3}){0,3}(?![0-9A-Za-z_:])"
)
_IPV6_LONG_GROUP = re.compile(r"(?:^|:)[0-9A-Fa-f]{3,4}(?=:|$)")
_LABEL_BEFORE = re.compile(r"[0-9A-Za-z_]*[G-Zg-z_][0-9A-Za-z_]*$")  # "IP:", "IPv6:", "host:"
_SECRET_KINDS = {  # name: (why, pattern); all share the boundaries below
    "aws": ("AWS access key id", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
    "github": ("GitHub token", r"gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{60,255}"),
    "slack": ("Slack token", r"xox[abposr]-[A-Za-z0-9\-]{10,250}"),
    "stripe": ("Stripe secret key", r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,247}"),
    "google": ("Google API key", r"AIza[0-9A-Za-z_\-]{35}"),
    "skkey": ("sk- style API key with a random body", r"sk-[A-Za-z0-9_\-]{20,250}"),
    "jwt": (
        "JSON web token, header has an alg",
        r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
    ),
    "pem": ("PEM private-key block", ""),
}
_SECRETS = re.compile(
    r"(?P<pem>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z))|(?<![A-Za-z0-9_\-])(?:"
    + "|".join(f"(?P<{name}>{pattern})" for name, (_, pattern) in _SECRET_KINDS.items() if pattern)
    + r")(?![A-Za-z0-9_\-])"
)
_DOTTED_NAME = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")  # config.API_KEY: code
_ASSIGNED = re.compile(
    r"(?i)(?:(api[_\-]?key|secret(?:[_\-]?key)?|client[_\-]?secret|access[_\-]?(?:key|token)|"
    r"auth[_\-]?token|token|password|passwd|pwd|private[_\-]?key)[\"']?\s*(?:=>|:=|=|:)\s*[\"']?|"
    r"\b(bearer)\s+)([!#$%*+\-./0-9:=?@A-Z^_a-z|~]{10,256}(?<![.?!:]))"
)


# --- detectors ---------------------------------------------------------------------------------


def _digits(s: str) -> str:
    return _NOT_DIGIT.sub("", s)


def _emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        local = m.group(0)[: m.start(1) - m.start() - 1]
        if ".." not in local and not local.endswith(".") and len(m.group(0)) <= 254:
            yield Finding("EMAIL", m.start(), m.end(), "email", "email address syntax")


def _phones(text: str) -> Iterator[Finding]:
    for m in _PHONE_INTL.finditer(text):
        digits = _digits(m.group(0).replace("(0)", "", 1))  # "+44 (0)20 ...": trunk 0 not dialled
        if e164_valid(digits) and m.group(0).count("(") == m.group(0).count(")"):
            why = f"international number, {len(digits)} digits, length possible for its country"
            yield Finding("PHONE", m.start(), m.end(), "phone.e164", why)
    for m in _PHONE_CN.finditer(text):
        yield Finding("PHONE", m.start(), m.end(), "phone.cn_mobile", "mainland-China mobile")
    for m in _PHONE_NANP.finditer(text):
        yield Finding("PHONE", m.start(), m.end(), "phone.nanp", "formatted NANP number")


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        digits = _digits(m.group(0))
        if card_valid(digits):
            why = f"Luhn-valid {len(digits)}-digit {card_brand(digits)} number"
            yield Finding("CARD", m.start(), m.end(), "card.luhn", why)


def _ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(text):
        want, cand = iban_length(m.group(0)[:2]), m.group(0)
        if want is None:
            continue
        count, end = 0, len(cand)  # cut a greedy over-match at the expected length
        for i, ch in enumerate(cand):
            count += ch != " "
            if count == want:
                end = i + 1
                break
        if (end == len(cand) or cand[end] == " ") and iban_valid(cand[:end]):
            why = f"IBAN ({cand[:2]}), length {want}, BBAN structure and mod-97 check passed"
            yield Finding("IBAN", m.start(), m.start() + end, "iban.mod97", why)


def _cn_ids(text: str) -> Iterator[Finding]:
    for m in _CN_ID.finditer(text):
        if cn_id_valid(m.group(0)):
            why = "China resident ID: province, birth date and mod 11-2 check digit valid"
            yield Finding("CN_ID", m.start(), m.end(), "cn_id.checksum", why)


def _ssns(text: str) -> Iterator[Finding]:
    for m in _SSN.finditer(text):
        if ssn_valid(m.group(0)):
            why = "US SSN format with a valid area, group and serial"
            yield Finding("US_SSN", m.start(), m.end(), "ssn.rules", why)


def _ips(text: str) -> Iterator[Finding]:
    if text.count(".") >= 3:
        for m in _IPV4.finditer(text):
            octets = m.group(0).split(".")
            if any((len(o) > 1 and o[0] == "0") or int(o) > 255 for o in octets):
                continue
            if _VERSIONISH.search(text, max(0, m.start() - 20), m.start()):
                continue
            if ip_reportable(ipaddress.IPv4Address(m.group(0))):
                yield Finding("IP_ADDRESS", m.start(), m.end(), "ip.v4", "IPv4 address")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            cand, at = m.group(0), m.start()
            glued = at and text[at - 1] == ":"  # inside a longer colon run, unless after "IP:"
            if glued and not _LABEL_BEFORE.search(text, max(0, at - 40), at - 1):
                continue
            if cand.count(":") < 7 and not _IPV6_LONG_GROUP.search(cand):
                continue
            try:
                addr = ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            if ip_reportable(addr):
                yield Finding("IP_ADDRESS", m.start(), m.end(), "ip.v6", "IPv6 address")


def _secrets(text: str) -> Iterator[Finding]:
    for m in _SECRETS.finditer(text):
        kind, value = m.lastgroup or "pem", m.group(0)
        if kind == "skkey" and not looks_random(value[3:], min_len=20):
            continue
        if kind == "jwt" and not jwt_valid(value):
            continue
        yield Finding("SECRET", m.start(), m.end(), f"secret.{kind}", _SECRET_KINDS[kind][0])
    for m in _ASSIGNED.finditer(text):
        value, key = m.group(3), (m.group(1) or m.group(2)).lower()
        if looks_random(value) and not _DOTTED_NAME.fullmatch(value):
            bits = shannon_entropy(value)
            why = f"high-entropy value ({bits:.1f} bits/char) assigned to {key!r}"
            yield Finding("SECRET", m.start(3), m.end(3), "secret.assignment", why)


def detect_pii(text: str) -> list[Finding]:
    """All rule findings in ``text``, overlaps resolved, sorted by start."""
    if not text.isascii() and _NON_ASCII_DIGIT.search(text):  # same length, so same offsets
        text = _NON_ASCII_DIGIT.sub(lambda m: str(int(m.group(0))), text)
    found: list[Finding] = []
    if "@" in text:
        found.extend(_emails(text))
    found.extend(_secrets(text))
    found.extend(_ips(text))
    if _ANY_DIGIT.search(text):
        for detector in (_phones, _cards, _ibans, _cn_ids, _ssns):
            found.extend(detector(text))
    return resolve_overlaps(found)


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep non-overlapping findings: the longest first, then the most specific type."""
    ranked = sorted(findings, key=lambda f: (f.start - f.end, -_PRIORITY.get(f.type, 0), f.start))
    starts: list[int] = []
    kept: list[Finding] = []
    for f in ranked:
        i = bisect.bisect_right(starts, f.start)
        if i > 0 and kept[i - 1].end > f.start:
            continue
        if i < len(kept) and kept[i].start < f.end:
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept
