"""Invisible in-text watermark: Unicode variation selectors carrying a MAC'd provenance id.

Encoding
    The 256 variation selectors (VS1-VS16 U+FE00-FE0F, VS17-VS256 U+E0100-E01EF) are one byte
    each. A frame is ``tag(1) | provenance id(8) | MAC(6)`` = 15 bytes: ``tag`` is the first byte
    of SHA-256 of the kid (it names the key and marks where a frame starts), ``MAC`` is
    HMAC-SHA256 over tag and id under the kid's mark key (:meth:`KeyRing.mark_key`), truncated.
    One selector follows every eligible *carrier cluster*: a carrier (a letter, general category
    L*, or an ASCII digit or punctuation character) with the combining marks after it, unless it
    ends in a virama, already holds a variation or keycap sequence, is followed by a joiner, or
    would compose with the next character under NFC. Scripts where a selector after a letter
    already means something are never carriers: CJK ideographs, Myanmar, Mongolian, Phags-pa,
    Manichaean, Egyptian hieroglyphs, conjoining Hangul jamo, U+2139. Digits, '#' and '*' never
    take the bytes that would read as VS1/VS15/VS16 (slashed zero, text/emoji style, keycaps):
    such a carrier is left plain and the symbol goes on the next one. The selector goes after
    the marks, so accents and vowel signs stay on their letter. The frame repeats cyclically,
    so any 15 consecutive symbols hold a complete copy (read across the cycle boundary if
    needed). Whitespace never carries a symbol.

Tracing length and cost
    A fragment needs 15 carriers: about 20 characters of prose, so 40-character fragments of
    prose in Latin, Cyrillic, Greek, Hangul or kana scripts are traced (Devanagari and
    kanji-heavy Japanese sometimes need more; deeply indented code can hold fewer than 15
    carriers in 40 characters). Text with fewer than 15 carriers (short answers, or Chinese,
    which has none) gets at most a partial frame and can only be verified through its
    envelope. Marking adds one 3-4 byte character per carrier: about 4.5x the UTF-8 size of
    English text. It is invisible where Unicode is followed, but some terminals draw boxes, and
    a mark inside code changes identifiers and breaks the code: emit code unmarked.

Survives
    whitespace reflow (collapsing, adding or changing spaces and line breaks, even a hard wrap
    between a letter and its selector: the reader looks back over whitespace), NFC and NFD
    (selectors have no decomposition and combining class 0; carriers never compose with their
    neighbour), NFKC/NFKD in practice (selectors unchanged, mapped letters stay letters), case
    changes, JSON round trips (``orjson``; ``json`` with ``ensure_ascii`` on or off: VS17+ become
    surrogate-pair escapes and come back), UTF-8/16/32 round trips, cutting on character
    boundaries, quoting and concatenation with other text (each copy stands alone; a text
    mixing several outputs yields several ids).

Does not survive
    sanitisers that drop default-ignorable or non-spacing characters (``\\p{Mn}``, "remove
    invisible characters"), ASCII-only or legacy-charset pipelines, ``unidecode``, re-typing,
    OCR or screenshots, translation, paraphrase or summarisation, and edits that touch every
    complete copy in a fragment. Editing visible text does not remove the mark; tampering with
    a whole output is caught by the envelope's digest, not by the mark.

Clean text
    Selectors that clean text legitimately holds (VS15/VS16 after emoji, digits, '#' and '*',
    ideographic variation sequences after CJK, VS1 after '0' or math symbols) never follow a
    carrier or use a reserved byte, so :func:`strip` keeps them and :func:`extract` ignores
    them. A selector after a carrier (looking back over marks, selectors and whitespace) counts
    as a mark symbol: only those are stripped, and only MAC-valid frames are reported (a false
    frame needs a 1-in-2^48 MAC match after the 1-in-256 tag match).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from workers.provenance.keys import KeyRing, ProvenanceKeyError

ID_BYTES = 8
MAC_BYTES = 6
FRAME_LEN = 1 + ID_BYTES + MAC_BYTES
MIN_TRACE_CARRIERS = FRAME_LEN
_MAC_DOMAIN = b"inferstream.textmark.v1"
_JOINERS = frozenset("\u200c\u200d")
_ASCII_CARRIERS = frozenset(string.ascii_letters + string.digits + string.punctuation)
# Selectors with a meaning after some carriers (VS1 slashed zero, VS15/VS16 text/emoji style and
# keycaps): those carriers never take these bytes, and readers never take them as mark symbols.
_RESERVED: dict[str, frozenset[int]] = {
    **{d: frozenset({0, 14, 15}) for d in string.digits},
    "#": frozenset({14, 15}),
    "*": frozenset({14, 15}),
}
_SELECTOR_RE = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")

# Scripts/code points where a variation selector after a letter already has a meaning.
_EXCLUDED_RANGES = (
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul conjoining jamo (compose under NFC)
    (0x1800, 0x18AF),  # Mongolian
    (0x2139, 0x2139),  # INFORMATION SOURCE (emoji)
    (0x3400, 0x4DBF),  # CJK ext A
    (0x4E00, 0x9FFF),  # CJK unified
    (0xA840, 0xA87F),  # Phags-pa
    (0xA960, 0xA97F),  # Hangul jamo ext A
    (0xA9E0, 0xA9FF),  # Myanmar ext B
    (0xAA60, 0xAA7F),  # Myanmar ext A
    (0xD7B0, 0xD7FF),  # Hangul jamo ext B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x10AC0, 0x10AFF),  # Manichaean
    (0x13000, 0x1345F),  # Egyptian hieroglyphs
    (0x20000, 0x3FFFF),  # CJK ext B and later
)


@dataclass(frozen=True)
class MarkHit:
    """A MAC-valid provenance id found in a text; ``count`` = frame starts that verified."""

    provenance_id: str
    kid: str
    count: int


def to_selector(byte: int) -> str:
    return chr(0xFE00 + byte) if byte < 16 else chr(0xE0100 + byte - 16)


def from_selector(char: str) -> int | None:
    cp = ord(char)
    if 0xFE00 <= cp <= 0xFE0F:
        return cp - 0xFE00
    if 0xE0100 <= cp <= 0xE01EF:
        return cp - 0xE0100 + 16
    return None


@lru_cache(maxsize=4096)
def is_carrier(char: str) -> bool:
    """A letter, ASCII digit or ASCII punctuation that may carry a mark symbol (module doc)."""
    if char.isascii():
        return char in _ASCII_CARRIERS
    if not unicodedata.category(char).startswith("L"):
        return False
    cp = ord(char)
    return not any(lo <= cp <= hi for lo, hi in _EXCLUDED_RANGES)


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _cluster_ok(base: str, i: int, j: int) -> bool:
    """May a selector follow the cluster ``base[i:j]`` (a carrier and its marks)?"""
    if j - 1 > i:
        if unicodedata.combining(base[j - 1]) == 9:
            return False  # after a virama the next consonant forms a conjunct: do not split it
        if any(_SELECTOR_RE.match(c) or unicodedata.category(c) == "Me" for c in base[i + 1 : j]):
            return False  # an existing variation or keycap sequence: leave it alone
        if not is_carrier(unicodedata.normalize("NFC", base[i:j])[0]):
            return False  # e.g. '<' + U+0338 composes to '≮', which carries nothing
    if j >= len(base) or base[j].isascii():
        return True
    nxt = base[j]
    if nxt in _JOINERS:
        return False
    cluster = base[i:j]
    return unicodedata.normalize("NFC", cluster + nxt) == unicodedata.normalize(
        "NFC", cluster
    ) + unicodedata.normalize("NFC", nxt)


# Typed placeholders of the content filter ("[PHONE]", "[CARD]") stay free of marks, so that
# consumers can match them as plain strings. Derived from the text alone, so verifying (which
# re-embeds the stripped text) protects the same spans.
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]{1,31}\]")


def _protected(base: str) -> list[tuple[int, int]]:
    return [m.span() for m in _PLACEHOLDER.finditer(base)]


def _slots(base: str) -> list[tuple[int, str]]:
    """(index, carrier): :func:`embed` may put a selector after ``index``, the last char of an
    eligible carrier cluster. ``base`` must hold no mark symbols."""
    protected = _protected(base)
    if base.isascii():  # every char is its own cluster: the loop below, as one comprehension
        return [
            (i, char)
            for i, char in enumerate(base)
            if char in _ASCII_CARRIERS and not any(a <= i < b for a, b in protected)
        ]
    return _slots_general(base, protected)


def _slots_general(base: str, protected: list[tuple[int, int]]) -> list[tuple[int, str]]:
    slots: list[tuple[int, str]] = []
    n = len(base)
    i = 0
    while i < n:
        if protected and protected[0][0] <= i:
            if i < protected[0][1]:
                i = protected[0][1]
                continue
            protected.pop(0)
            continue
        char = base[i]
        if char.isascii() and (i + 1 == n or base[i + 1].isascii()):
            if char in _ASCII_CARRIERS:
                slots.append((i, char))
            i += 1
            continue
        if not is_carrier(char):
            i += 1
            continue
        j = i + 1
        while j < n and _is_mark(base[j]):
            j += 1
        if _cluster_ok(base, i, j):
            slots.append((j - 1, char))
        i = j
    return slots


def kid_tag(kid: str) -> int:
    """One public byte naming the kid; it also marks the start of every frame."""
    return hashlib.sha256(b"inferstream.textmark.kid|" + kid.encode()).digest()[0]


def _mac(key: bytes, tag: int, pid: bytes) -> bytes:
    return hmac.digest(key, _MAC_DOMAIN + bytes([tag]) + pid, "sha256")[:MAC_BYTES]


def frame(provenance_id: str, kid: str, keys: KeyRing) -> bytes:
    """The 15-byte frame repeated through a marked text."""
    try:
        pid = bytes.fromhex(provenance_id)
    except ValueError:
        pid = b""
    if len(pid) != ID_BYTES:
        raise ValueError(f"provenance_id must be {2 * ID_BYTES} hex characters")
    tag = kid_tag(kid)
    return bytes([tag]) + pid + _mac(keys.mark_key(kid), tag, pid)


def capacity(text: str) -> int:
    """How many carriers ``text`` offers (>= 15 means traceable; a digit may be skipped)."""
    return len(_slots(strip(text)))


def embed(text: str, provenance_id: str, kid: str, keys: KeyRing) -> str:
    """``text`` (first stripped of any earlier mark) with the frame spread over its carriers."""
    data = frame(provenance_id, kid, keys)
    base = strip(text)
    out: list[str] = []
    last = j = 0
    for slot, carrier in _slots(base):
        byte = data[j % FRAME_LEN]
        if byte in _RESERVED.get(carrier, ()):
            continue  # leave this digit plain; the symbol goes on the next carrier
        out.append(base[last : slot + 1])
        out.append(to_selector(byte))
        last = slot + 1
        j += 1
    out.append(base[last:])
    return "".join(out)


def _symbol_positions(text: str, *, lenient_start: bool = False) -> list[tuple[int, int]]:
    """(index, byte) of every selector that follows a carrier, looking back over combining marks,
    other selectors and whitespace (a hard wrap may split a letter from its symbol).
    ``lenient_start``: also take selectors with nothing but those before them (a cut fragment)."""
    found: list[tuple[int, int]] = []
    for match in _SELECTOR_RE.finditer(text):
        start = match.start()
        i = start - 1
        if i < 0 or text[i] not in _ASCII_CARRIERS:  # the common case needs no look-back
            while i >= 0 and (text[i].isspace() or _is_mark(text[i])):
                i -= 1
            if not ((i < 0 and lenient_start) or (i >= 0 and is_carrier(text[i]))):
                continue
        cp = ord(text[start])
        byte = cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16
        if i >= 0 and byte in _RESERVED.get(text[i], ()):
            continue  # e.g. the VS16 of a keycap or the VS1 of a slashed zero
        found.append((start, byte))
    return found


def has_mark_symbols(text: str) -> bool:
    """Whether ``text`` holds any selector that :func:`strip` would remove."""
    return bool(_SELECTOR_RE.search(text)) and bool(_symbol_positions(text))


def strip(text: str) -> str:
    """Remove mark symbols only; selectors that do not follow a carrier stay."""
    if not _SELECTOR_RE.search(text):
        return text
    pieces: list[str] = []
    last = 0
    for i, _ in _symbol_positions(text):
        pieces.append(text[last:i])
        last = i + 1
    pieces.append(text[last:])
    return "".join(pieces)


def extract(text: str, keys: KeyRing) -> list[MarkHit]:
    """Every MAC-valid provenance id in ``text``, most copies first. Needs private keys.

    Reads the symbols :func:`strip` would remove, plus selectors at the very start of the text
    (a fragment cut between a letter and its symbol); only MAC-valid frames are reported.
    """
    if not keys.private_kids:
        raise ProvenanceKeyError("text marks need the private key ring; this one is public-only")
    if not _SELECTOR_RE.search(text):
        return []
    symbols = [b for _, b in _symbol_positions(text, lenient_start=True)]
    n = len(symbols)
    if n < FRAME_LEN:
        return []
    by_tag: dict[int, list[tuple[str, bytes]]] = {}
    for kid in keys.private_kids:
        by_tag.setdefault(kid_tag(kid), []).append((kid, keys.mark_key(kid)))
    counts: Counter[tuple[str, str]] = Counter()
    for p, byte in enumerate(symbols):
        candidates = by_tag.get(byte)
        if not candidates:
            continue
        if p + FRAME_LEN <= n:
            data = bytes(symbols[p : p + FRAME_LEN])
        else:  # read the end of this copy from the previous cycle
            data = bytes(symbols[p:] + symbols[n - FRAME_LEN : p])
        pid, mac = data[1 : 1 + ID_BYTES], data[1 + ID_BYTES :]
        for kid, key in candidates:
            if hmac.compare_digest(_mac(key, byte, pid), mac):
                counts[(pid.hex(), kid)] += 1
    return [MarkHit(pid, kid, count) for (pid, kid), count in counts.most_common()]
