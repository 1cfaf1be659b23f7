"""Character error rate and line agreement of OCR output against ground truth (issue 19).

Both sides are normalised before they are compared (:func:`normalize`):

- Unicode NFKC, which also folds full-width forms to half-width (``ＡＢ１２`` -> ``AB12``,
  ``，：；？！（）`` -> ``,:;?!()``, ``￥`` -> ``¥``, the ideographic space -> a space) and
  compatibility characters (``℃`` -> ``°C``, ``①`` -> ``1``); ``。`` and ``、`` stay as they are.
- Within a line, runs of white space become one space and the ends are stripped; empty lines
  are dropped, and the remaining lines are joined with ``\\n`` (a line break stays a character
  of the text, so a merged or split line costs one edit).
- zh only: a space with a CJK character (ideograph, kana, CJK or full-width punctuation) on
  either side is dropped, before NFKC (so ``，`` still counts as CJK); Chinese is written without
  spaces, and a recogniser's spacing around ideographs is not an error. Spaces between Latin
  words or digits (``BP 120/80``, ``138 1234 5678``) stay.

Case is kept (an order number's letters matter). The CER of a set is the total edit
(Levenshtein) distance over the total reference characters, not a mean of per-image rates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import LCSseq, Levenshtein

_SPACES = re.compile(r"\s+")
_CJK = (  # CJK radicals to ideographs, kana, CJK punctuation; full-width punctuation (not letters)
    "\u2e80-\u2fff\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\uffe0-\uffef"
)
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) | (?=[{_CJK}])")


def normalize(text: str, lang: str | None) -> str:
    """``text`` as compared: NFKC, white space collapsed per line, zh spaces next to CJK dropped.

    ``lang`` None applies the zh rule, which changes nothing in a text without CJK characters.
    """
    lines = []
    for raw in text.splitlines():
        line = _SPACES.sub(" ", raw)
        if lang in ("zh", None):
            line = _CJK_SPACE.sub("", line)
        line = _SPACES.sub(" ", unicodedata.normalize("NFKC", line)).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def cer(ref: str, hyp: str) -> float:
    """Edit distance over ``len(ref)``, as given (normalise first); an empty ``ref`` gives 0.0
    for an empty ``hyp`` and 1.0 otherwise (anything read where there is nothing is all wrong)."""
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(ref, hyp) / len(ref)


def _matched(a: Sequence[str], b: Sequence[str], lang: str | None) -> tuple[int, int]:
    """Lines identical after normalising, matched in order (longest common subsequence), and
    the number of line slots, ``max(len(a), len(b))`` of the non-empty lines."""
    na = [x for x in (normalize(s, lang) for s in a) if x]
    nb = [x for x in (normalize(s, lang) for s in b) if x]
    return int(LCSseq.similarity(na, nb)), max(len(na), len(nb))


def line_agreement(a: Sequence[str], b: Sequence[str], lang: str | None = None) -> float:
    """The share of lines that agree: lines identical after :func:`normalize`, paired in reading
    order by a longest common subsequence (so one missing or extra line does not shift all the
    pairs after it), over the longer of the two line counts (an unmatched line on either side
    counts against). Empty lines are ignored; two empty lists agree fully (1.0)."""
    same, slots = _matched(a, b, lang)
    return same / slots if slots else 1.0


@dataclass
class _Tally:
    edits: int = 0
    chars: int = 0
    images: int = 0
    lines_same: int = 0
    line_slots: int = 0


@dataclass
class CerCounter:
    """Accumulates edit distance and reference characters per language over a set of images."""

    tallies: dict[str, _Tally] = field(default_factory=dict)

    def add(self, ref_lines: Sequence[str], hyp_lines: Sequence[str], lang: str) -> float:
        """Count one image (its truth lines and the lines read, in reading order); returns its
        CER. The texts compared are the normalised lines joined with newlines."""
        ref, hyp = normalize("\n".join(ref_lines), lang), normalize("\n".join(hyp_lines), lang)
        tally = self.tallies.setdefault(lang, _Tally())
        edits = Levenshtein.distance(ref, hyp)
        same, slots = _matched(ref_lines, hyp_lines, lang)
        tally.edits += edits
        tally.chars += len(ref)
        tally.images += 1
        tally.lines_same += same
        tally.line_slots += slots
        return cer(ref, hyp)

    def _total(self, lang: str | None) -> _Tally:
        picked = [t for k, t in self.tallies.items() if lang is None or k == lang]
        out = _Tally()
        for t in picked:
            out.edits += t.edits
            out.chars += t.chars
            out.images += t.images
            out.lines_same += t.lines_same
            out.line_slots += t.line_slots
        return out

    def cer(self, lang: str | None = None) -> float:
        """Total edits over total reference characters (all languages when ``lang`` is None)."""
        t = self._total(lang)
        return t.edits / t.chars if t.chars else 0.0

    def line_exact(self, lang: str | None = None) -> float:
        """Share of line slots whose lines agree exactly (see :func:`line_agreement`)."""
        t = self._total(lang)
        return t.lines_same / t.line_slots if t.line_slots else 1.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Per language and ``all``: cer, line_exact, images, edits, chars."""
        out: dict[str, dict[str, float]] = {}
        for lang in [*sorted(self.tallies), None]:
            t = self._total(lang)
            out[lang or "all"] = {
                "cer": self.cer(lang), "line_exact": self.line_exact(lang),
                "images": float(t.images), "edits": float(t.edits), "chars": float(t.chars),
            }  # fmt: skip
        return out
